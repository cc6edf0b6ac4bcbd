"""The API's router finds what Starlette's would: same route, 405, 404 and slash redirect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from mock_server._routing import DirectRouter


def _answer(request: Request) -> Response:
    route = request.scope["route"].path
    return PlainTextResponse(
        f"{route} {sorted(request.path_params.items())} {request.scope['router'] is not None}"
    )


def _routes() -> list[Route]:
    async def endpoint(request: Request) -> Response:
        return _answer(request)

    return [
        Route("/health", endpoint, methods=["GET"]),
        Route("/profiles", endpoint, methods=["GET", "POST"]),
        Route("/hr_generate", endpoint, methods=["POST"]),
        Route("/hr_generate/batch", endpoint, methods=["POST"]),
        Route("/profiles/{tenant}/{name}", endpoint, methods=["GET", "PUT", "DELETE"]),
        Route("/items/{id:int}", endpoint, methods=["GET"]),
    ]


def _call(router_class: type[Router], method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and body of ``method path`` on a Starlette app with that router."""
    app = Starlette()
    app.router = router_class(_routes())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5555),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"x")],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


REQUESTS = [
    ("GET", "/health"),
    ("HEAD", "/health"),
    ("POST", "/health"),
    ("GET", "/profiles"),
    ("POST", "/profiles"),
    ("DELETE", "/profiles"),
    ("POST", "/hr_generate/batch"),
    ("GET", "/hr_generate"),
    ("GET", "/profiles/demo/warm"),
    ("PUT", "/profiles/demo/warm"),
    ("POST", "/profiles/demo/warm"),
    ("GET", "/profiles/demo"),
    ("GET", "/profiles/demo/warm/extra"),
    ("GET", "/items/12"),
    ("GET", "/items/twelve"),
    ("GET", "/health/"),
    ("GET", "/profiles/demo/warm/"),
    ("GET", "/nowhere"),
    ("GET", "/"),
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
def test_same_answer_as_starlettes_router(method: str, path: str) -> None:
    ours = _call(DirectRouter, method, path)
    assert ours == _call(Router, method, path)


def test_a_pattern_that_overlaps_a_fixed_path_is_refused() -> None:
    async def endpoint(request: Request) -> Any:
        return _answer(request)

    with pytest.raises(ValueError, match="overlaps '/profiles/mine'"):
        DirectRouter([Route("/profiles/mine", endpoint), Route("/profiles/{name}", endpoint)])
