"""What every resource shares: one call's context, JSON rendering, request ids, body checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from .._auth import Principal
from .._errors import ApiError
from .._ids import new_request_id
from .._inputs import parse_json, validate
from .._state import Ticket

JSON = "application/json"
M = TypeVar("M", bound=BaseModel)


class Call:
    """One API request as a handler sees it: the caller, the body read, the request id, and
    the rate-limit ticket a shared state takes with the first state operation (None: taken)."""

    __slots__ = ("principal", "raw", "rid", "ticket")

    def __init__(self, principal: Principal | None, raw: bytes, rid: str, ticket: Ticket | None) -> None:
        self.principal = principal
        self.raw = raw
        self.rid = rid
        self.ticket = ticket

    @property
    def caller(self) -> Principal:
        """The authenticated caller (handlers of authenticated routes only)."""
        assert self.principal is not None
        return self.principal


Handler = Callable[[Request, Call], Awaitable[Response]]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, headers=headers, media_type=JSON)


def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def request_id_of(scope: MutableMapping[str, Any], headers: Headers) -> str:
    """The request id the fault layer chose, else the client's if sane, else a new one."""
    state = scope.get("state")
    if state:
        rid = state.get("request_id")
        if rid:
            return str(rid)
    rid = headers.get("x-request-id")
    if rid and len(rid) <= 128 and rid.isascii() and rid.isprintable():
        return rid
    return new_request_id()


def json_body(request: Request, raw: bytes, model: type[M]) -> M:
    """The body as ``model``: 415 unless JSON, 400 unless parseable, 422 unless valid."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, f"expected Content-Type: application/json, got {media[:60] or 'none'!r}")
    return validate(model, parse_json(raw))


def client_host(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None
