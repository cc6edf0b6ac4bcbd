"""Memory one client can pin, measured: journal fields and bytes, idle sessions, invented
methods in the metrics, admin bodies; and query redaction that percent-encoding cannot dodge."""

from __future__ import annotations

import asyncio
import gc
import itertools
import socket
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import requests
from starlette.datastructures import Headers

from mock_server._faults import Engine, Entry, FaultLayer, Filter, Journal, parse_rules
from mock_server._faults._journal import redact_query
from mock_server._faults._metrics import Metrics

from .conftest import Served, tiny_app

NO_HEADERS = Headers(raw=[])
_seq = itertools.count(1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _asgi_get(
    layer: FaultLayer, path: str, headers: Iterable[tuple[str, str]] = (), query: bytes = b""
) -> int:
    """One request through ``layer`` in process (no socket): its status."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await layer(scope, receive, send)
    return int(sent[0]["status"])


def _measured(action: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated after ``action`` (tracemalloc), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


# -- the journal ---------------------------------------------------------------------------------


def test_a_long_idempotency_key_pins_a_bounded_entry() -> None:
    """500 requests with a 100 KB Idempotency-Key (and a long session and query) hold about
    2 KB each, not 140 KB: each field the journal keeps is bounded."""
    layer = FaultLayer(tiny_app(), journal_size=10_000)
    headers = [("Idempotency-Key", "k" * 100_000), ("X-Mock-Session", "s" * 20_000)]

    async def run() -> None:
        for _ in range(500):
            assert await _asgi_get(layer, "/hello", headers, query=b"q=" + b"x" * 20_000) == 200

    held, _ = _measured(lambda: asyncio.run(run()))
    assert len(layer.journal) == 500
    assert held < 500 * 4096, f"{held / 500:.0f} bytes per entry"
    entry = next(iter(layer.journal))
    assert entry.idempotency_key is not None and len(entry.idempotency_key) <= 256
    assert entry.idempotency_key.startswith("kkkk") and "100000 chars" in entry.idempotency_key
    assert entry.session is not None and len(entry.session) <= 256
    assert len(entry.query) <= 2048


def _fat_entry(i: int) -> Entry:
    return Entry(
        seq=next(_seq),
        request_id=f"{i:024x}",
        client_request_id=False,
        method="GET",
        path="/p/" + "x" * 2000 + str(i),
        query=f"q={i}" + "y" * 2000,
        tenant="demo",
        session=f"s{i}" + "z" * 200,
        idempotency_key=f"{i}" + "k" * 250,
        arrived_at=float(i),
        arrived_mono=float(i),
        fault=None,
        rule=None,
        rules=(),
        injected_delay_s=0.0,
    )


def test_the_journal_keeps_to_its_byte_budget() -> None:
    """Past ``max_bytes`` the oldest entries go, and what is held (measured) stays near the budget."""
    budget = 1024 * 1024
    journal = Journal(10_000, max_bytes=budget)

    def run() -> None:
        for i in range(3000):
            journal.record(_fat_entry(i))

    held, _ = _measured(run)
    assert journal.bytes <= budget
    assert 100 < len(journal) < 3000
    assert [e.arrived_at for e in journal][-1] == 2999.0
    assert held < budget * 1.25, held
    # The estimate is honest: what the journal counts is within a quarter of what it holds.
    assert 0.75 < journal.bytes / held < 1.25, (journal.bytes, held)


def test_the_byte_budget_survives_clear_and_keeps_one_entry() -> None:
    """Clearing a session gives its bytes back; one entry bigger than the budget is still kept."""
    journal = Journal(100, max_bytes=50_000)
    for i in range(5):
        journal.record(_fat_entry(i))
    total = journal.bytes
    session = next(iter(journal)).session
    assert journal.clear(session) == 1
    assert journal.bytes < total
    assert journal.clear() == 4
    assert journal.bytes == 0
    tiny = Journal(100, max_bytes=10)
    tiny.record(_fat_entry(1))
    assert len(tiny) == 1


def test_long_sessions_are_bounded_but_still_found(serve_faults: Callable[..., Served]) -> None:
    """A 4,000-character session is journalled bounded; filtering or resetting by the full
    value still finds it."""
    server = serve_faults()
    long = "s" * 4000
    other = "s" * 3999 + "t"
    for session in (long, long, other):
        assert requests.get(server.url + "/hello", headers={"X-Mock-Session": session}, timeout=5).ok
    listed = server.admin("GET", "/requests", params={"session": long}).json()
    assert listed["count"] == 2
    assert all(len(r["session"]) <= 256 for r in listed["requests"])
    report = server.admin("GET", "/compliance", params={"session": long}).json()
    assert report["requests"] == 2, report
    assert server.admin("DELETE", "/requests", params={"session": long}).json() == {"deleted": 2}
    assert server.admin("GET", "/requests/count").json() == {"count": 1}


# -- idle sessions -------------------------------------------------------------------------------


SEQUENCE = {"id": "s", "sequence": [{"type": "status", "status": 500}, "ok"]}


def _kinds(engine: Engine, session: str | None, n: int) -> list[str]:
    out = []
    for _ in range(n):
        d = engine.decide("GET", "/x", None, session, NO_HEADERS)
        out.append("ok" if d is None or d.fault is None else str(d.fault.status))
    return out


def test_idle_sessions_are_forgotten_on_fake_time() -> None:
    """A session idle for ``session_ttl`` starts its counters again; a busy one keeps them."""
    clock = Clock()
    engine = Engine(parse_rules({"rules": [SEQUENCE]}), clock=clock, session_ttl=60.0)
    assert _kinds(engine, "idle", 1) == ["500"]
    assert _kinds(engine, "busy", 1) == ["500"]
    for _ in range(10):
        clock.now += 30.0
        assert _kinds(engine, "busy", 1) == ["ok"]
    assert _kinds(engine, "idle", 1) == ["500"]
    clock.now += 59.0
    assert _kinds(engine, "idle", 1) == ["ok"]
    # No session (no header) is one client that is never forgotten.
    assert _kinds(engine, None, 1) == ["500"]
    clock.now += 10_000.0
    assert _kinds(engine, None, 1) == ["ok"]
    # The admin's totals count what happened, forgotten sessions included.
    assert engine.stats("s")["matched"] == 16


def test_a_fresh_session_per_request_holds_bounded_memory() -> None:
    """20,000 sessions, one request each, a second apart: only the last ``session_ttl``
    seconds' worth are kept, measured."""
    clock = Clock()
    engine = Engine(parse_rules({"rules": [SEQUENCE]}), clock=clock, session_ttl=100.0)

    def run() -> None:
        for i in range(20_000):
            clock.now += 1.0
            engine.decide("GET", "/x", None, f"session-{i}", NO_HEADERS)

    held, _ = _measured(run)
    assert engine.sessions <= 101
    assert held < 200 * 1024, held


def test_sessions_are_capped() -> None:
    """However fast sessions come, at most ``max_sessions`` are kept, least recently used out."""
    engine = Engine(parse_rules({"rules": [SEQUENCE]}), clock=Clock(), max_sessions=100)
    for i in range(1000):
        engine.decide("GET", "/x", None, f"s{i}", NO_HEADERS)
    assert engine.sessions == 100
    assert _kinds(engine, "s999", 1) == ["ok"]
    assert _kinds(engine, "s0", 1) == ["500"]


def test_header_faults_count_per_session_and_expire() -> None:
    """X-Mock-Fault counts live in the same expiring session state."""
    from mock_server._faults import parse_fault_header

    clock = Clock()
    engine = Engine(parse_rules({"rules": []}), clock=clock, session_ttl=10.0)
    fault = parse_fault_header("latency=10")
    for i in range(50):
        clock.now += 1.0
        engine.decide_header(fault, f"h{i}")
    assert engine.sessions <= 11


# -- metrics -------------------------------------------------------------------------------------


def test_invented_methods_share_one_label() -> None:
    """3,000 invented methods make one ``other`` series, not 3,000."""
    metrics = Metrics()
    for i in range(3000):
        entry = _fat_entry(i)
        entry.method, entry.status, entry.outcome = f"M{i}", 405, "response"
        metrics.observe(entry, "/hello")
    get = _fat_entry(0)
    get.status, get.outcome = 200, "response"
    metrics.observe(get, "/hello")
    assert sorted(metrics.requests) == [("/hello", "GET", "200"), ("/hello", "other", "405")]
    assert metrics.requests[("/hello", "other", "405")] == 3000


def _raw(server: Served, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b'"error"' in b"".join(chunks):
                break
        return b"".join(chunks)


@pytest.mark.socket
def test_invented_methods_over_http(serve_faults: Callable[..., Served]) -> None:
    """Over real HTTP too: methods the fake does not know (ones every HTTP parser passes on, and
    invented ones, which a parser may refuse first) make one series."""
    server = serve_faults()
    session = requests.Session()
    known_elsewhere = ["PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH"]
    for method in [*known_elsewhere, "REPORT", "PURGE", "NOTIFY", "SUBSCRIBE"] + [
        f"M{i}" for i in range(100)
    ]:
        session.request(method, server.url + "/hello", timeout=5)
    text = server.admin("GET", "/metrics").text
    series = [line for line in text.splitlines() if line.startswith("mock_requests_total{")]
    assert len(series) == 1, series
    assert 'method="other"' in series[0]


# -- the admin API's bodies ----------------------------------------------------------------------


@pytest.mark.socket
def test_admin_refuses_a_declared_64_mb_body_without_reading_it(serve_faults: Callable[..., Served]) -> None:
    """A Content-Length over the limit is a 413 with the error body before the body is sent."""
    server = serve_faults()
    head = (
        b"POST /__admin/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 67108864\r\n\r\n"
    )
    response = _raw(server, head)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b'"payload_too_large"' in response


@pytest.mark.socket
def test_admin_refuses_a_chunked_body_over_the_limit(serve_faults: Callable[..., Served]) -> None:
    """A body with no length is cut off at the limit: 413, nothing added."""
    server = serve_faults(max_body_bytes=64 * 1024)

    def chunks() -> Iterable[bytes]:
        yield b'{"rules": ['
        for _ in range(2000):
            yield b'{"fault": {"type": "reset"}, "match": {"path": "/nowhere"}},'
        yield b'{"fault": {"type": "reset"}}]}'

    response = requests.post(server.url + "/__admin/faults", data=chunks(), timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert server.admin("GET", "/faults").json()["rules"] == []


@pytest.mark.socket
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": "\xed\xa0\x80", "fault": {"type": "reset"}}', id="encoded-surrogate"),
        pytest.param(b'{"id": "\\ud800", "fault": {"type": "reset"}}', id="escaped-surrogate"),
        pytest.param(b"[" * 100_000, id="deep"),
    ],
)
def test_admin_refuses_bad_json(serve_faults: Callable[..., Served], body: bytes) -> None:
    """The admin API's JSON is as strict as the API's: a 400, nothing added."""
    server = serve_faults()
    response = server.admin("POST", "/faults", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert server.admin("GET", "/faults").json()["rules"] == []


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("%70assword=S", "%70assword=***", id="percent-encoded-letter"),
        pytest.param("%2570assword=S", "%2570assword=***", id="double-encoded"),
        pytest.param("PassWord=S&page=2", "PassWord=***&page=2", id="mixed-case"),
        pytest.param("pass+word=S", "pass+word=***", id="plus-for-space"),
        pytest.param("pass%20word=S", "pass%20word=***", id="encoded-space"),
        pytest.param("api-key=S", "api-key=***", id="dash"),
        pytest.param("%61%70%69_%6b%65%79=S", "%61%70%69_%6b%65%79=***", id="all-encoded"),
        pytest.param("%41PI%4bEY=S", "%41PI%4bEY=***", id="encoded-upper"),
        pytest.param("a=1&&b", "a=1&&b", id="empty-parts"),
        pytest.param("%zzpassword=S", "%zzpassword=***", id="bad-escape"),
        pytest.param("page=2&q=tokenize", "page=2&q=tokenize", id="secret-word-in-a-value"),
        pytest.param("token", "token", id="name-without-value"),
    ],
)
def test_redaction_decodes_names_first(query: str, expected: str) -> None:
    """Parameter names are decoded (percent, twice, ``+``, case, separators) before deciding."""
    assert redact_query(query) == expected


@pytest.mark.socket
def test_percent_encoded_secrets_never_reach_the_journal(serve_faults: Callable[..., Served]) -> None:
    """``?%70assword=S`` is journalled without S."""
    server = serve_faults()
    requests.get(server.url + "/hello?%70assword=S3cr3t&Api%5FKey=K3y&page=2", timeout=5)
    (entry,) = server.admin("GET", "/requests").json()["requests"]
    assert "S3cr3t" not in entry["query"] and "K3y" not in entry["query"]
    assert entry["query"].endswith("page=2")


def test_filter_session_is_bounded_like_the_journal() -> None:
    """A filter by a long session compares bounded to bounded."""
    f = Filter.parse({"session": "x" * 5000})
    assert f.session is not None and len(f.session) <= 256
