"""What the fake's HTTP protocols add to uvicorn's, whichever parser reads the requests.

Both :class:`~._h11.FaultH11Protocol` and :class:`~._httptools.FaultHttpToolsProtocol` mix in
:class:`GuardedProtocol`; each tells it only what its own parser knows (whether a request head is
being awaited, and where one is refused). Here are the parts that must not differ between them:

- the transport extension: each request's scope carries
  ``scope["extensions"]["mock_server.transport"]``, a dict holding the connection's transport,
  where the fault layer may leave a ``release`` callable that ends a request it is holding; the
  protocol calls it when the server shuts down;
- the header timeout (:class:`~._limits.ConnectionLimits`): a connection that sends nothing is
  closed, a head begun but not complete in time gets 408;
- refusals: the contract's error body, then the connection is closed, so nothing queued behind a
  refused request is ever served. Refusals happen below the ASGI app: they are not in the journal
  and take no rate-limit tokens;
- a quiet log: uvicorn logs a line for each request it cannot parse or cannot upgrade; here each
  is answered instead, and a client sending many must not fill the log;
- one send() per response (:class:`CoalescingTransport`) where uvicorn makes two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar, cast

from uvicorn.server import ServerState

from ._limits import ConnectionLimits, Refusal, refusal_bytes

# Lines uvicorn logs for what a client sent: one each time, and a client controls how often.
_CLIENT_CAUSED = (
    "Invalid HTTP request received.",
    "Unsupported upgrade request.",
    "No supported WebSocket library detected.",
)


class _NotClientCaused(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_CLIENT_CAUSED))


# A child of uvicorn's error log: same handlers and format, without the lines above.
_log = logging.getLogger("uvicorn.error.connections")
_log.addFilter(_NotClientCaused())

#: Called with each new connection's transport (see ``protocol_with``'s ``on_connection``).
ConnectionHook = Callable[[asyncio.Transport], None]


def quiet_log(uvicorns: logging.Logger) -> logging.Logger:
    """The connections' log, at the level uvicorn configured (uvicorn reads the level to skip its
    trace lines)."""
    level = uvicorns.getEffectiveLevel()
    if _log.level != level:
        _log.setLevel(level)
    return _log


class CoalescingTransport:
    """The connection's transport, joining the writes of one turn of the event loop into one.

    uvicorn writes a response's head, then its body: two send() system calls, which on loopback
    cost more than anything else a small request does. Here a write is held until the loop's
    next turn, and whatever else is written meanwhile (the body) goes out with it. Nothing waits
    longer than that turn: a trickled body still leaves piece by piece. ``close`` sends what is
    held first (a truncated body must reach the client before the FIN); ``abort`` drops it, as
    a reset does.
    """

    __slots__ = ("transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            held.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self.transport.get_write_buffer_size() + (sum(map(len, held)) if held else 0)

    def __getattr__(self, name: str) -> Any:  # the rest of the Transport interface
        return getattr(self.transport, name)


class GuardedProtocol:
    """The transport extension, the header timeout and refusals, for a uvicorn HTTP protocol.

    A subclass calls :meth:`_guard_init` from ``__init__``, :meth:`_guard_connection` and
    :meth:`_guard_started` from ``connection_made``, :meth:`_cancel_header_timer` from
    ``connection_lost``,
    :meth:`_release_held` from ``shutdown``, and answers :meth:`_awaiting_head`.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    #: Told of each new connection (the server's watch on open files), or None.
    on_connection: ClassVar[ConnectionHook | None] = None

    # Set by uvicorn's protocol classes.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    server_state: ServerState
    cycle: Any

    def _guard_init(self) -> None:
        #: What the fault layer reaches through each request's scope.
        self.fault_extension: dict[str, Any] = {}
        self._header_timer: asyncio.TimerHandle | None = None
        # Whether any byte of the request head being awaited has arrived.
        self._head_begun = False

    def _guard_connection(self, transport: asyncio.Transport) -> asyncio.Transport:
        """Call first in ``connection_made``; give uvicorn the transport it returns."""
        hook = type(self).on_connection
        if hook is not None:
            hook(transport)
        coalescing = cast(asyncio.Transport, CoalescingTransport(transport, self.loop))
        self.fault_extension["transport"] = coalescing
        return coalescing

    def _guard_started(self) -> None:
        """Call last in ``connection_made``."""
        # A connection that never sends is closed once the header timeout passes.
        self._arm_header_timer()

    def _awaiting_head(self) -> bool:
        """Whether the connection is between requests: no request of it is being served."""
        raise NotImplementedError

    # -- the header timeout ---------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        # Not restarted while armed: the whole head must arrive within the timeout, so
        # dribbling a header a byte at a time does not keep the connection open.
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _head_arriving(self, begun: bool) -> None:
        """After a read: a head is (still) awaited, and whether any of it came; or not."""
        if begun:
            self._head_begun = True
            self._arm_header_timer()
        else:
            self._head_begun = False
            self._cancel_header_timer()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self._head_begun:
            self._refuse(self.limits.timed_out())
        else:  # nothing was sent: there is no request to answer
            self.transport.close()

    # -- refusals -------------------------------------------------------------------------------

    def _refuse_request(self, refusal: Refusal) -> None:
        """Refuse what the parser could not accept, which may come while the app is still
        reading an earlier part of the same request (a bad chunk in its body)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's request ends; if its response has begun, the connection just closes.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self._cancel_header_timer()
                self.transport.close()
                return
        self._refuse(refusal)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer with the contract's error body, then close the connection."""
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        self.transport.write(refusal_bytes(refusal, self.server_state.default_headers))
        self.transport.close()

    # -- shutdown -------------------------------------------------------------------------------

    def _release_held(self) -> None:
        # A request held by a fault would otherwise keep the server from stopping until the
        # client gives up: the layer leaves a way to release it here.
        release = self.fault_extension.get("release")
        if release is not None:
            release()
