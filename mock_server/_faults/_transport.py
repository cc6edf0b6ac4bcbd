"""Reaching the client's TCP connection from inside an ASGI app, for resets and truncation.

ASGI hides the socket, and a reset or a short body cannot be faked above it. uvicorn is
told to use :data:`UVICORN_HTTP` (``uvicorn.Config(app, http=UVICORN_HTTP)``): uvicorn's own
h11 protocol, which also puts each request's transport into
``scope["extensions"]["mock_server.transport"]["transport"]``; the layer may leave a
``release`` callable beside it, which the protocol calls on server shutdown to end a request
that a fault is holding. When the app runs under another
uvicorn protocol, :func:`transport_of` falls back to the transport of uvicorn's ``send``
(a bound method of its request cycle in both the h11 and httptools implementations).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import MutableMapping
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol

TRANSPORT_KEY = "mock_server.transport"
_LINGER_RESET = struct.pack("ii", 1, 0)


class FaultH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the connection's transport to the app in the scope."""

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

    def shutdown(self) -> None:
        # A request held by a fault would otherwise keep the server from stopping until the
        # client gives up: the layer leaves a way to release it here.
        extension = getattr(self, "_fault_extension", None)
        release = extension.get("release") if extension else None
        if release is not None:
            release()
        super().shutdown()


#: What to pass as uvicorn's ``http`` setting so the fault layer reaches the socket.
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
