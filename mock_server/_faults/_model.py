"""The fault model as immutable values: latency distributions, faults, matches, rules, rule sets.

Values are built only by the parser (``_parse``), which validates them; each has ``to_dict``
giving back the contract's format, so ``parse_rule(rule.to_dict()) == rule``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ._errors import FaultConfigError

LatencyKind = Literal["fixed", "uniform", "normal", "lognormal"]
FaultType = Literal[
    "latency",
    "status",
    "timeout",
    "reset",
    "close",
    "truncate",
    "malformed_json",
    "wrong_content_type",
    "slow_body",
]
FAULT_TYPES: tuple[str, ...] = get_args(FaultType)
When = Literal["before", "after"]
WHEN: tuple[str, ...] = get_args(When)
#: Faults after which the request may or may not have been processed: the client cannot know.
CONNECTION_FAULTS = frozenset({"timeout", "reset", "close", "truncate"})


@dataclass(frozen=True, slots=True)
class Latency:
    """A delay distribution in milliseconds; ``a`` and ``b`` are its two parameters.

    fixed: ``a`` ms; uniform: ``a``..``b``; normal: mean ``a``, sd ``b``;
    lognormal: median ``a``, sigma ``b``.
    """

    kind: LatencyKind
    a: float
    b: float = 0.0

    def sample_ms(self, u1: float, u2: float) -> float:
        """The delay for two independent uniforms in [0, 1): a pure function, so replayable."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return self.a + (self.b - self.a) * u1
        # Box-Muller: 1 - u1 is in (0, 1], so the log is finite.
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
        if self.kind == "normal":
            return max(0.0, self.a + self.b * z)
        return self.a * math.exp(self.b * z)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"fixed_ms": self.a}
        if self.kind == "uniform":
            return {"uniform": {"min_ms": self.a, "max_ms": self.b}}
        if self.kind == "normal":
            return {"normal": {"mean_ms": self.a, "sd_ms": self.b}}
        return {"lognormal": {"median_ms": self.a, "sigma": self.b}}


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """A ``Retry-After`` of ``seconds``, sent as delta-seconds or as an HTTP-date."""

    seconds: int
    http_date: bool = False

    def to_dict(self) -> int | dict[str, Any]:
        return {"seconds": self.seconds, "format": "http-date"} if self.http_date else self.seconds


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault; the fields that do not belong to ``type`` are None.

    ``latency`` combines with any type (for type ``latency`` it is the whole fault).
    """

    type: FaultType
    latency: Latency | None = None
    status: int | None = None
    retry_after: RetryAfter | None = None
    message: str | None = None
    hang_s: float | None = None
    fraction: float | None = None
    bytes_per_s: float | None = None
    chunk_delay_ms: float | None = None
    chunk_bytes: int | None = None
    content_type: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the fault decides the response (every type but pure latency)."""
        return self.type != "latency"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "latency":
            if self.latency is not None:
                out.update(self.latency.to_dict())
            return out
        for name in (
            "status",
            "message",
            "hang_s",
            "fraction",
            "bytes_per_s",
            "chunk_delay_ms",
            "chunk_bytes",
            "content_type",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after.to_dict()
        if self.latency is not None:
            out["latency"] = self.latency.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule applies to; None (or empty) matches anything."""

    methods: frozenset[str] | None = None
    path: str | None = None
    tenant: str | None = None
    session: str | None = None
    #: (lower-cased name, exact value) pairs; every one must be present.
    headers: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.methods is not None:
            methods = sorted(self.methods)
            out["method"] = methods[0] if len(methods) == 1 else methods
        for name in ("path", "tenant", "session"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.headers:
            out["headers"] = dict(self.headers)
        return out


@dataclass(frozen=True, slots=True)
class Window:
    """Active from ``start_s`` for ``duration_s`` seconds after the rule was added."""

    start_s: float
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "duration_s": self.duration_s}


@dataclass(frozen=True, slots=True)
class Rule:
    """A fault rule: when it matches and which fault it injects.

    Exactly one of ``fault`` and ``sequence`` is set. In a sequence, None stands for ``ok``
    (no fault); after the sequence ends every request is ok.
    """

    id: str
    match: Match = field(default_factory=Match)
    fault: Fault | None = None
    sequence: tuple[Fault | None, ...] | None = None
    every_nth: int | None = None
    probability: float = 1.0
    times: int | None = None
    after: int = 0
    window: Window | None = None
    #: ``before``: the fault answers instead of the API (or upstream); ``after``: the API acts
    #: first and the client gets the fault instead of its answer (the lost answer).
    when: When = "before"
    #: A disabled rule keeps its place and its counters but neither matches nor counts.
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        match = self.match.to_dict()
        if match:
            out["match"] = match
        if self.fault is not None:
            out["fault"] = self.fault.to_dict()
        if self.sequence is not None:
            out["sequence"] = ["ok" if f is None else f.to_dict() for f in self.sequence]
        if self.every_nth is not None:
            out["every_nth"] = self.every_nth
        if self.probability != 1.0:
            out["probability"] = self.probability
        if self.times is not None:
            out["times"] = self.times
        if self.after:
            out["after"] = self.after
        if self.window is not None:
            out["window"] = self.window.to_dict()
        if self.when != "before":
            out["when"] = self.when
        if not self.enabled:
            out["enabled"] = False
        return out


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An ordered set of rules with unique ids, and the seed of their random decisions.

    ``a + b`` appends ``b``'s rules to ``a``'s (ids must stay unique); the seed is ``a``'s,
    else ``b``'s.
    """

    rules: tuple[Rule, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                raise FaultConfigError(("rules", i, "id"), f"duplicate id {rule.id!r}")
            seen.add(rule.id)

    def __add__(self, other: RuleSet) -> RuleSet:
        if not isinstance(other, RuleSet):
            return NotImplemented
        return RuleSet(self.rules + other.rules, self.seed if self.seed is not None else other.seed)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seed is not None:
            out["seed"] = self.seed
        out["rules"] = [rule.to_dict() for rule in self.rules]
        return out
