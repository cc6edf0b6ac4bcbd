"""Client-side rate limiting: bucket levels, blocking, fail-fast, server headers, 429s."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import DeadlineExceeded, FakeClock, RateLimited, RateLimitPolicy, TokenBucket
from client._limiter import LimiterRegistry
from client._timeouts import Deadline


def bucket(clock=None, **kw):
    clock = clock or FakeClock()
    kw.setdefault("rate", 2.0)
    kw.setdefault("burst", 3)
    return TokenBucket(RateLimitPolicy(clock=clock, wall_clock=clock.wall, sleep=clock.sleep, **kw)), clock


def test_burst_is_free_then_each_token_waits_one_interval():
    """Three tokens at once, then 0.5 s apart at 2/s."""
    b, clock = bucket()
    assert [b.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    b.acquire()
    b.acquire()
    assert clock.sleeps == pytest.approx([0.5, 0.5])


def test_level_refills_with_time_up_to_burst():
    """The bucket refills at rate and never above burst."""
    b, clock = bucket()
    for _ in range(3):
        b.acquire()
    assert b.level() == pytest.approx(0)
    clock.advance(1)
    assert b.level() == pytest.approx(2)
    clock.advance(100)
    assert b.level() == pytest.approx(3)


def test_fail_fast_raises_rate_limited_with_wait():
    """block=False raises RateLimited (status 0: local) with the wait instead of sleeping."""
    b, clock = bucket(block=False, burst=1)
    b.acquire()
    with pytest.raises(RateLimited) as info:
        b.acquire()
    assert info.value.retry_after == pytest.approx(0.5)
    assert info.value.status == 0
    assert clock.sleeps == []


def test_wait_past_deadline_fails_at_once():
    """When the token comes after the deadline, DeadlineExceeded now, without sleeping."""
    b, clock = bucket(burst=1, rate=0.1)
    b.acquire()
    with pytest.raises(DeadlineExceeded):
        b.acquire(Deadline(clock() + 5, clock))
    assert clock.sleeps == []
    assert b.level() == pytest.approx(0)  # the refused caller reserved nothing


def test_reservations_queue_waiters_in_order():
    """Waiters that have not woken yet reserve successive slots instead of all waking at once."""
    clock = FakeClock()
    recorded: list[float] = []
    b = TokenBucket(
        RateLimitPolicy(rate=1, burst=1, clock=clock, wall_clock=clock.wall, sleep=recorded.append)
    )
    assert [b.acquire() for _ in range(4)] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert recorded == pytest.approx([1.0, 2.0, 3.0])


def test_sleep_happens_without_the_lock():
    """While a caller sleeps, another thread can take the bucket's lock."""
    clock = FakeClock()
    observed = []

    def sleep(seconds):
        observed.append(b._lock.acquire(blocking=False))
        if observed[-1]:
            b._lock.release()
        clock.sleep(seconds)

    b = TokenBucket(RateLimitPolicy(rate=1, burst=1, clock=clock, wall_clock=clock.wall, sleep=sleep))
    b.acquire()
    b.acquire()
    assert observed == [True]


def test_server_remaining_zero_pauses_until_x_ratelimit_reset():
    """X-RateLimit-Remaining: 0 means nothing is sent until X-RateLimit-Reset (epoch)."""
    b, clock = bucket(rate=100, burst=100)
    reset = int(clock.wall()) + 7
    b.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    b.acquire()
    assert clock.sleeps == pytest.approx([reset - 1_700_000_000.0 + 0.0])
    assert clock.wall() >= reset


def test_server_ietf_ratelimit_header_pauses_for_t_seconds():
    """IETF RateLimit: "default";r=0;t=4 pauses 4 s."""
    b, clock = bucket(rate=100, burst=100)
    b.observe(200, {"RateLimit": '"default";r=0;t=4'})
    b.acquire()
    assert clock.sleeps == pytest.approx([4.0])


def test_server_remaining_caps_local_tokens():
    """Remaining: 1 leaves at most one token locally, whatever the local burst."""
    b, clock = bucket(rate=1, burst=50)
    b.observe(200, {"RateLimit": '"default";r=1;t=30'})
    assert b.level() == pytest.approx(1)
    b.acquire()
    b.acquire()
    assert clock.sleeps == pytest.approx([1.0])


def test_429_with_retry_after_pauses_the_bucket():
    """A 429 pauses sending for its Retry-After (delta or date)."""
    b, clock = bucket(rate=100, burst=100)
    b.observe(429, {"Retry-After": "3"})
    b.acquire()
    assert clock.sleeps == pytest.approx([3.0])
    b2, clock2 = bucket(rate=100, burst=100)
    b2.observe(429, {"Retry-After": "Tue, 14 Nov 2023 22:13:25 GMT"})  # wall + 5 s
    b2.acquire()
    assert clock2.sleeps == pytest.approx([5.0])


def test_429_without_retry_after_uses_pause_on_429():
    """A bare 429 still backs off, by pause_on_429."""
    b, clock = bucket(rate=100, burst=100, pause_on_429=2.5)
    b.observe(429, {})
    b.acquire()
    assert clock.sleeps == pytest.approx([2.5])


def test_absurd_server_pause_is_capped():
    """A reset far in the future is believed only up to max_server_pause."""
    b, clock = bucket(rate=100, burst=100, max_server_pause=60)
    b.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(clock.wall()) + 86_400)})
    b.acquire()
    assert clock.sleeps == pytest.approx([60.0])


def test_follow_server_false_ignores_headers():
    """follow_server=False keeps only the local bucket."""
    b, clock = bucket(follow_server=False)
    b.observe(429, {"Retry-After": "30", "RateLimit": '"default";r=0;t=30'})
    b.acquire()
    assert clock.sleeps == []


def test_threads_share_one_bucket():
    """Eight threads taking 10 tokens each from a 2/s bucket with burst 3 wait (80-3)/2 s in total."""
    b, clock = bucket()
    waits = []
    lock = threading.Lock()

    def take():
        for _ in range(10):
            w = b.acquire()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waits) == 80
    assert b.level() <= 3
    assert b.waits == 77


def test_registry_has_one_bucket_per_host():
    """Hosts are limited independently."""
    reg = LimiterRegistry(RateLimitPolicy(clock=FakeClock()))
    assert reg.get("http://a:80") is reg.get("http://a:80")
    assert reg.get("http://a:80") is not reg.get("http://b:80")


def test_a_pause_announced_during_a_wait_holds_the_waiting_request() -> None:
    """A request already waiting for a token also waits out a pause the server announces meanwhile."""
    import threading

    from client import FakeClock, RateLimitPolicy, TokenBucket

    clock = FakeClock()
    announced = threading.Event()
    bucket: TokenBucket

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if not announced.is_set():
            announced.set()
            bucket.observe(429, {"Retry-After": "2"})

    policy = RateLimitPolicy(rate=10, burst=1, clock=clock.clock, wall_clock=clock.wall, sleep=sleep)
    bucket = TokenBucket(policy)
    bucket.acquire()
    start = clock.clock()
    waited = bucket.acquire()
    assert clock.clock() - start >= 2.0 and waited >= 2.0


# Each step: advance the clock, then take a token, finish a request in flight, or read an answer.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.01, 0.2, 1.0]),
        st.sampled_from(["take", "take", "done", "ok", "none-left", "429"]),
    ),
    max_size=40,
)
_ANSWERS = {
    "ok": (200, {"X-RateLimit-Remaining": "5"}),
    "none-left": (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}),
    "429": (429, {"Retry-After": "0.5"}),
}


@settings(max_examples=150)
@given(steps=_STEPS, burst=st.integers(1, 3))
def test_take_decides_as_reserve_then_admit(steps, burst):
    """``take`` (with its inline common case) waits, admits and counts exactly as ``reserve``
    then ``admit`` do on a twin bucket, whatever happened before."""
    one, clock = bucket(rate=2.0, burst=burst)
    twin = TokenBucket(one.policy)
    for advance, step in steps:
        clock.advance(advance)
        if step == "take":
            wait = one.take()
            expected = twin.reserve()
            if expected <= 0:
                expected = twin.admit()
            assert wait == pytest.approx(expected)
            if wait > 0:
                one.cancel()
                twin.cancel()
        elif step == "done":
            one.done()
            twin.done()
        else:
            status, headers = _ANSWERS[step]
            one.observe(status, headers, done=True)
            twin.done()
            twin.observe(status, headers)
        assert one.in_flight == twin.in_flight
        assert one.level() == pytest.approx(twin.level())
        assert one.paused_until == pytest.approx(twin.paused_until)
