"""GET /__admin/events: Server-Sent Events over the journal, on a real fake over real sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server._faults._events import EventHub
from mock_server._faults._journal import Entry, Filter, Journal

from .conftest import Sse, hub_of

KEY = {"X-API-Key": "acme-key"}


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=":memory:")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: ServerThread) -> Iterator[None]:
    requests.post(f"{fake.url}/__admin/reset", timeout=5)
    yield
    hub = hub_of(fake)
    hub.heartbeat_s, hub.buffer = 15.0, 4096


def _get(fake: ServerThread, path: str, **headers: str) -> requests.Response:
    return requests.get(f"{fake.url}{path}", headers={**KEY, **headers}, timeout=5)


def test_each_completed_request_is_an_event_with_its_journal_object_and_seq_as_id(fake: ServerThread) -> None:
    stream = Sse(f"{fake.url}/__admin/events")
    try:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.response.headers["cache-control"].startswith("no-cache")
        _get(fake, "/health")
        _get(fake, "/profiles", **{"X-Mock-Session": "s1"})
        events = stream.requests(2)
    finally:
        stream.close()
    assert stream.raw.startswith("retry: 1000\n\n")
    journal = requests.get(f"{fake.url}/__admin/requests", timeout=5).json()["requests"]
    assert [e["data"] for e in events] == journal
    assert [e["id"] for e in events] == [str(j["seq"]) for j in journal]
    assert events[1]["data"]["session"] == "s1" and events[1]["data"]["completed"] is True


def test_filters_are_the_journals(fake: ServerThread) -> None:
    requests.post(
        f"{fake.url}/__admin/faults",
        json={"id": "boom", "match": {"path": "/boom/*"}, "fault": {"type": "status", "status": 503}},
        timeout=5,
    )
    stream = Sse(f"{fake.url}/__admin/events?status=5xx&path=/boom/*")
    try:
        _get(fake, "/health")
        _get(fake, "/boom/1")
        _get(fake, "/health")
        _get(fake, "/boom/2")
        events = stream.requests(2)
    finally:
        stream.close()
    assert [(e["data"]["path"], e["data"]["status"], e["data"]["rule"]) for e in events] == [
        ("/boom/1", 503, "boom"),
        ("/boom/2", 503, "boom"),
    ]


@pytest.mark.parametrize(
    ("query", "headers", "loc"),
    [
        ("?statuss=500", {}, ["statuss"]),
        ("?status=9xx", {}, ["status"]),
        ("?limit=ten", {}, ["limit"]),
        ("", {"Last-Event-ID": "seven"}, ["Last-Event-ID"]),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(
    fake: ServerThread, query: str, headers: dict[str, str], loc: list[str]
) -> None:
    r = requests.get(f"{fake.url}/__admin/events{query}", headers=headers, timeout=5)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == loc


def test_limit_replays_the_newest_matching_requests_first(fake: ServerThread) -> None:
    for i in range(5):
        _get(fake, f"/health?i={i}")
    stream = Sse(f"{fake.url}/__admin/events?limit=2")
    try:
        replay = stream.requests(2)
        _get(fake, "/health?i=live")
        live = stream.requests(1)
    finally:
        stream.close()
    assert [e["data"]["query"] for e in replay + live] == ["i=3", "i=4", "i=live"]


def test_last_event_id_resumes_without_losing_a_request_that_completed_out_of_order(
    fake: ServerThread,
) -> None:
    # /slow is held 600 ms: it arrives first (the lower seq) and completes after /fast. A client
    # that saw /fast's event and reconnects with its id must still get /slow's.
    requests.post(
        f"{fake.url}/__admin/faults",
        json={"id": "hold", "match": {"path": "/slow"}, "fault": {"type": "latency", "fixed_ms": 600}},
        timeout=5,
    )
    stream = Sse(f"{fake.url}/__admin/events")
    slow = threading.Thread(target=_get, args=(fake, "/slow"))
    try:
        _get(fake, "/health?n=1")
        slow.start()
        time.sleep(0.1)
        _get(fake, "/health?n=2")
        seen = stream.requests(2)
    finally:
        stream.close()
    assert [e["data"]["query"] for e in seen] == ["n=1", "n=2"]
    last_id = seen[-1]["id"]
    slow.join(5)
    _get(fake, "/health?n=3")  # while disconnected

    again = Sse(f"{fake.url}/__admin/events", headers={"Last-Event-ID": last_id})
    try:
        resumed = again.requests(2)
        _get(fake, "/health?n=4")
        resumed += again.requests(1)
    finally:
        again.close()
    assert [e["data"]["path"] + e["data"]["query"] for e in resumed] == ["/slow", "/healthn=3", "/healthn=4"]
    assert int(resumed[0]["id"]) < int(last_id)  # ids follow arrival, events follow completion
    journal = requests.get(f"{fake.url}/__admin/requests", timeout=5).json()["requests"]
    assert sorted(int(e["id"]) for e in seen + resumed) == [j["seq"] for j in journal]


def test_a_resume_point_the_journal_no_longer_holds_is_reported_as_a_gap(fake: ServerThread) -> None:
    for i in range(3):
        _get(fake, f"/health?i={i}")
    gone = requests.get(f"{fake.url}/__admin/requests", timeout=5).json()["requests"][0]["seq"]
    requests.delete(f"{fake.url}/__admin/requests", timeout=5)
    _get(fake, "/health?i=after")
    stream = Sse(f"{fake.url}/__admin/events", headers={"Last-Event-ID": str(gone)})
    try:
        blocks = stream.blocks()
        first = next(b for b in blocks if b["event"] != "message" or b["data"] is not None)
        after = stream.requests(1)
    finally:
        stream.close()
    assert first["event"] == "gap"
    assert first["data"]["last_event_id"] == gone
    assert after[0]["data"]["query"] == "i=after"


def test_the_stream_needs_the_admin_token_when_the_fake_has_one() -> None:
    with ServerThread(ServerConfig(db=":memory:", admin_token="s3cret")) as server:
        refused = requests.get(f"{server.url}/__admin/events", timeout=5)
        assert refused.status_code == 401
        stream = Sse(f"{server.url}/__admin/events", headers={"X-Admin-Token": "s3cret"})
        try:
            assert stream.response.status_code == 200
            requests.get(f"{server.url}/health", timeout=5)
            assert stream.requests(1)[0]["data"]["path"] == "/health"
        finally:
            stream.close()
        assert "s3cret" not in stream.raw


def test_an_idle_stream_gets_heartbeats(fake: ServerThread) -> None:
    hub_of(fake).heartbeat_s = 0.2
    stream = Sse(f"{fake.url}/__admin/events")
    try:
        comment = next(b for b in stream.blocks() if b["comment"])
    finally:
        stream.close()
    assert comment["comment"] == "ping"


def test_a_closed_stream_stops_listening_to_the_journal(fake: ServerThread) -> None:
    hub = hub_of(fake)
    stream = Sse(f"{fake.url}/__admin/events")
    _get(fake, "/health")
    stream.requests(1)
    assert hub.clients == 1 and hub.publish in fake.app.journal.listeners  # type: ignore[attr-defined]
    stream.close()
    deadline = time.monotonic() + 3
    while hub.clients and time.monotonic() < deadline:
        _get(fake, "/health")  # a write to the closed socket is one way the stream notices
        time.sleep(0.05)
    assert hub.clients == 0
    assert hub.publish not in fake.app.journal.listeners  # type: ignore[attr-defined]


def test_streams_end_when_the_server_stops() -> None:
    server = ServerThread(ServerConfig(db=":memory:")).start()
    stream = Sse(f"{server.url}/__admin/events")
    ended = threading.Event()

    def read() -> None:
        try:
            for _ in stream.blocks():
                pass
        except (StopIteration, requests.RequestException, RuntimeError):
            pass
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    server.stop()
    # Well under uvicorn's 5 s graceful-shutdown timeout: the protocol released the stream.
    assert ended.wait(3)
    assert time.monotonic() - started < 3
    stream.close()


def test_too_many_streams_get_a_503(fake: ServerThread) -> None:
    hub = hub_of(fake)
    saved = hub.max_clients
    hub.max_clients = 1
    first = Sse(f"{fake.url}/__admin/events")
    try:
        second = requests.get(f"{fake.url}/__admin/events", timeout=5)
        assert second.status_code == 503
        assert "event streams" in second.json()["error"]["message"]
    finally:
        first.close()
        hub.max_clients = saved


# -- a reader that does not read: bounded, then caught up from the journal ------------------------


def _entry(seq: int) -> Entry:
    return Entry(
        seq=seq,
        request_id=f"r{seq}",
        client_request_id=False,
        method="GET",
        path=f"/p/{seq}",
        query="",
        tenant=None,
        session=None,
        idempotency_key=None,
        arrived_at=1000.0 + seq,
        arrived_mono=float(seq),
        fault=None,
        rule=None,
        rules=(),
        injected_delay_s=0.0,
        status=200,
        outcome="response",
        duration_s=0.001,
    )


def test_a_slow_reader_holds_at_most_its_buffer_then_catches_up_from_the_journal() -> None:
    async def scenario() -> tuple[int, list[int], bool]:
        journal = Journal(10_000)
        hub = EventHub(journal, buffer=16, flush_s=0.0)
        response = hub.stream(Filter())
        gate = asyncio.Event()
        bodies: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and bodies:
                await gate.wait()  # the client stopped reading: the write never completes
            bodies.append(message.get("body", b""))

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()
            return {}  # pragma: no cover

        task = asyncio.create_task(response({"type": "http"}, receive, send))
        await asyncio.sleep(0.01)
        _publish(journal, 1, 1)
        await asyncio.sleep(0.01)  # the first batch is being written, and blocks
        most = 0
        for seq in range(2, 1001):
            _publish(journal, seq, seq)
            most = max(most, *(len(s.queue) for s in hub._subscribers))
        overflowed = hub._subscribers[0].overflowed
        gate.set()
        while b"/p/1000" not in b"".join(bodies):
            await asyncio.sleep(0.01)
        hub.close()
        await task
        text = b"".join(bodies).decode()
        ids = [int(line[4:]) for line in text.split("\n") if line.startswith("id: ")]
        return most, ids, overflowed

    most, ids, overflowed = asyncio.run(scenario())
    assert overflowed
    assert most <= 16
    assert ids == list(range(1, 1001))  # every request once, in completion order


def _publish(journal: Journal, seq: int, finished: float) -> None:
    entry = _entry(seq)
    entry.arrived_mono = finished - 0.001
    journal.record(entry)
    journal.complete(entry)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": None, "outcome": None, "duration_s": None},
        {"path": '/p/"quoted"\\back\nline\u00e9\u2603', "query": "a=%00&b=***", "session": "s\u00ff"},
        {"rules": ("r1", 'r"2'), "fault": "status", "rule": "r1", "retry_after_s": 2.0},
        {"ratelimit_remaining": 0, "ratelimit_reset_at": 1795773600.0, "idempotency_key": "k"},
        {"arrived_at": 1795773519.0, "injected_delay_s": 0.0301, "duration_s": 1e-7},
        {"arrived_at": 1795773519.9999999, "tenant": "acme"},
    ],
)
def test_the_fast_encoding_is_the_journals_json(changes: dict[str, Any]) -> None:
    import json

    from mock_server._faults._events import entry_json

    entry = _entry(7)
    for name, value in changes.items():
        setattr(entry, name, value)
    assert entry_json(entry) == json.dumps(entry.to_dict(), separators=(",", ":"))


def test_the_fast_encoding_rounds_times_as_the_journal_does() -> None:
    import json

    from mock_server._faults._events import entry_json

    entry = _entry(1)
    for i in range(3000):
        # Fractions of every kind, including those that round up into the next second.
        entry.arrived_at = 1795773519.0 + i * 0.000333333 + (0.9999995 if i % 7 == 0 else 0.0)
        assert entry_json(entry) == json.dumps(entry.to_dict(), separators=(",", ":")), entry.arrived_at


def test_head_answers_the_headers_and_holds_nothing_open(fake: ServerThread) -> None:
    r = requests.head(f"{fake.url}/__admin/events", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert hub_of(fake).clients == 0


def test_an_id_from_before_a_restart_replays_everything_the_journal_holds(fake: ServerThread) -> None:
    for i in range(2):
        _get(fake, f"/health?i={i}")
    stream = Sse(f"{fake.url}/__admin/events", headers={"Last-Event-ID": "987654"})
    try:
        blocks = stream.blocks()
        first = next(b for b in blocks if b["event"] != "message" or b["data"] is not None)
        replay = stream.requests(2)
    finally:
        stream.close()
    assert first["event"] == "gap"
    assert [e["data"]["query"] for e in replay] == ["i=0", "i=1"]
