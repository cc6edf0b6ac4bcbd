"""Metrics counters, latency percentiles and advice."""

from __future__ import annotations

from client import Metrics
from client._breaker import BreakerState, BreakerTransition


def test_percentiles_from_the_reservoir():
    """p50/p95/p99 come from recorded latencies."""
    m = Metrics()
    for i in range(1, 101):
        m.record_call(latency=i / 1000, attempts=1, status=200, error=None)
    s = m.snapshot()
    assert (s.latency_p50, s.latency_p95, s.latency_p99) == (0.051, 0.096, 0.1)


def test_reservoir_is_bounded():
    """Only the most recent `reservoir` latencies are kept."""
    m = Metrics(reservoir=10)
    for i in range(1000):
        m.record_call(latency=float(i), attempts=1, status=200, error=None)
    assert len(m._latencies) == 10
    assert m.snapshot().latency_p50 >= 990


def test_counters_and_ratios():
    """Retries, failures and cache ratios add up."""
    m = Metrics()
    m.record_call(latency=0, attempts=3, status=200, error=None)
    m.record_call(latency=0, attempts=1, status=None, error="ReadTimeout")
    m.record_hit()
    m.incr("cache_misses")
    s = m.snapshot()
    assert (s.requests, s.attempts, s.retries, s.failures) == (3, 4, 2, 1)
    assert s.errors == {"ReadTimeout": 1}
    assert s.cache_hit_ratio == 0.5
    assert s.retry_ratio == 2 / 3


def test_breaker_listener_counts_openings():
    """The breaker listener counts transitions and openings."""
    m = Metrics()
    m.breaker_listener(BreakerTransition("h", BreakerState.CLOSED, BreakerState.OPEN, 0, 1.0))
    m.breaker_listener(BreakerTransition("h", BreakerState.OPEN, BreakerState.HALF_OPEN, 0, 1.0))
    s = m.snapshot()
    assert (s.breaker_transitions, s.breaker_opens) == (2, 1)


def test_quiet_metrics_give_no_advice():
    """Healthy traffic: nothing to tune."""
    m = Metrics()
    for _ in range(50):
        m.record_call(latency=0.01, attempts=1, status=200, error=None)
    assert m.advice() == []


def test_advice_names_what_to_tune():
    """Each symptom yields a sentence naming the setting to change."""
    m = Metrics(read_timeout=1.0)
    for _ in range(30):
        m.record_call(latency=0.95, attempts=3, status=200, error=None)
        m.record_wait(0.5)
        m.incr("cache_misses")
    m.record_status(429)
    m.incr("budget_refusals")
    m.breaker_listener(BreakerTransition("h", BreakerState.CLOSED, BreakerState.OPEN, 0, 1.0))
    text = "\n".join(m.advice())
    for setting in (
        "RetryPolicy.attempts",
        "RateLimitPolicy.rate",
        "CachePolicy.max_entries",
        "BreakerPolicy",
        "RetryBudget.ratio",
        "Timeouts.read",
    ):
        assert setting in text, setting


def test_timeouts_advice():
    """Many timeouts point at Timeouts.read/total."""
    m = Metrics()
    for _ in range(10):
        m.record_call(latency=1, attempts=1, status=None, error="ReadTimeout")
    assert any("Timeouts.read" in line for line in m.advice())
