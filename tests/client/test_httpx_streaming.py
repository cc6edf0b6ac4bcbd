"""The httpx transports stream a body the engine does not need, under the call's deadline.

A small Starlette app on loopback (uvicorn in a thread) sends bodies chunk by chunk: a 5 MB
body, a body that stops after its first chunk until the client says it has that chunk, and a
body that trickles after a fast start. Memory is measured with tracemalloc (the server runs in
this process too, but it yields one shared chunk at a time).
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from client import (
    AsyncResilientTransport,
    CachePolicy,
    DeadlineExceeded,
    Policies,
    ResilientTransport,
    Timeouts,
    call_info,
)
from mock_server._server import BackgroundServer

pytestmark = pytest.mark.socket

CHUNK = b"x" * 65536
BIG = 80 * len(CHUNK)  # 5 MiB
FIRST = b"f" * (100 * 1024)  # longer than the transports' 64 KiB buffer


class App:
    """The routes, and what the client told the server (``released``: the drip's signal)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.big_calls = 0

    async def big(self, request: Request) -> StreamingResponse:
        self.big_calls += 1

        async def body() -> AsyncIterator[bytes]:
            for _ in range(BIG // len(CHUNK)):
                yield CHUNK

        headers = {"cache-control": request.query_params.get("cc", "no-store")}
        if "length" in request.query_params:
            headers["content-length"] = str(BIG)
        return StreamingResponse(body(), headers=headers)

    async def drip(self, request: Request) -> StreamingResponse:
        """The first chunk, then nothing until the client has it (2 s at most)."""
        self.released.clear()

        async def body() -> AsyncIterator[bytes]:
            yield FIRST
            for _ in range(200):
                if self.released.is_set():
                    break
                await asyncio.sleep(0.01)
            yield b"end"

        return StreamingResponse(body())

    async def slow(self, request: Request) -> StreamingResponse:
        """A fast first chunk, then 1 KiB every 50 ms for 2 s."""

        async def body() -> AsyncIterator[bytes]:
            yield FIRST
            for _ in range(40):
                await asyncio.sleep(0.05)
                yield b"s" * 1024

        return StreamingResponse(body())


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[App, str]]:
    routes = App()
    starlette = Starlette(
        routes=[
            Route("/big", routes.big),
            Route("/drip", routes.drip),
            Route("/slow", routes.slow),
        ]
    )
    config = uvicorn.Config(starlette, log_level="warning", lifespan="off")
    with BackgroundServer(config, host="127.0.0.1", port=0, admin_token=None, what="stream app") as server:
        yield routes, server.url


def _policies(total: float = 10.0, **kw: Any) -> Policies:
    return Policies(timeouts=Timeouts(connect=2, read=2, total=total), **kw)


# -- a large body in bounded memory ---------------------------------------------------------------
@pytest.mark.parametrize("length", [False, True], ids=["chunked", "content-length"])
def test_sync_streams_a_5mb_body_in_bounded_memory(app: tuple[App, str], length: bool) -> None:
    _, url = app
    target = f"{url}/big" + ("?length=1" if length else "")
    with httpx.Client(transport=ResilientTransport(_policies())) as client:
        tracemalloc.start()
        try:
            got = 0
            with client.stream("GET", target) as response:
                for chunk in response.iter_bytes():
                    got += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got == BIG
    assert peak < BIG // 4, f"peak {peak} bytes for a {BIG}-byte body"


@pytest.mark.parametrize("length", [False, True], ids=["chunked", "content-length"])
def test_async_streams_a_5mb_body_in_bounded_memory(app: tuple[App, str], length: bool) -> None:
    _, url = app
    target = f"{url}/big" + ("?length=1" if length else "")

    async def main() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(_policies())) as client:
            tracemalloc.start()
            try:
                got = 0
                async with client.stream("GET", target) as response:
                    async for chunk in response.aiter_bytes():
                        got += len(chunk)
                return got, tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    got, peak = asyncio.run(main())
    assert got == BIG
    assert peak < BIG // 4, f"peak {peak} bytes for a {BIG}-byte body"


def test_a_body_too_long_for_the_cache_streams_and_is_not_stored(app: tuple[App, str]) -> None:
    """A response the cache could store (max-age) but longer than ``max_entry_bytes`` is not
    buffered for it: it streams, and the next call goes to the origin again (RFC 9111 §3: a
    cache may decline to store; it must not hold the caller's body back to decide)."""
    routes, url = app
    p = _policies(cache=CachePolicy(max_entry_bytes=100_000))
    before = routes.big_calls
    with httpx.Client(transport=ResilientTransport(p)) as client:
        tracemalloc.start()
        try:
            with client.stream("GET", f"{url}/big?cc=max-age%3D60") as response:
                got = sum(len(c) for c in response.iter_bytes())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        again = client.get(f"{url}/big?cc=max-age%3D60")
    assert got == BIG and len(again.content) == BIG
    assert peak < BIG // 4
    assert routes.big_calls - before == 2
    info = call_info(again)
    assert info is not None and info.cache == "miss"


# -- the first chunk comes before the body is complete -------------------------------------------
@pytest.mark.parametrize("buffer_bytes", [0, 65536])
def test_sync_first_chunk_arrives_before_the_body_is_complete(
    app: tuple[App, str], buffer_bytes: int
) -> None:
    """The server holds the rest of the body until the client has the first chunk: a transport
    that buffered would wait out the server's 2 s and only then hand anything over."""
    routes, url = app
    transport = ResilientTransport(_policies(), buffer_bytes=buffer_bytes)
    with httpx.Client(transport=transport) as client:
        started = time.monotonic()
        with client.stream("GET", f"{url}/drip") as response:
            chunks = response.iter_bytes()
            first = next(chunks)
            waited = time.monotonic() - started
            routes.released.set()
            rest = b"".join(chunks)
    assert waited < 1.5, f"the first chunk took {waited:.2f} s"
    assert (first + rest).endswith(b"end") and len(first + rest) == len(FIRST) + 3


def test_async_first_chunk_arrives_before_the_body_is_complete(app: tuple[App, str]) -> None:
    routes, url = app

    async def main() -> float:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(_policies())) as client:
            started = time.monotonic()
            async with client.stream("GET", f"{url}/drip") as response:
                chunks = response.aiter_bytes()
                await chunks.__anext__()
                waited = time.monotonic() - started
                routes.released.set()
                async for _ in chunks:
                    pass
        return waited

    assert asyncio.run(main()) < 1.5


# -- the deadline covers a streamed body ---------------------------------------------------------
def test_sync_deadline_over_a_streamed_body(app: tuple[App, str]) -> None:
    """The head and the first 100 KiB come at once, then a trickle: the caller gets chunks, and
    then DeadlineExceeded from its iteration, counted as a failure in the metrics."""
    _, url = app
    transport = ResilientTransport(_policies(total=0.5))
    got = 0
    started = time.monotonic()
    with (
        httpx.Client(transport=transport) as client,
        client.stream("GET", f"{url}/slow") as response,
        pytest.raises(DeadlineExceeded),
    ):
        for chunk in response.iter_bytes():
            got += len(chunk)
    assert got >= len(FIRST)
    assert time.monotonic() - started < 1.5
    snapshot = transport.metrics.snapshot()
    assert snapshot.failures == 1 and snapshot.errors == {"DeadlineExceeded": 1}


def test_async_deadline_over_a_streamed_body(app: tuple[App, str]) -> None:
    _, url = app
    transport = AsyncResilientTransport(_policies(total=0.5))

    async def main() -> int:
        got = 0
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", f"{url}/slow") as response:
                with pytest.raises(DeadlineExceeded):
                    async for chunk in response.aiter_bytes():
                        got += len(chunk)
        return got

    started = time.monotonic()
    assert asyncio.run(main()) >= len(FIRST)
    assert time.monotonic() - started < 1.5
    assert transport.metrics.snapshot().errors == {"DeadlineExceeded": 1}


# -- the connection goes back when the stream is closed -------------------------------------------
def test_sync_connections_are_released_when_streams_close(app: tuple[App, str]) -> None:
    """Two connections, thirty streamed calls each closed after one chunk or read to the end:
    a stream that kept its connection would leave the third call waiting for the pool until
    its deadline."""
    _, url = app
    transport = ResilientTransport(_policies(total=2), limits=httpx.Limits(max_connections=2))
    with httpx.Client(transport=transport) as client:
        for i in range(30):
            with client.stream("GET", f"{url}/big") as response:
                chunks = response.iter_bytes()
                next(chunks)
                if i % 3 == 0:
                    for _ in chunks:
                        pass
    assert transport.metrics.snapshot().failures == 0


def test_async_connections_are_released_when_streams_close(app: tuple[App, str]) -> None:
    """The async transport also queues calls for a connection itself: the slot goes with the
    stream and comes back on close."""
    _, url = app
    transport = AsyncResilientTransport(_policies(total=2), limits=httpx.Limits(max_connections=2))

    async def one(client: httpx.AsyncClient, i: int) -> None:
        async with client.stream("GET", f"{url}/big") as response:
            chunks = response.aiter_bytes()
            await chunks.__anext__()
            if i % 3 == 0:
                async for _ in chunks:
                    pass

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            for start in range(0, 30, 6):
                await asyncio.gather(*(one(client, i) for i in range(start, start + 6)))

    asyncio.run(main())
    assert transport.metrics.snapshot().failures == 0


def test_buffer_bytes_is_checked() -> None:
    with pytest.raises(ValueError, match="buffer_bytes"):
        ResilientTransport(buffer_bytes=-1)
    with pytest.raises(ValueError, match="buffer_bytes"):
        AsyncResilientTransport(buffer_bytes="64k")  # type: ignore[arg-type]
