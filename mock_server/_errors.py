"""The fake's error model: one exception type and the contract's error body.

Every error the API answers, injected or not, has the body
``{"error": {"code": ..., "message": ..., "request_id": ..., "details": [...]?}}``.
Handlers raise :class:`ApiError`; the app turns it into that body, so no handler
builds an error response by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

#: The contract's code for each status; statuses outside the table fall back by class.
CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

WWW_AUTHENTICATE = 'Bearer realm="resonanceos", Basic realm="resonanceos"'


def code_for(status: int) -> str:
    """The contract's error code for ``status``."""
    code = CODES.get(status)
    if code is not None:
        return code
    return "bad_request" if status < 500 else "internal_error"


class ApiError(Exception):
    """An error the API answers with the contract's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or code_for(status)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def validation_error(loc: Sequence[str | int], msg: str) -> ApiError:
    """A 422 naming one bad field."""
    return ApiError(422, f"{'.'.join(map(str, loc))}: {msg}", details=[{"loc": list(loc), "msg": msg}])


def error_body(
    status: int,
    message: str,
    request_id: str,
    *,
    code: str | None = None,
    details: Sequence[Mapping[str, Any]] | None = None,
) -> bytes:
    """The contract's error body, serialised."""
    error: dict[str, Any] = {"code": code or code_for(status), "message": message, "request_id": request_id}
    if details is not None:
        error["details"] = list(details)
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def error_response(exc: ApiError, request_id: str) -> Response:
    """Render ``exc`` as the contract's error response."""
    headers = dict(exc.headers)
    headers["X-Request-ID"] = request_id
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    body = error_body(exc.status, exc.message, request_id, code=exc.code, details=exc.details)
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")
