"""Commands from concurrent requests sent back to back on one Redis connection (redis-py's).

Usable by any state on Redis: ``pipe = CommandPipe(client.connection_pool)``, then
``await pipe.call("EVALSHA", sha, 0, *args)`` from any task; ``await pipe.close()`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError


class CommandPipe:
    """The request path's commands, sent back to back on one connection of redis-py's.

    Concurrent requests each awaiting their own command would each take a pooled connection, a
    write and a read wake-up (redis-py's client spends some 55 µs of CPU a command that way).
    Here every command queued within one event-loop tick goes out in one write, and one reader
    hands the replies, which Redis sends in order, to their futures: the CPU a request costs
    hardly grows with the load. redis-py packs the commands and parses the replies (an error
    reply fails only its own command); a lost connection fails every command on it, and the next
    command connects again.
    """

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._conn: Any = None
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._scheduled = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, fut))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        async with self._lock:  # FIFO: batches reach the socket in the order they were taken
            self._scheduled = False
            batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                conn = await self._connection()
                self._waiting.extend(fut for _, fut in batch)
                self._wake.set()
                await conn.send_packed_command(conn.pack_commands([args for args, _ in batch]), False)
            except Exception as exc:  # noqa: BLE001 - redis-py may fail a closing connection oddly
                self._fail(exc, [fut for _, fut in batch])

    async def _connection(self) -> Any:
        conn = self._conn
        reader = getattr(conn, "_reader", None)
        if conn is not None and (reader is None or reader.at_eof()):
            # Closed by Redis while idle (a restart): a new connection, not a failed request.
            self._fail(ConnectionError("closed by the server"), [])
        if self._conn is None:
            conn = self._pool.make_connection()  # type: ignore[no-untyped-call]
            await conn.connect()
            self._conn = conn
            self._reader = asyncio.get_running_loop().create_task(self._read(conn))
        return self._conn

    async def _read(self, conn: Any) -> None:
        waiting = self._waiting
        while self._conn is conn:  # a reader of a lost connection just ends
            if not waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                reply: Any = await conn.read_response()
            except ResponseError as exc:  # an error reply: its own command failed
                reply = exc
            except Exception as exc:  # noqa: BLE001 - any failure to read ends this connection
                if self._conn is conn:
                    self._fail(exc, [])
                return
            fut = waiting.popleft()
            if fut.done():
                continue
            if isinstance(reply, ResponseError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def _fail(self, exc: BaseException, extra: list[asyncio.Future[Any]]) -> None:
        conn, self._conn = self._conn, None
        lost = [*self._waiting, *extra]
        self._waiting.clear()
        for fut in lost:
            if not fut.done():
                fut.set_exception(ConnectionError(str(exc)))
        if conn is not None:
            asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
