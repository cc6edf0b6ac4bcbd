"""The forwarder: an ASGI app that passes each request to the upstream and streams back its answer.

What goes up is what came in: method, path and query as the client wrote them (``raw_path``),
headers in their order, the body as it streams. What comes back is what the upstream sent:
status, headers and the body's bytes as they were on the wire (``aiter_raw``: a gzip body is
never decoded and encoded again). Both bodies stream chunk by chunk with back-pressure both ways
(httpx waits for the upstream socket to drain, uvicorn's ``send`` for the client's), so memory
does not follow a body's size. Framing follows the upstream: a ``Content-Length`` it sent is
passed on, and without one uvicorn frames the body chunked, as the upstream did.

Hop-by-hop headers (RFC 9110 §7.6.1) and those the ``Connection`` header names are dropped both
ways; ``X-Forwarded-For``, ``-Proto`` and ``-Host`` are added. The upstream gets its own ``Host``
unless ``preserve_host``. Redirects are passed back, never followed. Connections to the upstream
are kept alive in a pool (httpx). An upstream that cannot be reached, or that breaks off before
answering, gives a 502 with the contract's error body (``upstream_unavailable``); one that does
not answer within ``timeout`` seconds a 504 (``gateway_timeout``). An upstream that breaks off in
the middle of a body breaks the client's connection the same way, so the client sees what a
direct client would have seen: a short body.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Protocol
from urllib.parse import urlsplit

from starlette.types import Message, Receive, Scope, Send

from .._faults import _transport
from .._ids import new_request_id
from ._upstream import Answer, UpstreamError, UpstreamPool

RawHeaders = list[tuple[bytes, bytes]]

#: Hop-by-hop headers (RFC 9110 §7.6.1), and Proxy-Authorization, which is meant for a proxy:
#: this one. Both directions.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


class Exchange(Protocol):
    """What a recorder is told about one forwarded exchange, as it happens."""

    def request_body(self, chunk: bytes) -> None: ...

    def response_start(self, status: int, reason: str, http_version: str, headers: RawHeaders) -> None: ...

    def response_body(self, chunk: bytes) -> None: ...

    def finish(self, *, complete: bool) -> None: ...


class Tap(Protocol):
    """A recorder: told of each exchange the forwarder makes (see :mod:`._har`)."""

    def begin(self, method: str, url: str, http_version: str, headers: RawHeaders) -> Exchange: ...


class _ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


def dropped_names(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The hop-by-hop headers, with every name a ``Connection`` header lists (lower case)."""
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return HOP_BY_HOP | named if named else HOP_BY_HOP


def error_response(status: int, code: str, message: str, request_id: str) -> tuple[RawHeaders, bytes]:
    body = json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}}, separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1", "replace")),
    ]
    return headers, body


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    rid = state.get("request_id")
    return rid if isinstance(rid, str) else new_request_id()


class Forwarder:
    """The ASGI app that forwards to ``upstream`` (``http://host:port[/prefix]``).

    ``timeout`` bounds how long the upstream may take to answer (and each later pause in its
    body); ``connect_timeout`` how long to connect. ``tap`` records each exchange.
    """

    def __init__(
        self,
        upstream: str,
        *,
        preserve_host: bool = False,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_idle: int = 256,
        tap: Tap | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"upstream: must be an http:// or https:// URL, got {upstream!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"upstream: must not have user info, a query or a fragment, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/").encode("latin-1")
        self._netloc = parts.netloc.encode("latin-1")
        self.preserve_host = preserve_host
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tap = tap
        self.pool = UpstreamPool(
            parts.hostname,
            port or (443 if parts.scheme == "https" else 80),
            tls=parts.scheme == "https",
            connect_timeout=connect_timeout,
            timeout=timeout,
            max_idle=max_idle,
        )

    def __repr__(self) -> str:
        return f"Forwarder({self.upstream!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - served with ws="none"
            return
        await self.forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def upstream_headers(self, scope: Scope) -> tuple[RawHeaders, bool, bool]:
        """The headers to send up; whether the request has a body; whether it is chunked."""
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        drop = dropped_names(raw) | _FORWARDED
        out: RawHeaders = []
        host = b""
        forwarded_for = b""
        has_body = chunked = False
        for key, value in raw:
            if key == b"host":
                host = value
                if not self.preserve_host:
                    continue
            elif key == b"content-length":
                has_body = value.strip() not in (b"", b"0")
            elif key == b"transfer-encoding":
                has_body = chunked = True
            if key == b"x-forwarded-for":
                forwarded_for = value
            if key in drop:
                continue
            out.append((key, value))
        client = scope.get("client")
        address = (client[0] if client else "unknown").encode("latin-1", "replace")
        out.append((b"x-forwarded-for", forwarded_for + b", " + address if forwarded_for else address))
        out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
        if host:
            out.append((b"x-forwarded-host", host))
        if not self.preserve_host or not host:
            out.insert(0, (b"host", self._netloc))
        if chunked:
            # The client's framing was this hop's; the next hop is framed the same way.
            out.append((b"transfer-encoding", b"chunked"))
        return out, has_body, chunked

    def target(self, scope: Scope) -> bytes:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        return self._prefix + raw_path + (b"?" + query if query else b"")

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        headers, has_body, chunked = self.upstream_headers(scope)
        target = self.target(scope)
        exchange = None
        if self.tap is not None:
            url = self._origin + target.decode("latin-1")
            exchange = self.tap.begin(method, url, "HTTP/" + scope.get("http_version", "1.1"), headers)
        body = _body(receive, exchange) if has_body else None
        started = time.monotonic()
        try:
            answer = await self.pool.request(method, target, headers, body, chunked=chunked)
        except _ClientGone:
            if exchange is not None:
                exchange.finish(complete=False)
            return
        except UpstreamError as exc:
            if exchange is not None:
                exchange.finish(complete=False)
            if exc.timeout:
                waited = time.monotonic() - started
                message = f"the upstream did not answer within {self.timeout:g} s (waited {waited:.1f} s)"
                await self._fail(scope, send, 504, "gateway_timeout", message)
            else:
                await self._fail(scope, send, 502, "upstream_unavailable", f"{self.upstream}: {exc}")
            return
        try:
            await self._relay(scope, answer, send, exchange)
        finally:
            answer.close()

    async def _relay(self, scope: Scope, answer: Answer, send: Send, exchange: Exchange | None) -> None:
        raw = answer.headers
        drop = dropped_names(raw)
        # Transfer-Encoding is this hop's, but chunked is what the client gets too (uvicorn frames
        # a body without a length that way): kept where the upstream put it, the answer reads the
        # same. Any other coding would have to be undone here; it is dropped.
        headers = []
        for key, value in raw:
            name = key.lower()
            if name not in drop or (name == b"transfer-encoding" and value.lower() == b"chunked"):
                headers.append((name, value))
        if exchange is not None:
            exchange.response_start(answer.status, answer.reason, answer.http_version, headers)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        whole = answer.whole()
        if whole is not None:
            if exchange is not None:
                if whole:
                    exchange.response_body(whole)
                exchange.finish(complete=True)
            await send({"type": "http.response.body", "body": whole, "more_body": False})
            return
        more = True
        client = _transport.transport_of(scope, send)
        try:
            async for chunk in answer.body():
                if client is not None and client.is_closing():
                    # The client left: uvicorn would drop the rest unsent, so stop reading it (the
                    # upstream connection is closed, not kept, as the answer was not read whole).
                    if exchange is not None:
                        exchange.finish(complete=False)
                    return
                if exchange is not None:
                    exchange.response_body(chunk)
                # The last piece ends the answer itself: one ASGI message (and write) fewer.
                more = not answer.finished
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        except UpstreamError:
            # The upstream broke off mid-body: so does the client's connection, or it would take
            # a short body for a whole one.
            if exchange is not None:
                exchange.finish(complete=False)
            if client is not None:
                _transport.close(client)
            return
        if exchange is not None:
            exchange.finish(complete=True)
        if more:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        headers, body = error_response(status, code, message, request_id_of(scope))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _body(receive: Receive, exchange: Exchange | None) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            if exchange is not None:
                exchange.request_body(chunk)
            yield chunk
        if not message.get("more_body", False):
            return


__all__ = ["HOP_BY_HOP", "Exchange", "Forwarder", "Tap", "dropped_names", "error_response"]
