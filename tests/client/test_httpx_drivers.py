"""The httpx drivers: ResilientTransport, AsyncResilientTransport and AsyncResonanceClient.

Scripted inner transports (``httpx.MockTransport``) on fake time for the decisions; the fake
over loopback for the wire (the deadline on a trickled body, the typed async client).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
import requests

from client import (
    ApiError,
    ApiKeyAuth,
    AsyncResilientTransport,
    AsyncResonanceClient,
    BreakerPolicy,
    CachePolicy,
    CircuitOpen,
    Conflict,
    ConnectionFailed,
    DeadlineExceeded,
    FakeClock,
    NotFound,
    Policies,
    RateLimitPolicy,
    ReadTimeout,
    ResilientTransport,
    RetriesExhausted,
    RetryPolicy,
    Timeouts,
    call_info,
)

URL = "http://api.test/x"


def policies(clock: FakeClock, **kw: Any) -> Policies:
    kw.setdefault("retry", RetryPolicy(budget=None, rng=random.Random(7)))
    kw.setdefault("breaker", None)
    kw.setdefault("cache", None)
    return Policies(**kw).with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)


class Script:
    """An inner transport's handler: answers in order (the last repeats), records requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def sync_client(script: Script, p: Policies, **kw: Any) -> httpx.Client:
    return httpx.Client(transport=ResilientTransport(p, transport=httpx.MockTransport(script), **kw))


def test_sync_transport_retries_with_one_request_id() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"v": 1}))
    with sync_client(script, policies(clock)) as client:
        response = client.get(URL)
    assert response.json() == {"v": 1} and len(script.seen) == 3
    assert len({r.headers["X-Request-ID"] for r in script.seen}) == 1
    info = call_info(response)
    assert info is not None and info.attempts == 3 and len(clock.sleeps) == 2


def test_sync_transport_serves_fresh_hits_without_sending() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(200, headers={"Cache-Control": "max-age=60"}, json={"v": 1}))
    with sync_client(script, policies(clock, cache=CachePolicy())) as client:
        client.get(URL)
        hit = client.get(URL)
    assert len(script.seen) == 1 and hit.json() == {"v": 1}
    info = call_info(hit)
    assert info is not None and (info.attempts, info.cache) == (0, "hit")


def test_sync_transport_raises_the_client_tree() -> None:
    clock = FakeClock()
    script = Script(httpx.ConnectError("refused"))
    with sync_client(script, policies(clock, retry=RetryPolicy(attempts=2, budget=None))) as client:
        with pytest.raises(RetriesExhausted) as info:
            client.get(URL)
    assert isinstance(info.value.last, ConnectionFailed) and not info.value.last.request_sent
    assert isinstance(info.value, requests.RequestException)  # the same classes as the requests driver
    script = Script(httpx.ReadTimeout("slow"))
    with sync_client(script, policies(clock, retry=None)) as client, pytest.raises(ReadTimeout):
        client.post(URL, json={})


def test_sync_transport_posts_once_without_a_key_and_signs_with_auth() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(503), httpx.Response(201))
    with sync_client(script, policies(clock), auth=ApiKeyAuth("k-httpx")) as client:
        assert client.post(URL, json={"a": 1}).status_code == 503
    assert len(script.seen) == 1 and script.seen[0].headers["X-API-Key"] == "k-httpx"
    assert "Idempotency-Key" not in script.seen[0].headers
    script = Script(httpx.Response(503), httpx.Response(201))
    with sync_client(script, policies(clock)) as client:
        assert client.post(URL, json={"a": 1}, headers={"Idempotency-Key": "k"}).status_code == 201
    assert [r.content for r in script.seen] == [b'{"a":1}', b'{"a":1}']


def test_sync_transport_retry_after_past_the_deadline() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(429, headers={"Retry-After": "60"}))
    p = policies(clock, timeouts=Timeouts(total=10))
    with sync_client(script, p) as client, pytest.raises(DeadlineExceeded):
        client.get(URL)
    assert clock.sleeps == []


def test_async_transport_and_breaker() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(500))
    p = policies(clock, retry=None, breaker=BreakerPolicy(window=2, min_calls=2))

    async def main() -> None:
        transport = AsyncResilientTransport(p, transport=httpx.MockTransport(script))
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(2):
                assert (await client.get(URL)).status_code == 500
            with pytest.raises(CircuitOpen):
                await client.get(URL)

    asyncio.run(main())
    assert len(script.seen) == 2


def test_async_cancellation_gives_back_the_probe_permit_and_the_limiter_token() -> None:
    """A task cancelled mid-call returns its half-open permit; one cancelled while waiting for
    the limiter returns its token."""
    clock = FakeClock()
    p = policies(clock, retry=None, breaker=BreakerPolicy(window=2, min_calls=2, open_for=5))

    async def main() -> None:
        started = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/slow":
                started.set()
                await asyncio.sleep(30)
            return httpx.Response(500)

        transport = AsyncResilientTransport(p, transport=httpx.MockTransport(handler))
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(2):
                await client.get(URL)
            clock.advance(5)
            task = asyncio.create_task(client.get("http://api.test/slow"))
            await started.wait()
            breaker = transport.engine.breakers.get("http://api.test:80")  # type: ignore[union-attr]
            assert breaker.in_flight_probes == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.in_flight_probes == 0

    asyncio.run(main())

    async def limited() -> None:
        slept = asyncio.Event()

        async def sleep(seconds: float) -> None:
            slept.set()
            await asyncio.sleep(30)

        limiter = RateLimitPolicy(rate=1, burst=1, sleep=sleep)
        lp = Policies(retry=None, breaker=None, cache=None, limiter=limiter)
        transport = AsyncResilientTransport(lp, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(URL)
            task = asyncio.create_task(client.get(URL))
            await slept.wait()
            bucket = transport.engine.limiters.get("http://api.test:80")  # type: ignore[union-attr]
            assert bucket.level() < 0
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert bucket.level() > -0.5

    asyncio.run(limited())


def test_async_waits_never_block_the_event_loop() -> None:
    """While calls wait out backoff (real asyncio sleeps), another task keeps running."""
    script = Script(httpx.Response(503), httpx.Response(200))
    p = Policies(
        retry=RetryPolicy(budget=None, backoff_base=0.05, backoff_cap=0.05, rng=random.Random(1)),
        breaker=None,
        cache=None,
    )

    async def main() -> int:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.001)

        transport = AsyncResilientTransport(p, transport=httpx.MockTransport(script))
        async with httpx.AsyncClient(transport=transport) as client:
            tick = asyncio.create_task(ticker())
            await asyncio.gather(*(client.get(URL) for _ in range(5)))
            stop = True
            await tick
        return ticks

    assert asyncio.run(main()) > 3


def test_one_engine_shared_by_many_tasks() -> None:
    """200 concurrent calls through one transport: the counters add up exactly."""
    p = Policies(retry=None, breaker=BreakerPolicy(window=1000, min_calls=1000), cache=None)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200)

    async def main() -> AsyncResilientTransport:
        transport = AsyncResilientTransport(p, transport=httpx.MockTransport(handler))
        async with httpx.AsyncClient(transport=transport) as client:
            await asyncio.gather(*(client.get(URL) for _ in range(200)))
        return transport

    transport = asyncio.run(main())
    snap = transport.metrics.snapshot()
    assert (snap.requests, snap.attempts) == (200, 200)


# -- on the wire ------------------------------------------------------------------------------


def _trickle(server: Any) -> None:
    fault = {"type": "slow_body", "bytes_per_s": 20}
    rule = {"id": "trickle-health", "match": {"path": "/health"}, "fault": fault}
    assert requests.post(f"{server.url}/__admin/faults", json=rule, timeout=5).status_code == 201


@pytest.mark.socket
def test_httpx_transports_bound_a_trickled_body(mock_server: Any) -> None:
    _trickle(mock_server)
    p = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=1, total=0.4))
    with httpx.Client(transport=ResilientTransport(p)) as client, pytest.raises(DeadlineExceeded):
        client.get(f"{mock_server.url}/health")

    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(p)) as client:
            with pytest.raises(DeadlineExceeded):
                await client.get(f"{mock_server.url}/health")

    asyncio.run(main())


@pytest.mark.socket
def test_async_typed_client_against_the_fake(mock_server: Any) -> None:
    async def main() -> None:
        async with AsyncResonanceClient(mock_server.url, auth=ApiKeyAuth("demo-key")) as api:
            assert (await api.health()).status == "ok"
            created = await api.profiles.create("demo", "async-one", [0.5] * 8)
            assert created.etag
            with pytest.raises(Conflict):
                await api.profiles.create("demo", "async-one", [0.5] * 8)
            for i in range(3):
                await api.profiles.create("demo", f"async-{i}", [0.1] * 8)
            names = [p.profile_name async for p in api.profiles.list(limit=2)]
            assert names == sorted(names) and "async-one" in names and len(names) == 4
            updated = await api.profiles.update("demo", "async-one", [0.2] * 8, if_match=created.etag)
            assert updated.version == created.version + 1
            await api.profiles.delete("demo", "async-one")
            with pytest.raises(NotFound):
                await api.profiles.get("demo", "async-one")
            results = await api.generate_batch(["a", "b", "c", "d", "e"], concurrency=2, chunk_size=2)
            assert len(results) == 5 and not any(isinstance(r, ApiError) for r in results)
            assert api.metrics().requests >= 10

    asyncio.run(main())


def test_generate_batch_has_bounded_concurrency() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        count = len(__import__("json").loads(request.content)["prompts"])
        item = {
            "content": "x",
            "hrv_vector": [0.5] * 8,
            "metadata": {
                "tenant": "demo",
                "model": "m",
                "tokens": 1,
                "temperature": 0.5,
                "max_length": 8,
                "request_id": "r",
                "created_at": "now",
            },
        }
        results = [{"index": i, "status": "ok", "result": item} for i in range(count)]
        return httpx.Response(200, json={"results": results})

    async def main() -> list[Any]:
        transport = AsyncResilientTransport(Policies(), transport=httpx.MockTransport(handler))
        client = httpx.AsyncClient(transport=transport)
        async with AsyncResonanceClient("http://api.test", client=client) as api:
            return await api.generate_batch([f"p{i}" for i in range(20)], concurrency=3, chunk_size=2)

    results = asyncio.run(main())
    assert len(results) == 20 and peak <= 3 and peak >= 2


def test_async_from_env(tmp_path: Any) -> None:
    env = {"RESONANCE_BASE_URL": "http://h.test:9", "RESONANCE_API_KEY": "env-key", "RESONANCE_RETRIES": "1"}
    api = AsyncResonanceClient.from_env(environ=env, dotenv=None)
    assert api.base_url == "http://h.test:9" and api.transport is not None
    assert api.transport.policies.retry is not None and api.transport.policies.retry.attempts == 2
    asyncio.run(api.aclose())


def test_a_write_is_held_while_the_host_is_paused() -> None:
    """A request admitted before another task's 429 was read holds its bytes until the pause
    the server announced is over (the wrapped network stream asks the limiter at each write)."""
    from client import TokenBucket
    from client._httpx import _ATTEMPT, _Stream

    bucket = TokenBucket(RateLimitPolicy(rate=100, burst=100))
    bucket.observe(429, {"Retry-After": "0.05"})
    seen: list[float] = []

    class Inner:
        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            seen.append(bucket.pause_left())

    token = _ATTEMPT.set((None, bucket))
    try:
        _Stream(Inner()).write(b"GET / HTTP/1.1\r\n\r\n")  # type: ignore[arg-type]
    finally:
        _ATTEMPT.reset(token)
    assert seen == [0.0]


def _pool_of_two(delay: float) -> tuple[httpx.AsyncHTTPTransport, dict[str, int]]:
    """A pool of two connections whose requests each take ``delay`` s, noting the most handled
    at once (``peak``)."""
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=2))
    seen = {"busy": 0, "peak": 0}

    async def handle(request: httpx.Request) -> httpx.Response:
        seen["busy"] += 1
        seen["peak"] = max(seen["peak"], seen["busy"])
        await asyncio.sleep(delay)
        seen["busy"] -= 1
        return httpx.Response(200)

    inner.handle_async_request = handle  # type: ignore[method-assign]
    return inner, seen


def test_the_pool_never_holds_more_requests_than_connections() -> None:
    """A thousand tasks queued inside httpcore's pool cost it a scan of every queued request at
    each arrival and release (seconds of blocked event loop under the chaos bench); the async
    transport queues calls itself, in arrival order, and hands the pool at most its connection
    limit; a call whose deadline runs out while queued ends in DeadlineExceeded."""
    inner, seen = _pool_of_two(0.005)
    p = Policies(retry=None, breaker=None, cache=None, limiter=None)

    async def main() -> list[Any]:
        transport = AsyncResilientTransport(p, transport=inner)
        async with httpx.AsyncClient(transport=transport) as client:
            done = await asyncio.gather(*(client.get(URL) for _ in range(40)))
            slow = httpx.Timeout(5.0)
            late = AsyncResilientTransport(
                Policies(retry=None, breaker=None, cache=None, limiter=None, timeouts=Timeouts(total=0.02)),
                transport=inner,
            )
            async with httpx.AsyncClient(transport=late, timeout=slow) as short:
                tail = await asyncio.gather(*(short.get(URL) for _ in range(20)), return_exceptions=True)
        return [*done, *tail]

    results = asyncio.run(main())
    assert seen["peak"] == 2
    assert all(r.status_code == 200 for r in results[:40])
    assert any(isinstance(r, DeadlineExceeded) for r in results[40:])


def test_one_transport_queues_calls_on_each_event_loop_it_serves_in_turn() -> None:
    """The connection slots belong to one event loop: a transport used by one ``asyncio.run``
    after another (and from a thread running its own loop) still queues its calls, and never
    hands the pool more than its connection limit, on each loop."""
    import threading

    inner, seen = _pool_of_two(0.002)
    transport = AsyncResilientTransport(
        Policies(retry=None, breaker=None, cache=None, limiter=None), transport=inner
    )

    async def burst() -> list[int]:
        client = httpx.AsyncClient(transport=transport)
        return [r.status_code for r in await asyncio.gather(*(client.get(URL) for _ in range(12)))]

    results = [asyncio.run(burst()), asyncio.run(burst())]
    thread = threading.Thread(target=lambda: results.append(asyncio.run(burst())))
    thread.start()
    thread.join(timeout=30)
    assert results == [[200] * 12] * 3
    assert seen["peak"] == 2


@pytest.mark.parametrize(
    "given",
    [
        [],
        [("Accept", "*/*")],
        [("X-Request-ID", "caller's"), ("Accept", "*/*")],
        [("x-api-key", "one"), ("X-API-KEY", "two"), ("Accept", "*/*")],
        [("Authorization", "Bearer caller's")],
    ],
)
def test_what_the_engine_sets_reaches_the_httpx_request_as_httpx_itself_would_set_it(
    given: list[tuple[str, str]],
) -> None:
    # The transports append a field the request lacks straight to httpx's list (its __setitem__
    # scans the list each time): the request must end exactly as httpx's own methods leave it.
    from client._httpx import _request_of, _sync_headers

    request = httpx.Request("GET", URL, headers=given)
    neutral = _request_of(request)
    neutral.headers["X-Request-ID"] = "the call's"
    neutral.headers["X-API-Key"] = "key"
    order = list(neutral.headers.touched or ())  # the fields go over in this (set) order
    _sync_headers(request, neutral)
    expected = httpx.Request("GET", URL, headers=given)
    for name in order:
        expected.headers[name] = neutral.headers[name]
    assert request.headers.raw == expected.headers.raw
    assert list(request.headers.multi_items()) == list(expected.headers.multi_items())


def test_a_field_deleted_then_set_again_reaches_the_httpx_request_once() -> None:
    # A field the request lacked is appended straight to httpx's list; one the engine deleted
    # and set again after an earlier copy went over must replace it, not be appended twice.
    from client._httpx import _request_of, _sync_headers

    request = httpx.Request("GET", URL)
    neutral = _request_of(request)
    neutral.headers["X-API-Key"] = "first"
    _sync_headers(request, neutral)
    del neutral.headers["X-API-Key"]
    neutral.headers["X-API-Key"] = "second"
    _sync_headers(request, neutral)
    assert request.headers.get_list("x-api-key") == ["second"]


def test_the_per_url_memos_keep_short_urls_only() -> None:
    """URLs are remembered (their text, their host's breaker and bucket) to spare work on calls
    that repeat them; a URL longer than ``MEMO_URL_CHARS`` is served just the same and never
    remembered, so no caller can pin memory with long URLs."""
    from client._http import MEMO_URL_CHARS
    from client._httpx import _url_texts

    transport = AsyncResilientTransport(
        Policies(retry=None, cache=None), transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    short, long = f"{URL}?q=short", f"{URL}?q={'x' * MEMO_URL_CHARS}"

    async def main() -> list[int]:
        async with httpx.AsyncClient(transport=transport) as client:
            return [(await client.get(u)).status_code for u in (short, long, long)]

    assert asyncio.run(main()) == [200, 200, 200]
    remembered = transport.engine._per_url
    assert short in remembered and long not in remembered
    assert short in _url_texts.values() and long not in _url_texts.values()
