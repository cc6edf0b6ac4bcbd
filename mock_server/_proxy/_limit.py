"""``--rate-limit``: the fake's token buckets, headers and 429s in front of an upstream.

One bucket per credential, as the fake keeps them: the API key (``X-API-Key``), the bearer token,
or the Basic user; a request with none is counted against its client address (IPv6: its /64).
Credentials are never kept: a bucket is keyed by a keyed hash of the credential, with a key made
afresh in each process, so not even the memory holds anything a guess could be checked against.
Buckets are also per ``X-Mock-Session``, as the fake's are, so sessions do not drain each other.

Allowed requests go on with the limit's headers added to the upstream's answer (the upstream's
own headers of those names are replaced); refused ones get the fake's 429, which never reaches
the upstream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import code_for
from .._ratelimit import RateLimiter, address_key
from .._tenants import RateLimit
from .._untrusted import session_id
from ._forward import error_response, request_id_of

_KEY = os.urandom(16)
_LIMIT_HEADERS = frozenset(
    {b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"ratelimit-policy", b"ratelimit"}
)


def _digest(kind: str, secret: bytes) -> str:
    return f"{kind}:{hashlib.blake2b(secret, key=_KEY, digest_size=12).hexdigest()}"


def credential_key(scope: Scope) -> str:
    """Whose bucket a request draws on: a hash of its credential, else its client address."""
    api_key = authorization = None
    for key, value in scope["headers"]:
        if key == b"x-api-key":
            api_key = value
        elif key == b"authorization":
            authorization = value
    if api_key:
        return _digest("key", api_key)
    if authorization:
        scheme, _, rest = authorization.strip().partition(b" ")
        scheme = scheme.lower()
        rest = rest.strip()
        if scheme == b"bearer" and rest:
            return _digest("bearer", rest)
        if scheme == b"basic" and rest:
            try:
                user = base64.b64decode(rest, validate=True).partition(b":")[0]
            except (binascii.Error, ValueError):
                user = rest
            return _digest("basic", user)
        return _digest("authorization", authorization)
    client = scope.get("client")
    return "address:" + address_key(client[0] if client else None)


class CredentialLimit:
    """ASGI middleware: ``limit`` per credential (see the module docstring) in front of ``app``."""

    def __init__(self, app: ASGIApp, limit: RateLimit, *, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.limit = limit
        self.limiter = limiter or RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = None
        for key, value in scope["headers"]:
            if key == b"x-mock-session":
                session = session_id(value.decode("latin-1"))
                break
        verdict = self.limiter.take(credential_key(scope), session, self.limit)
        if not verdict.allowed:
            message = (
                f"rate limit of {self.limit.per_minute} requests per minute exceeded;"
                f" retry in {verdict.retry_after} s"
            )
            headers, body = error_response(429, code_for(429), message, request_id_of(scope))
            await send({"type": "http.response.start", "status": 429, "headers": headers + verdict.raw})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        added = verdict.raw

        async def with_limit(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v) for k, v in message.get("headers", ()) if bytes(k).lower() not in _LIMIT_HEADERS
                ]
                message = {**message, "headers": kept + added}
            await send(message)

        await self.app(scope, receive, with_limit)
