"""Retry semantics on fake time: backoff, Retry-After, deadline, budget, idempotency."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import (
    ConnectionFailed,
    ConnectTimeout,
    DeadlineExceeded,
    FakeClock,
    RateLimited,
    ReadTimeout,
    RetriesExhausted,
    RetryBudget,
    RetryPolicy,
    RetryState,
    ServerError,
    backoff,
    parse_retry_after,
)
from client._exceptions import BadRequest, ConfigError
from client._retry import BudgetTracker
from client._timeouts import Deadline

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def server_error(status=503, retry_after=None):
    return ServerError(f"{status}", status=status, retry_after=retry_after)


def rate_limited(retry_after=None):
    return RateLimited("429", status=429, retry_after=retry_after)


def state(method="GET", *, attempt=1, retryable=True, replayable=True):
    s = RetryState(method, "http://h/x", retryable_method=retryable, replayable=replayable)
    s.attempt = attempt
    return s


def policy(**kw):
    kw.setdefault("budget", None)
    return RetryPolicy(**kw)


FAR = Deadline(None)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=100),
    seed=st.integers(),
)
def test_backoff_stays_within_full_jitter_bounds(attempt, base, cap, seed):
    """Full jitter: 0 <= sleep <= min(cap, base * 2**(attempt-1)), for any attempt."""
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt - 1, 1000))


def test_backoff_is_a_pure_function_of_the_rng():
    """The same seed gives the same sleeps; the global random module is never used."""
    a = [backoff(n, base=0.1, cap=5, rng=random.Random(7)) for n in range(1, 8)]
    random.seed(0)
    b = [backoff(n, base=0.1, cap=5, rng=random.Random(7)) for n in range(1, 8)]
    assert a == b


def test_backoff_rejects_attempt_zero():
    """Attempts count from 1."""
    with pytest.raises(ValueError):
        backoff(0, base=1, cap=1, rng=random.Random())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("5", 5.0, id="delta"),
        pytest.param(" 2.5 ", 2.5, id="delta-fraction"),
        pytest.param("Tue, 14 Nov 2023 22:13:30 GMT", 10.0, id="imf-gmt"),
        pytest.param("Tue, 14 Nov 2023 22:13:30 UTC", 10.0, id="imf-utc"),
        pytest.param("Wed, 15 Nov 2023 00:13:30 +0200", 10.0, id="plus-0200"),
        pytest.param("Tue, 14 Nov 2023 14:13:30 PST", 10.0, id="pst"),
        pytest.param("Tue, 14 Nov 2023 17:13:30 -0500", 10.0, id="minus-0500"),
        pytest.param("Tuesday, 14-Nov-23 22:13:30 GMT", 10.0, id="rfc850"),
        pytest.param("Tue Nov 14 22:13:30 2023", 10.0, id="asctime-naive-is-utc"),
        pytest.param("Tue, 14 Nov 2023 22:00:00 GMT", 0.0, id="past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_retry_after_forms(value, expected):
    """Retry-After as delta-seconds or an HTTP-date in any zone and any RFC 9110 form."""
    assert parse_retry_after(value, now=NOW) == expected


def test_idempotent_methods_retry_on_retryable_status():
    """A GET that got a 503 is retried after a backoff sleep."""
    p = policy(rng=random.Random(1))
    delay = p.next_sleep(state(), server_error(), deadline=FAR, rng=random.Random(1))
    assert delay is not None and 0 <= delay <= p.backoff_base


def test_non_retryable_status_is_handed_back():
    """A 400 is not retried."""
    assert (
        policy().next_sleep(state(), BadRequest("x", status=400), deadline=FAR, rng=random.Random()) is None
    )


def test_unsafe_method_without_key_is_not_retried_after_sending():
    """A POST without Idempotency-Key is not repeated once it may have reached the server."""
    p = policy()
    s = state("POST", retryable=p.is_retryable_method("POST", False))
    assert p.next_sleep(s, server_error(), deadline=FAR, rng=random.Random()) is None
    assert p.next_sleep(s, ReadTimeout("t"), deadline=FAR, rng=random.Random()) is None


def test_unsafe_method_with_key_is_retried():
    """A POST carrying an Idempotency-Key may be retried."""
    p = policy()
    s = state("POST", retryable=p.is_retryable_method("POST", True))
    assert p.next_sleep(s, server_error(502), deadline=FAR, rng=random.Random()) is not None


@pytest.mark.parametrize(
    "error",
    [ConnectTimeout("t"), ConnectionFailed("refused", request_sent=False)],
    ids=["connect-timeout", "refused"],
)
def test_connect_errors_retry_any_method(error):
    """Nothing was sent, so even a POST without a key is retried."""
    s = state("POST", retryable=False)
    assert policy().next_sleep(s, error, deadline=FAR, rng=random.Random()) is not None


def test_unreplayable_body_is_never_retried():
    """A streamed body cannot be sent twice."""
    s = state(replayable=False)
    assert policy().next_sleep(s, ConnectTimeout("t"), deadline=FAR, rng=random.Random()) is None


def test_attempts_exhausted_raises_with_last_error():
    """After the last permitted attempt, RetriesExhausted carries the final failure."""
    last = server_error()
    with pytest.raises(RetriesExhausted) as info:
        policy(attempts=3).next_sleep(state(attempt=3), last, deadline=FAR, rng=random.Random())
    assert info.value.last is last
    assert info.value.__cause__ is last
    assert info.value.attempts == 3


def test_raise_on_exhausted_false_hands_the_response_back():
    """With raise_on_exhausted=False the final error response is returned, not raised."""
    p = policy(attempts=2, raise_on_exhausted=False)
    assert p.next_sleep(state(attempt=2), server_error(), deadline=FAR, rng=random.Random()) is None


def test_single_attempt_policy_never_retries():
    """attempts=1 means no retry and no RetriesExhausted."""
    assert policy(attempts=1).next_sleep(state(), server_error(), deadline=FAR, rng=random.Random()) is None


def test_retry_after_is_honoured_never_earlier():
    """The sleep is at least the server's Retry-After, even when the backoff is shorter."""
    delay = policy().next_sleep(state(), rate_limited(retry_after=3.0), deadline=FAR, rng=random.Random())
    assert delay == 3.0


def test_retry_after_on_503_is_honoured():
    """Retry-After counts on a 503 too."""
    assert policy().next_sleep(state(), server_error(503, 4.0), deadline=FAR, rng=random.Random()) == 4.0


def test_longer_backoff_wins_over_short_retry_after():
    """Retry-After is a floor, not a replacement for the backoff."""
    p = policy(backoff_base=100, backoff_cap=100, rng=None)
    rng = random.Random(3)
    expected = backoff(1, base=100, cap=100, rng=random.Random(3))
    assert p.next_sleep(state(), rate_limited(retry_after=0.5), deadline=FAR, rng=rng) == max(expected, 0.5)


def test_retry_after_beyond_cap_fails_fast_with_rate_limited():
    """A 429 asking for more than retry_after_cap raises RateLimited at once, no sleep."""
    error = rate_limited(retry_after=120.0)
    with pytest.raises(RateLimited) as info:
        policy(retry_after_cap=60).next_sleep(state(), error, deadline=FAR, rng=random.Random())
    assert info.value.retry_after == 120.0


def test_retry_after_beyond_deadline_fails_fast():
    """A Retry-After longer than the time left raises DeadlineExceeded now (as documented),
    chained to the answer that asked for it, instead of sleeping into the deadline."""
    clock = FakeClock()
    deadline = Deadline(clock() + 5, clock)
    with pytest.raises(DeadlineExceeded) as info:
        policy().next_sleep(state(), rate_limited(retry_after=10.0), deadline=deadline, rng=random.Random())
    assert isinstance(info.value.__cause__, RateLimited)
    with pytest.raises(DeadlineExceeded) as info:
        policy().next_sleep(state(), server_error(503, 10.0), deadline=deadline, rng=random.Random())
    assert isinstance(info.value.__cause__, ServerError)
    assert clock.sleeps == []


def test_retry_after_beyond_the_cap_but_within_the_deadline_fails_as_before():
    """Within the deadline but past retry_after_cap: RateLimited for a 429, else RetriesExhausted."""
    clock = FakeClock()
    deadline = Deadline(clock() + 500, clock)
    with pytest.raises(RateLimited):
        policy().next_sleep(state(), rate_limited(retry_after=100.0), deadline=deadline, rng=random.Random())
    with pytest.raises(RetriesExhausted):
        policy().next_sleep(state(), server_error(503, 100.0), deadline=deadline, rng=random.Random())


def test_backoff_that_would_cross_the_deadline_raises_deadline_exceeded():
    """No scheduled sleep may cross the total deadline."""
    clock = FakeClock()
    deadline = Deadline(clock() + 0.5, clock)
    p = policy(backoff_base=10, backoff_cap=10)
    rng = random.Random(0)  # first draw 8.44 s
    with pytest.raises(DeadlineExceeded) as info:
        p.next_sleep(state(), server_error(), deadline=deadline, rng=rng)
    assert isinstance(info.value.__cause__, ServerError)


def test_respect_retry_after_false_ignores_the_header():
    """respect_retry_after=False falls back to the plain backoff."""
    p = policy(respect_retry_after=False, backoff_base=0.1)
    assert p.next_sleep(state(), rate_limited(retry_after=30), deadline=FAR, rng=random.Random()) <= 0.1


def test_budget_caps_retries_to_a_fraction_of_requests():
    """With ratio 0.1 and no floor, 100 requests allow 10 retries, then RetriesExhausted."""
    clock = FakeClock()
    tracker = BudgetTracker(RetryBudget(ratio=0.1, min_per_second=0, window=10), clock)
    for _ in range(100):
        tracker.record_request()
    p = policy()
    allowed = 0
    with pytest.raises(RetriesExhausted, match="budget"):
        for _ in range(50):
            p.next_sleep(state(), server_error(), deadline=FAR, rng=random.Random(), budget=tracker)
            allowed += 1
    assert allowed == 10
    assert tracker.levels() == (100, 10)


def test_budget_minimum_per_second_lets_a_quiet_client_retry():
    """min_per_second * window retries are always allowed."""
    tracker = BudgetTracker(RetryBudget(ratio=0, min_per_second=0.5, window=10), FakeClock())
    assert [tracker.try_spend() for _ in range(6)] == [True] * 5 + [False]


def test_budget_window_slides():
    """Requests and retries older than the window no longer count."""
    clock = FakeClock()
    tracker = BudgetTracker(RetryBudget(ratio=1, min_per_second=0, window=10), clock)
    tracker.record_request()
    assert tracker.try_spend()
    assert not tracker.try_spend()
    clock.advance(11)
    assert tracker.levels() == (0, 0)
    tracker.record_request()
    assert tracker.try_spend()


def test_budget_is_thread_safe():
    """Concurrent spenders never exceed the budget."""
    tracker = BudgetTracker(RetryBudget(ratio=0.5, min_per_second=0, window=10), FakeClock())
    for _ in range(100):
        tracker.record_request()
    results: list[bool] = []
    lock = threading.Lock()

    def spend():
        for _ in range(20):
            ok = tracker.try_spend()
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 50


def test_hooks_get_frozen_details_with_redacted_url():
    """Hooks see attempt, sleep and reason in a frozen dataclass, with secrets masked."""
    seen = []
    p = policy(hooks=(seen.append,))
    s = RetryState("GET", "http://h/x?api_key=secret-key-1", retryable_method=True)
    s.attempt = 1
    delay = p.next_sleep(s, rate_limited(retry_after=1.0), deadline=FAR, rng=random.Random())
    (details,) = seen
    assert (details.attempt, details.sleep, details.reason, details.status, details.retry_after) == (
        1,
        delay,
        "RateLimited",
        429,
        1.0,
    )
    assert "secret-key-1" not in details.url
    with pytest.raises(AttributeError):
        details.sleep = 0  # type: ignore[misc]


def test_policy_is_an_immutable_keyword_only_value():
    """Configs compare by value, have a repr, refuse mutation and positional arguments."""
    assert RetryPolicy(attempts=3) == RetryPolicy(attempts=3)
    assert "attempts=3" in repr(RetryPolicy(attempts=3))
    with pytest.raises(AttributeError):
        RetryPolicy().attempts = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"backoff_base": -1}, {"retry_after_cap": float("nan")}, {"attempts": True}],
    ids=["zero-attempts", "negative-base", "nan-cap", "bool-attempts"],
)
def test_bad_settings_raise_config_error_naming_the_field(kwargs):
    """A bad value raises ConfigError naming the field."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)
