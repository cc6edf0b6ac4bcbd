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


def _pools(session: requests.Session) -> list:
    manager = session.get_adapter("http://").poolmanager
    return [manager.pools[key] for key in manager.pools.keys()]


def test_a_body_read_whole_frees_its_connection_for_the_next_call(mock_server):
    """The body is read up to its Content-Length, with no read after it, and the connection goes
    back to the pool each time: five calls make one connection."""
    policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=2, total=5))
    with ResilientSession(policies) as session:
        for _ in range(5):
            response = session.get(f"{mock_server.url}/openapi.json")
            assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
        assert [pool.num_connections for pool in _pools(session)] == [1]


def test_a_compressed_body_is_read_to_its_end_and_decoded_whole():
    """A gzip body that decodes to more than one read's worth is read to the end of the stream
    (the decoder's last bytes come with it), and its connection is reused too."""
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    text = b"".join(b"line %d of a long compressed body\n" % i for i in range(20_000))
    packed = gzip.compress(text)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big"
        policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=2, total=5))
        with ResilientSession(policies) as session:
            for _ in range(3):
                assert session.get(url).content == text
            assert [pool.num_connections for pool in _pools(session)] == [1]
    finally:
        server.shutdown()
        server.server_close()


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


@pytest.mark.parametrize("driver", ["requests", "httpx"])
def test_a_truncated_body_still_announces_the_rate_limit(mock_server_factory, driver):
    """The demo's compliance finding: a response saying ``Remaining: 0`` whose body was cut
    short used to be dropped whole, so the client's retry went out at once, while the limit
    was exhausted. The head arrived: its rate-limit headers now pause the limiter, and the
    fake's grader finds nothing."""
    import httpx

    from client import RateLimitPolicy, ResilientTransport
    from mock_server import RateLimit, Tenant

    tight = (Tenant(name="demo", api_keys=("demo-key",), rate_limit=RateLimit(per_minute=60, burst=2)),)
    fake = mock_server_factory(tenants=tight)
    rule = {
        "id": "cut-second",
        "match": {"path": "/profiles", "headers": {"X-Mock-Session": "cut"}},
        "sequence": ["ok", {"type": "truncate", "fraction": 0.5}, "ok"],
    }
    assert requests.post(f"{fake.url}/__admin/faults", json=rule, timeout=5).status_code == 201
    policies = Policies(
        retry=RetryPolicy(attempts=3, budget=None, backoff_base=0.001),
        cache=None,
        limiter=RateLimitPolicy(rate=100, burst=100),
        timeouts=Timeouts(connect=2, read=5, total=10),
    )
    headers = {"X-API-Key": "demo-key", "X-Mock-Session": "cut"}
    if driver == "requests":
        with ResilientSession(policies) as session:
            statuses = [session.get(f"{fake.url}/profiles", headers=headers).status_code for _ in range(2)]
    else:
        with httpx.Client(transport=ResilientTransport(policies), headers=headers) as client:
            statuses = [client.get(f"{fake.url}/profiles").status_code for _ in range(2)]
    assert statuses == [200, 200]
    report = requests.get(f"{fake.url}/__admin/compliance", params={"session": "cut"}, timeout=5).json()
    assert not [f for f in report["findings"] if f["kind"] == "request_while_rate_limited"], report
    journal = requests.get(f"{fake.url}/__admin/requests", params={"session": "cut"}, timeout=5).json()
    assert len(journal["requests"]) == 3  # the retry of the cut answer, after the reset


@pytest.mark.parametrize("how", ["iter_content", "content", "raw"])
def test_a_streamed_body_cannot_outlive_the_deadline_either(mock_server, how):
    """With ``stream=True`` the caller reads the body; each of its reads still waits at most
    the time left, and a read once the deadline is spent raises DeadlineExceeded."""
    trickle(mock_server, "/health", bytes_per_s=20)  # 68 bytes: about 3.4 s
    policies = Policies(retry=None, cache=None, timeouts=Timeouts(connect=2, read=1, total=0.4))
    with ResilientSession(policies) as session:
        response = session.get(f"{mock_server.url}/health", stream=True)
        with pytest.raises(DeadlineExceeded):
            if how == "iter_content":
                for _ in response.iter_content(chunk_size=4):
                    pass
            elif how == "content":
                _ = response.content
            else:
                while response.raw.read(4):
                    pass
