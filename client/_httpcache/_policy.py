"""What the private cache keeps and for how long."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from .._clock import Clock, monotonic, wall
from .._errors import ConfigError

__all__ = ["CachePolicy", "CachePolicyError"]


class CachePolicyError(ConfigError):
    """A cache policy field has a bad value (the message names it)."""


def _seconds(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CachePolicyError(f"{name} must be a number of seconds, got {value!r}")
    result = float(value)
    if result != result or result < 0 or result == float("inf"):
        raise CachePolicyError(f"{name} must be a finite non-negative number of seconds, got {value!r}")
    return result


@dataclass(frozen=True, kw_only=True, slots=True)
class CachePolicy:
    """What the private cache keeps and for how long.

    Defaults: at most ``max_entries`` 512 responses and ``max_total_bytes`` 64 MiB of bodies
    (least recently used evicted first), none larger than ``max_entry_bytes`` 1 MiB;
    ``stale_if_error`` 0 s: how long past its freshness a stored response may stand in when the
    origin fails (a response's own ``stale-if-error=N`` extends it; ``must-revalidate``,
    ``no-cache`` and ``proxy-revalidate`` forbid it); ``methods`` GET and HEAD.
    ``heuristic_fraction`` 0.1 of the time since ``Last-Modified``, at most ``heuristic_max``
    one day, is the freshness of a response without explicit freshness (RFC 9111 §4.2.2).
    ``wall_clock`` (epoch seconds) times entries: ages are computed against ``Date``.
    """

    max_entries: int = 512
    max_entry_bytes: int = 1 << 20
    max_total_bytes: int = 64 << 20
    stale_if_error: float = 0.0
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    clock: Clock = field(default=monotonic, repr=False, compare=False)
    wall_clock: Clock = field(default=wall, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_entry_bytes", "max_total_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CachePolicyError(f"CachePolicy.{name} must be an integer >= 1, got {value!r}")
        for name in ("stale_if_error", "heuristic_max"):
            object.__setattr__(self, name, _seconds(f"CachePolicy.{name}", getattr(self, name)))
        frac = self.heuristic_fraction
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
            raise CachePolicyError(f"CachePolicy.heuristic_fraction must be in [0, 1], got {frac!r}")
        object.__setattr__(self, "heuristic_fraction", float(frac))
        methods = self.methods
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            raise CachePolicyError(f"CachePolicy.methods must be a set of method names, got {methods!r}")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))
