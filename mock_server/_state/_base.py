"""The one place the API's state plugs in: what the resources ask of a state backend.

Two backends implement :class:`ApiState`: :class:`~mock_server._state._embedded.EmbeddedState`
(one process: SQLite or memory, today's fake) and :class:`~mock_server._state._redis.RedisState`
(any number of processes and machines sharing one Redis). The resources (profiles, generation,
OAuth, analytics, idempotency) call only these methods, never a backend's internals.

A request's rate-limit token is a :class:`Ticket`. The embedded fake takes it synchronously
before the handler runs (no await on the hot path) and passes no ticket. A shared backend takes
it together with the request's first state operation, in the same round trip (one Lua script),
so a profile read is one round trip to Redis; a request that touched no state has its ticket
taken when its handler is done. A refused ticket raises :class:`Refused`, and nothing of the
operation happened.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ApiError
from .._ratelimit import Verdict
from .._store import IdempotencyRecord, Profile
from .._tenants import RateLimit


class Ticket:
    """A request's rate-limit token, not taken yet: taken with the first state operation.

    A signed request's ``signature`` is remembered for ``signature_ttl`` seconds in the same
    round trip, before the token: one seen already is a replay, a 401 that costs no token
    (``replayed`` is then set, and the operation did not happen)."""

    __slots__ = ("credential", "limit", "session", "verdict", "signature", "signature_ttl", "replayed")

    def __init__(
        self,
        credential: str,
        session: str | None,
        limit: RateLimit,
        signature: str | None = None,
        signature_ttl: int = 0,
    ) -> None:
        self.credential = credential
        self.session = session
        self.limit = limit
        self.verdict: Verdict | None = None
        self.signature = signature
        self.signature_ttl = signature_ttl
        self.replayed = False


def replayed_signature() -> ApiError:
    """The 401 for a request signature used already (through any process)."""
    return ApiError(401, "this request signature was already used (replay)")


class Refused(Exception):
    """The ticket's bucket was empty: the request is a 429 and its operation did not happen."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__("rate limited")
        self.verdict = verdict


def state_unavailable(where: str) -> ApiError:
    """The contract's 503 while the shared state cannot be reached."""
    return ApiError(
        503,
        f"the shared state ({where}) cannot be reached; retry shortly",
        code="state_unavailable",
        headers={"Retry-After": "1"},
    )


#: What :meth:`ApiState.claim_idempotency` returns while another request holds the key.
PENDING = object()


class Keep:
    """An ``Idempotency-Key`` answer kept in the same round trip as the write that makes it (a
    shared state's keyed create): ``record_of`` gives the record for the written profile."""

    __slots__ = ("key", "record_of")

    def __init__(self, key: str, record_of: Callable[[Profile], IdempotencyRecord]) -> None:
        self.key = key
        self.record_of = record_of


class CopyStale(Exception):
    """A profile copy an answer was made from is not the stored version: nothing was kept."""


class KeptBefore(Exception):
    """The key of a :class:`Keep` had an answer already (``record``), or is held by a request
    still running (``record`` None: wait, then try again). Nothing was written."""

    def __init__(self, record: IdempotencyRecord | None) -> None:
        super().__init__("the Idempotency-Key has an answer already")
        self.record = record


class ApiState(ABC):
    """Profiles, idempotency records, OAuth tokens, rate-limit buckets and usage counters."""

    #: True when the state lives outside this process (several processes act as one fake).
    shared: bool = False

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def cursor_key(self, proposed: bytes) -> bytes:
        """The key every fake on this state signs page cursors with: the first one proposed."""
        return proposed

    async def settle(self) -> None:
        """Count the request's fault arrival now, if a shared state still carries it (see
        :mod:`mock_server._prelude`): before an answer that made no state operation, and
        before anything the request changes in this process. Raises ``Preempted`` when a
        fault fired. The embedded state never carries one."""
        return None

    # -- rate limits ---------------------------------------------------------------------
    @abstractmethod
    async def admit(self, ticket: Ticket) -> Verdict:
        """Take the ticket's token now (a request that touched no state)."""

    @abstractmethod
    async def reset_limits(self, session: str | None) -> None:
        """Refill every bucket, or only those of one session (an admin reset)."""

    # -- profiles ------------------------------------------------------------------------
    @abstractmethod
    async def get_profile(self, tenant: str, name: str, ticket: Ticket | None) -> Profile | None: ...

    @abstractmethod
    async def page(
        self, tenant: str, after: str | None, limit: int, ticket: Ticket | None
    ) -> tuple[list[Profile], bool]:
        """Up to ``limit`` profiles after ``after`` in name order, and whether more exist."""

    @abstractmethod
    async def create_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any],
        ticket: Ticket | None,
        keep: Keep | None = None,
    ) -> Profile:
        """The new profile; a 409 ApiError if the name is taken. ``keep`` (a shared state only)
        keeps the answer for its key with the write, or raises :class:`KeptBefore`."""

    @abstractmethod
    async def update_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any] | None,
        if_match: str | None,
        ticket: Ticket | None,
    ) -> Profile:
        """The replaced profile (``metadata`` None keeps the current); 404 or 412 ApiError."""

    @abstractmethod
    async def delete_profile(
        self, tenant: str, name: str, if_match: str | None, ticket: Ticket | None
    ) -> None:
        """Remove a profile; 404 or 412 ApiError."""

    # -- idempotency ---------------------------------------------------------------------
    @abstractmethod
    async def claim_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | object | None:
        """The stored record of ``key``; :data:`PENDING` while another request holds it;
        None: the caller now holds it and must :meth:`put_idempotency` or :meth:`release_idempotency`."""

    async def keep_idempotency(
        self,
        tenant: str,
        key: str,
        record: IdempotencyRecord,
        ticket: Ticket | None,
        made_from: Profile | None = None,
    ) -> IdempotencyRecord | object | None:
        """Keep ``record`` as ``key``'s answer unless the key has one (returned, and kept) or is
        held (:data:`PENDING`); None: kept. For answers that changed nothing to compute first:
        a shared state does it in one round trip. ``made_from``: the copy of a profile (from
        :meth:`copy_of`) the answer was made from; unless that profile is still at that
        version, nothing is kept and :class:`CopyStale` is raised (the copy is then current)."""
        found = await self.claim_idempotency(tenant, key, ticket)
        if found is None:
            await self.put_idempotency(tenant, key, record)
        return found

    def copy_of(self, tenant: str, name: str) -> Profile | None:
        """This process's latest copy of a profile, which may be stale (None: it keeps none).
        Only for answers kept with :meth:`keep_idempotency`, which checks it is current."""
        return None

    @abstractmethod
    async def find_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | None:
        """``key``'s kept answer, if it has one (held or not: this only looks)."""

    @abstractmethod
    async def wait_idempotency(self, tenant: str, key: str) -> None:
        """Until the request holding ``key`` may be done (then claim again)."""

    @abstractmethod
    async def put_idempotency(self, tenant: str, key: str, record: IdempotencyRecord) -> None: ...

    @abstractmethod
    async def release_idempotency(self, tenant: str, key: str) -> None: ...

    # -- OAuth tokens --------------------------------------------------------------------
    @abstractmethod
    async def issue_token(self, client_id: str, secret: str) -> tuple[str, int] | None:
        """A new access token and its lifetime for valid client credentials, else None."""

    @abstractmethod
    async def resolve_token(self, token: str) -> None:
        """Make a token issued by another process known to this one's authenticator."""

    # -- analytics -----------------------------------------------------------------------
    @abstractmethod
    def record(self, tenant: str, endpoint: str, status: int, started: float, duration: float) -> None:
        """Count one authenticated request (in memory; written out in batches)."""

    @abstractmethod
    async def flush(self) -> None:
        """Write the counted requests out."""

    @abstractmethod
    async def usage(
        self, tenant: str, first_day: str, last_day: str, ticket: Ticket | None
    ) -> list[tuple[str, str, int, int]]:
        """(day, endpoint, status, count) rows of one tenant, days inclusive, unflushed ones too."""

    @abstractmethod
    def performance(self, tenant: str, timeframe: str) -> dict[str, Any]:
        """Latency and error figures of this process's recent requests."""
