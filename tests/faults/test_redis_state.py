"""The fault state on Redis: several fault layers on one Redis act as one (a model of several
worker processes, in one process; the multi-process tests are in tests/scale/).

Each test runs its layers against a real redis-server (pytest-redis, a free port) under a prefix
of its own, driving them through ASGI calls: rules changed through one layer apply in the other
at once, the counters (and so the fault schedule) are shared, the journal, ``count``, ``wait``,
compliance, metrics, resets and the release of held requests reach every layer, and a lost
Redis gives 503 ``state_unavailable`` until it is back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
import redis.asyncio as aioredis
from pytest_redis import factories

from mock_server._faults import FaultLayer, parse_rules
from mock_server._faults._redis_state import RedisFaultState
from mock_server._faults._state import StateUnavailable

# A Redis of its own for the test that stops it: the shared one stays up for the others.
redis_outage = factories.redis_proc(port=None)

Result = tuple[int, dict[str, str], bytes]
# Another process's request reaches wait/count within 50 ms (records are written every 5 ms and
# read back at once: about 6 ms on an idle machine); the bound leaves room for a loaded one.
_SEEN_WITHIN = 0.2


async def api(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps({"path": scope["path"], "ok": True}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def call(
    layer: FaultLayer,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    query: bytes = b"",
) -> Result:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers]
        + [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    given = False
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    status = 0
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update((k.decode(), v.decode()) for k, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await layer(scope, receive, send)
    finally:
        gone.set()
    return status, response_headers, b"".join(chunks)


async def admin(layer: FaultLayer, method: str, path: str, payload: Any = None, query: str = "") -> Result:
    body = json.dumps(payload).encode() if payload is not None else b""
    return await call(layer, method, path, body=body, query=query.encode())


def run(factory: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(factory())


class Cluster:
    """``n`` fault layers (each one a model of a worker process) on one Redis, one prefix."""

    def __init__(self, url: str, n: int, rules: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.url = url
        self.prefix = f"t{uuid.uuid4().hex[:8]}:"
        self.rules = parse_rules(rules) if rules is not None else None
        self.kwargs = kwargs
        self.layers: list[FaultLayer] = []
        self.n = n

    def layer(self) -> FaultLayer:
        state = RedisFaultState(self.url, prefix=self.prefix, rules=self.rules, **self.kwargs)
        return FaultLayer(api, state=state, allow_fault_header=True)

    async def __aenter__(self) -> list[FaultLayer]:
        self.layers = [self.layer() for _ in range(self.n)]
        for layer in self.layers:
            await layer.state.start()
        return self.layers

    async def __aexit__(self, *exc: object) -> None:
        for layer in self.layers:
            await layer.state.close()


@pytest.fixture
def url(redis_proc: Any) -> str:
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 2.0) -> float:
    """Seconds until ``check`` holds (fails past ``timeout``)."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.002)
    return time.monotonic() - start


def test_a_rule_added_through_one_process_applies_in_the_other_at_once(url: str) -> None:
    async def go() -> None:
        async with Cluster(url, 2) as (a, b):
            assert (await call(b, "GET", "/x"))[0] == 200
            rule = {"id": "down", "match": {"path": "/x"}, "fault": {"type": "status", "status": 503}}
            status, _, _ = await admin(a, "POST", "/__admin/faults", rule)
            assert status == 201
            assert (await call(b, "GET", "/x"))[0] == 503
            listed = json.loads((await admin(b, "GET", "/__admin/faults"))[2])
            assert [r["id"] for r in listed["rules"]] == ["down"]
            assert listed["stats"]["down"] == {"matched": 1, "fired": 1}
            assert (await admin(b, "DELETE", "/__admin/faults/down"))[0] == 204
            assert (await call(a, "GET", "/x"))[0] == 200
            assert (await admin(a, "GET", "/__admin/faults/down"))[0] == 404

    run(go)


def test_a_rule_disabled_through_one_process_is_off_in_the_other_at_once_counters_kept(url: str) -> None:
    async def go() -> None:
        down = {"id": "down", "match": {"path": "/x"}, "fault": {"type": "status", "status": 503}}
        rules = {"rules": [down]}
        async with Cluster(url, 2, rules) as (a, b):
            assert (await call(b, "GET", "/x"))[0] == 503
            status, _, body = await admin(a, "PATCH", "/__admin/faults/down", {"enabled": False})
            assert status == 200 and json.loads(body)["enabled"] is False
            # No sync in between: b's very next request sees the new version and reloads.
            assert (await call(b, "GET", "/x"))[0] == 200
            assert (await call(a, "GET", "/x"))[0] == 200
            listed = json.loads((await admin(b, "GET", "/__admin/faults"))[2])
            assert listed["rules"][0]["enabled"] is False
            assert listed["stats"]["down"] == {"matched": 1, "fired": 1}
            assert (await admin(b, "PATCH", "/__admin/faults/down", {"enabled": True}))[0] == 200
            assert (await call(a, "GET", "/x"))[0] == 503
            stats = json.loads((await admin(a, "GET", "/__admin/faults"))[2])["stats"]
            assert stats["down"] == {"matched": 2, "fired": 2}
            assert (await admin(a, "PATCH", "/__admin/faults/nope", {"enabled": False}))[0] == 404
            # A reset comes back to the start rules in every process.
            await admin(a, "PATCH", "/__admin/faults/down", {"enabled": False})
            assert (await admin(b, "POST", "/__admin/reset"))[0] == 200
            assert (await call(a, "GET", "/x"))[0] == 503
            assert "enabled" not in json.loads((await admin(a, "GET", "/__admin/faults/down"))[2])

    run(go)


_SCHEDULE_RULES = {
    "seed": 7,
    "rules": [
        {
            "id": "lat",
            "probability": 0.5,
            "fault": {"type": "latency", "uniform": {"min_ms": 0, "max_ms": 2}},
        },
        {"id": "nth", "match": {"path": "/a*"}, "every_nth": 3, "fault": {"type": "status", "status": 502}},
        {"id": "p", "probability": 0.3, "fault": {"type": "status", "status": 503}},
        {
            "id": "seq",
            "match": {"method": "POST"},
            "after": 1,
            "sequence": [
                {"type": "status", "status": 500},
                "ok",
                {"type": "malformed_json"},
                {"type": "latency", "fixed_ms": 1},
            ],
        },
        {"id": "twice", "match": {"path": "/b"}, "times": 2, "fault": {"type": "status", "status": 429}},
    ],
}


def _requests() -> list[tuple[str, str, str | None]]:
    out = []
    for i in range(72):
        method = "POST" if i % 4 == 1 else "GET"
        path = ("/a1", "/b", "/c", "/a2")[i % 4 if i % 5 else 1]
        # Each session's requests go through every process in turn (the layer is i % n).
        session = (None, "s1", "s2")[(i // 2) % 3]
        out.append((method, path, session))
    return out


async def _schedule(layers: list[FaultLayer]) -> list[tuple[Any, ...]]:
    """Send the same sequence round-robin through ``layers``; what each request got."""
    got = []
    for i, (method, path, session) in enumerate(_requests()):
        layer = layers[i % len(layers)]
        headers = [("x-request-id", f"r{i}")] + ([("x-mock-session", session)] if session else [])
        status, _, body = await call(layer, method, path, headers, body=b"{}" if method == "POST" else b"")
        entry = next(e for e in layer.journal if e.request_id == f"r{i}")
        got.append((status, entry.fault, entry.rule, entry.rules, round(entry.injected_delay_s, 9), body[:8]))
    return got


def test_one_and_three_processes_give_the_same_schedule(url: str) -> None:
    async def go() -> None:
        one = FaultLayer(api, rules=parse_rules(_SCHEDULE_RULES))
        embedded = await _schedule([one])
        async with Cluster(url, 1, _SCHEDULE_RULES) as single:
            on_redis = await _schedule(single)
        async with Cluster(url, 3, _SCHEDULE_RULES) as three:
            spread = await _schedule(three)
            stats = json.loads((await admin(three[2], "GET", "/__admin/faults"))[2])["stats"]
        assert on_redis == embedded
        assert spread == embedded
        # Every kind of decision took part: the comparison is not of empty schedules.
        kinds = {(row[1], row[2]) for row in embedded}
        assert {("status", "nth"), ("status", "p"), ("status", "twice"), ("malformed_json", "seq")} <= kinds
        assert ("latency", None) in kinds
        assert stats == {r.id: one.engine.stats(r.id) for r in one.engine.rules}

    run(go)


def test_journal_count_wait_and_compliance_see_every_process(url: str) -> None:
    async def go() -> None:
        async with Cluster(url, 2) as (a, b):
            for _ in range(3):
                await call(a, "GET", "/x", [("x-mock-session", "j")])
                await call(b, "GET", "/y", [("x-mock-session", "j")])
            for layer in (a, b):
                await until(lambda layer=layer: _counted(layer, "session=j", 6))
                listed = json.loads((await admin(layer, "GET", "/__admin/requests", query="session=j"))[2])
                assert [r["path"] for r in listed["requests"]] == ["/x", "/y"] * 3
                assert [r["seq"] for r in listed["requests"]] == sorted(r["seq"] for r in listed["requests"])
            report = json.loads((await admin(b, "GET", "/__admin/compliance", query="session=j"))[2])
            assert report["requests"] == 6

            # wait through b, the request through a: seen within 50 ms of its arrival.
            waiter = asyncio.ensure_future(
                admin(b, "POST", "/__admin/requests/wait", {"filter": {"path": "/late"}, "timeout_s": 2})
            )
            await asyncio.sleep(0.05)
            sent = time.monotonic()
            await call(a, "GET", "/late")
            status, _, _ = await waiter
            assert status == 200
            assert time.monotonic() - sent < _SEEN_WITHIN

            # Without a wait, a count through b sees it within 50 ms too.
            await call(a, "GET", "/later")

            assert await until(lambda: _counted(b, "path=/later", 1)) < _SEEN_WITHIN

    run(go)


def test_reset_through_one_process_releases_what_the_other_holds(url: str) -> None:
    async def go() -> None:
        rules = {
            "rules": [
                {"id": "hang", "match": {"path": "/slow"}, "fault": {"type": "latency", "fixed_ms": 30000}}
            ]
        }
        async with Cluster(url, 2, rules) as (a, b):
            held = asyncio.ensure_future(call(b, "GET", "/slow"))
            await until(lambda: _true(b.held == 1))
            assert (await admin(a, "PUT", "/__admin/faults", {"rules": []}))[0] == 200
            status, _, body = await admin(a, "POST", "/__admin/reset")
            assert status == 200
            assert json.loads(body)["held_requests_cancelled"] == 1
            status, _, body = await asyncio.wait_for(held, 2)
            assert status == 503 and b"cancelled" in body
            # The reset also brought the start-up rules back, for both.
            listed = json.loads((await admin(b, "GET", "/__admin/faults"))[2])
            assert [r["id"] for r in listed["rules"]] == ["hang"]
            # The cancelled request completed after the reset cleared it: it stays gone everywhere.
            await asyncio.sleep(0.03)
            for layer in (a, b):
                assert json.loads((await admin(layer, "GET", "/__admin/requests/count"))[2])["count"] == 0

    run(go)


def test_a_session_reset_restarts_its_counters_everywhere(url: str) -> None:
    async def go() -> None:
        rules = {"rules": [{"id": "first", "times": 1, "fault": {"type": "status", "status": 503}}]}
        async with Cluster(url, 2, rules) as (a, b):
            s = [("x-mock-session", "k")]
            assert (await call(a, "GET", "/x", s))[0] == 503
            assert (await call(b, "GET", "/x", s))[0] == 200
            assert (await call(b, "GET", "/x", [("x-mock-session", "other")]))[0] == 503
            await until(lambda: _counted(b, "session=k", 2))
            status, _, body = await admin(b, "POST", "/__admin/reset", query="session=k")
            assert json.loads(body)["journal_entries_dropped"] == 2
            assert (await call(a, "GET", "/x", s))[0] == 503
            stats = json.loads((await admin(a, "GET", "/__admin/faults"))[2])["stats"]["first"]
            assert stats == {"matched": 2, "fired": 2}

    run(go)


def test_metrics_are_summed_over_processes(url: str) -> None:
    async def go() -> None:
        async with Cluster(url, 2) as (a, b):
            for _ in range(3):
                await call(a, "GET", "/m")
            for _ in range(4):
                await call(b, "GET", "/m")
            await call(b, "GET", "/m", [("x-mock-fault", "status=418")])
            status, _, body = await call(a, "GET", "/m", [("x-mock-fault", "nonsense=1")])
            assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
            for layer in (a, b):

                async def summed(layer: FaultLayer = layer) -> bool:
                    text = (await admin(layer, "GET", "/__admin/metrics"))[2].decode()
                    return (
                        'mock_requests_total{route="/m",method="GET",status="200"} 7' in text
                        and 'mock_faults_total{rule="X-Mock-Fault",type="status"} 1' in text
                    )

                assert await until(summed) < _SEEN_WITHIN

    run(go)


async def _counted(layer: FaultLayer, query: str, expected: int) -> bool:
    got = json.loads((await admin(layer, "GET", "/__admin/requests/count", query=query))[2])
    assert got["count"] <= expected
    return bool(got["count"] == expected)


def _true(value: bool) -> Awaitable[bool]:
    async def done() -> bool:
        return value

    return done()


def test_redis_lost_mid_run_is_a_503_then_everything_recovers(redis_outage: Any) -> None:
    url = f"redis://{redis_outage.host}:{redis_outage.port}/0"
    rules = {
        "rules": [
            {"id": "hang", "match": {"path": "/slow"}, "fault": {"type": "latency", "fixed_ms": 30000}},
            {
                "id": "third",
                "match": {"path": "/r"},
                "every_nth": 3,
                "fault": {"type": "status", "status": 502},
            },
        ]
    }

    async def go() -> None:
        cluster = Cluster(url, 2, rules)
        async with cluster as (a, b):
            assert [(await call(x, "GET", "/r"))[0] for x in (a, b)] == [200, 200]
            await a.state.flush()
            redis_outage.stop()
            try:
                status, headers, body = await call(a, "GET", "/r")
                assert status == 503
                error = json.loads(body)["error"]
                assert error["code"] == "state_unavailable"
                assert headers["retry-after"] == "1"
                status, _, body = await admin(b, "GET", "/__admin/requests/count")
                assert status == 503 and json.loads(body)["error"]["code"] == "state_unavailable"
            finally:
                redis_outage.start()
            # Back by itself, counting on from where it was (the refused request was not counted).
            assert (await call(b, "GET", "/r"))[0] == 502
            assert (await call(a, "GET", "/r"))[0] == 200
            await until(lambda: _counted(b, "", 4))
            # Redis lost its data: the rules are stored again from a process's copy, and the
            # journal numbers go on after those the processes hold.
            client = aioredis.Redis.from_url(url)
            try:
                await client.flushall()
            finally:
                await client.aclose()
            assert [(await call(x, "GET", "/r"))[0] for x in (a, b, a)] == [200, 200, 502]
            listed = json.loads((await admin(b, "GET", "/__admin/faults"))[2])
            assert [r["id"] for r in listed["rules"]] == ["hang", "third"]
            await until(lambda: _counted(a, "", 7))
            seqs = [e.seq for e in a.journal]
            assert seqs == sorted(set(seqs))

            # Both subscribed again: a reset through a releases what b holds.
            client = aioredis.Redis.from_url(url)
            try:

                async def subscribed() -> bool:
                    channels = await client.pubsub_numsub(cluster.prefix + "ev")
                    return bool(channels[0][1] == 2)

                await until(subscribed)
            finally:
                await client.aclose()
            held = asyncio.ensure_future(call(b, "GET", "/slow"))
            await until(lambda: _true(b.held == 1))
            assert json.loads((await admin(a, "POST", "/__admin/reset"))[2])["held_requests_cancelled"] == 1
            assert (await asyncio.wait_for(held, 2))[0] == 503

    run(go)


def test_a_clean_close_writes_the_queued_records(url: str) -> None:
    async def go() -> None:
        # Records gather for a minute: only the close writes them.
        cluster = Cluster(url, 1, flush_s=60.0)
        async with cluster as (a,):
            for _ in range(5):
                await call(a, "GET", "/q")
            client = aioredis.Redis.from_url(url)
            try:
                assert await client.xlen(cluster.prefix + "j") == 0
            finally:
                await client.aclose()
        # A fresh process loads what the closed one wrote on close.
        fresh_cluster = Cluster(url, 1)
        fresh_cluster.prefix = cluster.prefix
        async with fresh_cluster as (fresh,):
            counted = json.loads((await admin(fresh, "GET", "/__admin/requests/count", query="path=/q"))[2])
            assert counted["count"] == 5
            assert all(e.completed for e in fresh.journal)

    run(go)


def test_sessions_with_counters_are_bounded(url: str) -> None:
    async def go() -> None:
        rules = {"rules": [{"id": "every", "fault": {"type": "latency", "fixed_ms": 0.1}}]}
        cluster = Cluster(url, 2, rules, max_sessions=3, session_ttl=60.0)
        async with cluster as (a, b):
            for i in range(8):
                await call((a, b)[i % 2], "GET", "/s", [("x-mock-session", f"client-{i}")])
            client = aioredis.Redis.from_url(url)
            try:
                epoch = a.state._epoch  # type: ignore[attr-defined]
                kept = await client.zrange(f"{cluster.prefix}z:{epoch}", 0, -1)
                assert kept == [b"sclient-5", b"sclient-6", b"sclient-7"]
                assert not await client.exists(f"{cluster.prefix}c:{epoch}:sclient-0")
                ttl = await client.pttl(f"{cluster.prefix}c:{epoch}:sclient-7")
                assert 0 < ttl <= 60_000
            finally:
                await client.aclose()

    run(go)


def test_concurrent_requests_through_two_processes_fire_as_often_as_in_one(url: str) -> None:
    rules = {
        "seed": 11,
        "rules": [
            {"id": "p", "probability": 0.3, "fault": {"type": "status", "status": 503}},
            {"id": "nth", "every_nth": 4, "fault": {"type": "status", "status": 502}},
        ],
    }

    async def go() -> None:
        one = FaultLayer(api, rules=parse_rules(rules))
        alone = Counter([(await call(one, "GET", "/c"))[0] for _ in range(60)])
        async with Cluster(url, 2, rules) as (a, b):
            # Many at once: each process sends the arrivals of a turn in one pipeline, with
            # windows past its own requests on their way.
            statuses = await asyncio.gather(*(call((a, b)[i % 2], "GET", "/c") for i in range(60)))
        assert Counter(s for s, _, _ in statuses) == alone
        assert alone[503] and alone[502] and alone[200]

    run(go)


def test_a_window_is_timed_from_when_the_rule_was_added_whichever_process_counts(url: str) -> None:
    # One fake time for every process (their monotonic clock and their wall clock move together).
    now = [1_000.0]

    def clock() -> float:
        return now[0]

    def wall() -> float:
        return 1.7e9 + now[0]

    async def go() -> None:
        cluster = Cluster(url, 1, clock=clock, wall=wall)
        async with cluster as (a,):
            rule = {
                "id": "later",
                "window": {"start_s": 0.15, "duration_s": 30},
                "fault": {"type": "status", "status": 503},
            }
            assert (await admin(a, "POST", "/__admin/faults", rule))[0] == 201
            assert (await call(a, "GET", "/w"))[0] == 200
            now[0] += 0.2
            # A process that starts only now learns of the rule now, and times its window from
            # when a added it: already open.
            b = cluster.layer()
            await b.state.start()
            try:
                assert [(await call(x, "GET", "/w"))[0] for x in (b, a)] == [503, 503]
            finally:
                await b.state.close()

    run(go)


def test_rules_another_program_left_under_the_prefix_are_a_503_not_a_crash(url: str) -> None:
    async def go() -> None:
        cluster = Cluster(url, 1)
        async with cluster as (a,):
            client = aioredis.Redis.from_url(url)
            try:
                await client.set(cluster.prefix + "rules", b"not json")
                await client.incr(cluster.prefix + "v")
            finally:
                await client.aclose()
            # A request no rule of this process matches reads no rules (no round trip): served.
            assert (await call(a, "GET", "/x"))[0] == 200
            status, _, body = await admin(a, "GET", "/__admin/faults")
            assert f"{cluster.prefix}rules" in json.loads(body)["error"]["message"]
            assert status == 503 and json.loads(body)["error"]["code"] == "state_unavailable"

    run(go)


def test_records_queued_while_redis_is_gone_are_written_when_it_is_back(redis_outage: Any) -> None:
    url = f"redis://{redis_outage.host}:{redis_outage.port}/0"

    async def go() -> None:
        # Records gather for a minute: only the explicit flushes below write them.
        cluster = Cluster(url, 1, flush_s=60.0)
        async with cluster as (a,):
            assert (await call(a, "GET", "/acked"))[0] == 200
            redis_outage.stop()
            try:
                with pytest.raises(StateUnavailable):
                    await a.state.flush()  # type: ignore[attr-defined]
            finally:
                redis_outage.start()
            await a.state.flush()  # type: ignore[attr-defined]
            fresh = Cluster(url, 1)
            fresh.prefix = cluster.prefix
            async with fresh as (other,):
                listed = json.loads((await admin(other, "GET", "/__admin/requests"))[2])["requests"]
                assert [(r["path"], r["status"]) for r in listed] == [("/acked", 200)]

    run(go)


def test_a_reset_refills_the_shared_buckets_once_before_it_answers(url: str) -> None:
    """Only the process that got the reset refills the shared buckets, and before it answers: a
    refill by every process could land after requests already used the fresh buckets."""

    async def go() -> None:
        prefix = f"t{uuid.uuid4().hex[:8]}:"
        calls: list[tuple[str, str | None]] = []
        done: list[str] = []

        def layer(name: str) -> FaultLayer:
            async def refill(session: str | None) -> None:
                calls.append((name, session))
                await asyncio.sleep(0.05)
                done.append(name)

            def local(session: str | None) -> None:
                calls.append((name + " on_reset", session))

            state = RedisFaultState(url, prefix=prefix, on_reset=local, on_reset_shared=refill)
            return FaultLayer(api, state=state)

        a, b = layer("a"), layer("b")
        for x in (a, b):
            await x.state.start()
        try:
            status, _, _ = await admin(a, "POST", "/__admin/reset", query="session=s1")
            assert status == 200 and done == ["a"]
            status, _, _ = await admin(a, "POST", "/__admin/reset")
            assert status == 200
            await asyncio.sleep(0.05)  # b heard both resets by now
            assert calls == [("a", "s1"), ("a", None)]
        finally:
            for x in (a, b):
                await x.state.close()

    run(go)


def _limited_api(after_send_s: float) -> Any:
    """An API whose first answer says "none remaining" (reset in 30 s) and whose code goes on
    ``after_send_s`` after the last byte; later answers are 429s."""
    answered = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal answered
        answered += 1
        status = 200 if answered == 1 else 429
        headers = [
            (b"content-length", b"2"),
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", str(int(time.time()) + 30).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})
        await asyncio.sleep(after_send_s)

    return app


async def _answered(layer: FaultLayer, path: str) -> asyncio.Future[Any]:
    """Send a request; return once its last byte is sent (the layer may still be running)."""
    last = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body") and not last.done():
            last.set_result(None)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"x-mock-session", b"eager")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    task = asyncio.ensure_future(layer(scope, receive, send))
    await last
    return task


@pytest.mark.parametrize("slow", ["arrival", "after_send"])
def test_a_request_sent_right_after_a_none_remaining_answer_is_flagged(url: str, slow: str) -> None:
    """The answer ends at its last byte, timed from the request's real arrival: neither a slow
    arrival round trip nor the API's code going on after the send makes it look still open when
    the client's next request arrives (which would grant it the in-flight grace)."""

    async def go() -> None:
        # A rule every request matches (it never fires): each one's decision is a round trip.
        never = {"rules": [{"id": "never", "after": 1000, "fault": {"type": "status", "status": 503}}]}
        state = RedisFaultState(url, prefix=f"t{uuid.uuid4().hex[:8]}:", rules=parse_rules(never))
        layer = FaultLayer(_limited_api(0.05 if slow == "after_send" else 0.0), state=state)
        await state.start()
        try:
            if slow == "arrival":
                arrive = state.arrive

                slowed: list[bool] = []

                async def slow_arrive(*args: Any, **kwargs: Any) -> Any:
                    if not slowed:
                        slowed.append(True)
                        await asyncio.sleep(0.05)
                    return await arrive(*args, **kwargs)

                # The first request's decision takes 50 ms more: it is timed from its arrival.
                state.arrive = slow_arrive  # type: ignore[method-assign]
                layer._shared = state
            first = await _answered(layer, "/a")
            second = await _answered(layer, "/b")
            await asyncio.gather(first, second)
            await until(lambda: _counted(layer, "session=eager", 2))
            report = json.loads((await admin(layer, "GET", "/__admin/compliance", query="session=eager"))[2])
            kinds = [f["kind"] for f in report["findings"]]
            assert "request_while_rate_limited" in kinds
        finally:
            await state.close()

    run(go)


def test_a_process_that_lost_its_subscription_checks_the_rules_on_every_request(url: str) -> None:
    """A request no rule of a process's copy matches costs no round trip, so a rule change must
    reach the copy first: announced and acknowledged. A process whose subscription died may have
    missed one: until it has subscribed and reloaded, each of its requests checks the version."""

    async def go() -> None:
        async with Cluster(url, 2) as (a, b):
            client = aioredis.Redis.from_url(url)
            try:
                await client.client_kill_filter(_type="pubsub")
            finally:
                await client.aclose()
            await asyncio.sleep(0.02)  # each listener reads the end of its connection
            assert b.state._stale  # type: ignore[attr-defined]
            rule = {"id": "now", "match": {"path": "/x"}, "fault": {"type": "status", "status": 503}}
            assert (await admin(a, "POST", "/__admin/faults", rule))[0] == 201
            assert (await call(b, "GET", "/x"))[0] == 503
            # Subscribed again: requests that no rule matches make no round trip again.
            await until(lambda: _true(not b.state._stale))  # type: ignore[attr-defined]
            assert (await admin(a, "DELETE", "/__admin/faults/now"))[0] == 204
            assert (await call(b, "GET", "/x"))[0] == 200

    run(go)


def test_a_process_whose_listener_ended_checks_the_rules_on_every_request(url: str) -> None:
    async def go() -> None:
        async with Cluster(url, 2) as (a, b):
            listener = b.state._tasks[-1]  # type: ignore[attr-defined]
            listener.cancel()
            await asyncio.wait([listener])
            a.state.announce_s = 0.1  # type: ignore[attr-defined]  # b, still subscribed, never answers
            rule = {"id": "now", "match": {"path": "/x"}, "fault": {"type": "status", "status": 503}}
            assert (await admin(a, "POST", "/__admin/faults", rule))[0] == 201
            assert (await call(b, "GET", "/x"))[0] == 503

    run(go)
