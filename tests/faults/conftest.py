"""A tiny Starlette API behind the fault layer, served by uvicorn on loopback in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_server._faults import FaultLayer, RuleSet, parse_rules
from mock_server._faults._protocols import protocol_class

#: The two ways the fake runs: its default (httptools on uvloop) and the fallback where those C
#: extensions are missing (h11 on asyncio). Socket-level tests run against both.
STACKS = {"httptools": ("httptools", "uvloop"), "h11": ("h11", "asyncio")}

BIG = {"items": [{"name": f"profile-{i:03d}", "vector": [0.125] * 8} for i in range(40)]}


def tiny_app(resets: list[str | None] | None = None) -> Starlette:
    """An API of three routes that reports the request id the layer chose."""

    async def hello(request: Request) -> Response:
        rid = request.scope["state"]["request_id"]
        return JSONResponse({"hello": "world", "request_id": rid}, headers={"X-Request-ID": rid})

    async def big(request: Request) -> Response:
        return JSONResponse(BIG)

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"len": len(body)}, status_code=201)

    return Starlette(
        routes=[
            Route("/hello", hello),
            Route("/big", big),
            Route("/echo", echo, methods=["POST"]),
            Route("/profiles/{name}", hello),
        ]
    )


def tenant_of(headers: Headers) -> str | None:
    key = headers.get("x-api-key")
    return {"demo-key": "demo", "acme-key": "acme"}.get(key or "")


class Served:
    """A running server: the layer, its URL, and what ``on_reset`` was called with."""

    def __init__(
        self, layer: FaultLayer, server: uvicorn.Server, thread: threading.Thread, resets: list[Any]
    ):
        self.layer = layer
        self.server = server
        self.thread = thread
        self.resets = resets
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + "/__admin" + path, timeout=10, **kwargs)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop and return its result (for direct inspection)."""
        loop = self.server_loop
        done = threading.Event()
        out: list[Any] = []

        def run() -> None:
            out.append(fn())
            done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5)
        return out[0]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(
    rules: RuleSet | dict[str, Any] | None = None,
    *,
    stack: str = "httptools",
    http: Any = None,
    **layer_kwargs: Any,
) -> Served:
    """Start uvicorn serving ``FaultLayer(tiny_app())`` on 127.0.0.1, port 0.

    ``stack`` is a key of STACKS (the fake's protocol and loop); ``http`` overrides the protocol
    (uvicorn's own ``"h11"`` or ``"httptools"``, for instance)."""
    if isinstance(rules, dict):
        rules = parse_rules(rules)
    resets: list[str | None] = []
    layer_kwargs.setdefault("tenant_of", tenant_of)
    layer = FaultLayer(tiny_app(), rules=rules, on_reset=resets.append, **layer_kwargs)
    parser, loop = STACKS[stack]
    config = uvicorn.Config(
        layer,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        http=http or protocol_class(parser),
        loop=loop,
        log_level="warning",
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    def run() -> None:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    served = Served(layer, server, thread, resets)
    served.server_loop = loops[0]  # type: ignore[attr-defined]
    return served


@pytest.fixture
def serve_faults() -> Iterator[Callable[..., Served]]:
    """Start servers with given rules and layer options; all stop when the test ends."""
    started: list[Served] = []

    def start(rules: RuleSet | dict[str, Any] | None = None, **kwargs: Any) -> Served:
        served = serve(rules, **kwargs)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[Served]:
    """One server per module with no start-up rules; tests add rules per session and reset."""
    served = serve(None, allow_fault_header=True)
    yield served
    served.stop()
