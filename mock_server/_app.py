"""Assembles one fake: the API app wrapped by the fault layer."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp

from ._api import Api
from ._config import ServerConfig


def build(config: ServerConfig, *, clock: Callable[[], float] = time.monotonic,
          wall: Callable[[], float] = time.time) -> tuple[ASGIApp, Api]:
    """The ASGI app for ``config`` and the API object behind it (for tests and tools)."""
    api = Api(config, clock=clock, wall=wall)
    return api.app(), api


def create_app(config: ServerConfig | None = None) -> ASGIApp:
    """The ASGI application of a fake configured by ``config`` (defaults if None)."""
    return build(config or ServerConfig())[0]
