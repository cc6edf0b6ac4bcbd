"""The ``mock_proxy`` and ``mock_replay`` pytest fixtures (registered by ``pytest_plugin``).

``mock_proxy`` starts a proxy on a free loopback port for the test and stops it afterwards; it
yields the running :class:`FrontThread` (``url``, ``admin``). Its settings come from the marker,
any :class:`ProxyConfig` field::

    @pytest.mark.mock_proxy(upstream="http://127.0.0.1:9000", preset="flaky", seed=7)
    def test_client_survives(mock_proxy): ...

Without ``upstream`` it proxies the test's own fresh fake (the ``mock_server`` fixture, which the
``mock_server`` marker configures). ``mock_replay`` does the same for a HAR file
(``@pytest.mark.mock_replay(har="traffic.har", match="exact")``, any :class:`ReplayConfig`
field; a relative ``har`` is taken from the test file's folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from ..exceptions import ConfigError
from ._app import FrontThread, ProxyConfig, ReplayConfig

MARKERS = (
    "mock_proxy(**config): settings (ProxyConfig fields) for the mock_proxy fixture;"
    " without upstream it proxies the mock_server fixture",
    "mock_replay(**config): settings (ReplayConfig fields, har= required) for the mock_replay fixture",
)


def _settings(request: pytest.FixtureRequest, name: str, config_type: type[Any]) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    kwargs = dict(marker.kwargs) if marker else {}
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise pytest.UsageError(
            f"{name}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    kwargs.setdefault("port", 0)
    return kwargs


def _start(config: ProxyConfig | ReplayConfig, name: str) -> FrontThread:
    try:
        return FrontThread(config).start()
    except ConfigError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


@pytest.fixture
def mock_proxy(request: pytest.FixtureRequest) -> Iterator[FrontThread]:
    """A proxy for this test (see the module docstring); ``.url`` is its base URL."""
    kwargs = _settings(request, "mock_proxy", ProxyConfig)
    if "upstream" not in kwargs:
        kwargs["upstream"] = request.getfixturevalue("mock_server").url
    proxy = _start(ProxyConfig(**kwargs), "mock_proxy")
    yield proxy
    proxy.stop()


@pytest.fixture
def mock_replay(request: pytest.FixtureRequest) -> Iterator[FrontThread]:
    """A replay of a HAR file for this test (see the module docstring); ``.url`` is its base URL."""
    kwargs = _settings(request, "mock_replay", ReplayConfig)
    if "har" not in kwargs:
        raise pytest.UsageError("mock_replay: needs har=PATH (@pytest.mark.mock_replay(har='traffic.har'))")
    har = Path(kwargs["har"])
    if not har.is_absolute():
        har = Path(request.node.path).parent / har
    kwargs["har"] = str(har)
    replay = _start(ReplayConfig(**kwargs), "mock_replay")
    yield replay
    replay.stop()
