"""Fixtures of the contract suite: the provider under test, local or given by ``--base-url``.

Without ``--base-url`` the suite starts the fake itself (``:memory:`` state, a free
loopback port). With ``--base-url URL`` the provider checks run against any server that
claims the ResonanceOS v6 contract, so a team can verify a real implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from mock_server import DEFAULT_TENANTS, RateLimit, ServerConfig, ServerThread

from . import _profiles

_profiles.load()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "ResonanceOS contract suite")
    group.addoption(
        "--base-url", default=None, help="run the provider checks against this server instead of a local fake"
    )
    group.addoption("--api-key", default="demo-key", help="API key of the provider under test")
    group.addoption("--tenant", default="demo", help="the tenant that API key belongs to (default: demo)")


@pytest.fixture(scope="session")
def provider_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Base URL of the provider under test."""
    base = request.config.getoption("--base-url")
    if base:
        yield str(base).rstrip("/")
        return
    # The provider checks exercise the contract, not the limiters: give them room (schemathesis
    # sends invalid credentials on purpose, which the fake otherwise throttles per address).
    roomy = tuple(
        replace(t, rate_limit=RateLimit(per_minute=600_000, burst=100_000)) for t in DEFAULT_TENANTS
    )
    with ServerThread(ServerConfig(db=":memory:", tenants=roomy, auth_failure_limit=None)) as server:
        yield server.url


@pytest.fixture(scope="session")
def api_key(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--api-key"))


@pytest.fixture(scope="session")
def tenant(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--tenant"))


@pytest.fixture(scope="session")
def fake() -> Iterator[ServerThread]:
    """The local fake the client properties run against (always local: they steer its faults
    and read its journal). Limits are roomy: the limiter properties bring their own."""
    roomy = tuple(
        replace(t, rate_limit=RateLimit(per_minute=600_000, burst=100_000)) for t in DEFAULT_TENANTS
    )
    config = ServerConfig(db=":memory:", tenants=roomy, journal_size=100_000, auth_failure_limit=None)
    with ServerThread(config) as server:
        yield server
