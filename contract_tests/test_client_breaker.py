"""Properties of the circuit breaker: against the fake over sockets, and against a model.

Property 4: while the breaker is open no request reaches the server; half-open probes never
exceed the permit count, even from many threads; it never trips before the minimum number
of calls. The state machine compares the breaker with a small model on fake time.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from client import (
    BreakerPolicy,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpen,
    FakeClock,
    Policies,
    RetryPolicy,
    Timeouts,
)
from client._http import host_key
from mock_server import ServerThread

from ._drivers import DRIVERS, Caller, caller
from ._support import fake_clock, new_session, planned

KEY = {"X-API-Key": "demo-key"}
FAIL = {"type": "status", "status": 503}


def _breaker_session(driver: str, policy: BreakerPolicy, clock: FakeClock, sid: str) -> Caller:
    policies = Policies(
        retry=RetryPolicy(attempts=1, budget=None),
        breaker=policy,
        cache=None,
        timeouts=Timeouts(read=5, total=None),
    )
    return caller(driver, policies, clock, base_headers={**KEY, "X-Mock-Session": sid})


#: What an attempt gets from the fake: a success, a failure the breaker counts (5xx, 429),
#: or a client error (4xx), which says nothing about the host's health.
OUTCOMES = {
    "ok": {"type": "latency", "fixed_ms": 0},
    "503": FAIL,
    "429": {"type": "status", "status": 429, "retry_after": 0},
    "404": {"type": "status", "status": 404},
    "409": {"type": "status", "status": 409},
    "422": {"type": "status", "status": 422},
}
COUNTED = frozenset({"503", "429"})


@pytest.mark.socket
@pytest.mark.parametrize("driver", DRIVERS)
@given(
    outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=40),
    gaps=st.lists(st.sampled_from([0.0, 0.5, 3.0, 11.0]), min_size=40, max_size=40),
    window=st.integers(2, 10),
    min_calls=st.integers(1, 10),
    rate=st.sampled_from([0.25, 0.5, 1.0]),
)
def test_open_breaker_sends_nothing(
    driver: str,
    fake: ServerThread,
    outcomes: list[str],
    gaps: list[float],
    window: int,
    min_calls: int,
    rate: float,
) -> None:
    """Property 4a: while the breaker is open (from the transition to open until open_for has
    passed) no call reaches the server. Until it first opens, it opens exactly when the last
    ``window`` outcomes hold at least ``min_calls`` with a failure share of ``rate`` or more,
    where only 5xx and 429 are failures: a 4xx is the caller's mistake, not the host's."""
    min_calls = min(min_calls, window)
    sid = new_session()
    clock = fake_clock()
    transitions: list[BreakerTransition] = []
    policy = BreakerPolicy(
        window=window, min_calls=min_calls, failure_rate=rate, open_for=10.0, listeners=(transitions.append,)
    )
    session = _breaker_session(driver, policy, clock, sid)
    plan = [OUTCOMES[o] for o in outcomes]
    seen: deque[bool] = deque(maxlen=window)  # the model's window, until the first opening
    with planned(fake, sid, plan):
        for gap in gaps[: len(outcomes) + 5]:
            clock.advance(gap)
            last = transitions[-1] if transitions else None
            must_refuse = (
                last is not None
                and last.new is BreakerState.OPEN
                and clock.clock() < last.at + policy.open_for
            )
            before = fake.admin.count(session=sid)
            opened_before = any(t.new is BreakerState.OPEN for t in transitions)
            try:
                session.get(f"{fake.url}/profiles")
            except CircuitOpen:
                assert fake.admin.count(session=sid) == before, "a refused call reached the server"
                continue
            assert not must_refuse, "the breaker let a call through while open"
            assert fake.admin.count(session=sid) == before + 1
            if opened_before:
                continue
            index = before  # this session's n-th request met the plan's n-th entry
            seen.append(index < len(outcomes) and outcomes[index] in COUNTED)
            should_open = len(seen) >= min_calls and sum(seen) >= rate * len(seen)
            opened = any(t.new is BreakerState.OPEN for t in transitions)
            assert opened == should_open, (
                f"after {list(seen)} (True: 5xx/429) the breaker is {'open' if opened else 'closed'}"
            )


@pytest.mark.socket
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("permits", [1, 2, 3])
def test_half_open_probes_never_exceed_permits(driver: str, fake: ServerThread, permits: int) -> None:
    """Property 4b: with many threads (or tasks) at once, a half-open breaker admits at most its
    permits."""
    sid = new_session()
    clock = fake_clock()
    policy = BreakerPolicy(window=4, min_calls=2, failure_rate=0.5, open_for=5.0, half_open_permits=permits)
    session = _breaker_session(driver, policy, clock, sid)
    # Two failures open it; then slow successes keep the probes in flight together.
    plan = [FAIL, FAIL] + [{"type": "latency", "fixed_ms": 300}] * 20
    with planned(fake, sid, plan):
        for _ in range(2):
            session.get(f"{fake.url}/profiles")
        breaker = session.engine.breakers.get(host_key(fake.url))  # type: ignore[union-attr]
        assert breaker.state is BreakerState.OPEN
        before = fake.admin.count(session=sid)
        clock.advance(5.0)
        outcomes = session.many(12, "GET", f"{fake.url}/profiles")
        refused = [o for o in outcomes if isinstance(o, CircuitOpen)]
    reached = fake.admin.count(session=sid) - before
    assert 1 <= reached <= permits
    assert reached + len(refused) == 12
    assert breaker.in_flight_probes == 0


@given(
    window=st.integers(1, 10),
    min_calls=st.integers(1, 10),
    permits=st.integers(1, 3),
    open_for=st.floats(0.5, 120.0),
    early=st.floats(0.0, 0.99),
    late=st.floats(0.0, 100.0),
)
def test_breaker_recovers_after_successful_probes(
    window: int, min_calls: int, permits: int, open_for: float, early: float, late: float
) -> None:
    """Property 4c: an open breaker refuses until open_for has passed, then admits exactly
    ``half_open_permits`` probes; when they all succeed it closes, admits calls freely again,
    and starts from an empty window (it takes min_calls fresh outcomes to open it again)."""
    min_calls = min(min_calls, window)
    clock = FakeClock()
    policy = BreakerPolicy(
        window=window,
        min_calls=min_calls,
        failure_rate=1.0,
        open_for=open_for,
        half_open_permits=permits,
        clock=clock.clock,
    )
    breaker = CircuitBreaker(policy, "host")
    for _ in range(min_calls):
        breaker.record(breaker.acquire(), failure=True)
    assert breaker.state is BreakerState.OPEN
    clock.advance(open_for * early)
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    # A microsecond past open_for: the two advances need not add up to it exactly in floats.
    clock.advance(open_for * (1 - early) + late + 1e-6)
    probes = [breaker.acquire() for _ in range(permits)]
    assert all(p.probe for p in probes) and breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    for probe in probes:
        breaker.record(probe, failure=False)
    assert breaker.state is BreakerState.CLOSED, "all probes succeeded but the breaker did not close"
    assert breaker.in_flight_probes == 0
    for _ in range(min_calls - 1):
        ticket = breaker.acquire()
        assert not ticket.probe
        breaker.record(ticket, failure=True)
    assert breaker.state is BreakerState.CLOSED, "the window was not emptied when the breaker closed"
    assert not breaker.acquire().probe


#: Outcomes of an admitted call as the breaker's policy classifies them; None is a transport error.
STATUSES = st.sampled_from([200, 201, 304, 400, 404, 409, 422, 429, 500, 502, 503, None])


def _fails(status: int | None) -> bool:
    """The model's idea of a failure: no response, a 429 or a 5xx."""
    return status is None or status == 429 or status >= 500


class BreakerModel(RuleBasedStateMachine):
    """The breaker against a model: a window of the last outcomes, an open-until time, probes."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.policy = BreakerPolicy(
            window=5,
            min_calls=3,
            failure_rate=0.6,
            open_for=10.0,
            half_open_permits=2,
            clock=self.clock.clock,
        )
        self.breaker = CircuitBreaker(self.policy, "host")
        self.state = "closed"
        self.window: deque[bool] = deque(maxlen=5)
        self.open_until = 0.0
        self.probes: list[Any] = []
        self.stale: list[Any] = []
        self.successes = 0

    def _open(self) -> None:
        self.stale.extend(self.probes)
        self.state, self.open_until, self.probes, self.successes = "open", self.clock() + 10.0, [], 0

    @rule(seconds=st.sampled_from([0.5, 4.0, 10.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.state == "closed")
    @rule(status=STATUSES)
    def call_closed(self, status: int | None) -> None:
        ticket = self.breaker.acquire()
        assert not ticket.probe
        self.breaker.record(ticket, failure=self.policy.is_failure(status))
        self.window.append(_fails(status))
        if len(self.window) >= 3 and sum(self.window) >= 0.6 * len(self.window):
            self._open()

    @precondition(lambda self: self.state in ("open", "half_open"))
    @rule()
    def try_acquire(self) -> None:
        if self.state == "open" and self.clock() >= self.open_until:
            self.state = "half_open"
        if self.state == "open" or len(self.probes) >= 2:
            with pytest.raises(CircuitOpen):
                self.breaker.acquire()
        else:
            self.probes.append(self.breaker.acquire())

    @precondition(lambda self: bool(self.probes))
    @rule(status=STATUSES, release_only=st.booleans())
    def finish_probe(self, status: int | None, release_only: bool) -> None:
        ticket = self.probes.pop(0)
        if release_only:
            self.breaker.release(ticket)
            return
        self.breaker.record(ticket, failure=self.policy.is_failure(status))
        if _fails(status):
            self._open()
        else:
            self.successes += 1
            if self.successes >= 2:
                self.stale.extend(self.probes)
                self.state, self.probes, self.successes = "closed", [], 0
                self.window.clear()

    @precondition(lambda self: bool(self.stale))
    @rule(failure=st.booleans(), release_only=st.booleans())
    def finish_stale_probe(self, failure: bool, release_only: bool) -> None:
        """A probe admitted before the last transition ends late: it changes nothing."""
        ticket = self.stale.pop(0)
        if release_only:
            self.breaker.release(ticket)
        else:
            self.breaker.record(ticket, failure=failure)

    @invariant()
    def same_state(self) -> None:
        expected = {
            "closed": BreakerState.CLOSED,
            "open": BreakerState.OPEN,
            "half_open": BreakerState.HALF_OPEN,
        }
        assert self.breaker.state is expected[self.state]

    @invariant()
    def probes_within_permits(self) -> None:
        assert self.breaker.in_flight_probes <= self.policy.half_open_permits


TestBreakerModel = BreakerModel.TestCase
# In-process and cheap: enough sequences that open, half-open, probe and close again are all
# reached in the ci profile too (the profile's 40 examples rarely get as far as closing).
TestBreakerModel.settings = settings(max_examples=300, stateful_step_count=40)


class DriverBreakerModel(RuleBasedStateMachine):
    """The breaker as each driver exposes it, against the same model: a call either reaches the
    (scripted) server or fails with CircuitOpen having sent nothing; one probe at a time."""

    driver = "requests"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.status = 200
        policies = Policies(
            retry=None,
            cache=None,
            breaker=BreakerPolicy(window=4, min_calls=2, failure_rate=0.5, open_for=10.0),
            timeouts=Timeouts(read=5, total=None),
        )
        self.session = caller(self.driver, policies, self.clock, script=[lambda c: (self.status, {})])
        self.state = "closed"
        self.window: deque[bool] = deque(maxlen=4)
        self.open_until = 0.0

    @rule(seconds=st.sampled_from([0.5, 4.0, 10.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(status=st.sampled_from([200, 404, 429, 500, 503]))
    def call(self, status: int) -> None:
        self.status = status
        before = len(self.session.sent)
        outcome = self.session.call("GET", "http://upstream.invalid/x")
        if self.state == "open" and self.clock() >= self.open_until:
            self.state = "half_open"
        if self.state == "open":
            assert isinstance(outcome, CircuitOpen) and len(self.session.sent) == before
            return
        assert not isinstance(outcome, CircuitOpen), f"refused while {self.state}"
        assert len(self.session.sent) == before + 1
        failed = status == 429 or status >= 500
        if self.state == "half_open":
            if failed:
                self.state, self.open_until = "open", self.clock() + 10.0
            else:
                self.state = "closed"
                self.window.clear()
            return
        self.window.append(failed)
        if len(self.window) >= 2 and sum(self.window) >= 0.5 * len(self.window):
            self.state, self.open_until = "open", self.clock() + 10.0

    def teardown(self) -> None:
        self.session.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_breaker_model_through_every_driver(driver: str) -> None:
    """The breaker state machine, driven through each driver's calls."""
    DriverBreakerModel.driver = driver
    run = DriverBreakerModel.TestCase
    run.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
    run().runTest()
