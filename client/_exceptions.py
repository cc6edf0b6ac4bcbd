"""Every error the client raises, in one tree.

Each class is also a ``requests.RequestException`` (and, where ``requests`` has a matching class,
a subclass of it too), so code written against a plain ``requests.Session`` keeps catching them::

    * ApiError (requests.RequestException)
      + HttpError(status, body, request_id)     the server answered with an error status
        - BadRequest                            400 (and 405, 413, 415)
        - Unauthorized                          401
        - Forbidden                             403
        - NotFound                              404
        - Conflict                              409
        - PreconditionFailed                    412
        - ValidationFailed                      422
        - RateLimited(retry_after)              429, or the client's own limiter failing fast
        - ServerError                           5xx
      + TransportError(request_sent)            no usable response arrived
        - ConnectTimeout                        (requests.ConnectTimeout)
        - ReadTimeout                           (requests.ReadTimeout)
        - ConnectionFailed                      (requests.ConnectionError)
      + CircuitOpen(host, retry_in)             refused locally, nothing was sent
      + DeadlineExceeded                        (requests.Timeout) the total deadline ran out
      + RetriesExhausted(last)                  every permitted attempt failed
      + ResponseInvalid                         the body did not match its model
      + RequestInvalid                          the request could not be built (URL, header, body)
    * ConfigError (ValueError)                  a bad setting, naming it

How the tree is built, and why: the engine (``_errors``) defines the same tree without any HTTP
library, rooted at ``OSError``; each class here is the engine's class of the same name with the
matching ``requests`` class mixed in. The engine raises its own classes, and every driver
(``requests``, ``httpx``, ``httpx`` async) hands an error to its caller as the public class here
(:func:`public` swaps the instance's class in place: same name, same attributes, same cause).
So ``except client.NotFound`` works with every driver, and ``except requests.RequestException``
keeps working for ``requests`` users, and for ``httpx`` users too.

Every lower-layer exception is mapped to the most specific class by :func:`map_exception` (for
``requests`` and ``urllib3``; the ``httpx`` drivers map theirs in ``_httpx``) and re-raised
``from`` it. Messages never quote credentials (see ``_redaction``).
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import requests
import urllib3.exceptions as u3

from . import _errors as e
from ._errors import ConfigError
from ._redaction import redact, redact_url

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
    "error_for_response",
    "map_exception",
    "public",
]


class ApiError(e.ApiError, requests.RequestException):
    """Base class of every error the client raises."""


class HttpError(e.HttpError, ApiError, requests.HTTPError):
    """The server answered with an error status."""


class BadRequest(e.BadRequest, HttpError):
    """The server could not accept the request as sent (400, 405, 413, 415)."""


class Unauthorized(e.Unauthorized, HttpError):
    """The credentials were missing, wrong or expired (401)."""


class Forbidden(e.Forbidden, HttpError):
    """The credentials do not allow this (403)."""


class NotFound(e.NotFound, HttpError):
    """The resource does not exist (404)."""


class Conflict(e.Conflict, HttpError):
    """The resource already exists (409)."""


class PreconditionFailed(e.PreconditionFailed, HttpError):
    """An ``If-Match`` precondition did not hold (412)."""


class ValidationFailed(e.ValidationFailed, HttpError):
    """The body was well-formed but its values were rejected (422)."""


class RateLimited(e.RateLimited, HttpError):
    """Too many requests, from the server (429) or from the client's own limiter (status 0)."""


class ServerError(e.ServerError, HttpError):
    """The server failed (5xx)."""


class TransportError(e.TransportError, ApiError):
    """No usable response arrived; ``request_sent`` says whether the server may have seen it."""


class ConnectTimeout(e.ConnectTimeout, TransportError, requests.exceptions.ConnectTimeout):
    """Timed out while connecting to the host."""


class ReadTimeout(e.ReadTimeout, TransportError, requests.exceptions.ReadTimeout):
    """Timed out while waiting for the response."""


class ConnectionFailed(e.ConnectionFailed, TransportError, requests.exceptions.ConnectionError):
    """The connection could not be made, or broke before a complete response."""


class CircuitOpen(e.CircuitOpen, ApiError):
    """The host's circuit breaker is open, so nothing was sent."""


class DeadlineExceeded(e.DeadlineExceeded, ApiError, requests.exceptions.Timeout):
    """The call's total deadline ran out, or the next wait would have crossed it."""


class RetriesExhausted(e.RetriesExhausted, ApiError):
    """Every attempt the retry policy allowed failed; ``last`` is the final failure."""


class ResponseInvalid(e.ResponseInvalid, ApiError):
    """The response body did not match its model, or could not be decoded."""


class RequestInvalid(e.RequestInvalid, ApiError):
    """The request could not be built (bad URL, header, timeout or body)."""


_PUBLIC: dict[type[BaseException], type[ApiError]] = {
    e.ApiError: ApiError,
    e.HttpError: HttpError,
    e.BadRequest: BadRequest,
    e.Unauthorized: Unauthorized,
    e.Forbidden: Forbidden,
    e.NotFound: NotFound,
    e.Conflict: Conflict,
    e.PreconditionFailed: PreconditionFailed,
    e.ValidationFailed: ValidationFailed,
    e.RateLimited: RateLimited,
    e.ServerError: ServerError,
    e.TransportError: TransportError,
    e.ConnectTimeout: ConnectTimeout,
    e.ReadTimeout: ReadTimeout,
    e.ConnectionFailed: ConnectionFailed,
    e.CircuitOpen: CircuitOpen,
    e.DeadlineExceeded: DeadlineExceeded,
    e.RetriesExhausted: RetriesExhausted,
    e.ResponseInvalid: ResponseInvalid,
    e.RequestInvalid: RequestInvalid,
}


e._TWINS.update(_PUBLIC)


def public(exc: BaseException) -> BaseException:
    """``exc`` as the public class of its name, with its cause chain and ``last`` (in place).

    The neutral and public classes share their layout, so the instance keeps its identity,
    attributes and traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        twin = _PUBLIC.get(type(current))
        if twin is not None:
            current.__class__ = twin
        last = getattr(current, "last", None)
        if isinstance(current, e.RetriesExhausted) and isinstance(last, BaseException):
            public(last)
        current = current.__cause__ or current.__context__
    return exc


def status_class(status: int) -> type[HttpError]:
    """The public :class:`HttpError` subclass for ``status``."""
    return _PUBLIC[e.status_class(status)]  # type: ignore[return-value]


def error_from_body(error: object, *, status: int | None = None, response: Any = None) -> HttpError:
    """The public :class:`HttpError` for a contract error object (see ``_errors.error_from_body``)."""
    return public(e.error_from_body(error, status=status, response=response))  # type: ignore[return-value]


def error_for_response(response: requests.Response, *, retry_after: float | None = None) -> HttpError:
    """The :class:`HttpError` for an error response, built from its ``{"error": {...}}`` body."""
    exc = e.error_for_status(
        response.status_code, response.headers, response.content, response=response, retry_after=retry_after
    )
    return public(exc)  # type: ignore[return-value]


# -- lower-layer exceptions -----------------------------------------------------------------

_NOT_SENT_REASONS = (u3.NewConnectionError, u3.ConnectTimeoutError, u3.SSLError, u3.ProxyError, u3.PoolError)

# Checked in MRO order: the first class of the exception's MRO found here wins.
_MAPPING: dict[type[BaseException], tuple[type[ApiError], str, bool]] = {
    # requests
    requests.exceptions.ConnectTimeout: (ConnectTimeout, "connect timeout", False),
    requests.exceptions.ReadTimeout: (ReadTimeout, "read timeout", True),
    requests.exceptions.Timeout: (ReadTimeout, "timeout", True),
    requests.exceptions.SSLError: (ConnectionFailed, "TLS handshake failed", False),
    requests.exceptions.ProxyError: (ConnectionFailed, "proxy failed", False),
    requests.exceptions.ConnectionError: (ConnectionFailed, "connection failed", True),
    requests.exceptions.ChunkedEncodingError: (ConnectionFailed, "response body cut short", True),
    requests.exceptions.ContentDecodingError: (ResponseInvalid, "response body could not be decoded", True),
    requests.exceptions.StreamConsumedError: (ResponseInvalid, "response body already consumed", True),
    requests.exceptions.JSONDecodeError: (ResponseInvalid, "response body is not valid JSON", True),
    requests.exceptions.InvalidJSONError: (RequestInvalid, "request body is not serialisable JSON", False),
    requests.exceptions.TooManyRedirects: (TransportError, "too many redirects", True),
    requests.exceptions.RetryError: (RetriesExhausted, "retries exhausted in the adapter", True),
    requests.exceptions.HTTPError: (HttpError, "HTTP error", True),
    requests.exceptions.URLRequired: (RequestInvalid, "a URL is required", False),
    requests.exceptions.MissingSchema: (RequestInvalid, "URL has no scheme", False),
    requests.exceptions.InvalidSchema: (RequestInvalid, "URL scheme not supported", False),
    requests.exceptions.InvalidProxyURL: (RequestInvalid, "invalid proxy URL", False),
    requests.exceptions.InvalidURL: (RequestInvalid, "invalid URL", False),
    requests.exceptions.InvalidHeader: (RequestInvalid, "invalid header", False),
    requests.exceptions.UnrewindableBodyError: (RequestInvalid, "request body cannot be rewound", False),
    requests.exceptions.RequestException: (TransportError, "request failed", True),
    # urllib3, when it leaks through (streamed bodies, adapters used directly)
    u3.NameResolutionError: (ConnectionFailed, "name resolution failed", False),
    u3.NewConnectionError: (ConnectionFailed, "connection refused or unreachable", False),
    u3.ConnectTimeoutError: (ConnectTimeout, "connect timeout", False),
    u3.ReadTimeoutError: (ReadTimeout, "read timeout", True),
    u3.TimeoutStateError: (RequestInvalid, "invalid timeout", False),
    u3.TimeoutError: (ReadTimeout, "timeout", True),
    u3.SSLError: (ConnectionFailed, "TLS handshake failed", False),
    u3.ProxyError: (ConnectionFailed, "proxy failed", False),
    u3.ResponseNotChunked: (ResponseInvalid, "response not chunked", True),
    u3.InvalidChunkLength: (ConnectionFailed, "response body cut short", True),
    u3.IncompleteRead: (ConnectionFailed, "response body cut short", True),
    u3.ProtocolError: (ConnectionFailed, "connection broken", True),
    u3.DecodeError: (ResponseInvalid, "response body could not be decoded", True),
    u3.HeaderParsingError: (ResponseInvalid, "response headers could not be parsed", True),
    u3.MaxRetryError: (RetriesExhausted, "retries exhausted in urllib3", True),
    u3.ResponseError: (RetriesExhausted, "too many error responses", True),
    u3.HostChangedError: (RequestInvalid, "URL host differs from the pool's", False),
    u3.ClosedPoolError: (ConnectionFailed, "connection pool closed", False),
    u3.EmptyPoolError: (ConnectionFailed, "connection pool exhausted", False),
    u3.FullPoolError: (ConnectionFailed, "connection pool full", False),
    u3.PoolError: (ConnectionFailed, "connection pool error", False),
    u3.ProxySchemeUnknown: (RequestInvalid, "proxy scheme unknown", False),
    u3.URLSchemeUnknown: (RequestInvalid, "URL scheme unknown", False),
    u3.LocationParseError: (RequestInvalid, "URL could not be parsed", False),
    u3.LocationValueError: (RequestInvalid, "invalid URL", False),
    u3.ProxySchemeUnsupported: (RequestInvalid, "proxy scheme unsupported", False),
    u3.BodyNotHttplibCompatible: (RequestInvalid, "request body type unsupported", False),
    u3.UnrewindableBodyError: (RequestInvalid, "request body cannot be rewound", False),
    u3.InvalidHeader: (RequestInvalid, "invalid header", False),
    u3.HTTPError: (TransportError, "HTTP transport error", True),
    # the standard library, below urllib3
    http.client.IncompleteRead: (ConnectionFailed, "response body cut short", True),
    json.JSONDecodeError: (ResponseInvalid, "response body is not valid JSON", True),
    ConnectionRefusedError: (ConnectionFailed, "connection refused", False),
    TimeoutError: (ReadTimeout, "timeout", True),
    OSError: (ConnectionFailed, "connection error", True),
}


def _request_not_sent(exc: BaseException) -> bool:
    """Whether a connection error happened before any byte of the request left.

    Errors that occur after the request has been started (a reset, a remote close) could have
    reached the server, so only errors on the way to a connection count as "not sent".
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _NOT_SENT_REASONS):
            return True
        if isinstance(current, u3.MaxRetryError):
            current = current.reason
            continue
        if isinstance(current, u3.ProtocolError):
            return False
        arg = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = arg or current.__cause__ or current.__context__
    return False


def map_exception(exc: BaseException, *, method: str = "", url: str = "") -> ApiError:
    """The :class:`ApiError` for a lower-layer exception, ready to ``raise ... from exc``."""
    if isinstance(exc, ApiError):
        return exc
    for cls in type(exc).__mro__:
        entry = _MAPPING.get(cls)
        if entry is not None:
            break
    else:
        entry = (TransportError, "request failed", True)
    target, label, sent = entry
    where = f" during {method} {redact_url(url)}" if method or url else ""
    detail = redact(str(exc))[:300]
    message = f"{label}{where}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    response = getattr(exc, "response", None)
    request = getattr(exc, "request", None)
    extra: dict[str, Any] = {}
    if isinstance(response, requests.Response):
        extra["response"] = response
    if request is not None:
        extra["request"] = request
    if issubclass(target, TransportError):
        if cls is requests.exceptions.ConnectionError or cls is u3.MaxRetryError:
            sent = not _request_not_sent(exc)
        return target(message, request_sent=sent, **extra)
    if target is HttpError:
        if isinstance(response, requests.Response):
            return error_for_response(response)
        return HttpError(message, status=0, **extra)
    if target is RetriesExhausted:
        reason = getattr(exc, "reason", None)
        last = map_exception(reason, method=method, url=url) if isinstance(reason, BaseException) else None
        return RetriesExhausted(message, last=last, **extra)
    return target(message, **extra)
