"""The baseline: a bare Starlette app under the same uvicorn settings as the fake.

Usage: python -m bench._bare PORT ROUTES_JSON, where ROUTES_JSON maps paths to a JSON body
to answer, or to "sleep:SECONDS" to await asyncio.sleep before answering {"ok": true}.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench._servers import UVICORN


def _endpoint(spec: str):  # type: ignore[no-untyped-def]
    if spec.startswith("sleep:"):
        delay = float(spec[6:])

        async def sleeper(request: Request) -> Response:
            await asyncio.sleep(delay)
            return Response(b'{"ok":true}', media_type="application/json")

        return sleeper
    body = spec.encode()

    async def fixed(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return fixed


def main() -> None:
    port = int(sys.argv[1])
    routes = json.loads(sys.argv[2])
    routes.setdefault("/health", '{"status":"ok"}')
    app = Starlette(routes=[Route(path, _endpoint(spec)) for path, spec in routes.items()])
    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
