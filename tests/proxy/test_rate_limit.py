"""``--rate-limit`` in front of an upstream that has none: the fake's buckets, headers and 429s,
one bucket per credential (API key, bearer token, Basic user) or client address; no secret kept."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable

import pytest

from mock_server import RateLimit
from mock_server._proxy._app import FrontThread
from mock_server._proxy._limit import CredentialLimit

from .conftest import RawServer, raw_request, read_head

pytestmark = pytest.mark.socket


def _ok(conn: socket.socket) -> None:
    while read_head(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-RateLimit-Limit: 999\r\n\r\nok")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_buckets_per_credential(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    upstream = raw_server(_ok)
    proxy = front(upstream=upstream.url, rate_limit=RateLimit(per_minute=60, burst=2))
    callers = {
        "key": [("X-API-Key", "key-one-123")],
        "other key": [("X-API-Key", "key-two-456")],
        "bearer": [("Authorization", "Bearer tok-abc-789")],
        "basic alice": [("Authorization", _basic("alice", "pw1"))],
        # The same Basic user with another password draws on alice's bucket.
        "basic alice again": [("Authorization", _basic("alice", "pw2"))],
        "address": [],
    }
    statuses = {
        name: [
            raw_request(proxy.port, "GET", "/x", headers).status
            for _ in range(2 if name != "basic alice again" else 1)
        ]
        for name, headers in callers.items()
    }
    assert statuses == {
        "key": [200, 200],
        "other key": [200, 200],
        "bearer": [200, 200],
        "basic alice": [200, 200],
        "basic alice again": [429],
        "address": [200, 200],
    }
    refused = raw_request(proxy.port, "GET", "/x", callers["key"])
    assert refused.status == 429
    assert json.loads(refused.body)["error"]["code"] == "rate_limited"
    assert refused.header(b"retry-after") == b"1"
    assert refused.header(b"x-ratelimit-remaining") == b"0"
    # Refused requests never reach the upstream; the journal and compliance see the 429.
    entry = proxy.admin.requests(status=429)[0]
    assert entry["retry_after_s"] == 1.0
    # The limiter keys hold hashes, never a credential.
    limiter = proxy.built.app.app  # type: ignore[attr-defined]
    assert isinstance(limiter, CredentialLimit)
    keys = repr(limiter.limiter._buckets.map)
    for secret in ("key-one-123", "key-two-456", "tok-abc-789", "alice", "pw1"):
        assert secret not in keys


def test_allowed_answers_carry_the_limit_headers_instead_of_the_upstreams(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    upstream = raw_server(_ok)
    proxy = front(upstream=upstream.url, rate_limit=RateLimit(per_minute=600, burst=5))
    answer = raw_request(proxy.port, "GET", "/x", [("X-API-Key", "k-1234")])
    assert answer.status == 200
    assert [v for k, v in answer.headers if k == b"x-ratelimit-limit"] == [b"600"]
    assert answer.header(b"x-ratelimit-remaining") == b"4"
    assert answer.header(b"ratelimit-policy") == b'"default";q=600;w=60'


def test_admin_reset_refills_the_buckets(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    upstream = raw_server(_ok)
    proxy = front(upstream=upstream.url, rate_limit=RateLimit(per_minute=1, burst=1))
    assert raw_request(proxy.port, "GET", "/x").status == 200
    assert raw_request(proxy.port, "GET", "/x").status == 429
    proxy.admin.reset()
    assert raw_request(proxy.port, "GET", "/x").status == 200
