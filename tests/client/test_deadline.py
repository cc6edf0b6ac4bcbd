"""The total deadline covers the body, and call_info describes the call it is attached to."""

from __future__ import annotations

import pytest
import requests

from client import (
    CachePolicy,
    DeadlineExceeded,
    Policies,
    ResilientAdapter,
    ResilientSession,
    RetryPolicy,
    Timeouts,
    call_info,
)

from .fakes import ok

pytestmark = pytest.mark.socket


def trickle(server, path: str, bytes_per_s: float) -> None:
    rule = {
        "id": "trickle" + path.replace("/", "-"),
        "match": {"path": path},
        "fault": {"type": "slow_body", "bytes_per_s": bytes_per_s},
    }
    r = requests.post(f"{server.url}/__admin/faults", json=rule, timeout=5)
    assert r.status_code == 201, r.text


def test_a_trickled_body_cannot_outlive_the_deadline(mock_server):
    """A body dripped a few bytes at a time, each well within the read timeout, ends the call
    with DeadlineExceeded once the total deadline is spent; plain requests would wait it out."""
    trickle(mock_server, "/health", bytes_per_s=20)  # ~60 bytes: about 3 s
    policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=1, total=0.4))
    with ResilientSession(policies) as session, pytest.raises(DeadlineExceeded) as info:
        session.get(f"{mock_server.url}/health")
    assert isinstance(info.value, requests.exceptions.Timeout)


def test_the_adapter_bounds_the_body_too(mock_server):
    trickle(mock_server, "/health", bytes_per_s=20)
    policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=1, total=0.4))
    session = requests.Session()
    session.mount("http://", ResilientAdapter(policies))
    with pytest.raises(DeadlineExceeded):
        session.get(f"{mock_server.url}/health")


def test_a_fast_body_is_read_whole(mock_server):
    """Without a trickle the same tight deadline is plenty, and the body is all there."""
    policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=1, total=5))
    with ResilientSession(policies) as session:
        response = session.get(f"{mock_server.url}/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize("given_id", [None, "caller-id"])
def test_call_info_of_a_cache_hit_describes_the_hit(make_session, given_id):
    """A fresh hit: no attempts, no waits, cache 'hit', and no request id unless the caller
    sent one (none was sent); not the original miss's figures."""
    s, a = make_session(ok({"v": 1}, Cache_Control="max-age=60"), policies=Policies(cache=CachePolicy()))
    miss = call_info(s.get("http://api.test/x"))
    assert miss is not None and miss.cache == "miss" and miss.attempts == 1 and miss.request_id
    headers = {"X-Request-ID": given_id} if given_id else None
    hit = call_info(s.get("http://api.test/x", headers=headers))
    assert hit is not None
    assert (hit.attempts, hit.cache, hit.rate_limit_wait, hit.idle_for) == (0, "hit", 0.0, 0.0)
    assert hit.request_id == given_id
    assert a.count == 1


def test_call_info_of_a_revalidated_hit(make_session, clock):
    s, a = make_session(
        ok({"v": 1}, Cache_Control="max-age=1", ETag='"e"'),
        ok(None, 304, ETag='"e"'),
        policies=Policies(retry=RetryPolicy(budget=None)),
    )
    s.get("http://api.test/x")
    clock.advance(2)
    info = call_info(s.get("http://api.test/x"))
    assert info is not None and info.cache == "revalidated" and info.attempts == 1
