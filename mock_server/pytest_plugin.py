"""Pytest plugin (entry point ``pytest11``): the ``mock_server`` fixture.

``mock_server`` starts a fresh fake on a free loopback port for each test, with state in
``:memory:``, and stops it afterwards; it yields the running :class:`ServerThread`, whose
``url`` is the base URL. Configure it per test with the marker::

    @pytest.mark.mock_server(preset="flaky", seed=7, allow_fault_header=True)
    def test_client_survives(mock_server): ...

Any :class:`ServerConfig` field is accepted as a marker keyword; ``workers=N`` (N > 1) starts N
real processes on one port, sharing ``state`` (a Redis URL) or a private redis-server, and
yields a :class:`Workers` with the same ``url``, ``port``, ``admin`` and ``stop``. ``mock_server_factory``
starts further fakes with explicit configs; all of them stop at the end of the test.

``mock_proxy`` and ``mock_replay`` (markers of the same names) put the same fault layer in front
of any HTTP service or of a HAR recording; see ``mock_server._proxy._fixtures``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import pytest

from ._config import ServerConfig
from ._proxy._fixtures import MARKERS as PROXY_MARKERS
from ._proxy._fixtures import mock_proxy, mock_replay  # noqa: F401 - fixtures of this plugin
from ._server import ServerThread
from ._workers import Workers

_FIELDS = {f.name for f in fields(ServerConfig)}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mock_server(**config): settings (ServerConfig fields) for the mock_server fixture"
    )
    for line in PROXY_MARKERS:
        config.addinivalue_line("markers", line)


def _config(**kwargs: Any) -> ServerConfig:
    unknown = sorted(set(kwargs) - _FIELDS)
    if unknown:
        raise pytest.UsageError(
            f"mock_server: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"
        )
    kwargs.setdefault("db", ":memory:")
    return ServerConfig(**kwargs)


@pytest.fixture
def mock_server_factory() -> Iterator[Callable[..., ServerThread | Workers]]:
    """Start fakes with given settings; each stops when the test ends."""
    started: list[ServerThread | Workers] = []

    def start(**kwargs: Any) -> ServerThread | Workers:
        config = _config(**kwargs)
        # workers=N: N real processes on one port with their shared state (see Workers).
        server = Workers(config).start() if config.workers > 1 else ServerThread(config).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def mock_server(
    request: pytest.FixtureRequest, mock_server_factory: Callable[..., ServerThread | Workers]
) -> ServerThread | Workers:
    """A fresh fake for this test; ``.url`` is its base URL."""
    marker = request.node.get_closest_marker("mock_server")
    return mock_server_factory(**(marker.kwargs if marker else {}))
