"""The provider's own rate limiter keeps its word: a burst of B, then a 429 that says when to
come back, with the rate-limit headers counting down by one on the way.

The burst must be known, so these checks run against a local fake whose tenants have small,
different bursts (each hypothesis example starts a fresh ``X-Mock-Session``, which the fake
gives buckets of its own). With ``--base-url`` they are skipped: a real provider's burst and
its buckets' state are not the suite's to choose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from mock_server import RateLimit, ServerConfig, ServerThread, Tenant

from ._support import new_session

pytestmark = pytest.mark.socket
BURSTS = (1, 2, 3, 5, 8)
#: Slow refill: back-to-back requests never earn a token on the way, even on a busy machine.
PER_MINUTE = 6


@pytest.fixture(scope="module")
def limited(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.config.getoption("--base-url"):
        pytest.skip("needs a provider whose burst is known: runs against the local fake only")
    tenants = tuple(
        Tenant(
            name=f"burst{b}",
            api_keys=(f"burst{b}-key",),
            rate_limit=RateLimit(per_minute=PER_MINUTE, burst=b),
        )
        for b in BURSTS
    )
    with ServerThread(ServerConfig(db=":memory:", tenants=tenants, auth_failure_limit=None)) as server:
        yield server.url


def _retry_after_seconds(value: str) -> float:
    if value.isdigit():
        return float(value)
    return parsedate_to_datetime(value).timestamp() - time.time()


@given(
    burst=st.sampled_from(BURSTS),
    path=st.sampled_from(["/profiles", "/analytics/usage", "/analytics/performance"]),
    scheme=st.sampled_from(["X-API-Key", "Bearer"]),
)
def test_a_burst_then_a_429(limited: str, burst: int, path: str, scheme: str) -> None:
    """B + 1 back-to-back requests: exactly B succeed, then a 429; Remaining (in both header
    forms) drops by one each time to 0; the 429 says when to come back, and Reset is an epoch."""
    key = f"burst{burst}-key"
    credential = {"X-API-Key": key} if scheme == "X-API-Key" else {"Authorization": f"Bearer {key}"}
    headers = {"X-Mock-Session": new_session(), **credential}
    http = requests.Session()
    started = time.time()
    responses = [http.get(f"{limited}{path}", headers=headers, timeout=10) for _ in range(burst + 1)]
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * burst + [429], statuses
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in responses]
    assert remaining == [*range(burst - 1, -1, -1), 0], remaining
    ietf = [r.headers["RateLimit"] for r in responses]
    assert all(f";r={n};" in value for n, value in zip(remaining, ietf, strict=True)), ietf
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {str(PER_MINUTE)}
    refused = responses[-1]
    wait = _retry_after_seconds(refused.headers["Retry-After"])
    assert 1 <= wait <= 60 / PER_MINUTE + 1, refused.headers["Retry-After"]
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert started <= reset <= time.time() + 60 / PER_MINUTE + 1, "X-RateLimit-Reset is not an epoch"
    assert refused.json()["error"]["code"]
