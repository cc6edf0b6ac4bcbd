"""Reaching the client's TCP connection from inside an ASGI app, for resets and truncation.

ASGI hides the socket, and a reset or a short body cannot be faked above it. uvicorn is
told to use :data:`UVICORN_HTTP` (``uvicorn.Config(app, http=UVICORN_HTTP)``): uvicorn's own
h11 protocol, which also puts each request's transport into
``scope["extensions"]["mock_server.transport"]["transport"]``; the layer may leave a
``release`` callable beside it, which the protocol calls on server shutdown to end a request
that a fault is holding. When the app runs under another
uvicorn protocol, :func:`transport_of` falls back to the transport of uvicorn's ``send``
(a bound method of its request cycle in both the h11 and httptools implementations).

The protocol is also where a connection's cost is bounded before any request reaches the app,
the way nginx bounds it (see :class:`ConnectionLimits`): the request line and headers are
limited in size (``large_client_header_buffers``), must arrive whole within a timeout
(``client_header_timeout``), and a request whose body length is ambiguous (RFC 9112 section 6.3:
``Content-Length`` with ``Transfer-Encoding``, or a transfer coding other than ``chunked``) is
refused. Each refusal is the contract's error body and the connection is closed, so nothing
queued behind the refused request on that connection is ever served. Refusals happen below the
ASGI app: they are not in the journal and take no rate-limit tokens.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._errors import error_body
from .._ids import new_request_id
from ..exceptions import ConfigError

TRANSPORT_KEY = "mock_server.transport"
_LINGER_RESET = struct.pack("ii", 1, 0)
# uvicorn logs this for each request it cannot parse; here each one is answered with the error
# body instead, and a client sending many must not fill the log.
_INVALID = "Invalid HTTP request received."


class _NotInvalid(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _INVALID


# A child of uvicorn's error log: same handlers and format, without the line above.
_log = logging.getLogger("uvicorn.error.connections")
_log.addFilter(_NotInvalid())


@dataclass(frozen=True, kw_only=True)
class ConnectionLimits:
    """What a connection may cost before its request reaches the app (nginx's defaults).

    ``max_header_line_bytes`` bounds the request line and each header line, ``max_header_bytes``
    the whole request head (nginx ``large_client_header_buffers 4 8k``); ``header_timeout`` is how
    long the head of a request may take to arrive once the connection opens or the request's
    first byte arrives (nginx ``client_header_timeout 60s``). Between requests, an idle
    keep-alive connection is governed by uvicorn's keep-alive timeout instead.
    """

    max_header_bytes: int = 32 * 1024
    max_header_line_bytes: int = 8 * 1024
    header_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 256 <= self.max_header_line_bytes <= self.max_header_bytes:
            raise ConfigError(
                f"max_header_line_bytes: must be 256..max_header_bytes ({self.max_header_bytes}),"
                f" got {self.max_header_line_bytes}"
            )
        if not self.header_timeout > 0:
            raise ConfigError(f"header_timeout: must be positive, got {self.header_timeout}")


#: (status, code, message) of a request refused by the protocol.
Refusal = tuple[int, str | None, str]


def _shown(name: bytes) -> str:
    text = name.decode("latin-1")
    return text if len(text) <= 40 else text[:40] + "..."


class _GuardedConnection(h11.Connection):
    """h11's server side, refusing heads over the limits and ambiguous body framing.

    h11 alone bounds only a head still incomplete in its buffer (``max_incomplete_event_size``);
    one that arrives whole in a single read is parsed whatever its size, and a request with both
    Content-Length and Transfer-Encoding is read as chunked. Both are checked here on each
    request head, before uvicorn hands the request to the app.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.limits = limits
        #: Why the last RemoteProtocolError was raised, for the answer the protocol writes.
        self.refusal: Refusal | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                self.refusal = (431, None, self._too_large())
            else:
                # h11's 501 (a transfer coding other than chunked) is a 400 here: RFC 9112
                # section 6.3 requires it when chunked is not the final coding.
                self.refusal = (400, None, f"malformed HTTP request: {exc}")
            raise
        if type(event) is h11.Request:
            refusal = self._check(event)
            if refusal is not None:
                self.refusal = refusal
                raise h11.RemoteProtocolError(refusal[2], error_status_hint=refusal[0])
        return event

    def _too_large(self) -> str:
        return (
            f"the request line and headers exceed {self.limits.max_header_bytes} bytes;"
            " the connection is closed"
        )

    def _check(self, event: h11.Request) -> Refusal | None:
        limit = self.limits.max_header_line_bytes
        line = len(event.method) + len(event.target) + 10  # METHOD SP target SP HTTP/1.1
        if line > limit:
            return 414, None, f"the request line is {line} bytes; at most {limit} are accepted"
        total = line + 2
        length = chunked = False
        for name, value in event.headers:
            size = len(name) + 2 + len(value)
            if size > limit:
                return (
                    431,
                    None,
                    f"header {_shown(name)!r} is {size} bytes; at most {limit} are accepted per header",
                )
            total += size + 2
            length = length or name == b"content-length"
            chunked = chunked or name == b"transfer-encoding"
        if total > self.limits.max_header_bytes:
            return 431, None, self._too_large()
        if length and chunked:
            return (
                400,
                None,
                "Content-Length and Transfer-Encoding together make the body length ambiguous"
                " (RFC 9112 section 6.3); the connection is closed",
            )
        return None


class FaultH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport to the app in the scope and
    bounding what a connection may cost (:class:`ConnectionLimits`)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = self._guarded = _GuardedConnection(self.limits)
        # uvicorn reads the level to skip its trace lines: keep the one uvicorn configured.
        level = self.logger.getEffectiveLevel()
        if _log.level != level:
            _log.setLevel(level)
        self.logger = _log
        self._header_timer: asyncio.TimerHandle | None = None
        # Whether any byte of the request head being awaited has arrived.
        self._head_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app
        extension: dict[str, Any] = {"transport": transport}
        self._fault_extension = extension

        async def app_with_transport(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[TRANSPORT_KEY] = extension
            await app(scope, receive, send)

        self.app = app_with_transport
        # A connection that never sends is closed once the header timeout passes.
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        elif self.conn.their_state is h11.IDLE:
            # Part of a head: the whole head must arrive within the timeout from here (the
            # timer is not restarted by each byte, so dribbling a header does not keep it open).
            self._head_started = True
            self._arm_header_timer()
        else:
            self._head_started = False
            self._cancel_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_started:
            self._refuse(
                408,
                None,
                f"the request headers did not arrive within {self.limits.header_timeout:g} s;"
                " the connection is closed",
            )
        else:  # nothing was sent: there is no request to answer
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for every h11.RemoteProtocolError, with a plain-text body; the
        # contract wants its error body, and the status the guard chose (431, 414, 400).
        refusal = self._guarded.refusal or (400, None, f"malformed HTTP request: {msg}")
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The error came mid-body: the app's request ends, and if its response has begun,
            # the connection just closes.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        self._refuse(*refusal)

    def _refuse(self, status: int, code: str | None, message: str) -> None:
        """Answer ``status`` with the contract's error body, then close the connection."""
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        rid = new_request_id()
        body = error_body(status, message, rid, code=code)
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(),
            b"x-request-id: " + rid.encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def shutdown(self) -> None:
        # A request held by a fault would otherwise keep the server from stopping until the
        # client gives up: the layer leaves a way to release it here.
        extension = getattr(self, "_fault_extension", None)
        release = extension.get("release") if extension else None
        if release is not None:
            release()
        super().shutdown()


def protocol_with(limits: ConnectionLimits) -> type[FaultH11Protocol]:
    """:class:`FaultH11Protocol` bound to ``limits``: pass it as uvicorn's ``http`` setting."""
    return type("FaultH11Protocol", (FaultH11Protocol,), {"limits": limits})


#: What to pass as uvicorn's ``http`` setting so the fault layer reaches the socket (default limits).
UVICORN_HTTP: type[asyncio.Protocol] = FaultH11Protocol


def extension_of(scope: MutableMapping[str, Any]) -> dict[str, Any] | None:
    """This connection's ``mock_server.transport`` extension dict, when uvicorn runs UVICORN_HTTP."""
    extensions = scope.get("extensions")
    return extensions.get(TRANSPORT_KEY) if extensions else None


def transport_of(scope: MutableMapping[str, Any], send: Any) -> asyncio.Transport | None:
    """The transport carrying this request, or None (for instance under a test client)."""
    found = extension_of(scope)
    if found:
        return cast(asyncio.Transport, found["transport"])
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.Transport):
        return transport
    return None


def reset(transport: asyncio.Transport) -> None:
    """Abort the connection with a TCP RST: SO_LINGER (on, 0 s), then close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:  # already gone: nothing left to reset
            pass
    transport.abort()


def close(transport: asyncio.Transport) -> None:
    """Close the connection gracefully (FIN) after whatever was already written."""
    transport.close()
