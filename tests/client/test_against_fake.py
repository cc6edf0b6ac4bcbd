"""End to end over loopback against the fake server (``mock_server`` fixture)."""

from __future__ import annotations

import random

import pytest
import requests

from client import (
    ApiKeyAuth,
    BreakerPolicy,
    CircuitOpen,
    Conflict,
    GenerateResult,
    HmacAuth,
    NotFound,
    OAuth2ClientCredentials,
    Policies,
    PreconditionFailed,
    ResonanceClient,
    RetryPolicy,
    Timeouts,
    ValidationFailed,
)

pytestmark = pytest.mark.socket

VECTOR = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def fast_policies(**kw):
    kw.setdefault("retry", RetryPolicy(backoff_base=0.01, backoff_cap=0.05, rng=random.Random(3)))
    kw.setdefault("timeouts", Timeouts(connect=2, read=5, total=15))
    return Policies(**kw)


def add_fault(server, rule):
    r = requests.post(f"{server.url}/__admin/faults", json=rule, timeout=5)
    assert r.status_code == 201, r.text


def journal(server, **params):
    r = requests.get(f"{server.url}/__admin/requests", params=params, timeout=5)
    r.raise_for_status()
    return r.json()["requests"]


def test_typed_client_against_every_endpoint(mock_server):
    """health, generate, batch, profile CRUD with ETags, pagination and analytics all parse."""
    with ResonanceClient(mock_server.url, auth=ApiKeyAuth("demo-key"), policies=fast_policies()) as c:
        assert c.health().status == "ok"
        result = c.generate("hello", max_length=16, temperature=0.5)
        assert isinstance(result, GenerateResult) and len(result.hrv_vector) == 8
        assert c.generate("hello", max_length=16, temperature=0.5).content == result.content
        batch = c.generate_batch(["a", "b", "c"], concurrency=2, chunk_size=2)
        assert [isinstance(r, GenerateResult) for r in batch] == [True, True, True]

        for i in range(5):
            c.profiles.create("demo", f"p{i}", VECTOR, {"i": i})
        with pytest.raises(Conflict):
            c.profiles.create("demo", "p0", VECTOR)
        names = [p.profile_name for p in c.profiles.list(limit=2)]
        assert names == sorted(names) and {"p0", "p1", "p2", "p3", "p4"} <= set(names)

        p = c.profiles.get("demo", "p1")
        assert p.etag and p.version == 1
        again = c.profiles.get("demo", "p1")
        assert again == p
        updated = c.profiles.update("demo", "p1", VECTOR[::-1], if_match=p.etag)
        assert updated.version == 2
        assert c.profiles.get("demo", "p1").version == 2  # the PUT invalidated the cached GET
        with pytest.raises(PreconditionFailed):
            c.profiles.update("demo", "p1", VECTOR, if_match=p.etag)
        c.profiles.delete("demo", "p1")
        with pytest.raises(NotFound):
            c.profiles.get("demo", "p1")
        with pytest.raises(ValidationFailed):
            c.profiles.create("demo", "bad", [2.0] * 8)

        usage = c.analytics.usage(date_range="today")
        assert usage.tenant == "demo" and usage.total > 0
        perf = c.analytics.performance(metric_type="all", timeframe="5m")
        assert perf.window == "5m"
        assert c.metrics().requests > 10


def test_fresh_cache_hit_reaches_no_server(mock_server):
    """A second GET within max-age is answered locally: the journal shows one request."""
    c = ResonanceClient(mock_server.url, auth=ApiKeyAuth("demo-key"), policies=fast_policies())
    c.profiles.create("demo", "cached", VECTOR)
    c.profiles.get("demo", "cached")
    c.profiles.get("demo", "cached")
    assert len(journal(mock_server, method="GET", path="/profiles/demo/cached")) == 1


def test_retried_post_creates_one_profile(mock_server):
    """POST /profiles failing twice is retried under one Idempotency-Key; one profile exists."""
    add_fault(
        mock_server,
        {
            "id": "create-flaky",
            "match": {"method": "POST", "path": "/profiles"},
            "sequence": [{"type": "status", "status": 503}, {"type": "reset"}, "ok"],
        },
    )
    c = ResonanceClient(mock_server.url, auth=ApiKeyAuth("demo-key"), policies=fast_policies())
    created = c.profiles.create("demo", "once", VECTOR)
    assert created.version == 1
    attempts = journal(mock_server, method="POST", path="/profiles")
    assert len(attempts) == 3
    assert len({a["idempotency_key"] for a in attempts}) == 1
    assert len({a["request_id"] for a in attempts}) == 1
    assert [p.profile_name for p in c.profiles.list()].count("once") == 1


def test_repeated_create_with_same_key_replays(mock_server):
    """The same Idempotency-Key twice creates nothing new: the first answer is replayed."""
    c = ResonanceClient(mock_server.url, auth=ApiKeyAuth("demo-key"), policies=fast_policies())
    first = c.profiles.create("demo", "replayed", VECTOR, idempotency_key="fixed-key")
    second = c.profiles.create("demo", "replayed", VECTOR, idempotency_key="fixed-key")
    assert first == second


def test_retry_after_is_honoured_on_the_wire(mock_server):
    """After a 429 with Retry-After: 1 the retry arrives no earlier; compliance finds nothing."""
    add_fault(
        mock_server,
        {
            "id": "throttle-once",
            "match": {"path": "/health"},
            "sequence": [{"type": "status", "status": 429, "retry_after": 1}, "ok"],
        },
    )
    c = ResonanceClient(mock_server.url, policies=fast_policies())
    assert c.health().status == "ok"
    first, second = journal(mock_server, path="/health")[:2]
    assert first["status"] == 429 and second["status"] == 200
    assert second["arrived_at"] - first["arrived_at"] >= 1.0
    report = requests.get(f"{mock_server.url}/__admin/compliance", timeout=5).json()
    assert report["verdict"] == "pass", report["findings"]


def test_open_breaker_means_zero_requests_reach_the_server(mock_server):
    """Once the breaker opens, further calls never arrive at the server."""
    add_fault(
        mock_server, {"id": "down", "match": {"path": "/health"}, "fault": {"type": "status", "status": 500}}
    )
    p = fast_policies(retry=None, breaker=BreakerPolicy(window=3, min_calls=3, open_for=60))
    c = ResonanceClient(mock_server.url, policies=p)
    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017 -- ServerError, then the breaker
            c.health()
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            c.health()
    assert len(journal(mock_server, path="/health")) == 3


def test_signed_requests_are_accepted_even_in_a_burst(mock_server):
    """HMAC signing matches the server; identical requests in one second are not taken for replays."""
    auth = HmacAuth("demo-signing-secret", inner=ApiKeyAuth("demo-key"))
    c = ResonanceClient(mock_server.url, auth=auth, policies=fast_policies(cache=None))
    for _ in range(3):
        assert c.generate("signed", max_length=8).content


def test_oauth_client_credentials(mock_server):
    """The client fetches a token from /oauth/token and uses it."""
    auth = OAuth2ClientCredentials("demo-client", "demo-secret")
    c = ResonanceClient(mock_server.url, auth=auth, policies=fast_policies())
    assert c.generate("with a token").metadata.tenant == "demo"
    assert auth.fetches == 1
