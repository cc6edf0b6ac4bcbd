"""The embedded state of one fake process: SQLite (or memory) and in-process maps.

This is today's fake, dependency-free: profiles are read from the store's in-memory mirror,
buckets live in :class:`RateLimiter` (the API takes a token synchronously, so it passes no
ticket here), tokens in the :class:`Authenticator`, usage counters in memory, flushed to
SQLite every two seconds and on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .._auth import Authenticator
from .._errors import ApiError
from .._ratelimit import RateLimiter, Verdict
from .._store import IdempotencyRecord, Profile, Store
from .._traffic import Traffic
from ._base import PENDING, ApiState, Keep, Ticket


def check_if_match(if_match: str | None, profile: Profile) -> None:
    """A 412 unless ``If-Match`` names the profile's current ETag (or is absent)."""
    if if_match is not None and not etag_matches(if_match, profile.etag):
        raise ApiError(412, f"If-Match does not match the current ETag {profile.etag}")


def etag_matches(header: str, etag: str) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` value names ``etag`` (weak comparison)."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def not_found(name: str) -> ApiError:
    return ApiError(404, f"no profile named {name!r}")


class EmbeddedState(ApiState):
    """State in this process: a :class:`Store`, the limiter, the authenticator's tokens."""

    shared = False

    def __init__(
        self,
        store: Store,
        *,
        limiter: RateLimiter,
        auth: Authenticator,
        traffic: Traffic,
        idempotency_ttl: float,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.auth = auth
        self.traffic = traffic
        self._idempotency_ttl = idempotency_ttl
        # Keys whose first request is running: concurrent repeats wait for it, then replay it.
        self._held: dict[tuple[str, str], asyncio.Event] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.store.open()
        await self.store.idempotency_purge(self._idempotency_ttl)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
        await self.flush()
        await self.store.close()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self.flush()

    # -- rate limits ---------------------------------------------------------------------
    async def admit(self, ticket: Ticket) -> Verdict:
        return self.limiter.take(ticket.credential, ticket.session, ticket.limit)

    async def reset_limits(self, session: str | None) -> None:
        self.limiter.reset(session)

    # -- profiles ------------------------------------------------------------------------
    async def get_profile(self, tenant: str, name: str, ticket: Ticket | None) -> Profile | None:
        return self.store.get(tenant, name)

    async def page(
        self, tenant: str, after: str | None, limit: int, ticket: Ticket | None
    ) -> tuple[list[Profile], bool]:
        return self.store.page(tenant, after, limit)

    async def create_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any],
        ticket: Ticket | None,
        keep: Keep | None = None,
    ) -> Profile:
        assert keep is None, "the embedded state claims keys before it writes"
        store = self.store
        async with store.write_lock:
            if store.get(tenant, name) is not None:
                raise ApiError(409, f"profile {name!r} already exists")
            return await store.create(tenant, name, hrv, metadata)

    async def update_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any] | None,
        if_match: str | None,
        ticket: Ticket | None,
    ) -> Profile:
        store = self.store
        async with store.write_lock:
            current = store.get(tenant, name)
            if current is None:
                raise not_found(name)
            check_if_match(if_match, current)
            return await store.update(current, hrv, current.metadata if metadata is None else metadata)

    async def delete_profile(
        self, tenant: str, name: str, if_match: str | None, ticket: Ticket | None
    ) -> None:
        store = self.store
        async with store.write_lock:
            current = store.get(tenant, name)
            if current is None:
                raise not_found(name)
            check_if_match(if_match, current)
            await store.delete(current)

    # -- idempotency ---------------------------------------------------------------------
    async def claim_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | object | None:
        held = self._held.get((tenant, key))
        if held is not None:
            return PENDING
        record = await self.store.idempotency_get(tenant, key, self._idempotency_ttl)
        if record is not None:
            return record
        if (tenant, key) in self._held:  # claimed while this one read the store
            return PENDING
        self._held[(tenant, key)] = asyncio.Event()
        return None

    async def find_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | None:
        return await self.store.idempotency_get(tenant, key, self._idempotency_ttl)

    async def wait_idempotency(self, tenant: str, key: str) -> None:
        """Until the request holding ``key`` is done (a concurrent repeat then replays it)."""
        held = self._held.get((tenant, key))
        if held is not None:
            await held.wait()

    async def put_idempotency(self, tenant: str, key: str, record: IdempotencyRecord) -> None:
        try:
            await self.store.idempotency_put(tenant, key, record)
        finally:
            await self.release_idempotency(tenant, key)

    async def release_idempotency(self, tenant: str, key: str) -> None:
        held = self._held.pop((tenant, key), None)
        if held is not None:
            held.set()

    # -- OAuth tokens --------------------------------------------------------------------
    async def issue_token(self, client_id: str, secret: str) -> tuple[str, int] | None:
        return self.auth.issue_token(client_id, secret)

    async def resolve_token(self, token: str) -> None:
        return None

    # -- analytics -----------------------------------------------------------------------
    def record(self, tenant: str, endpoint: str, status: int, started: float, duration: float) -> None:
        self.traffic.record(tenant, endpoint, status, started, duration)

    async def flush(self) -> None:
        rows = self.traffic.take_pending()
        if rows:
            await self.store.add_usage(rows)

    async def usage(
        self, tenant: str, first_day: str, last_day: str, ticket: Ticket | None
    ) -> list[tuple[str, str, int, int]]:
        rows = await self.store.usage(tenant, first_day, last_day)
        return rows + self.traffic.pending_for(tenant, first_day, last_day)

    def performance(self, tenant: str, timeframe: str) -> dict[str, Any]:
        return self.traffic.performance(tenant, timeframe)
