"""uvicorn's h11 protocol with the fake's connection guard: the fallback where httptools is missing.

h11 is pure Python (uvicorn depends on it), so this protocol is always there; httptools is about
twice as fast (see ``_httptools.py``). Both refuse the same requests the same way (``_limits.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._connection import GuardedProtocol, quiet_log
from ._limits import ConnectionLimits, Refusal, malformed
from ._transport import TRANSPORT_KEY


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
                self.refusal = self.limits.too_large()
            else:
                # h11's 501 (a transfer coding other than chunked) is a 400 here: RFC 9112
                # section 6.3 requires it when chunked is not the final coding.
                self.refusal = malformed(str(exc))
            raise
        if type(event) is h11.Request:
            refusal = self.limits.check_head(event.method, event.target, event.headers)
            if refusal is not None:
                self.refusal = refusal
                raise h11.RemoteProtocolError(refusal[2], error_status_hint=refusal[0])
        return event


class FaultH11Protocol(GuardedProtocol, H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport to the app in the scope and
    bounding what a connection may cost (:class:`~._limits.ConnectionLimits`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = self._guarded = _GuardedConnection(self.limits)
        self.logger = quiet_log(self.logger)
        self._guard_init()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(self._guard_connection(transport))
        app = self.app
        extension = self.fault_extension

        # uvicorn's h11 protocol builds the scope inline: the extension goes in on the way to
        # the app.
        async def app_with_transport(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[TRANSPORT_KEY] = extension
            await app(scope, receive, send)

        self.app = app_with_transport
        self._guard_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        else:
            # Still IDLE after bytes came: part of a head (its first bytes start the timeout).
            self._head_arriving(self._awaiting_head())

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for every h11.RemoteProtocolError, with a plain-text body; the
        # contract wants its error body, and the status the guard chose (431, 414, 400).
        self._refuse_request(self._guarded.refusal or malformed(msg))

    def shutdown(self) -> None:
        self._release_held()
        super().shutdown()
