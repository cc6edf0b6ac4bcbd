"""Server-Sent Events over the journal: ``GET /__admin/events``.

Each request is sent once, when it completes (its status, outcome and latency known), as a
``data:`` line holding the same object as ``GET /__admin/requests``, with ``id:`` its journal
sequence number. The stream takes the journal's filters; ``limit=N`` first replays the newest N
matching requests the journal holds.

Events go out in completion order, so ids are not increasing (a request held by a fault completes
after later ones). A client that reconnects with ``Last-Event-ID: N`` gets every matching request
that completed after request N did (the browser's EventSource sends that header by itself): the
journal is the replay buffer, nothing is lost while it still holds them. When N is no longer in
the journal (a reset cleared it, or it was pushed out), the stream says so with an ``event: gap``
and replays every completed request after N by sequence number (every one, when N is past the
newest: an id from before the fake restarted).

Memory is bounded per client: a reader that falls ``buffer`` events behind has its queue dropped
and is caught up from the journal once it reads again, the way a reconnect would. Events are
written in batches (at most one write per ``flush_s``), a comment line keeps idle connections
alive every ``heartbeat_s``, and every stream ends when the server shuts down.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import _transport
from ._journal import Entry, Filter, Journal

#: The most bytes of events handed to the connection in one write: the transport's flow control
#: then holds the writer until the client has read them, so a slow client costs this much.
_CHUNK_BYTES = 64 * 1024
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # A reverse proxy in front must not buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def _finished(entry: Entry) -> float:
    return entry.arrived_mono + (entry.duration_s or 0.0)


_text = json.encoder.encode_basestring_ascii


def _str(value: str | None) -> str:
    return "null" if value is None else _text(value)


def _num(value: float | None) -> str:
    # repr is what json.dumps writes for a finite float (the journal holds no inf or NaN).
    return "null" if value is None else repr(value)


# The last second formatted, and its text: requests come by the thousand in the same second.
_last_second: list[Any] = [None, ""]


def _iso(epoch: float) -> str:
    """``Entry.to_dict``'s ``arrived_at_iso``: the date part formatted once a second, the
    microseconds rounded as ``datetime.fromtimestamp`` rounds them (half to even)."""
    fraction, whole = math.modf(epoch)
    second, micro = int(whole), round(fraction * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if _last_second[0] != second:
        _last_second[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_last_second[1]}.{micro:06d}Z" if micro else f"{_last_second[1]}Z"


def entry_json(e: Entry) -> str:
    """``json.dumps(e.to_dict())``, compact, written field by field: a page open at thousands of
    requests a second makes this the stream's main cost (tests/ui/test_events.py checks the two
    agree)."""
    duration = None if e.duration_s is None else round(e.duration_s * 1000.0, 3)
    return (
        f'{{"seq":{e.seq},"request_id":{_text(e.request_id)},"method":{_text(e.method)},'
        f'"path":{_text(e.path)},"query":{_text(e.query)},"tenant":{_str(e.tenant)},'
        f'"session":{_str(e.session)},"idempotency_key":{_str(e.idempotency_key)},'
        f'"arrived_at":{e.arrived_at!r},"arrived_at_iso":"{_iso(e.arrived_at)}",'
        f'"status":{"null" if e.status is None else e.status},"outcome":{_str(e.outcome)},'
        f'"completed":{"true" if e.outcome is not None else "false"},"fault":{_str(e.fault)},'
        f'"rule":{_str(e.rule)},"rules":[{",".join(_text(r) for r in e.rules)}],'
        f'"injected_delay_ms":{round(e.injected_delay_s * 1000.0, 3)!r},"duration_ms":{_num(duration)},'
        f'"retry_after_s":{_num(e.retry_after_s)},"ratelimit_remaining":'
        f"{'null' if e.ratelimit_remaining is None else e.ratelimit_remaining},"
        f'"ratelimit_reset_at":{_num(e.ratelimit_reset_at)}}}'
    )


def encode(entry: Entry) -> str:
    """One request as an SSE event."""
    return f"id: {entry.seq}\ndata: {entry_json(entry)}\n\n"


def _comment_event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class TooManyClients(Exception):
    """Every event stream slot is taken."""


class _Subscriber:
    __slots__ = ("match", "queue", "limit", "overflowed", "wake", "closed")

    def __init__(self, f: Filter, limit: int) -> None:
        self.match = f.compile()
        self.queue: deque[Entry] = deque()
        self.limit = limit
        self.overflowed = False
        self.wake = asyncio.Event()
        self.closed = False

    def offer(self, entry: Entry) -> None:
        if self.overflowed or not self.match(entry):
            return
        if len(self.queue) >= self.limit:
            # Too far behind: forget the queue (the journal still has these) and catch up later.
            self.overflowed = True
            self.queue.clear()
        else:
            self.queue.append(entry)
        if not self.wake.is_set():
            self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class EventHub:
    """The open event streams over one journal, fed with each request as it completes.

    The hub listens to the journal only while a stream is open: without one, the request path
    pays nothing. ``max_clients`` bounds the open streams, ``buffer`` each one's queue of unsent
    events.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        max_clients: int = 32,
        buffer: int = 4096,
        flush_s: float = 0.1,
        heartbeat_s: float = 15.0,
    ) -> None:
        if max_clients < 1 or buffer < 1 or flush_s < 0 or heartbeat_s <= 0:
            raise ValueError("max_clients and buffer must be >= 1, flush_s >= 0, heartbeat_s > 0")
        self.journal = journal
        self.max_clients = max_clients
        self.buffer = buffer
        self.flush_s = flush_s
        self.heartbeat_s = heartbeat_s
        self._subscribers: list[_Subscriber] = []

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def publish(self, entry: Entry) -> None:
        """A request completed: queue it for every stream whose filter it matches."""
        for subscriber in self._subscribers:
            subscriber.offer(entry)

    def close(self) -> None:
        """End every open stream (the server is stopping)."""
        for subscriber in self._subscribers:
            subscriber.close()

    def stream(self, f: Filter, *, last_event_id: int | None = None, limit: int | None = None) -> Response:
        """The response streaming the requests ``f`` selects; raises TooManyClients when full."""
        if len(self._subscribers) >= self.max_clients:
            raise TooManyClients(f"{self.max_clients} event streams are open already")
        return _EventStream(self, f, last_event_id, limit)

    # -- used by the streams --------------------------------------------------------------------

    def _subscribe(self, f: Filter) -> _Subscriber:
        subscriber = _Subscriber(f, self.buffer)
        if not self._subscribers:
            self.journal.listeners.append(self.publish)
        self._subscribers.append(subscriber)
        return subscriber

    def _unsubscribe(self, subscriber: _Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers and self.publish in self.journal.listeners:
            self.journal.listeners.remove(self.publish)

    def _completed(self, subscriber: _Subscriber) -> list[Entry]:
        # duration_s is set when the layer finishes a request, just before it is published.
        return [e for e in self.journal if e.duration_s is not None and subscriber.match(e)]


class _EventStream(Response):
    """One client's stream: an ASGI response that runs until the client leaves or the server stops."""

    def __init__(self, hub: EventHub, f: Filter, last_event_id: int | None, limit: int | None) -> None:
        super().__init__(status_code=200, headers=None)
        self.hub = hub
        self.filter = f
        self.last_event_id = last_event_id
        self.limit = limit
        # The last event sent, by completion time and sequence number: replays start after it.
        self._cursor: tuple[float, int] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD":
            # The headers a GET would get, and no stream to hold open.
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        hub = self.hub
        # Subscribe and take the replay in one step (no await between): nothing completes unseen.
        subscriber = hub._subscribe(self.filter)
        extension = _transport.extension_of(scope)
        if extension is not None:
            # The protocol calls this on server shutdown: the stream ends instead of holding it up.
            extension["release"] = subscriber.close
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, subscriber))
        try:
            first = itertools.chain(("retry: 1000\n\n",), self._replay(subscriber))
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await self._write(send, first)
            await self._pump(subscriber, send)
        except OSError:  # the client went away mid-write
            pass
        finally:
            hub._unsubscribe(subscriber)
            watcher.cancel()
            if extension is not None and extension.get("release") == subscriber.close:
                extension.pop("release", None)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass

    def _replay(self, subscriber: _Subscriber) -> Iterable[str]:
        if self.last_event_id is not None:
            return self._resume(subscriber, self.last_event_id)
        if self.limit:
            done = sorted(self.hub._completed(subscriber), key=_finished)[-self.limit :]
            return self._sent(done)
        return ()

    def _resume(self, subscriber: _Subscriber, last_id: int) -> Iterable[str]:
        done = self.hub._completed(subscriber)
        anchor = next((e for e in done if e.seq == last_id), None)
        if anchor is None:
            seqs = [e.seq for e in self.hub.journal]
            # Sequence numbers only grow, so an id past the newest is from before a restart of
            # the fake: everything here is news to the client.
            since = last_id if seqs and max(seqs) >= last_id else 0
            later = sorted((e for e in done if e.seq > since), key=_finished)
            gap = _comment_event("gap", {"last_event_id": last_id, "oldest_seq": min(seqs, default=None)})
            return itertools.chain((gap,), self._sent(later))
        self._cursor = (_finished(anchor), anchor.seq)
        return self._catch_up(subscriber, done)

    def _catch_up(self, subscriber: _Subscriber, done: list[Entry] | None = None) -> Iterable[str]:
        """Every matching completed request after the cursor, from the journal."""
        subscriber.queue.clear()
        subscriber.overflowed = False
        if done is None:
            done = self.hub._completed(subscriber)
        cursor = self._cursor
        keyed = sorted(((_finished(e), e.seq), e) for e in done)
        if cursor is not None:
            keyed = [(k, e) for k, e in keyed if k > cursor]
        return self._sent([e for _, e in keyed])

    def _sent(self, entries: list[Entry]) -> Iterable[str]:
        """The events for ``entries``, encoded as they are written (a replay can be long)."""
        if entries:
            last = entries[-1]
            self._cursor = (_finished(last), last.seq)
        return (encode(e) for e in entries)

    async def _pump(self, subscriber: _Subscriber, send: Send) -> None:
        hub = self.hub
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        while not subscriber.closed:
            wait = hub.heartbeat_s - (loop.time() - last_write)
            if wait > 0:
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), wait)
                except TimeoutError:
                    pass
            if subscriber.closed:
                return
            if hub.flush_s and subscriber.wake.is_set():
                # Let events gather: one write per flush_s however many arrive.
                await asyncio.sleep(hub.flush_s)
                if subscriber.closed:
                    return
            subscriber.wake.clear()
            if subscriber.overflowed:
                events = self._catch_up(subscriber)
            else:
                queued = list(subscriber.queue)
                subscriber.queue.clear()
                events = self._sent(queued)
            if not await self._write(send, events):
                if loop.time() - last_write < hub.heartbeat_s:
                    continue
                await self._write(send, (": ping\n\n",))
            last_write = loop.time()

    async def _write(self, send: Send, events: Iterable[str]) -> bool:
        """Send ``events`` in chunks of about _CHUNK_BYTES; whether there were any."""
        chunk: list[str] = []
        size = 0
        wrote = False
        for event in events:
            wrote = True
            chunk.append(event)
            size += len(event)
            if size >= _CHUNK_BYTES:
                await send({"type": "http.response.body", "body": "".join(chunk).encode(), "more_body": True})
                chunk, size = [], 0
        if chunk:
            await send({"type": "http.response.body", "body": "".join(chunk).encode(), "more_body": True})
        return wrote


async def _watch_disconnect(receive: Receive, subscriber: _Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            subscriber.close()
            return
