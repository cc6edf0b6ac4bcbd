"""Server-side rate limiting: headers on every authenticated response, 429 with Retry-After."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import pytest

from mock_server import ServerThread
from mock_server._ratelimit import RateLimiter
from mock_server._tenants import RateLimit, parse_tenants

from .conftest import Caller, error_of

TIGHT = parse_tenants(
    {"tenants": [{"name": "demo", "api_keys": ["demo-key"], "rate_limit": {"per_minute": 60, "burst": 3}}]}
)


@pytest.mark.socket
def test_headers_on_authenticated_responses(demo: Caller, anon: Caller) -> None:
    """Every authenticated response has X-RateLimit-* and the IETF pair; /health has none."""
    response = demo("GET", "/profiles")
    h = response.headers
    assert h["X-RateLimit-Limit"] == "600" and h["X-RateLimit-Remaining"] == "99"
    assert int(h["X-RateLimit-Reset"]) >= int(time.time())
    assert h["RateLimit-Policy"] == '"default";q=600;w=60'
    assert h["RateLimit"].startswith('"default";r=99;t=')
    assert "X-RateLimit-Limit" not in anon("GET", "/health").headers
    assert "X-RateLimit-Limit" in demo("GET", "/profiles/demo/none").headers


@pytest.mark.socket
@pytest.mark.mock_server(tenants=TIGHT)
def test_over_the_limit_is_429(mock_server: ServerThread) -> None:
    """Past the burst the fake answers 429 rate_limited with Retry-After and Remaining 0."""
    caller = Caller(mock_server.url, {"X-API-Key": "demo-key"})
    remaining = [caller("GET", "/profiles").headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    limited = caller("GET", "/profiles")
    assert limited.status_code == 429 and error_of(limited)["code"] == "rate_limited"
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["RateLimit"] == '"default";r=0;t=1'


@pytest.mark.socket
@pytest.mark.mock_server(tenants=TIGHT, retry_after_format="http-date")
def test_retry_after_as_http_date(mock_server: ServerThread) -> None:
    """Configured for HTTP-dates, Retry-After is a date in the near future."""
    caller = Caller(mock_server.url, {"X-API-Key": "demo-key"})
    for _ in range(3):
        caller("GET", "/profiles")
    limited = caller("GET", "/profiles")
    when = parsedate_to_datetime(limited.headers["Retry-After"]).timestamp()
    assert time.time() - 1 <= when <= time.time() + 3


@pytest.mark.socket
@pytest.mark.mock_server(tenants=TIGHT)
def test_sessions_have_their_own_buckets(mock_server: ServerThread) -> None:
    """X-Mock-Session gives each test its own bucket for the same credential."""
    a = Caller(mock_server.url, {"X-API-Key": "demo-key", "X-Mock-Session": "a"})
    b = Caller(mock_server.url, {"X-API-Key": "demo-key", "X-Mock-Session": "b"})
    assert [a("GET", "/profiles").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert b("GET", "/profiles").status_code == 200


def test_bucket_refills_on_the_injected_clock() -> None:
    """Tokens refill at per_minute/60 a second up to the burst; Reset says when to send."""
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], wall=lambda: 1000.0 + now[0])
    limit = RateLimit(per_minute=60, burst=2)
    assert [limiter.take("c", None, limit).allowed for _ in range(3)] == [True, True, False]
    refused = limiter.take("c", None, limit)
    assert refused.headers["Retry-After"] == "1" and refused.headers["X-RateLimit-Reset"] == "1001"
    now[0] = 1.0
    assert limiter.take("c", None, limit).allowed
    assert not limiter.take("c", None, limit).allowed
    now[0] = 100.0
    first = limiter.take("c", None, limit)
    assert first.allowed and first.headers["X-RateLimit-Remaining"] == "1"
    limiter.reset()
    assert limiter.take("c", None, limit).headers["X-RateLimit-Remaining"] == "1"
