"""``/profiles``: pages with signed cursors, and conditional requests (ETag, Last-Modified).

Reads answer ``304`` to ``If-None-Match`` / ``If-Modified-Since``; writes honour ``If-Match``
(412). The embedded fake reads a profile without an await (:meth:`Profiles.get_embedded`, the
hot path); with a shared state the read is one round trip with the rate-limit token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from .._auth import Principal
from .._cursors import Cursors
from .._errors import ApiError
from .._inputs import NAME, ProfileIn, ProfileUpdateIn, query_int
from .._request import RawResponse
from .._state import ApiState
from .._state._embedded import etag_matches
from .._store import Profile, Store
from ._common import JSON, Call, dumps, json_body
from ._idempotency import Idempotency, Keeper


def validators(profile: Profile) -> dict[str, str]:
    return {"ETag": profile.etag, "Last-Modified": profile.last_modified}


def not_modified(headers: Headers, profile: Profile) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        return etag_matches(inm, profile.etag)
    ims = headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError, IndexError, OverflowError):
        # Not an HTTP-date (a year of 11 digits, say): RFC 9110 §13.1.3 says ignore it.
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return int(profile.updated_at) <= since.timestamp()


def own(p: Principal, request: Request) -> tuple[str, str]:
    """The path's tenant and profile name: 403 for another tenant's, 422 for a bad name."""
    tenant = request.path_params["tenant"]
    name = request.path_params["profile_name"]
    if tenant != p.tenant.name:
        raise ApiError(403, "profiles of another tenant are not visible to this credential")
    if not NAME.fullmatch(name):
        raise ApiError(
            422,
            "profile_name: must be 1..64 characters of [A-Za-z0-9_.-], starting with a"
            " letter, digit or underscore",
            details=[{"loc": ["path", "profile_name"], "msg": "invalid profile name"}],
        )
    return tenant, name


class Profiles:
    def __init__(
        self, state: ApiState, *, cursors: Cursors, idempotent: Idempotency, cache_max_age: int
    ) -> None:
        self.state = state
        self.cursors = cursors
        self.idempotent = idempotent
        self.cache_control = f"private, max-age={cache_max_age}"
        self._cache_control_raw = self.cache_control.encode("latin-1")

    async def list(self, request: Request, call: Call) -> Response:
        p = call.caller
        query = request.query_params
        limit = query_int(query, "limit", 20, 1, 100)
        cursor = query.get("cursor")
        after = None if cursor is None else self.cursors.decode(cursor, p.tenant.name)
        items, more = await self.state.page(p.tenant.name, after, limit, call.ticket)
        next_cursor = self.cursors.encode(p.tenant.name, items[-1].name) if more else None
        body = b"".join(
            (
                b'{"items":[',
                b",".join(i.body for i in items),
                b'],"next_cursor":',
                dumps(next_cursor),
                b',"has_more":',
                b"true" if more else b"false",
                b"}",
            )
        )
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Cache-Control": self.cache_control}
        inm = request.headers.get("if-none-match")
        if inm is not None and etag_matches(inm, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type=JSON)

    async def create(self, request: Request, call: Call) -> Response:
        async def writes(keeper: Keeper | None) -> Response:
            data = json_body(request, call.raw, ProfileIn)
            if data.tenant != call.caller.tenant.name:
                raise ApiError(403, "tenant must be your own tenant")
            keep = None if keeper is None else keeper.keep(_created)
            profile = await self.state.create_profile(
                data.tenant, data.profile_name, data.hrv_vector, data.metadata or {}, call.ticket, keep
            )
            return _created(profile)

        async def produce() -> Response:
            return await writes(None)

        # With a shared state, a keyed create keeps its answer in the write's own round trip.
        return await self.idempotent(request, call, produce, writes=writes)

    def _answer(self, request: Request, profile: Profile | None, name: str) -> Response:
        if profile is None:
            raise ApiError(404, f"no profile named {name!r}")
        if not_modified(request.headers, profile):
            headers = validators(profile)
            headers["Cache-Control"] = self.cache_control
            return Response(status_code=304, headers=headers)
        # The hot read: raw headers, not a dict Starlette would encode on every request.
        raw = [
            (b"etag", profile.etag.encode("latin-1")),
            (b"last-modified", profile.last_modified.encode("latin-1")),
            (b"cache-control", self._cache_control_raw),
        ]
        return RawResponse(profile.body, raw)

    def get_embedded(self, store: Store) -> Callable[[Request, Call], Awaitable[Response]]:
        """The read of the embedded fake: the store's mirror, no await before the answer."""

        async def get(request: Request, call: Call) -> Response:
            tenant, name = own(call.caller, request)
            return self._answer(request, store.get(tenant, name), name)

        return get

    async def get(self, request: Request, call: Call) -> Response:
        tenant, name = own(call.caller, request)
        return self._answer(request, await self.state.get_profile(tenant, name, call.ticket), name)

    async def update(self, request: Request, call: Call) -> Response:
        tenant, name = own(call.caller, request)
        data = json_body(request, call.raw, ProfileUpdateIn)
        profile = await self.state.update_profile(
            tenant, name, data.hrv_vector, data.metadata, request.headers.get("if-match"), call.ticket
        )
        return Response(profile.body, headers=validators(profile), media_type=JSON)

    async def delete(self, request: Request, call: Call) -> Response:
        tenant, name = own(call.caller, request)
        await self.state.delete_profile(tenant, name, request.headers.get("if-match"), call.ticket)
        return Response(status_code=204)


def _created(profile: Profile) -> Response:
    """The 201 of a created profile."""
    headers = validators(profile)
    headers["Location"] = f"/profiles/{profile.tenant}/{profile.name}"
    return Response(profile.body, status_code=201, headers=headers, media_type=JSON)
