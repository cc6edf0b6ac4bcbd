"""The fault state: one object owning what the fault layer and its admin API share.

:class:`FaultState` holds the rule engine (rules, per-session counters, seed), the start-up
rules that a reset comes back to, the request journal, the Prometheus metrics, the requests held
by delays and timeouts, and the reset that spans them all. The request path (``_layer``) and
the admin API (``_admin``) both use it and neither imports the other's module.

The admin-facing methods are coroutines so that a shared backend (``_redis_state``, several
processes on one Redis) can implement them with round trips; here, in one process, they finish
without suspending. The request path reads ``engine``, ``journal`` and ``metrics`` directly and
never awaits anything of this class.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._prelude import Prelude
from .._untrusted import session_id
from ._engine import Decision, Engine, HeaderSource
from ._journal import Journal
from ._metrics import Metrics
from ._model import Fault, Rule, RuleSet

OnReset = Callable[[str | None], None]

#: Why a held request was let go (the value its future resolves to).
ELAPSED, GONE, CANCELLED, SHUTDOWN = "elapsed", "gone", "cancelled", "shutdown"


def _no_reset(session: str | None) -> None:
    return None


def resolve(fut: asyncio.Future[str], value: str) -> None:
    """Resolve ``fut`` with ``value`` unless something already did."""
    if not fut.done():
        fut.set_result(value)


class StateUnavailable(Exception):
    """The shared fault state cannot be reached: the request is a 503 ``state_unavailable``."""

    def __init__(self, where: str, why: str = "cannot be reached; retry shortly") -> None:
        super().__init__(f"the shared fault state ({where}) {why}")
        self.where = where


class RuleExists(Exception):
    """A rule added under an id that is taken."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


class HeldRequests:
    """Requests waiting on a delay or a timeout fault, by the future that ends the wait."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[asyncio.Future[str], str | None] = {}

    def add(self, fut: asyncio.Future[str], session: str | None) -> None:
        self._held[fut] = session

    def discard(self, fut: asyncio.Future[str]) -> None:
        self._held.pop(fut, None)

    def release(self, session: str | None = None, *, all_sessions: bool = True) -> int:
        """Let go every held request (or one session's) as cancelled; how many."""
        released = 0
        for fut, owner in list(self._held.items()):
            if all_sessions or owner == session:
                resolve(fut, CANCELLED)
                released += 1
        return released

    def __len__(self) -> int:
        return len(self._held)


class FaultState:
    """Rules, counters, journal, metrics and held requests of one fake, in this process.

    ``rules`` are the start-up rules (a reset comes back to them); ``seed`` overrides theirs
    (default 0). ``on_reset`` is called with the session (None: all) when a reset should refill
    the API's rate-limit buckets.
    """

    #: Whether the state is shared with other processes (a backend on Redis).
    shared = False

    def __init__(
        self,
        *,
        rules: RuleSet | None = None,
        seed: int | None = None,
        journal_size: int = 10_000,
        journal_max_bytes: int = 256 * 1024 * 1024,
        session_ttl: float = 600.0,
        on_reset: OnReset | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_rules = rules if rules is not None else RuleSet()
        self.engine = Engine(
            self.initial_rules,
            seed=seed if seed is not None else (self.initial_rules.seed or 0),
            clock=clock,
            session_ttl=session_ttl,
        )
        self.journal = self._new_journal(journal_size, journal_max_bytes)
        self.metrics = self._new_metrics()
        self.held = HeldRequests()
        #: API requests being served by this process.
        self.in_flight = 0
        self.clock = clock
        self._on_reset = on_reset or _no_reset

    def _new_journal(self, size: int, max_bytes: int) -> Journal:
        return Journal(size, max_bytes=max_bytes)

    def _new_metrics(self) -> Metrics:
        return Metrics()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rules={len(self.engine.rules)}, seed={self.seed})"

    @property
    def seed(self) -> int:
        return self.engine.seed

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Get ready to serve (a shared backend connects and loads here)."""

    async def close(self) -> None:
        """Stop, flushing whatever is not yet stored (nothing here)."""

    async def sync(self) -> None:
        """Bring this process's view (rules, journal) up to date before an admin read."""

    # -- the request path -----------------------------------------------------------------------

    async def arrive(
        self,
        method: str,
        path: str,
        tenant: str | None,
        session: str | None,
        headers: HeaderSource,
        header_fault: Fault | None = None,
    ) -> tuple[Decision | None, int]:
        """The decision for an arriving request and its journal sequence number.

        The layer calls the engine and the journal directly instead when the state is not
        shared (no await on that path); a shared backend counts in its store here.
        """
        if header_fault is not None:
            decision: Decision | None = self.engine.decide_header(header_fault, session)
        else:
            decision = self.engine.decide(method, path, tenant, session, headers)
        return decision, self.journal.next_seq()

    async def next_seq(self) -> int:
        """A journal sequence number for a request that no rule is asked about."""
        return self.journal.next_seq()

    async def defer(
        self,
        method: str,
        path: str,
        tenant: str | None,
        session: str | None,
        headers: HeaderSource,
        decided: Callable[[Decision | None], None],
    ) -> tuple[Prelude | None, int]:
        """The request's arrival, left for the app's first round trip to the shared store (see
        :mod:`mock_server._prelude`), and its journal sequence number. Only a shared state has a
        store to carry it to: this one decides on arrival (:meth:`arrive`) instead."""
        raise NotImplementedError("only a shared fault state defers arrivals")

    # -- rules ----------------------------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.engine.rules

    def get_rule(self, rule_id: str) -> Rule | None:
        return self.engine.get(rule_id)

    async def stats(self) -> dict[str, dict[str, int]]:
        """Every rule's match and fire totals over every session, by rule id."""
        engine = self.engine
        return {r.id: engine.stats(r.id) for r in engine.rules}

    async def add_rules(self, rules: Iterable[Rule]) -> None:
        """Append ``rules``; raises :class:`RuleExists` (adding none) when an id is taken."""
        new = list(rules)
        taken = {r.id for r in self.engine.rules}
        for rule in new:
            if rule.id in taken:
                raise RuleExists(rule.id)
            taken.add(rule.id)
        self.engine.add(new)

    async def put_rule(self, rule: Rule) -> bool:
        """Replace the rule with ``rule.id`` (its counters start again) or append it; whether it
        existed."""
        return self.engine.put(rule)

    async def delete_rule(self, rule_id: str) -> bool:
        return self.engine.delete(rule_id)

    async def set_enabled(self, rule_id: str, enabled: bool) -> Rule | None:
        """Enable or disable a rule in place, its counters kept; the rule as it now is, or None
        when there is none."""
        return self.engine.set_enabled(rule_id, enabled)

    async def replace_rules(self, rules: Iterable[Rule], seed: int | None = None) -> None:
        """Load ``rules`` in place of every rule (every counter starts again), with ``seed`` if
        given."""
        if seed is not None:
            self.engine.seed = seed
        self.engine.replace(rules)

    async def reset_rules(self) -> None:
        """Back to the start-up rules (every counter starts again)."""
        self.engine.replace(self.initial_rules.rules)

    # -- journal, held requests, reset ----------------------------------------------------------

    async def clear_journal(self, session: str | None = None) -> int:
        """Forget every journal entry, or one session's; how many were dropped."""
        return self.journal.clear(session)

    def cancel_held(self, session: str | None = None, *, all_sessions: bool = True) -> int:
        """Release requests held by delays and timeouts (every one, or one session's) with a 503."""
        return self.held.release(session, all_sessions=all_sessions)

    async def reset(self, session: str | None = None) -> dict[str, Any]:
        """Everything (rules back to the start-up set, counters, journal, rate-limit buckets, held
        requests), or one session's counters, journal entries, buckets and held requests."""
        return self.reset_local(session)

    def reset_local(self, session: str | None = None) -> dict[str, Any]:
        if session is None:
            self.engine.replace(self.initial_rules.rules)
            dropped = self.journal.clear()
            released = self.cancel_held()
        else:
            session = session_id(session)
            self.engine.reset_counters(session, all_sessions=False)
            dropped = self.journal.clear(session)
            released = self.cancel_held(session, all_sessions=False)
        self._on_reset(session)
        return {"session": session, "journal_entries_dropped": dropped, "held_requests_cancelled": released}

    # -- metrics --------------------------------------------------------------------------------

    async def render_metrics(self) -> str:
        """The Prometheus text exposition."""
        return self.metrics.render(
            rules=len(self.engine.rules),
            journal=len(self.journal),
            held=len(self.held),
            in_flight=self.in_flight,
        )
