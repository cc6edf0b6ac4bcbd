"""Reaching the client's TCP connection from inside an ASGI app, for resets and truncation.

ASGI hides the socket, and a reset or a short body cannot be faked above it. uvicorn is told to
use one of the fake's HTTP protocols (``uvicorn.Config(app, http=UVICORN_HTTP)``, see
``_protocols.py``), which put each request's transport into
``scope["extensions"]["mock_server.transport"]["transport"]``; the layer may leave a ``release``
callable beside it, which the protocol calls on server shutdown to end a request that a fault is
holding. When the app runs under another uvicorn protocol, :func:`transport_of` falls back to the
transport of uvicorn's ``send`` (a bound method of its request cycle in both the h11 and
httptools implementations).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import MutableMapping
from typing import Any, cast

TRANSPORT_KEY = "mock_server.transport"
_LINGER_RESET = struct.pack("ii", 1, 0)


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
    # uvloop's transports are not asyncio.Transport subclasses: what matters is what is called.
    if hasattr(transport, "abort") and hasattr(transport, "get_extra_info"):
        return cast(asyncio.Transport, transport)
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
