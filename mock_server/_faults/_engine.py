"""Deciding, synchronously at arrival, which fault (if any) a request gets.

Rules are tried in order. A rule that fires with a pure ``latency`` fault adds its delay and
lets later rules fire too; the first rule that fires with any other fault decides the response
and ends the search. So a preset's background latency stacks with a file's status faults.

For each matching rule the request gets the next number ``n`` of that rule's counter in its
session (``X-Mock-Session``; no header is a session of its own). ``after``, ``every_nth`` and the
``sequence`` position follow from ``n``; the probability draw and the latency sample come from
the counter-based generator keyed by (seed, rule id, session, ``n``). Nothing depends on timing
but ``window``, so one session's schedule is the same whatever runs beside it. A session idle for
``session_ttl`` is forgotten (its counters start again), so clients that invent a session per
request cannot pin memory; at most ``max_sessions`` are kept, the least recently used going first.

The hot path is kept lean: rules are indexed by method, globs are compiled once, and a request
that matches nothing allocates nothing here. A disabled rule (``enabled: false``) is not indexed
at all: it keeps its place and counters but neither matches nor counts.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from fnmatch import translate
from typing import Any, Protocol

from ._model import Fault, Rule, RuleSet
from ._random import draws


class HeaderSource(Protocol):
    """Where a rule reads request headers from (case-insensitive names)."""

    def get(self, key: str, default: str | None = None, /) -> str | None: ...


_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HEADER_RULE = "X-Mock-Fault"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the layer does with one request.

    ``fault`` is the fault that decides the response (None: the API answers, perhaps after a
    delay); ``rule`` its rule's id; ``delay_s`` the total injected latency; ``rules`` every rule
    that fired, latency ones included.
    """

    fault: Fault | None
    rule: str | None
    delay_s: float
    rules: tuple[str, ...]


class _Counter:
    __slots__ = ("matched", "fired")

    def __init__(self) -> None:
        self.matched = 0
        self.fired = 0


class _Session:
    """One session's counters (one per rule) and its ``X-Mock-Fault`` count."""

    __slots__ = ("counters", "header_n", "seen")

    def __init__(self, seen: float) -> None:
        self.counters: dict[str, _Counter] = {}
        self.header_n = 0
        self.seen = seen


class _Compiled:
    __slots__ = ("rule", "path", "tenant", "session", "headers", "added_at")

    def __init__(self, rule: Rule, added_at: float) -> None:
        self.rule = rule
        m = rule.match
        self.path: Callable[[str], Any] | None = re.compile(translate(m.path)).match if m.path else None
        self.tenant = m.tenant
        self.session = m.session
        self.headers = m.headers
        self.added_at = added_at

    def matches(self, path: str, tenant: str | None, session: str | None, headers: HeaderSource) -> bool:
        if self.path is not None and self.path(path) is None:
            return False
        if self.tenant is not None and tenant != self.tenant:
            return False
        if self.session is not None and session != self.session:
            return False
        for name, value in self.headers:
            if headers.get(name) != value:
                return False
        return True


def _union(candidates: tuple[_Compiled, ...]) -> Callable[[str], Any] | None:
    """A matcher accepting exactly the paths some candidate's glob accepts; None when a candidate
    has no path (then every path may match)."""
    if not candidates or any(c.rule.match.path is None for c in candidates):
        return None
    globs = sorted({c.rule.match.path for c in candidates if c.rule.match.path is not None})
    return re.compile("|".join(f"(?:{translate(g)})" for g in globs)).match


class Engine:
    """The live rule set, its per-session counters, and the decisions they give."""

    def __init__(
        self,
        rules: RuleSet,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        session_ttl: float = 600.0,
        max_sessions: int = 100_000,
    ) -> None:
        if session_ttl <= 0 or max_sessions < 1:
            raise ValueError("session_ttl and max_sessions must be positive")
        self.seed = seed
        self._clock = clock
        self._ttl = session_ttl
        self._max_sessions = max_sessions
        self._compiled: list[_Compiled] = []
        self._by_method: dict[str, tuple[_Compiled, ...]] = {}
        self._other: tuple[_Compiled, ...] = ()
        self._prefilter: dict[str | None, Callable[[str], Any] | None] = {}
        # Requests without a session share one that never expires; the others are kept in
        # least-recently-used order, so the idle ones are at the front.
        self._anonymous = _Session(0.0)
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        # Totals per rule over every session, expired ones included.
        self._totals: dict[str, _Counter] = {}
        self.replace(rules.rules)

    # -- the rule set ---------------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(c.rule for c in self._compiled)

    def get(self, rule_id: str) -> Rule | None:
        for c in self._compiled:
            if c.rule.id == rule_id:
                return c.rule
        return None

    def load(self, rules: Iterable[tuple[Rule, float]]) -> None:
        """Load rules with the clock reading at which each was added (its window's origin),
        keeping the counters: a shared backend keeps its counters elsewhere and only matches here."""
        self._compiled = [_Compiled(rule, added_at) for rule, added_at in rules]
        self._index()

    def replace(self, rules: Iterable[Rule]) -> None:
        """Load ``rules`` in place of every rule (all counters start again)."""
        now = self._clock()
        self._compiled = [_Compiled(rule, now) for rule in rules]
        self._forget_sessions()
        self._index()

    def add(self, rules: Iterable[Rule]) -> None:
        """Append new rules; the caller has checked that their ids are free."""
        now = self._clock()
        self._compiled.extend(_Compiled(rule, now) for rule in rules)
        self._index()

    def put(self, rule: Rule) -> bool:
        """Replace the rule with ``rule.id`` in place (its counters and window start again), or
        append it; whether it existed."""
        now = self._clock()
        self._forget(rule.id)
        for i, c in enumerate(self._compiled):
            if c.rule.id == rule.id:
                self._compiled[i] = _Compiled(rule, now)
                self._index()
                return True
        self._compiled.append(_Compiled(rule, now))
        self._index()
        return False

    def set_enabled(self, rule_id: str, enabled: bool) -> Rule | None:
        """Enable or disable the rule ``rule_id`` where it stands, keeping its counters and its
        window's origin; the rule as it now is, or None when there is none."""
        for i, c in enumerate(self._compiled):
            if c.rule.id == rule_id:
                if c.rule.enabled != enabled:
                    self._compiled[i] = _Compiled(replace(c.rule, enabled=enabled), c.added_at)
                    self._index()
                return self._compiled[i].rule
        return None

    def delete(self, rule_id: str) -> bool:
        before = len(self._compiled)
        self._compiled = [c for c in self._compiled if c.rule.id != rule_id]
        self._forget(rule_id)
        self._index()
        return len(self._compiled) != before

    def reset_counters(self, session: str | None = None, *, all_sessions: bool = True) -> None:
        """Start every counter again, or only one session's (``all_sessions=False``)."""
        if all_sessions:
            self._forget_sessions()
            return
        state = self._anonymous if session is None else self._sessions.pop(session, None)
        if state is None:
            return
        for rule_id, counter in state.counters.items():
            total = self._totals.get(rule_id)
            if total is not None:
                total.matched -= counter.matched
                total.fired -= counter.fired
        if session is None:
            self._anonymous = _Session(0.0)

    def stats(self, rule_id: str) -> dict[str, int]:
        """How many requests a rule matched and fired on, over every session."""
        total = self._totals.get(rule_id)
        return {"matched": total.matched, "fired": total.fired} if total else {"matched": 0, "fired": 0}

    @property
    def sessions(self) -> int:
        """How many sessions have state (the anonymous one not counted)."""
        return len(self._sessions)

    def _forget_sessions(self) -> None:
        self._anonymous = _Session(0.0)
        self._sessions.clear()
        self._totals.clear()

    def _forget(self, rule_id: str) -> None:
        self._totals.pop(rule_id, None)
        self._anonymous.counters.pop(rule_id, None)
        for state in self._sessions.values():
            state.counters.pop(rule_id, None)

    def _session(self, session: str | None, now: float) -> _Session:
        """The state of ``session``, marked as used at ``now``; a fresh one if it was idle too long."""
        if session is None:
            return self._anonymous
        sessions = self._sessions
        state = sessions.get(session)
        if state is None:
            self._expire(now)
            state = sessions[session] = _Session(now)
        elif now - state.seen >= self._ttl:
            # Idle too long but not yet swept: forgotten all the same.
            state = sessions[session] = _Session(now)
            sessions.move_to_end(session)
        else:
            state.seen = now
            sessions.move_to_end(session)
        return state

    def _expire(self, now: float) -> None:
        # Called as a session is added, so the sweep costs O(1) per new session, amortised.
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) < self._max_sessions and now - oldest.seen < self._ttl:
                return
            sessions.popitem(last=False)

    def _index(self) -> None:
        # Disabled rules are left out of the index: they neither match nor count.
        compiled = [c for c in self._compiled if c.rule.enabled]
        self._by_method = {
            method: tuple(
                c for c in compiled if c.rule.match.methods is None or method in c.rule.match.methods
            )
            for method in _HTTP_METHODS
        }
        self._other = tuple(c for c in compiled if c.rule.match.methods is None)
        # One alternation of every candidate's path glob: a path it rejects matches no rule, so
        # a request that no rule applies to costs one regex search however many rules there are.
        self._prefilter = {method: _union(cands) for method, cands in self._by_method.items()}
        self._prefilter[None] = _union(self._other)

    # -- decisions ------------------------------------------------------------------------------

    def decide(
        self, method: str, path: str, tenant: str | None, session: str | None, headers: HeaderSource
    ) -> Decision | None:
        """The decision for one arriving request; None when no rule fires."""
        candidates = self._by_method.get(method)
        if candidates is None:
            candidates = self._other
            prefilter = self._prefilter[None]
        else:
            prefilter = self._prefilter[method]
        if not candidates or (prefilter is not None and prefilter(path) is None):
            return None
        delay = 0.0
        fired: list[str] | None = None
        now: float | None = None
        state: _Session | None = None
        for c in candidates:
            if not c.matches(path, tenant, session, headers):
                continue
            rule = c.rule
            if now is None:
                now = self._clock()
            if rule.window is not None:
                elapsed = now - c.added_at
                if not rule.window.start_s <= elapsed < rule.window.start_s + rule.window.duration_s:
                    continue
            if state is None:
                state = self._session(session, now)
            counter = state.counters.get(rule.id)
            if counter is None:
                counter = state.counters[rule.id] = _Counter()
            total = self._totals.get(rule.id)
            if total is None:
                total = self._totals[rule.id] = _Counter()
            counter.matched += 1
            total.matched += 1
            n = counter.matched
            fault = self._fault_for(rule, n, session)
            if fault is None:
                continue
            if rule.times is not None and counter.fired >= rule.times:
                continue
            counter.fired += 1
            total.fired += 1
            if fired is None:
                fired = []
            fired.append(rule.id)
            if fault.latency is not None:
                delay += self._sample(fault, rule.id, session, n)
            if fault.terminal:
                return Decision(fault, rule.id, delay, tuple(fired))
        if fired is None:
            return None
        return Decision(None, None, delay, tuple(fired))

    def matching(
        self, method: str, path: str, tenant: str | None, session: str | None, headers: HeaderSource
    ) -> list[Rule]:
        """The rules that match a request and are inside their window, in order; nothing counted.

        A shared backend counts them elsewhere: the first ones up to a terminal fault that fires
        are those :meth:`decide` would count.
        """
        candidates = self._by_method.get(method)
        if candidates is None:
            candidates = self._other
            prefilter = self._prefilter[None]
        else:
            prefilter = self._prefilter[method]
        if not candidates or (prefilter is not None and prefilter(path) is None):
            return []
        found: list[Rule] = []
        now: float | None = None
        for c in candidates:
            if not c.matches(path, tenant, session, headers):
                continue
            rule = c.rule
            if rule.window is not None:
                if now is None:
                    now = self._clock()
                elapsed = now - c.added_at
                if not rule.window.start_s <= elapsed < rule.window.start_s + rule.window.duration_s:
                    continue
            found.append(rule)
        return found

    def sample(self, fault: Fault, rule_id: str, session: str | None, n: int) -> float:
        """The delay of latency ``fault`` for the ``n``-th request of ``session`` that
        ``rule_id`` counted (seconds)."""
        return self._sample(fault, rule_id, session, n)

    def _fault_for(self, rule: Rule, n: int, session: str | None) -> Fault | None:
        k = n - rule.after
        if k <= 0:
            return None
        if rule.sequence is not None:
            fault = rule.sequence[k - 1] if k <= len(rule.sequence) else None
        else:
            if rule.every_nth is not None and k % rule.every_nth:
                return None
            fault = rule.fault
        if fault is None:
            return None
        if rule.probability < 1.0 and draws(self.seed, rule.id, session, n, "p")[0] >= rule.probability:
            return None
        return fault

    def _sample(self, fault: Fault, rule_id: str, session: str | None, n: int) -> float:
        latency = fault.latency
        assert latency is not None
        if latency.kind == "fixed":
            return latency.a / 1000.0
        u1, u2 = draws(self.seed, rule_id, session, n, "latency")
        return latency.sample_ms(u1, u2) / 1000.0

    def decide_header(self, fault: Fault, session: str | None) -> Decision:
        """The decision for a fault asked for with ``X-Mock-Fault`` (rules are not consulted)."""
        state = self._session(session, self._clock())
        state.header_n += 1
        n = state.header_n
        delay = self._sample(fault, HEADER_RULE, session, n) if fault.latency is not None else 0.0
        return Decision(fault if fault.terminal else None, HEADER_RULE, delay, (HEADER_RULE,))
