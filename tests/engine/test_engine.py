"""The sans-IO engine on its own: no HTTP library, no sockets, fake time.

Each test drives :meth:`Engine.call` by hand, as a driver would: it reads what the flow yields
(a Send or a Sleep), answers with a Received or an error, and checks the decisions. Only engine
modules are imported here; ``test_neutral.py`` runs this file in a fresh interpreter and checks
that neither ``requests`` nor ``httpx`` was imported.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from client._auth import ApiKeyAuth, HmacAuth, OAuth2ClientCredentials
from client._breaker import BreakerPolicy
from client._clock import FakeClock
from client._engine import Engine
from client._errors import (
    ApiError,
    CircuitOpen,
    ConnectionFailed,
    DeadlineExceeded,
    ReadTimeout,
    Unauthorized,
)
from client._http import Final, Headers, Received, Request, Send, Sleep, host_key
from client._httpcache import CachePolicy
from client._limiter import RateLimitPolicy, TokenBucket, reset_seconds
from client._policies import Policies
from client._retry import RetryBudget, RetryPolicy
from client._timeouts import Timeouts

URL = "http://api.test/profiles"


def engine(clock: FakeClock, **policies: Any) -> Engine:
    base: dict[str, Any] = {
        "retry": RetryPolicy(budget=None, rng=random.Random(7)),
        "breaker": None,
        "limiter": None,
        "cache": None,
        "timeouts": Timeouts(connect=3, read=10, total=30),
    }
    base.update(policies)
    return Engine(Policies(**base).with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep))


def ok(status: int = 200, body: bytes = b"{}", **headers: str) -> Received:
    return Received(status, Headers({k.replace("_", "-"): v for k, v in headers.items()}), body)


class Driver:
    """A scripted driver: answers each Send from ``script`` (the last entry repeats)."""

    def __init__(self, clock: FakeClock, *script: Received | ApiError) -> None:
        self.clock = clock
        self.script = list(script)
        self.sends: list[Send] = []
        self.sleeps: list[Sleep] = []
        self.headers: list[dict[str, str]] = []

    def run(self, flow: Any) -> Final:
        reply: Any = None
        try:
            while True:
                action = flow.send(reply)
                if isinstance(action, Sleep):
                    self.sleeps.append(action)
                    self.clock.sleep(action.seconds)
                    reply = None
                    continue
                self.sends.append(action)
                self.headers.append(dict(action.request.headers))
                reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        except StopIteration as stop:
            return stop.value


def request(method: str = "GET", url: str = URL, body: bytes | None = None, **headers: str) -> Request:
    return Request(method, url, Headers({k.replace("_", "-"): v for k, v in headers.items()}), body)


def test_one_attempt_with_a_request_id_and_clipped_timeouts() -> None:
    clock = FakeClock()
    driver = Driver(clock, ok())
    final = driver.run(engine(clock).call(request()))
    assert final.received is not None and final.received.status == 200
    [send] = driver.sends
    assert (send.connect, send.read, send.attempt) == (3, 10, 1)
    assert final.info.attempts == 1 and final.info.request_id == driver.headers[0]["X-Request-ID"]


def test_retry_sleeps_then_resends_with_the_same_request_id() -> None:
    clock = FakeClock()
    driver = Driver(clock, ok(503), ok(502), ok())
    final = driver.run(engine(clock).call(request()))
    assert [s.reason for s in driver.sleeps] == ["backoff", "backoff"]
    assert len({h["X-Request-ID"] for h in driver.headers}) == 1 and len(driver.sends) == 3
    assert final.info.attempts == 3 and final.info.idle_for == pytest.approx(sum(clock.sleeps))


def test_post_has_no_key_and_no_retry_unless_opted_in() -> None:
    clock = FakeClock()
    driver = Driver(clock, ok(503), ok())
    final = driver.run(engine(clock).call(request("POST", body=b"{}")))
    assert len(driver.sends) == 1 and final.received is not None and final.received.status == 503
    assert "Idempotency-Key" not in driver.headers[0]
    for retry in (
        RetryPolicy(budget=None, idempotency_methods=frozenset({"POST"})),
        RetryPolicy(budget=None, idempotency_hosts=frozenset({"http://api.test"})),
        RetryPolicy(budget=None, idempotency_hosts=frozenset({"api.test"})),
    ):
        driver = Driver(clock, ok(503), ok())
        driver.run(engine(clock, retry=retry).call(request("POST", body=b"{}")))
        assert len(driver.sends) == 2
        assert len({h["Idempotency-Key"] for h in driver.headers}) == 1


def test_idempotency_hosts_leave_other_hosts_alone() -> None:
    clock = FakeClock()
    retry = RetryPolicy(budget=None, idempotency_hosts=frozenset({"https://pay.example"}))
    driver = Driver(clock, ok(503), ok())
    driver.run(engine(clock, retry=retry).call(request("POST", body=b"{}")))
    assert len(driver.sends) == 1 and "Idempotency-Key" not in driver.headers[0]


def test_retry_after_past_the_deadline_is_deadline_exceeded_without_sleeping() -> None:
    clock = FakeClock()
    driver = Driver(clock, ok(429, Retry_After="60"))
    with pytest.raises(DeadlineExceeded):
        driver.run(engine(clock, timeouts=Timeouts(total=10)).call(request()))
    assert driver.sleeps == [] and len(driver.sends) == 1


def test_a_transport_error_after_the_deadline_is_deadline_exceeded() -> None:
    clock = FakeClock()

    class Slow(Driver):
        def run(self, flow: Any) -> Final:
            next(flow)
            self.clock.advance(31)
            return flow.send(ReadTimeout("read timed out"))

    with pytest.raises(DeadlineExceeded) as info:
        Slow(clock).run(engine(clock).call(request()))
    assert isinstance(info.value.__cause__, ReadTimeout)


def test_open_breaker_yields_no_send() -> None:
    clock = FakeClock()
    eng = engine(clock, retry=None, breaker=BreakerPolicy(window=2, min_calls=2))
    for _ in range(2):
        Driver(clock, ok(500)).run(eng.call(request()))
    driver = Driver(clock, ok())
    with pytest.raises(CircuitOpen):
        driver.run(eng.call(request()))
    assert driver.sends == []


def test_cancelled_call_releases_its_half_open_permit() -> None:
    clock = FakeClock()
    eng = engine(clock, retry=None, breaker=BreakerPolicy(window=2, min_calls=2, open_for=5))
    for _ in range(2):
        Driver(clock, ok(500)).run(eng.call(request()))
    clock.advance(5)
    flow = eng.call(request())
    assert isinstance(next(flow), Send)
    breaker = eng.breakers.get("http://api.test:80")  # type: ignore[union-attr]
    assert breaker.in_flight_probes == 1
    flow.close()  # the task was cancelled while the probe was in flight
    assert breaker.in_flight_probes == 0


def test_cancelled_wait_gives_the_limiter_token_back() -> None:
    clock = FakeClock()
    eng = engine(clock, retry=None, limiter=RateLimitPolicy(rate=1, burst=1))
    Driver(clock, ok()).run(eng.call(request()))
    bucket = eng.limiters.get("http://api.test:80")  # type: ignore[union-attr]
    flow = eng.call(request())
    action = next(flow)
    assert isinstance(action, Sleep) and action.reason == "rate limit"
    assert bucket.level() < 0
    flow.close()
    assert bucket.level() == pytest.approx(0.0)


def test_x_ratelimit_reset_below_a_billion_is_seconds_to_wait() -> None:
    assert reset_seconds("7", now=1_700_000_000.0) == 7.0
    assert reset_seconds("1700000010", now=1_700_000_000.0) == pytest.approx(10.0)
    assert reset_seconds("soon", now=0.0) is None
    clock = FakeClock()
    bucket = TokenBucket(
        RateLimitPolicy(rate=100, burst=100, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
    )
    bucket.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"})
    assert bucket.paused_until - clock() == pytest.approx(7.0)


def test_cache_hit_reports_this_call_not_the_original_miss() -> None:
    clock = FakeClock()
    eng = engine(clock, cache=CachePolicy())
    first = Driver(clock, ok(Cache_Control="max-age=60"), ok(503)).run(eng.call(request()))
    assert first.info.cache == "miss" and first.info.attempts == 1
    hit = Driver(clock, ok()).run(eng.call(request()))
    assert hit.served is not None and hit.received is None
    assert hit.info.attempts == 0 and hit.info.cache == "hit" and hit.info.request_id is None
    assert hit.info.rate_limit_wait == 0.0 and hit.info.idle_for == 0.0


def test_oauth_token_is_fetched_through_the_driver() -> None:
    clock = FakeClock()
    auth = OAuth2ClientCredentials("c", "s3cret-engine", token_url="http://api.test/oauth/token", clock=clock)
    token = ok(body=b'{"access_token": "tok-1", "token_type": "Bearer", "expires_in": 60}')
    driver = Driver(clock, token, ok())
    driver.run(engine(clock).call(request(), auth=auth))
    assert [s.attempt for s in driver.sends] == [0, 1]
    assert driver.sends[0].request.url == "http://api.test/oauth/token"
    assert driver.headers[1]["Authorization"] == "Bearer tok-1"


def test_refused_token_request_ends_the_call() -> None:
    clock = FakeClock()
    auth = OAuth2ClientCredentials(
        "c", "s3cret-refused", token_url="http://api.test/oauth/token", clock=clock
    )
    driver = Driver(clock, ok(401, body=b'{"error": "invalid_client"}'))
    with pytest.raises(Unauthorized):
        driver.run(engine(clock).call(request(), auth=auth))
    assert not auth._refreshing


def test_signature_is_redone_on_every_attempt() -> None:
    clock = FakeClock()
    auth = HmacAuth("engine-signing-secret", inner=ApiKeyAuth("k-1"), wall_clock=clock.wall)
    driver = Driver(clock, ok(503), ok())
    driver.run(engine(clock).call(request(), auth=auth))
    assert len({h["X-Signature"] for h in driver.headers}) == 2
    assert all(h["X-API-Key"] == "k-1" for h in driver.headers)


def test_connect_failure_is_retried_even_for_a_post() -> None:
    clock = FakeClock()
    driver = Driver(clock, ConnectionFailed("refused", request_sent=False), ok(201))
    final = driver.run(engine(clock).call(request("POST", body=b"{}")))
    assert final.received is not None and final.received.status == 201 and len(driver.sends) == 2


def test_no_more_requests_in_flight_than_the_server_says_remain() -> None:
    """The demo's compliance finding: with the server's last word ``Remaining: 1`` and one
    request in flight, a second request waits for that answer instead of going out; the answer
    says 0 remain, so it then waits for the reset. It never arrives after a "none left"."""
    clock = FakeClock()
    eng = engine(clock, retry=None, limiter=RateLimitPolicy(rate=1000, burst=1000))
    Driver(clock, ok(RateLimit='"default";r=1;t=1')).run(eng.call(request()))
    first = eng.call(request())
    assert isinstance(next(first), Send)  # in flight
    second = eng.call(request())
    action = next(second)
    assert isinstance(action, Sleep) and action.reason == "rate limit"  # held back
    clock.sleep(action.seconds)
    assert isinstance(second.send(None), Sleep)  # still held while the first is out
    with pytest.raises(StopIteration):
        first.send(ok(RateLimit='"default";r=0;t=5'))
    waits = []
    action = second.send(None)
    while isinstance(action, Sleep):
        waits.append(action.seconds)
        clock.sleep(action.seconds)
        action = second.send(None)
    assert isinstance(action, Send) and sum(waits) >= 5 - 0.02


def test_a_refusal_halves_the_requests_in_flight() -> None:
    """After a 429 with three requests out, at most half as many go out at once (AIMD): the
    fewer on their way, the fewer cross the next refusal before the client can read it."""
    clock = FakeClock()
    bucket = TokenBucket(
        RateLimitPolicy(rate=1000, burst=1000, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
    )
    for _ in range(4):
        assert bucket.reserve() == 0 and bucket.admit() == 0
    bucket.done()
    bucket.observe(429, {"Retry-After": "1"})  # three still out
    clock.advance(1.0)
    assert bucket.in_flight == 3
    bucket.reserve()
    assert bucket.admit() > 0  # cap 2, three out: wait
    for _ in range(2):
        bucket.done()
        bucket.observe(200, {"X-RateLimit-Remaining": "50"})
    assert bucket.admit() == 0  # one out, cap grows back


def test_a_miss_answered_no_store_is_never_stored() -> None:
    """The engine's shortcut for plain misses agrees with the cache: a no-store answer is not
    kept, a must-understand one with a known status goes to the cache as usual."""
    clock = FakeClock()
    eng = engine(clock, cache=CachePolicy())
    driver = Driver(clock, ok(Cache_Control="no-store"), ok(Cache_Control="max-age=60"))
    first = driver.run(eng.call(request()))
    assert first.info.cache == "miss"
    second = driver.run(eng.call(request()))
    assert second.info.cache == "miss" and len(driver.sends) == 2
    assert driver.run(eng.call(request())).info.cache == "hit"


def test_the_retry_budget_counts_a_call_when_it_is_answered_not_when_it_starts() -> None:
    """A call that waited longer than the budget's window (behind a server pause, or for a
    pooled connection, as a thousand tasks at once do under the chaos preset) still brings its
    own share of retries: the budget counts it when its first attempt ends, so that count has
    not aged out when the retry is decided."""
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=10.0)
    eng = engine(
        clock,
        retry=RetryPolicy(budget=budget, rng=random.Random(7)),
        limiter=RateLimitPolicy(rate=1000, burst=1000),
        timeouts=Timeouts(connect=3, read=10, total=60),
    )
    eng.limiters.get("http://api.test:80").observe(429, {"Retry-After": "11"})  # type: ignore[union-attr]
    driver = Driver(clock, ok(503), ok())
    final = driver.run(eng.call(request()))
    assert driver.sleeps[0].reason == "rate limit" and driver.sleeps[0].seconds >= 11
    assert final.received is not None and final.received.status == 200 and len(driver.sends) == 2
    # Queued for a connection after the engine let it go: the answer comes 11 s later.
    flow = engine(clock, retry=RetryPolicy(budget=budget, rng=random.Random(7))).call(request())
    assert isinstance(next(flow), Send)
    clock.advance(11.0)
    action = flow.send(ok(503))
    assert isinstance(action, Sleep) and action.reason == "backoff"
    flow.close()


def test_refusals_within_one_pause_halve_the_requests_in_flight_once() -> None:
    """Two 429s answering requests that were out together are one episode (TCP halves once
    per window): the second, read during the pause the first began, does not halve again, or
    a burst of random refusals would leave one request in flight at a time."""
    clock = FakeClock()
    bucket = TokenBucket(
        RateLimitPolicy(rate=1000, burst=1000, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
    )
    for _ in range(4):
        assert bucket.reserve() == 0 and bucket.admit() == 0
    bucket.done()
    bucket.observe(429, {"Retry-After": "1"})  # three still out: at most 2 at once from now
    bucket.done()
    bucket.observe(429, {"Retry-After": "1"})  # the same episode
    clock.advance(1.0)
    bucket.done()  # one still out
    bucket.reserve()
    assert bucket.admit() == 0  # two out: within the cap of 2
    bucket.reserve()
    assert bucket.admit() > 0  # a third waits


def test_body_wanted_says_what_a_driver_may_stream() -> None:
    """A streaming driver asks, once the head is in, how much body the engine needs: all of a
    retried status's or a 401's (the retry or re-auth decision comes first), up to the cache's
    ``max_entry_bytes`` of a response the cache may store (RFC 9111 §3: a longer one is not
    stored), and none of a final answer the cache will not store."""
    clock = FakeClock()
    e = engine(clock, cache=CachePolicy(max_entry_bytes=1000))
    flow = e.call(Request("GET", URL, Headers()))
    send = flow.send(None)
    assert isinstance(send, Send) and send.lookup is not None
    plain = Headers({"Content-Type": "application/json"})
    assert e.body_wanted(send, 503, plain) is None
    assert e.body_wanted(send, 401, plain) is None
    assert e.body_wanted(send, 200, plain) == 0
    assert e.body_wanted(send, 200, Headers({"Cache-Control": "max-age=60"})) == 1000
    assert e.body_wanted(send, 200, Headers({"ETag": '"v1"'})) == 1000
    flow.close()
    uncached = engine(clock)
    flow = uncached.call(Request("GET", URL, Headers()))
    send = flow.send(None)
    assert uncached.body_wanted(send, 200, Headers({"Cache-Control": "max-age=60"})) == 0
    flow.close()


def test_a_streamed_body_that_breaks_counts_against_a_closed_breaker() -> None:
    clock = FakeClock()
    e = engine(clock, breaker=BreakerPolicy(min_calls=2, failure_rate=0.5))
    e.body_failed(URL, DeadlineExceeded("late"))
    e.body_failed(URL, ConnectionFailed("cut"))
    snapshot = e.metrics.snapshot()
    assert snapshot.failures == 2
    assert snapshot.errors == {"DeadlineExceeded": 1, "ConnectionFailed": 1}
    assert e.breakers is not None
    assert e.breakers.get(host_key(URL)).state.name == "OPEN"


# -- stale-while-revalidate (RFC 5861 section 3) ---------------------------------------------------
def swr_engine(clock: FakeClock, *, background: bool = True, **policies: Any) -> Engine:
    eng = engine(clock, cache=CachePolicy(), **policies)
    eng.background = background  # what a driver with an executor or tasks sets
    first = Driver(clock, ok(body=b"old", Cache_Control="max-age=10, stale-while-revalidate=30", ETag='"v1"'))
    assert first.run(eng.call(request())).info.cache == "miss"
    return eng


def test_within_the_window_stale_is_served_at_once_and_one_revalidation_is_scheduled() -> None:
    clock = FakeClock()
    eng = swr_engine(clock)
    clock.advance(15)  # stale by 5 s, within the 30 s window
    driver = Driver(clock, ok(body=b"new"))
    stale = driver.run(eng.call(request()))
    assert driver.sends == []  # nothing sent on the caller's path
    assert stale.served is not None and stale.served.body == b"old" and stale.info.cache == "stale"
    assert stale.revalidate is not None
    # A second caller while that revalidation is pending: stale too, and no second one.
    again = driver.run(eng.call(request()))
    assert driver.sends == [] and again.served is not None and again.served.body == b"old"
    assert again.revalidate is None
    calls = eng.metrics.snapshot().attempts
    # The background revalidation: conditional, one attempt, stored, not counted as a call.
    bg = Driver(clock, ok(body=b"new", Cache_Control="max-age=10", ETag='"v2"'))
    bg.run(eng.call(request(), revalidate=stale.revalidate))
    assert len(bg.sends) == 1 and bg.headers[0]["If-None-Match"] == '"v1"'
    assert eng.metrics.snapshot().attempts == calls
    fresh = Driver(clock, ok()).run(eng.call(request()))
    assert fresh.info.cache == "hit" and fresh.served is not None and fresh.served.body == b"new"


def test_a_304_in_the_background_refreshes_the_stored_response() -> None:
    clock = FakeClock()
    eng = swr_engine(clock)
    clock.advance(15)
    stale = Driver(clock, ok()).run(eng.call(request()))
    Driver(clock, ok(304, b"", Cache_Control="max-age=10")).run(
        eng.call(request(), revalidate=stale.revalidate)
    )
    hit = Driver(clock, ok(body=b"unused")).run(eng.call(request()))
    assert hit.info.cache == "hit" and hit.served is not None and hit.served.body == b"old"


def test_a_failed_background_revalidation_is_one_attempt_and_leaves_the_stale_entry() -> None:
    clock = FakeClock()
    eng = swr_engine(clock)
    clock.advance(15)
    stale = Driver(clock, ok()).run(eng.call(request()))
    bg = Driver(clock, ConnectionFailed("refused"))
    with pytest.raises(ConnectionFailed):
        bg.run(eng.call(request(), revalidate=stale.revalidate))
    assert len(bg.sends) == 1 and bg.sleeps == []  # never retried
    # Still stale within the window, and the next caller schedules a new revalidation.
    nxt = Driver(clock, ok()).run(eng.call(request()))
    assert nxt.info.cache == "stale" and nxt.revalidate is not None
    # Cancelled (the driver closes the flow): the entry is released just the same.
    flow = eng.call(request(), revalidate=nxt.revalidate)
    assert isinstance(next(flow), Send)
    flow.close()
    assert Driver(clock, ok()).run(eng.call(request())).revalidate is not None


def test_past_the_window_or_without_background_work_the_revalidation_is_in_the_foreground() -> None:
    clock = FakeClock()
    eng = swr_engine(clock)
    clock.advance(45)  # stale by 35 s: past the window
    driver = Driver(clock, ok(body=b"new", Cache_Control="max-age=10"))
    final = driver.run(eng.call(request()))
    assert len(driver.sends) == 1 and final.revalidate is None and final.info.cache == "miss"
    clock2 = FakeClock()
    plain = swr_engine(clock2, background=False)
    clock2.advance(15)
    d2 = Driver(clock2, ok(304, b""))
    final2 = d2.run(plain.call(request()))
    assert len(d2.sends) == 1 and final2.revalidate is None and final2.info.cache == "revalidated"


def test_a_stale_answer_counts_as_a_call_served_stale_not_as_a_hit() -> None:
    clock = FakeClock()
    eng = swr_engine(clock)
    before = eng.metrics.snapshot()
    clock.advance(15)
    Driver(clock, ok()).run(eng.call(request()))
    after = eng.metrics.snapshot()
    assert after.requests == before.requests + 1 and after.cache_stale_served == 1
    assert after.cache_hits == before.cache_hits and after.attempts == before.attempts


def test_an_answer_ends_its_flight_even_when_interrupted_in_a_breaker_listener() -> None:
    """The limiter counts a request in flight from admission to answer; the answer ends it
    before the breaker's listeners run, so an interrupt there (Ctrl-C: listeners' own errors
    are logged, not raised) leaks no place: the next call, with the server's word that one
    request remains, still goes out at once."""

    def interrupted(transition: Any) -> None:
        raise KeyboardInterrupt

    clock = FakeClock()
    eng = engine(
        clock,
        retry=None,
        limiter=RateLimitPolicy(rate=1000, burst=1000),
        breaker=BreakerPolicy(window=2, min_calls=2, failure_rate=0.5, listeners=(interrupted,)),
    )
    Driver(clock, ok(500, RateLimit='"default";r=1;t=1')).run(eng.call(request()))
    with pytest.raises(KeyboardInterrupt):
        Driver(clock, ok(500, RateLimit='"default";r=1;t=1')).run(eng.call(request()))
    bucket = eng.limiters.get(host_key(URL))  # type: ignore[union-attr]
    assert bucket.in_flight == 0
