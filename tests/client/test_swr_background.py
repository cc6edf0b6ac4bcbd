"""stale-while-revalidate in the background (RFC 5861 section 3), through every driver.

A small Starlette app on loopback (uvicorn in a thread) answers ``/swr/<name>`` with a body
naming its version and ``Cache-Control: max-age=10, stale-while-revalidate=30``; every answer
after the first takes 0.5 s. The cache's wall clock is the real one plus an offset the test
moves forward, so an entry goes stale without waiting (uvicorn's ``Date`` header is off: the
age is the client's own measure). Inside the window a caller gets the stale body at once, one
revalidation runs behind it, and the next call after it lands gets the new body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from client import (
    AsyncResilientTransport,
    CachePolicy,
    Policies,
    ResilientSession,
    ResilientTransport,
    Timeouts,
    call_info,
)
from mock_server._server import BackgroundServer

SLOW = 0.5  # the origin's delay on every answer after the first
FAST = 0.25  # a stale answer must come well before the origin's


class Origin:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}

    async def swr(self, request: Request) -> Response:
        name = request.path_params["name"]
        n = self.hits[name] = self.hits.get(name, 0) + 1
        if n > 1:
            await asyncio.sleep(SLOW)
        headers = {"Cache-Control": "max-age=10, stale-while-revalidate=30", "ETag": f'"v{n}"'}
        return Response(f"v{n}", headers=headers)


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[Origin, str]]:
    app = Origin()
    starlette = Starlette(routes=[Route("/swr/{name}", app.swr)])
    config = uvicorn.Config(starlette, log_level="warning", lifespan="off", date_header=False)
    with BackgroundServer(config, host="127.0.0.1", port=0, admin_token=None, what="swr app") as server:
        yield app, server.url


class Wall:
    """The real wall clock plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _policies(wall: Wall) -> Policies:
    return Policies(cache=CachePolicy(wall_clock=wall), timeouts=Timeouts(connect=2, read=2, total=5))


def _timed_get(get: object, url: str) -> tuple[str, float, object]:
    t0 = time.monotonic()
    response = get(url)  # type: ignore[operator]
    return response.text, time.monotonic() - t0, response


def _check_sync(get: object, origin: Origin, name: str, url: str, wall: Wall) -> None:
    target = f"{url}/swr/{name}"
    assert _timed_get(get, target)[0] == "v1"
    wall.offset += 15  # stale by 5 s: inside the 30 s window
    body, took, response = _timed_get(get, target)
    assert body == "v1" and took < FAST, f"stale answer took {took:.3f} s"
    info = call_info(response)
    assert info is not None and info.cache == "stale" and info.attempts == 0
    # Callers while the revalidation is out: stale at once, and no second request (no stampede).
    for _ in range(3):
        body, took, _ = _timed_get(get, target)
        assert body == "v1" and took < FAST
    deadline = time.monotonic() + 3 * SLOW + 1
    while body != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
        body, took, _ = _timed_get(get, target)
        assert took < FAST
    assert body == "v2" and origin.hits[name] == 2


def test_requests_session_serves_stale_and_revalidates_in_a_thread(origin: tuple[Origin, str]) -> None:
    app, url = origin
    wall = Wall()
    with ResilientSession(_policies(wall)) as session:
        _check_sync(session.get, app, "requests", url, wall)


def test_httpx_sync_transport_serves_stale_and_revalidates_in_a_thread(origin: tuple[Origin, str]) -> None:
    app, url = origin
    wall = Wall()
    with httpx.Client(transport=ResilientTransport(_policies(wall))) as client:
        _check_sync(client.get, app, "httpx", url, wall)


def test_httpx_async_transport_serves_stale_and_revalidates_in_a_task(origin: tuple[Origin, str]) -> None:
    app, url = origin
    wall = Wall()
    target = f"{url}/swr/async"

    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(_policies(wall))) as client:
            assert (await client.get(target)).text == "v1"
            wall.offset += 15
            t0 = time.monotonic()
            responses = await asyncio.gather(*(client.get(target) for _ in range(4)))
            took = time.monotonic() - t0
            assert [r.text for r in responses] == ["v1"] * 4 and took < FAST
            infos = [call_info(r) for r in responses]
            assert all(i is not None and i.cache == "stale" for i in infos)
            body = "v1"
            deadline = time.monotonic() + 3 * SLOW + 1
            while body != "v2" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                body = (await client.get(target)).text
            assert body == "v2" and app.hits["async"] == 2

    asyncio.run(main())


def test_async_aclose_cancels_a_pending_revalidation(origin: tuple[Origin, str]) -> None:
    app, url = origin
    wall = Wall()
    target = f"{url}/swr/cancel"

    async def main() -> None:
        transport = AsyncResilientTransport(_policies(wall))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(target)).text == "v1"
            wall.offset += 15
            assert (await client.get(target)).text == "v1"
            assert len(transport._tasks) == 1
            t0 = time.monotonic()
        assert time.monotonic() - t0 < FAST and not transport._tasks  # cancelled, not awaited out

    asyncio.run(main())


def test_a_failed_background_revalidation_never_reaches_a_caller() -> None:
    """An origin that is gone: the stale answer still comes, and the error stays in the thread."""
    wall = Wall()
    cached = httpx.Response(
        200, content=b"v1", headers={"Cache-Control": "max-age=10, stale-while-revalidate=30"}
    )
    answers: list[httpx.Response | Exception] = [cached, httpx.ConnectError("refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = ResilientTransport(_policies(wall), transport=httpx.MockTransport(handler))
    with httpx.Client(transport=transport) as client:
        assert client.get("http://api.test/x").text == "v1"
        wall.offset += 15
        assert client.get("http://api.test/x").text == "v1"
    # close() waited for the background request; the entry is still served stale afterwards.
    with httpx.Client(transport=transport) as client:
        response = client.get("http://api.test/x")
    info = call_info(response)
    assert response.text == "v1" and info is not None and info.cache == "stale"
