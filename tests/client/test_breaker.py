"""Circuit breaker semantics: window, trip, open time, half-open permits, listeners."""

from __future__ import annotations

import threading

import pytest

from client import BreakerPolicy, BreakerState, CircuitOpen, FakeClock
from client._breaker import BreakerRegistry, CircuitBreaker
from client._exceptions import ConfigError


def make(clock=None, listeners=(), **kw):
    clock = clock or FakeClock()
    kw.setdefault("window", 10)
    kw.setdefault("min_calls", 5)
    kw.setdefault("failure_rate", 0.5)
    kw.setdefault("open_for", 30)
    policy = BreakerPolicy(clock=clock, listeners=tuple(listeners), **kw)
    return CircuitBreaker(policy, "http://h:80"), clock


def run(breaker, *outcomes):
    for failure in outcomes:
        breaker.record(breaker.acquire(), failure=failure)


def test_does_not_trip_before_min_calls():
    """Four failures out of four stay closed when min_calls is 5."""
    b, _ = make()
    run(b, True, True, True, True)
    assert b.state is BreakerState.CLOSED


def test_trips_at_failure_rate_once_min_calls_reached():
    """At five calls with three failures (60% >= 50%) the breaker opens."""
    b, _ = make()
    run(b, False, True, False, True, True)
    assert b.state is BreakerState.OPEN


def test_success_that_completes_min_calls_can_trip():
    """The rate is judged on every record, not only on failures."""
    b, _ = make()
    run(b, True, True, True, True, False)
    assert b.state is BreakerState.OPEN


def test_window_is_count_based_and_slides():
    """Old results leave the window: 10 successes after failures keep it closed."""
    b, _ = make(window=10, min_calls=10)
    run(b, *([True] * 4 + [False] * 6))
    assert b.state is BreakerState.CLOSED and b.failure_rate() == 0.4
    run(b, *([False] * 4))
    assert b.failure_rate() == 0.0


def test_open_breaker_raises_without_calling_through():
    """Open: acquire raises CircuitOpen naming the host and the time left."""
    b, clock = make()
    run(b, *([True] * 5))
    clock.advance(10)
    with pytest.raises(CircuitOpen) as info:
        b.acquire()
    assert info.value.host == "http://h:80"
    assert info.value.retry_in == pytest.approx(20)


def test_half_open_after_open_for_then_closes_on_success():
    """After open_for a probe is admitted; its success closes the breaker with a fresh window."""
    b, clock = make()
    run(b, *([True] * 5))
    clock.advance(30)
    ticket = b.acquire()
    assert ticket.probe and b.state is BreakerState.HALF_OPEN
    b.record(ticket, failure=False)
    assert b.state is BreakerState.CLOSED
    assert b.failure_rate() == 0.0


def test_failed_probe_reopens_for_another_open_for():
    """A failed probe sends the breaker back to open."""
    b, clock = make()
    run(b, *([True] * 5))
    clock.advance(30)
    b.record(b.acquire(), failure=True)
    assert b.state is BreakerState.OPEN
    clock.advance(29)
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_half_open_needs_permits_successes_to_close():
    """With 3 permits, three successful probes are needed to close."""
    b, clock = make(half_open_permits=3)
    run(b, *([True] * 5))
    clock.advance(30)
    tickets = [b.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpen):
        b.acquire()
    b.record(tickets[0], failure=False)
    b.record(tickets[1], failure=False)
    assert b.state is BreakerState.HALF_OPEN
    b.record(tickets[2], failure=False)
    assert b.state is BreakerState.CLOSED


def test_half_open_permits_hold_under_many_threads():
    """64 threads racing for 2 permits: never more than 2 probes in flight, all released."""
    b, clock = make(half_open_permits=2, open_for=1)
    run(b, *([True] * 5))
    clock.advance(1)
    in_flight = 0
    peak = 0
    admitted = 0
    lock = threading.Lock()
    start = threading.Barrier(64)

    def worker():
        nonlocal in_flight, peak, admitted
        start.wait()
        for _ in range(50):
            try:
                ticket = b.acquire()
            except CircuitOpen:
                continue
            with lock:
                in_flight += 1
                admitted += 1
                peak = max(peak, in_flight)
            try:
                raise RuntimeError("the call blew up")
            except RuntimeError:
                with lock:
                    in_flight -= 1
                b.release(ticket)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 2
    assert admitted >= 2
    assert b.in_flight_probes == 0


def test_release_returns_a_permit_after_an_exception():
    """A probe whose call raised (no outcome) frees its permit for the next caller."""
    b, clock = make()
    run(b, *([True] * 5))
    clock.advance(30)
    ticket = b.acquire()
    with pytest.raises(CircuitOpen):
        b.acquire()
    b.release(ticket)
    assert b.acquire().probe


def test_stale_outcomes_from_before_a_transition_are_ignored():
    """A slow call admitted while closed cannot reopen a breaker that has since recovered."""
    b, clock = make()
    slow = b.acquire()
    run(b, *([True] * 5))
    clock.advance(30)
    b.record(b.acquire(), failure=False)
    assert b.state is BreakerState.CLOSED
    b.record(slow, failure=True)
    assert b.failure_rate() == 0.0


def test_listeners_see_every_transition_in_order():
    """Listeners get closed->open->half_open->closed with the failure rate."""
    seen = []
    b, clock = make(listeners=[seen.append])
    run(b, *([True] * 5))
    clock.advance(30)
    b.record(b.acquire(), failure=False)
    assert [(t.old, t.new) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert seen[0].failure_rate == 1.0 and seen[0].host == "http://h:80"


def test_a_failing_listener_does_not_break_the_call():
    """A listener that raises is logged and ignored."""

    def bad(_):
        raise RuntimeError("listener bug")

    b, _ = make(listeners=[bad])
    run(b, *([True] * 5))
    assert b.state is BreakerState.OPEN


def test_listener_is_called_without_the_lock_held():
    """Listeners may call back into the breaker (no deadlock: no lock held)."""
    rates = []
    holder: list[CircuitBreaker] = []
    b, _ = make(listeners=[lambda t: rates.append(holder[0].failure_rate())])
    holder.append(b)
    run(b, *([True] * 5))
    assert rates == [1.0]


def test_registry_keeps_one_breaker_per_host():
    """Hosts trip independently."""
    reg = BreakerRegistry(BreakerPolicy(window=2, min_calls=2, clock=FakeClock()))
    a, b = reg.get("http://a:80"), reg.get("http://b:80")
    assert reg.get("http://a:80") is a
    run(a, True, True)
    assert a.state is BreakerState.OPEN and b.state is BreakerState.CLOSED
    assert reg.states() == {"http://a:80": BreakerState.OPEN, "http://b:80": BreakerState.CLOSED}


def test_failure_classification_is_configurable():
    """Transport errors and 5xx/429 count by default; the sets are configurable."""
    p = BreakerPolicy()
    assert p.is_failure(None) and p.is_failure(503) and p.is_failure(429)
    assert not p.is_failure(404) and not p.is_failure(200)
    q = BreakerPolicy(failure_statuses=frozenset({500}), count_transport_errors=False)
    assert not q.is_failure(None) and not q.is_failure(429) and q.is_failure(500)


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"min_calls": 30, "window": 20}, {"failure_rate": 0}, {"open_for": -1}],
    ids=["window", "min_calls", "failure_rate", "open_for"],
)
def test_bad_settings_raise_config_error(kwargs):
    """Invalid settings are refused at construction, naming the field."""
    with pytest.raises(ConfigError, match=list(kwargs)[0]):
        BreakerPolicy(**kwargs)
