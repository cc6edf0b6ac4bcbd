"""CORS for browser-based clients under development (``--cors ORIGINS``).

The middleware sits in front of the fault layer. A preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) is answered here: it never reaches the fault layer or the
API, so it is not journalled, draws no fault and takes no rate-limit token; a browser sends it
on its own, without credentials, before the request the client really makes. That request
goes through as any other and its response gains ``Access-Control-Allow-Origin`` and
``Access-Control-Expose-Headers`` (so the client can read ``X-Request-ID``, the rate-limit
headers, ``ETag``, ``Retry-After``...). The admin API (``/__admin``) is left out: a page on an
allowed origin cannot drive the fake's faults.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_body
from ._ids import new_request_id
from .exceptions import ConfigError

_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s,]+")
# A comma-separated list of header names, as browsers send in Access-Control-Request-Headers.
_TOKENS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")
_METHODS = b"GET, HEAD, POST, PUT, DELETE, OPTIONS"
_EXPOSED = (
    b"X-Request-ID, ETag, Last-Modified, Location, Retry-After, Idempotent-Replayed,"
    b" WWW-Authenticate, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset,"
    b" RateLimit, RateLimit-Policy"
)
# How long a browser may reuse a preflight's answer, in seconds.
_MAX_AGE = b"600"


def parse_origins(text: str) -> tuple[str, ...]:
    """``*``, or comma-separated origins (``scheme://host[:port]``), normalised to lower case.

    Raises ConfigError naming ``cors`` and the bad item.
    """
    items = [item.strip().lower().rstrip("/") for item in text.split(",")]
    if items == ["*"]:
        return ("*",)
    for item in items:
        if not _ORIGIN.fullmatch(item):
            raise ConfigError(
                f"cors: {item!r} is not an origin: give scheme://host[:port]"
                " (e.g. http://localhost:3000), several separated by commas, or *"
            )
    return tuple(items)


class Cors:
    """ASGI middleware answering preflights and marking cross-origin responses readable."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any = origins == ("*",)
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/__admin"):
            await self.app(scope, receive, send)
            return
        origin = requested = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
            elif name == b"access-control-request-headers":
                requested = value
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.any or origin.decode("latin-1").lower() in self.origins
        if preflight and scope["method"] == "OPTIONS":
            await self._preflight(origin, allowed, requested, send)
        elif allowed:
            await self.app(scope, receive, self._marking(origin, send))
        else:  # no CORS headers: the browser keeps the response from the page
            await self.app(scope, receive, send)

    def _allow_origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self.any:
            return [(b"access-control-allow-origin", b"*")]
        # The answer depends on Origin: shared caches must keep one copy per origin.
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]

    async def _preflight(self, origin: bytes, allowed: bool, requested: bytes | None, send: Send) -> None:
        rid = new_request_id()
        headers = [(b"x-request-id", rid.encode())]
        if allowed:
            status, body = 204, b""
            headers += self._allow_origin(origin)
            headers += [(b"access-control-allow-methods", _METHODS), (b"access-control-max-age", _MAX_AGE)]
            if requested and _TOKENS.fullmatch(requested.decode("latin-1").strip()):
                headers.append((b"access-control-allow-headers", requested.strip()))
        else:
            status = 403
            shown = origin.decode("latin-1")[:100]
            body = error_body(status, f"origin {shown!r} is not allowed (see --cors)", rid)
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _marking(self, origin: bytes, send: Send) -> Send:
        extra = [*self._allow_origin(origin), (b"access-control-expose-headers", _EXPOSED)]

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return marked
