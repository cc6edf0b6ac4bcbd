"""Properties of the circuit breaker: against the fake over sockets, and against a model.

Property 4: while the breaker is open no request reaches the server; half-open probes never
exceed the permit count, even from many threads; it never trips before the minimum number
of calls. The state machine compares the breaker with a small model on fake time.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import pytest
from hypothesis import given
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
from client._transport import host_key
from mock_server import ServerThread

from ._support import client_session, fake_clock, new_session, planned

KEY = {"X-API-Key": "demo-key"}
FAIL = {"type": "status", "status": 503}


def _breaker_session(fake: ServerThread, policy: BreakerPolicy, clock: FakeClock, sid: str) -> Any:
    policies = Policies(
        retry=RetryPolicy(attempts=1, budget=None),
        breaker=policy,
        cache=None,
        timeouts=Timeouts(read=5, total=None),
    )
    session, _ = client_session(policies, clock, base_headers={**KEY, "X-Mock-Session": sid})
    return session


@pytest.mark.socket
@given(
    outcomes=st.lists(st.booleans(), min_size=1, max_size=40),
    gaps=st.lists(st.sampled_from([0.0, 0.5, 3.0, 11.0]), min_size=40, max_size=40),
    window=st.integers(2, 10),
    min_calls=st.integers(1, 10),
    rate=st.sampled_from([0.25, 0.5, 1.0]),
)
def test_open_breaker_sends_nothing(
    fake: ServerThread, outcomes: list[bool], gaps: list[float], window: int, min_calls: int, rate: float
) -> None:
    """Property 4a: while the breaker is open (from the transition to open until open_for has
    passed) no call reaches the server, and it never opens before min_calls outcomes."""
    min_calls = min(min_calls, window)
    sid = new_session()
    clock = fake_clock()
    transitions: list[BreakerTransition] = []
    policy = BreakerPolicy(
        window=window, min_calls=min_calls, failure_rate=rate, open_for=10.0, listeners=(transitions.append,)
    )
    session = _breaker_session(fake, policy, clock, sid)
    plan = [FAIL if failed else {"type": "latency", "fixed_ms": 0} for failed in outcomes]
    recorded = 0
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
            if not opened_before:
                recorded += 1
            assert fake.admin.count(session=sid) == before + 1
    first_open = next((t for t in transitions if t.new is BreakerState.OPEN), None)
    if first_open is not None:
        assert recorded >= min_calls, "the breaker opened before min_calls outcomes"


@pytest.mark.socket
@pytest.mark.parametrize("permits", [1, 2, 3])
def test_half_open_probes_never_exceed_permits(fake: ServerThread, permits: int) -> None:
    """Property 4b: with many threads at once, a half-open breaker admits at most its permits."""
    sid = new_session()
    clock = fake_clock()
    policy = BreakerPolicy(window=4, min_calls=2, failure_rate=0.5, open_for=5.0, half_open_permits=permits)
    session = _breaker_session(fake, policy, clock, sid)
    # Two failures open it; then slow successes keep the probes in flight together.
    plan = [FAIL, FAIL] + [{"type": "latency", "fixed_ms": 300}] * 20
    with planned(fake, sid, plan):
        for _ in range(2):
            session.get(f"{fake.url}/profiles")
        breaker = session.pipeline.breakers.get(host_key(fake.url))
        assert breaker.state is BreakerState.OPEN
        before = fake.admin.count(session=sid)
        clock.advance(5.0)
        barrier = threading.Barrier(12)
        refused = []

        def probe() -> None:
            barrier.wait()
            try:
                session.get(f"{fake.url}/profiles")
            except CircuitOpen:
                refused.append(1)

        threads = [threading.Thread(target=probe) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    reached = fake.admin.count(session=sid) - before
    assert 1 <= reached <= permits
    assert reached + len(refused) == 12
    assert breaker.in_flight_probes == 0


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
        self.successes = 0

    def _open(self) -> None:
        self.state, self.open_until, self.probes, self.successes = "open", self.clock() + 10.0, [], 0

    @rule(seconds=st.sampled_from([0.5, 4.0, 10.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.state == "closed")
    @rule(failure=st.booleans())
    def call_closed(self, failure: bool) -> None:
        ticket = self.breaker.acquire()
        self.breaker.record(ticket, failure=failure)
        self.window.append(failure)
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
    @rule(failure=st.booleans(), release_only=st.booleans())
    def finish_probe(self, failure: bool, release_only: bool) -> None:
        ticket = self.probes.pop(0)
        if release_only:
            self.breaker.release(ticket)
            return
        self.breaker.record(ticket, failure=failure)
        if failure:
            self._open()
        else:
            self.successes += 1
            if self.successes >= 2:
                self.state, self.probes, self.successes = "closed", [], 0
                self.window.clear()

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
