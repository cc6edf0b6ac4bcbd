"""Each fault type as real clients (requests, urllib3, http.client) see it over loopback, on both
of the fake's HTTP stacks (httptools on uvloop, and the h11-on-asyncio fallback)."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
import requests
import urllib3

from mock_server._faults import UVICORN_HTTP
from mock_server._faults._protocols import protocol_class

from .conftest import STACKS, serve

pytestmark = pytest.mark.socket

RULES = {
    "rules": [
        {"id": f"f-{name}", "match": {"headers": {"X-Test-Fault": name}}, "fault": fault}
        for name, fault in {
            "reset": {"type": "reset"},
            "close": {"type": "close"},
            "truncate": {"type": "truncate", "fraction": 0.25},
            "hang": {"type": "timeout"},
            "hang-briefly": {"type": "timeout", "hang_s": 0.05},
            "503": {"type": "status", "status": 503, "retry_after": 7},
            "429-date": {
                "type": "status",
                "status": 429,
                "retry_after": {"seconds": 3, "format": "http-date"},
            },
            "401": {"type": "status", "status": 401},
            "malformed": {"type": "malformed_json"},
            "content-type": {"type": "wrong_content_type"},
            "slow": {"type": "slow_body", "bytes_per_s": 400},
            "latency": {"type": "latency", "fixed_ms": 30},
        }.items()
    ]
}


@pytest.fixture(scope="module", params=sorted(STACKS))
def server(request):
    served = serve(RULES, stack=request.param, allow_fault_header=True)
    yield served
    served.stop()


def get(server, fault: str, path: str = "/big", **kwargs):
    kwargs.setdefault("timeout", 5)
    return requests.get(server.url + path, headers={"X-Test-Fault": fault}, **kwargs)


def raw(server, fault: str, path: str = "/big") -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", path, headers={"X-Test-Fault": fault})
    return conn


def last_entry(server, **params):
    return server.admin("GET", "/requests", params={"limit": 1, **params}).json()["requests"][0]


def test_reset_is_a_connection_reset_for_requests(server):
    """requests sees ConnectionError caused by ECONNRESET, not a status and not a hang."""
    with pytest.raises(requests.ConnectionError) as info:
        get(server, "reset")
    assert "reset" in str(info.value).lower()
    assert last_entry(server)["outcome"] == "reset"


def test_reset_is_a_connection_reset_for_http_client(server):
    """http.client gets ConnectionResetError from the RST."""
    conn = raw(server, "reset")
    with pytest.raises(ConnectionResetError):
        conn.getresponse()


def test_reset_on_a_reused_keep_alive_connection(server):
    """A reset on a pooled connection (after a good response) still surfaces as ConnectionError."""
    with requests.Session() as session:
        assert session.get(server.url + "/hello", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/hello", headers={"X-Test-Fault": "reset"}, timeout=5)
        assert session.get(server.url + "/hello", timeout=5).status_code == 200


def test_reset_for_urllib3_without_retries(server):
    """urllib3 raises ProtocolError wrapping ConnectionResetError."""
    pool = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.ProtocolError) as info:
        pool.request("GET", server.url + "/hello", headers={"X-Test-Fault": "reset"})
    assert isinstance(info.value.args[1], ConnectionResetError)


def test_reset_sends_an_rst_on_a_raw_socket(server):
    """At the socket level the peer's read fails with ECONNRESET."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Test-Fault: reset\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024):
                pass


def test_close_is_a_remote_disconnect(server):
    """close: no response and no reset, a graceful end of the connection."""
    conn = raw(server, "close")
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Test-Fault: close\r\n\r\n")
        assert sock.recv(1024) == b""
    assert last_entry(server)["outcome"] == "closed"


def test_close_after_reading_a_request_body(server):
    """A POST body is read before the close, so the client sees a close rather than a reset."""
    with pytest.raises(requests.ConnectionError) as info:
        requests.post(server.url + "/echo", data=b"x" * 100_000, headers={"X-Test-Fault": "close"}, timeout=5)
    assert "RemoteDisconnected" in repr(info.value)


def test_truncate_declares_more_than_it_sends(server):
    """truncate: Content-Length promises the whole body; a quarter comes, then the close."""
    full = requests.get(server.url + "/big", timeout=5).content
    conn = raw(server, "truncate")
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == len(full)
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    assert len(info.value.partial) == len(full) // 4


def test_truncate_for_requests_and_urllib3(server):
    """requests raises ChunkedEncodingError; urllib3 ProtocolError (IncompleteRead)."""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(server, "truncate")
    pool = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        pool.request("GET", server.url + "/big", headers={"X-Test-Fault": "truncate"})
    assert last_entry(server)["outcome"] == "truncated"


def test_timeout_holds_until_the_client_gives_up(server):
    """timeout without hang_s: a short client read timeout fires; the journal says the client left."""
    with pytest.raises(requests.ReadTimeout):
        get(server, "hang", path="/hello", timeout=(2, 0.1))
    gone = server.admin(
        "POST",
        "/requests/wait",
        json={"filter": {"rule": "f-hang", "outcome": "client_gone"}, "count": 1, "timeout_s": 5},
    )
    assert gone.status_code == 200
    entry = gone.json()["requests"][0]
    assert entry["fault"] == "timeout" and entry["status"] is None


def test_timeout_with_hang_s_then_closes(server):
    """timeout with hang_s: no response, then the connection closes."""
    with pytest.raises(requests.ConnectionError):
        get(server, "hang-briefly", path="/hello")
    assert last_entry(server)["outcome"] == "timeout"


def test_status_fault_has_the_contract_error_body(server):
    """An injected 503: error body with code and request id, Retry-After in seconds."""
    headers = {"X-Test-Fault": "503", "X-Request-ID": "abc-123"}
    response = requests.get(server.url + "/hello", headers=headers, timeout=5)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == "7"
    assert response.headers["X-Request-ID"] == "abc-123"
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["request_id"] == "abc-123"


def test_injected_429_carries_rate_limit_headers_and_an_http_date(server):
    """An injected 429 has Retry-After as an HTTP-date and Remaining 0."""
    response = get(server, "429-date", path="/hello")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["Retry-After"].endswith(" GMT")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Limit"] == "600"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert response.headers["RateLimit-Policy"] == '"default";q=600;w=60'
    assert response.headers["RateLimit"] == '"default";r=0;t=3'
    assert 2 <= last_entry(server)["retry_after_s"] <= 4


def test_injected_401_carries_www_authenticate(server):
    """An injected 401 says how to authenticate."""
    response = get(server, "401", path="/hello")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert response.json()["error"]["code"] == "unauthorized"


def test_malformed_json_does_not_parse(server):
    """malformed_json: 200, JSON content type, a body no parser accepts, consistent length."""
    response = get(server, "malformed")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_wrong_content_type(server):
    """wrong_content_type: the API's body under an HTML content type."""
    response = get(server, "content-type")
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.json()["items"]


def test_slow_body_trips_a_read_timeout(server):
    """slow_body: headers come at once, the body trickles, a short read timeout fires mid-body."""
    with (
        pytest.raises(requests.exceptions.ConnectionError),
        requests.get(
            server.url + "/big", headers={"X-Test-Fault": "slow"}, timeout=(2, 0.03), stream=True
        ) as r,
    ):
        assert r.status_code == 200
        r.content  # noqa: B018 - reading is the point


def test_slow_body_arrives_whole(server):
    """A patient client gets the whole body, in many pieces."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/hello", headers={"X-Test-Fault": "slow"})
    response = conn.getresponse()
    pieces = []
    while chunk := response.read1(1024):
        pieces.append(chunk)
    assert json.loads(b"".join(pieces))["hello"] == "world"
    assert len(pieces) > 1


def test_latency_then_the_real_response(server):
    """A latency fault delays and then the API answers; the journal records the delay."""
    response = get(server, "latency", path="/hello")
    assert response.status_code == 200
    entry = last_entry(server)
    assert entry["injected_delay_ms"] == 30
    assert entry["duration_ms"] >= 30


def test_an_injected_delay_is_never_shorter_than_asked():
    """uvloop's timers may fire up to a millisecond early: the layer waits out what is left."""
    import asyncio
    import time

    from mock_server._faults._injectors import _Timer

    asked: list[float] = []

    class EarlyLoop:
        def call_later(self, delay, callback):
            asked.append(delay)
            return type("Handle", (), {"cancel": lambda self: None})()

    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        timer = _Timer(EarlyLoop(), fut, 0.02)
        timer._fire()  # the timer fires well before its time
        assert not fut.done() and len(asked) == 2 and 0 < asked[1] <= 0.02
        time.sleep(0.02)
        timer._fire()
        assert fut.result() == "elapsed"
    finally:
        loop.close()


def test_latency_does_not_block_the_event_loop(server):
    """While one request is held by a long delay, others are answered."""
    session = "held-loop"
    server.admin(
        "PUT",
        "/faults/long-delay",
        json={"match": {"session": session}, "fault": {"type": "latency", "fixed_ms": 20_000}},
    )
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            requests.get(server.url + "/hello", headers={"X-Mock-Session": session}, timeout=30).status_code
        )
    )
    thread.start()
    arrived = server.admin(
        "POST", "/requests/wait", json={"filter": {"session": session}, "count": 1, "timeout_s": 5}
    )
    assert arrived.status_code == 200
    for _ in range(5):
        assert requests.get(server.url + "/hello", timeout=5).status_code == 200
    held = server.admin("GET", "/requests", params={"session": session}).json()["requests"][0]
    assert held["completed"] is False
    server.admin("POST", "/reset", params={"session": session})
    thread.join(5)
    assert results == [503]
    server.admin("DELETE", "/faults/long-delay")


def test_fault_header_only_when_allowed(server, serve_faults):
    """X-Mock-Fault works on a server that allows it and is ignored on one that does not."""
    assert (
        requests.get(server.url + "/hello", headers={"X-Mock-Fault": "status=418"}, timeout=5).status_code
        == 418
    )
    strict = serve_faults()
    assert (
        requests.get(strict.url + "/hello", headers={"X-Mock-Fault": "status=418"}, timeout=5).status_code
        == 200
    )


def test_bad_fault_header_is_a_400_naming_the_problem(server):
    """A malformed X-Mock-Fault is a 400 bad_request that says what is wrong."""
    response = requests.get(server.url + "/hello", headers={"X-Mock-Fault": "status=abc"}, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "X-Mock-Fault.status: must be a number" in error["message"]


def test_fault_header_reset_and_truncate(server):
    """The header drives socket faults too."""
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/hello", headers={"X-Mock-Fault": "reset"}, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url + "/big", headers={"X-Mock-Fault": "truncate=0.5"}, timeout=5)


def test_request_id_is_echoed_or_made(server):
    """The API sees the client's X-Request-ID, or a fresh unique hex id when there is none."""
    echoed = requests.get(server.url + "/hello", headers={"X-Request-ID": "mine-1"}, timeout=5).json()
    assert echoed["request_id"] == "mine-1"
    made = {requests.get(server.url + "/hello", timeout=5).json()["request_id"] for _ in range(3)}
    assert len(made) == 3 and all(len(rid) == 24 and int(rid, 16) >= 0 for rid in made)


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_reset_under_uvicorns_stock_protocol(serve_faults, stack):
    """Under uvicorn's own protocol (not the fake's), the layer still finds the transport
    through uvicorn's send, on asyncio's loop and on uvloop's alike."""
    plain = serve_faults({"rules": [{"id": "r", "fault": {"type": "reset"}}]}, stack=stack, http=stack)
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(plain.url + "/hello", timeout=5)
    assert "reset" in str(info.value).lower()


def test_uvicorn_http_is_httptools_when_installed():
    """The default protocol is the fast one; h11 is the fallback."""
    assert UVICORN_HTTP is protocol_class("httptools")
    assert protocol_class("h11") is not protocol_class("httptools")


def test_without_httptools_auto_falls_back_to_h11(monkeypatch):
    from mock_server._faults import FaultH11Protocol, _protocols
    from mock_server.exceptions import ConfigError

    monkeypatch.setattr(_protocols, "FaultHttpToolsProtocol", None)
    assert protocol_class("auto") is FaultH11Protocol
    with pytest.raises(ConfigError, match="^http: httptools is not installed"):
        protocol_class("httptools")
    with pytest.raises(ConfigError, match="^http: must be one of"):
        protocol_class("h2")


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_the_protocol_puts_the_transport_in_the_scope(stack):
    """Each of the fake's protocols hands each request's transport to the app under
    scope["extensions"], the same dict for every request of a connection."""
    import asyncio
    import time

    import uvicorn

    seen: list[dict[str, object]] = []

    async def app(scope, receive, send):
        seen.append(scope["extensions"]["mock_server.transport"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    parser, loop = STACKS[stack]
    config = uvicorn.Config(
        app, port=0, lifespan="off", http=protocol_class(parser), loop=loop, log_level="warning"
    )
    server = uvicorn.Server(config)

    def run():
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with requests.Session() as session:
            for _ in range(2):
                assert session.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 204
    finally:
        server.should_exit = True
        thread.join(5)
    assert seen[0] is seen[1]
    transport = seen[0]["transport"]
    assert callable(transport.abort) and transport.get_extra_info("socket") is not None
