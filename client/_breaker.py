"""Circuit breaker: stop sending to a host that keeps failing, then probe it carefully.

Closed: calls flow and their outcomes fill a count-based sliding window; once it holds at least
``min_calls`` results and the failure share reaches ``failure_rate``, the breaker opens. Open:
calls fail at once with :class:`CircuitOpen`, nothing is sent. After ``open_for`` seconds it
turns half-open: at most ``half_open_permits`` probes may be in flight at any moment; one failed
probe reopens it, ``half_open_permits`` successful ones close it with a fresh window.

The lock guards only counters; no I/O happens under it (pybreaker holds its lock around the
whole call and thereby serialises every request). A closed breaker admits a call without
taking the lock at all.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ._clock import Clock, monotonic, to_seconds
from ._errors import CircuitOpen, ConfigError

__all__ = [
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "Ticket",
]

logger = logging.getLogger("client")


class BreakerState(enum.Enum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A state change, as told to listeners."""

    host: str
    old: BreakerState
    new: BreakerState
    at: float
    failure_rate: float


def _default_failure_statuses() -> frozenset[int]:
    return frozenset({429, *range(500, 600)})


def _no_listeners() -> tuple[Callable[[BreakerTransition], None], ...]:
    return ()


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    """When a host's breaker opens and how it recovers.

    Defaults: a window of the last 20 calls; opens once at least 10 (``min_calls``) are in the
    window and half or more (``failure_rate`` 0.5) failed; stays open 30 s (``open_for``); one
    probe at a time when half-open (``half_open_permits``). A failure is a transport error (when
    ``count_transport_errors``) or a status in ``failure_statuses`` (429 and 5xx by default).
    ``listeners`` are called, outside any lock, with every :class:`BreakerTransition`.
    """

    window: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    open_for: float = 30.0
    half_open_permits: int = 1
    failure_statuses: frozenset[int] = field(default_factory=_default_failure_statuses)
    count_transport_errors: bool = True
    listeners: tuple[Callable[[BreakerTransition], None], ...] = field(
        default_factory=_no_listeners, compare=False
    )
    clock: Clock = field(default=monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("window", "min_calls", "half_open_permits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"BreakerPolicy.{name} must be an integer >= 1, got {value!r}")
        if self.min_calls > self.window:
            raise ConfigError(
                f"BreakerPolicy.min_calls ({self.min_calls}) must not exceed "
                f"BreakerPolicy.window ({self.window})"
            )
        if not 0 < self.failure_rate <= 1:
            raise ConfigError(f"BreakerPolicy.failure_rate must be within (0, 1], got {self.failure_rate!r}")
        object.__setattr__(self, "open_for", to_seconds("BreakerPolicy.open_for", self.open_for))
        object.__setattr__(self, "failure_statuses", frozenset(self.failure_statuses))
        object.__setattr__(self, "listeners", tuple(self.listeners))

    def is_failure(self, status: int | None) -> bool:
        """Whether an outcome counts against the host: ``status`` ``None`` means a transport error."""
        if status is None:
            return self.count_transport_errors
        return status in self.failure_statuses


class Ticket:
    """Admission to one call; hand it back with :meth:`CircuitBreaker.record` or ``release``."""

    __slots__ = ("generation", "probe")

    def __init__(self, generation: int, probe: bool) -> None:
        self.generation = generation
        self.probe = probe

    def __repr__(self) -> str:
        return f"Ticket(generation={self.generation}, probe={self.probe})"


class CircuitBreaker:
    """The running state of one host's breaker."""

    def __init__(
        self,
        policy: BreakerPolicy,
        host: str,
        *,
        extra_listeners: tuple[Callable[[BreakerTransition], None], ...] = (),
    ) -> None:
        self.policy = policy
        self.host = host
        self._listeners = policy.listeners + extra_listeners
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._free: Ticket | None = Ticket(0, False)
        self._ring = bytearray(policy.window)
        self._pos = 0
        self._count = 0
        self._failures = 0
        self._open_until = 0.0
        self._in_flight = 0
        self._successes = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose time is up still reads open until asked)."""
        return self._state

    @property
    def in_flight_probes(self) -> int:
        """Half-open probes admitted and not yet recorded or released."""
        return self._in_flight

    def failure_rate(self) -> float:
        """The failure share of the current window (0 when empty)."""
        with self._lock:
            return self._failures / self._count if self._count else 0.0

    def acquire(self) -> Ticket:
        """Admit a call, or raise :class:`CircuitOpen` without touching the network."""
        free = self._free
        if free is not None:
            return free
        transitions: list[BreakerTransition] = []
        try:
            with self._lock:
                if self._state is BreakerState.CLOSED:
                    assert self._free is not None
                    return self._free
                now = self.policy.clock()
                if self._state is BreakerState.OPEN:
                    if now < self._open_until:
                        raise CircuitOpen(
                            f"circuit open for {self.host}; retry in {self._open_until - now:.1f} s",
                            host=self.host,
                            retry_in=self._open_until - now,
                        )
                    self._move(BreakerState.HALF_OPEN, now, transitions)
                if self._in_flight >= self.policy.half_open_permits:
                    raise CircuitOpen(
                        f"circuit half-open for {self.host}; "
                        f"all {self.policy.half_open_permits} probe permits in use",
                        host=self.host,
                        retry_in=0.0,
                    )
                self._in_flight += 1
                return Ticket(self._generation, True)
        finally:
            self._notify(transitions)

    def record(self, ticket: Ticket, *, failure: bool) -> None:
        """Record the outcome of an admitted call."""
        transitions: list[BreakerTransition] = []
        with self._lock:
            if ticket.generation != self._generation:
                return  # admitted before the last transition: its outcome describes the past
            if ticket.probe:
                now = self.policy.clock()
                self._in_flight -= 1
                if failure:
                    self._move(BreakerState.OPEN, now, transitions)
                else:
                    self._successes += 1
                    if self._successes >= self.policy.half_open_permits:
                        self._move(BreakerState.CLOSED, now, transitions)
            else:
                ring = self._ring
                if self._count == len(ring):
                    self._failures -= ring[self._pos]
                else:
                    self._count += 1
                ring[self._pos] = 1 if failure else 0
                self._failures += ring[self._pos]
                self._pos = (self._pos + 1) % len(ring)
                if (
                    self._count >= self.policy.min_calls
                    and self._failures >= self.policy.failure_rate * self._count
                ):
                    self._move(BreakerState.OPEN, self.policy.clock(), transitions)
        if transitions:
            self._notify(transitions)

    def release(self, ticket: Ticket) -> None:
        """Give back an admission whose call never produced an outcome."""
        if not ticket.probe:
            return
        with self._lock:
            if ticket.generation == self._generation and self._in_flight > 0:
                self._in_flight -= 1

    def _move(self, new: BreakerState, now: float, transitions: list[BreakerTransition]) -> None:
        rate = self._failures / self._count if self._count else 0.0
        old = self._state
        self._state = new
        self._generation += 1
        self._in_flight = 0
        self._successes = 0
        if new is BreakerState.OPEN:
            self._open_until = now + self.policy.open_for
            self._free = None
        elif new is BreakerState.CLOSED:
            self._ring = bytearray(self.policy.window)
            self._pos = self._count = self._failures = 0
            self._free = Ticket(self._generation, False)
        else:
            self._free = None
        transitions.append(BreakerTransition(self.host, old, new, now, rate))

    def _notify(self, transitions: list[BreakerTransition]) -> None:
        for transition in transitions:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "circuit %s: %s -> %s (failure rate %.2f)",
                    transition.host,
                    transition.old.value,
                    transition.new.value,
                    transition.failure_rate,
                )
            for listener in self._listeners:
                try:
                    listener(transition)
                except Exception:
                    # A broken listener must not break the call that happened to trip the breaker.
                    logger.exception("circuit breaker listener failed")

    def __repr__(self) -> str:
        return f"CircuitBreaker(host={self.host!r}, state={self._state.value})"


class BreakerRegistry:
    """One :class:`CircuitBreaker` per host key (``scheme://host:port``), created on first use."""

    def __init__(
        self, policy: BreakerPolicy, *, extra_listeners: tuple[Callable[[BreakerTransition], None], ...] = ()
    ) -> None:
        self.policy = policy
        self._extra = extra_listeners
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> CircuitBreaker:
        """The breaker for ``host``."""
        breaker = self._breakers.get(host)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(host)
                if breaker is None:
                    breaker = CircuitBreaker(self.policy, host, extra_listeners=self._extra)
                    self._breakers[host] = breaker
        return breaker

    def states(self) -> dict[str, BreakerState]:
        """Each known host's state."""
        return {host: b.state for host, b in list(self._breakers.items())}
