"""The per-kind fault injectors: what the layer does to a request once a fault is decided.

One method per kind of fault: ``status`` answers in the API's place; ``timeout`` holds the
request, then closes; ``reset`` and ``close`` break the connection; ``truncate``,
``malformed_json``, ``wrong_content_type`` and ``slow_body`` alter the API's own response. A
``latency`` delay comes first, whatever follows. Delays are futures resolved by
``loop.call_later`` (what ``asyncio.sleep`` does), registered with the fault state's held
requests so that an admin reset can release them at once: a released request gets a 503. A
delay is never shorter than asked (see :class:`_Timer`).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import _inject, _transport
from ._engine import Decision
from ._journal import Entry
from ._model import Fault
from ._state import CANCELLED, ELAPSED, GONE, SHUTDOWN, HeldRequests, resolve

_NOTED = frozenset((b"retry-after", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"ratelimit"))


class _Timer:
    """Resolves ``fut`` as elapsed once ``delay_s`` has passed, never before.

    uvloop's timers count whole milliseconds from a clock read at the start of the loop's turn,
    so one can fire up to a millisecond early: an injected 30 ms would then be 29.5. The timer
    checks the time when it fires and waits out what is left.
    """

    __slots__ = ("_loop", "_fut", "_deadline", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[str], delay_s: float) -> None:
        self._loop = loop
        self._fut = fut
        self._deadline = time.monotonic() + delay_s
        self._handle = loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        left = self._deadline - time.monotonic()
        if left > 0:
            self._handle = self._loop.call_later(left, self._fire)
        else:
            resolve(self._fut, ELAPSED)

    def cancel(self) -> None:
        self._handle.cancel()


def note_headers(entry: Entry, headers: Any, wall: Callable[[], float]) -> None:
    """Keep what the compliance report needs from a response's headers: when to come back."""
    ratelimit: Any = None
    for key, value in headers:
        # ASGI header names are lowercase already; most headers are of no interest.
        if key not in _NOTED:
            continue
        name = bytes(key)
        if name == b"retry-after":
            entry.retry_after_s = _retry_after_seconds(bytes(value).decode("latin-1"), wall)
        elif name == b"x-ratelimit-remaining":
            entry.ratelimit_remaining = _int_or_none(value)
        elif name == b"x-ratelimit-reset":
            reset = _int_or_none(value)
            entry.ratelimit_reset_at = float(reset) if reset is not None else None
        elif name == b"ratelimit":
            ratelimit = value
    # The IETF header's t= is the reset only where X-RateLimit-Reset did not say (every API
    # response has both: parse it only when needed).
    if entry.ratelimit_reset_at is None and ratelimit is not None:
        t_seconds: float | None = None
        for part in bytes(ratelimit).decode("latin-1").split(";"):
            if part.strip().startswith("t="):
                t_seconds = _float_or_none(part.strip()[2:])
        if t_seconds is not None:
            entry.ratelimit_reset_at = wall() + t_seconds


def _retry_after_seconds(value: str, wall: Callable[[], float]) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - wall())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(bytes(value))
    except ValueError:
        return None


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _transport_for(scope: Scope, send: Send, kind: str) -> asyncio.Transport:
    transport = _transport.transport_of(scope, send)
    if transport is None:
        raise RuntimeError(
            f"the {kind!r} fault needs the connection: serve the app with uvicorn "
            "(uvicorn.Config(app, http=UVICORN_HTTP))"
        )
    return transport


Injector = Callable[[Fault, Decision, Entry, Scope, Receive, Send], Awaitable[None]]


class Injectors:
    """Carries out decisions over the API app ``app``, holding requests in ``held``."""

    def __init__(
        self,
        app: ASGIApp,
        held: HeldRequests,
        *,
        wall: Callable[[], float] = time.time,
        rate_limit: int = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.held = held
        self.wall = wall
        self.clock = clock
        self.rate_limit = rate_limit
        self._by_kind: dict[str, Injector] = {
            "status": self.status,
            "timeout": self.timeout,
            "reset": self.reset,
            "close": self.close,
            "truncate": self.truncate,
            "malformed_json": self.alter,
            "wrong_content_type": self.alter,
            "slow_body": self.alter,
        }

    def over(self, app: ASGIApp) -> Injectors:
        """These injectors, over another app (for an answer the API gave already)."""
        return Injectors(app, self.held, wall=self.wall, rate_limit=self.rate_limit, clock=self.clock)

    def observing(self, entry: Entry, send: Send) -> Send:
        """``send``, noting the API's status, outcome and rate-limit headers in ``entry``."""
        wall, clock = self.wall, self.clock

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                note_headers(entry, message.get("headers", ()), wall)
            elif not message.get("more_body", False) and message["type"] == "http.response.body":
                entry.outcome = "response"
                entry.answered_mono = clock()
            await send(message)

        return observed

    async def inject(
        self, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Delay the request if the decision says so, then inject its fault (or let the API answer)."""
        if decision.delay_s > 0:
            held = await self.hold(decision.delay_s, entry.session, scope)
            if held != ELAPSED:
                await self.answer_cancelled(entry, send, held)
                return
        fault = decision.fault
        if fault is None:
            await self.app(scope, receive, self.observing(entry, send))
            return
        await self._by_kind[fault.type](fault, decision, entry, scope, receive, send)

    # -- holding requests -----------------------------------------------------------------------

    async def hold(
        self, delay_s: float | None, session: str | None, scope: Scope, receive: Receive | None = None
    ) -> str:
        """Wait ``delay_s`` (None: forever); ``elapsed``, or ``cancelled`` by an admin reset, or
        ``shutdown`` when the server stops, or ``gone`` when ``receive`` is given and the client
        disconnects first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        timer = _Timer(loop, fut, delay_s) if delay_s is not None else None
        watcher: asyncio.Task[None] | None = None
        if receive is not None:
            watcher = loop.create_task(_inject.until_disconnect(receive))
            watcher.add_done_callback(lambda _: resolve(fut, GONE))
        self.held.add(fut, session)
        extension = _transport.extension_of(scope)
        if extension is not None:
            extension["release"] = functools.partial(resolve, fut, SHUTDOWN)
        try:
            return await fut
        finally:
            self.held.discard(fut)
            if extension is not None:
                extension.pop("release", None)
            if timer is not None:
                timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()

    async def answer_cancelled(self, entry: Entry, send: Send, why: str) -> None:
        message = "the server is shutting down" if why == SHUTDOWN else "request cancelled by an admin reset"
        fault = Fault("status", status=503, message=message)
        status, headers, body = _inject.status_response(fault, entry.request_id, self.wall())
        entry.status, entry.outcome = status, "cancelled"
        await _inject.send_response(send, status, headers, body)

    # -- the kinds ------------------------------------------------------------------------------

    async def status(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # Read (and so fingerprint) the body the API never sees: the compliance report tells a
        # retry of this request from a new one with a different body.
        await _inject.drain(receive)
        status, headers, body = _inject.status_response(
            fault, entry.request_id, self.wall(), rate_limit=self.rate_limit, rule=decision.rule
        )
        note_headers(entry, headers, self.wall)
        entry.status, entry.outcome = status, "response"
        await _inject.send_response(send, status, headers, body)

    async def reset(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        transport = _transport_for(scope, send, "reset")
        await _inject.drain(receive)
        _transport.reset(transport)
        entry.outcome = "reset"
        await _inject.wait_closed(receive)

    async def close(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        transport = _transport_for(scope, send, "close")
        await _inject.drain(receive)
        _transport.close(transport)
        entry.outcome = "closed"
        await _inject.wait_closed(receive)

    async def timeout(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not await _inject.drain(receive):
            entry.outcome = "client_gone"
            return
        outcome = await self.hold(fault.hang_s, entry.session, scope, receive)
        if outcome in (CANCELLED, SHUTDOWN):
            await self.answer_cancelled(entry, send, outcome)
        elif outcome == GONE:
            entry.outcome = "client_gone"
        else:
            _transport.close(_transport_for(scope, send, "timeout"))
            entry.outcome = "timeout"
            await _inject.wait_closed(receive)

    async def truncate(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Send the API's headers and part of its body, then close the connection."""
        captured = await _inject.capture(self.app, scope, receive)
        entry.status = captured.status
        note_headers(entry, captured.headers, self.wall)
        body = bytes(captured.body)
        transport = _transport_for(scope, send, "truncate")
        if body and scope["method"] != "HEAD":
            cut = min(int(len(body) * (fault.fraction or 0.0)), len(body) - 1)
            headers = captured.replaced(b"content-length", str(len(body)).encode())
            headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
            await send({"type": "http.response.start", "status": captured.status, "headers": headers})
            await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
        _transport.close(transport)
        entry.outcome = "truncated"
        await _inject.wait_closed(receive)

    async def alter(
        self, fault: Fault, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Faults that change the API's own response: malformed_json, wrong_content_type,
        slow_body."""
        captured = await _inject.capture(self.app, scope, receive)
        entry.status = captured.status
        note_headers(entry, captured.headers, self.wall)
        body = bytes(captured.body)
        kind = fault.type
        if kind == "malformed_json":
            body = _inject.corrupt_json(body)
            headers = captured.replaced(b"content-length", str(len(body)).encode())
        elif kind == "wrong_content_type":
            content_type = (fault.content_type or _inject.DEFAULT_WRONG_TYPE).encode()
            headers = captured.replaced(b"content-type", content_type)
        else:
            headers = captured.headers
        await send({"type": "http.response.start", "status": captured.status, "headers": headers})
        if kind == "slow_body":
            if not await self._trickle(fault, body, entry, scope, send):
                return
        else:
            await send({"type": "http.response.body", "body": body, "more_body": False})
        entry.outcome = "response"

    async def _trickle(self, fault: Fault, body: bytes, entry: Entry, scope: Scope, send: Send) -> bool:
        """Send ``body`` slowly; False when an admin reset or the client cut it short."""
        if fault.bytes_per_s is not None:
            chunk = max(1, math.ceil(fault.bytes_per_s * 0.05))
            pause = chunk / fault.bytes_per_s
        else:
            chunk = fault.chunk_bytes or 16
            pause = (fault.chunk_delay_ms or 0.0) / 1000.0
        transport = _transport.transport_of(scope, send)
        for start in range(0, len(body), chunk):
            piece = body[start : start + chunk]
            last = start + chunk >= len(body)
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
            if last:
                return True
            if transport is not None and transport.is_closing():
                entry.outcome = "client_gone"
                return False
            if await self.hold(pause, entry.session, scope) != ELAPSED:
                entry.outcome = "cancelled"
                if transport is not None:
                    _transport.close(transport)
                return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
