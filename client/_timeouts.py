"""Timeouts: connect and read per attempt, and a total deadline over every attempt of a call."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._clock import Clock, monotonic, to_seconds
from ._errors import DeadlineExceeded

__all__ = ["Deadline", "Timeouts"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """How long a call may take.

    ``connect`` bounds each TCP/TLS connect (default 3.05 s, just over a SYN retransmit);
    ``read`` bounds each wait for bytes from the server (default 10 s); ``total`` bounds the
    whole logical call, retries, backoff sleeps and rate-limit waits included (default 30 s,
    ``None`` for no limit). Attempt timeouts shrink to what is left of ``total``.
    """

    connect: float = 3.05
    read: float = 10.0
    total: float | None = 30.0
    clock: Clock = field(default=monotonic, repr=False, compare=False)
    #: ``(connect, read)`` of a call's first attempt, sent as its deadline begins: clipped to
    #: the whole ``total`` (what ``for_attempt`` gives then, without reading the clock).
    first_attempt: tuple[float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "connect", to_seconds("Timeouts.connect", self.connect, allow_zero=False))
        object.__setattr__(self, "read", to_seconds("Timeouts.read", self.read, allow_zero=False))
        if self.total is not None:
            object.__setattr__(self, "total", to_seconds("Timeouts.total", self.total, allow_zero=False))
        left = self.total if self.total is not None else float("inf")
        object.__setattr__(self, "first_attempt", (min(self.connect, left), min(self.read, left)))

    def deadline(self, now: float | None = None) -> Deadline:
        """A deadline starting now (``now``: this clock's reading, when the caller has it)."""
        if self.total is None:
            return Deadline(None, self.clock)
        return Deadline((self.clock() if now is None else now) + self.total, self.clock)

    def for_attempt(self, deadline: Deadline) -> tuple[float, float]:
        """``(connect, read)`` for the next attempt, clipped to the time left."""
        left = deadline.remaining()
        if left <= 0:
            raise DeadlineExceeded("the total deadline ran out before the next attempt")
        return (min(self.connect, left), min(self.read, left))


class Deadline:
    """The point in (monotonic) time a logical call must finish by; ``None`` for never."""

    __slots__ = ("clock", "expires_at")

    def __init__(self, expires_at: float | None, clock: Clock = monotonic) -> None:
        self.expires_at = expires_at
        self.clock = clock

    def remaining(self) -> float:
        """Seconds left, ``inf`` without a deadline, never negative."""
        if self.expires_at is None:
            return float("inf")
        return max(0.0, self.expires_at - self.clock())

    def allows(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` from now still ends strictly before the deadline."""
        return self.expires_at is None or self.clock() + seconds < self.expires_at

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f})"
