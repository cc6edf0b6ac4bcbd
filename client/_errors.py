"""The error tree of the engine: every decision that fails, fails with one of these.

Neutral: no HTTP library is imported here. The classes ``client`` exports (``client.ApiError``
and the rest, in ``_exceptions``) are these same classes with the matching ``requests``
exception mixed in, so ``except requests.RequestException`` keeps working. The engine raises
the neutral classes; every driver hands the error to its caller as the public twin of the same
name (:func:`client._exceptions.public`), so ``except client.DeadlineExceeded`` catches the
error from any driver: ``requests``, ``httpx`` or ``httpx`` async.

Which class ``raise CircuitOpen(...)`` creates: the public twin once ``_exceptions`` has
registered the twins (any use of the ``client`` package does), the neutral class in an engine
used on its own (its tests import no HTTP library). The root is an ``OSError``, as
``requests.RequestException`` is: an I/O failure to any code that already catches those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._redaction import redact

__all__ = [
    "ApiError",
    "BadRequest",
    "CircuitOpen",
    "ConfigError",
    "Conflict",
    "ConnectTimeout",
    "ConnectionFailed",
    "DeadlineExceeded",
    "Forbidden",
    "HttpError",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "ReadTimeout",
    "RequestInvalid",
    "ResponseInvalid",
    "RetriesExhausted",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "error_for_status",
    "error_from_body",
    "status_class",
]


#: Neutral class -> public twin, filled in by ``_exceptions`` when it is imported.
_TWINS: dict[type[BaseException], type[BaseException]] = {}


class ApiError(OSError):
    """Base class of every error the client raises."""

    def __new__(cls, *args: Any, **kwargs: Any) -> ApiError:
        # Once the public twins are registered (``client`` imported), the engine's
        # ``raise CircuitOpen(...)`` creates the public class: one tree for every caller.
        twin = _TWINS.get(cls, cls)
        instance = super().__new__(twin, *args)
        assert isinstance(instance, ApiError)
        return instance

    def __init__(self, message: str, *, response: Any = None, request: Any = None, **kwargs: Any) -> None:
        super().__init__(message)
        # Set after super(): in the public twins requests.RequestException.__init__ runs first
        # and would reset them.
        self.message = message
        self.response = response
        self.request = request

    def __str__(self) -> str:
        return self.message


class HttpError(ApiError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: object = None,
        request_id: str | None = None,
        code: str | None = None,
        details: list[Any] | None = None,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.status = status
        self.body = body
        self.request_id = request_id
        self.code = code
        self.details = details


class BadRequest(HttpError):
    """The server could not accept the request as sent (400, 405, 413, 415)."""


class Unauthorized(HttpError):
    """The credentials were missing, wrong or expired (401)."""


class Forbidden(HttpError):
    """The credentials do not allow this (403)."""


class NotFound(HttpError):
    """The resource does not exist (404)."""


class Conflict(HttpError):
    """The resource already exists (409)."""


class PreconditionFailed(HttpError):
    """An ``If-Match`` precondition did not hold (412)."""


class ValidationFailed(HttpError):
    """The body was well-formed but its values were rejected (422)."""


class RateLimited(HttpError):
    """Too many requests, from the server (429) or from the client's own limiter (status 0)."""


class ServerError(HttpError):
    """The server failed (5xx)."""


class TransportError(ApiError):
    """No usable response arrived; ``request_sent`` says whether the server may have seen it."""

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


class ConnectTimeout(TransportError):
    """Timed out while connecting to the host."""

    def __init__(self, message: str, *, request_sent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, request_sent=request_sent, **kwargs)


class ReadTimeout(TransportError):
    """Timed out while waiting for the response."""


class ConnectionFailed(TransportError):
    """The connection could not be made, or broke before a complete response."""


class CircuitOpen(ApiError):
    """The host's circuit breaker is open, so nothing was sent."""

    def __init__(self, message: str, *, host: str, retry_in: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.host = host
        self.retry_in = retry_in


class DeadlineExceeded(ApiError):
    """The call's total deadline ran out, or the next wait would have crossed it."""


class RetriesExhausted(ApiError):
    """Every attempt the retry policy allowed failed; ``last`` is the final failure."""

    def __init__(self, message: str, *, last: ApiError | None, attempts: int = 0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.last = last
        self.attempts = attempts


class ResponseInvalid(ApiError, ValueError):
    """The response body did not match its model, or could not be decoded."""


class RequestInvalid(ApiError, ValueError):
    """The request could not be built (bad URL, header, timeout or body)."""


class ConfigError(ValueError):
    """A setting had a bad value; the message names it."""


# -- HTTP status ----------------------------------------------------------------------------

_STATUS_CLASSES: dict[int, type[HttpError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: BadRequest,
    409: Conflict,
    412: PreconditionFailed,
    413: BadRequest,
    415: BadRequest,
    422: ValidationFailed,
    429: RateLimited,
}

_CODE_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "precondition_failed": 412,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "bad_gateway": 502,
    "service_unavailable": 503,
    "gateway_timeout": 504,
}


def status_class(status: int) -> type[HttpError]:
    """The :class:`HttpError` subclass for ``status``."""
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else HttpError


def error_from_body(error: object, *, status: int | None = None, response: Any = None) -> HttpError:
    """An :class:`HttpError` from an ``{"code", "message", "request_id", "details"?}`` object.

    Used for whole responses and for the per-item errors of a batch (which carry no status:
    it is derived from the code).
    """
    info = error if isinstance(error, dict) else {}
    code = info.get("code") if isinstance(info.get("code"), str) else None
    if status is None:
        status = _CODE_STATUS.get(code or "", 500)
    message = info.get("message") if isinstance(info.get("message"), str) else ""
    request_id = info.get("request_id") if isinstance(info.get("request_id"), str) else None
    details = info.get("details") if isinstance(info.get("details"), list) else None
    cls = status_class(status)
    text = f"{status} {code or 'error'}: {redact(message)}" if message else f"{status} {code or 'error'}"
    if request_id:
        text += f" (request_id={request_id})"
    return cls(
        text,
        status=status,
        body=error,
        request_id=request_id,
        code=code,
        details=details,
        response=response,
    )


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    content: bytes | None,
    *,
    response: Any = None,
    retry_after: float | None = None,
) -> HttpError:
    """The :class:`HttpError` for an error response, built from its ``{"error": {...}}`` body."""
    body: object
    try:
        body = json.loads(content) if content else None
    except (ValueError, RuntimeError):
        body = content[:512].decode("utf-8", "replace") if content else None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"message": redact(str(body)[:200])} if body else {}
    if "request_id" not in error and headers.get("X-Request-ID"):
        error = {**error, "request_id": headers.get("X-Request-ID")}
    exc = error_from_body(error, status=status, response=response)
    exc.body = body
    exc.retry_after = retry_after
    return exc
