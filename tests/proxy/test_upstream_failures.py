"""An upstream that is down (502 upstream_unavailable), too slow (504), or breaks off mid-body
(the client's connection breaks too); the journal records each, and the proxy stays up."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from mock_server._proxy._app import FrontThread

from .conftest import RawServer, free_port, raw_request, read_head

pytestmark = pytest.mark.socket


def test_upstream_down_is_a_502(front: Callable[..., FrontThread]) -> None:
    proxy = front(upstream=f"http://127.0.0.1:{free_port()}")
    answer = raw_request(proxy.port, "POST", "/anything", [("X-Request-ID", "down-1")], b'{"a":1}')
    assert answer.status == 502
    error = json.loads(answer.body)["error"]
    assert error["code"] == "upstream_unavailable" and error["request_id"] == "down-1"
    assert "cannot connect" in error["message"]
    entry = proxy.admin.requests()[-1]
    assert entry["status"] == 502 and entry["request_id"] == "down-1"


def test_upstream_too_slow_is_a_504(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    release = threading.Event()

    def slow(conn: socket.socket) -> None:
        read_head(conn)
        release.wait(5)

    upstream = raw_server(slow)
    proxy = front(upstream=upstream.url, timeout=0.3)
    started = time.monotonic()
    answer = raw_request(proxy.port, "GET", "/slow")
    waited = time.monotonic() - started
    release.set()
    assert answer.status == 504
    assert json.loads(answer.body)["error"]["code"] == "gateway_timeout"
    assert 0.3 <= waited < 2.0


def test_upstream_breaking_off_mid_body_breaks_the_client_connection(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    def short(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)

    upstream = raw_server(short)
    proxy = front(upstream=upstream.url)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", "/short")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-length") == "1000"
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()


def test_answer_without_a_body_on_a_broken_upstream_is_a_502(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    def rude(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"not http at all\r\n\r\n")

    upstream = raw_server(rude)
    proxy = front(upstream=upstream.url)
    answer = raw_request(proxy.port, "GET", "/rude")
    assert answer.status == 502
    assert json.loads(answer.body)["error"]["code"] == "upstream_unavailable"
    # The proxy is still up.
    assert raw_request(proxy.port, "GET", "/__admin/requests/count").status == 200


def test_a_client_that_leaves_mid_body_stops_the_upstream_download(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    stopped = threading.Event()
    sent = [0]

    def endless(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (10 * 2**30))
        try:
            while sent[0] < 10 * 2**30:
                conn.sendall(b"x" * 65536)
                sent[0] += 65536
        except OSError:
            stopped.set()

    upstream = raw_server(endless)
    proxy = front(upstream=upstream.url)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)
    # The proxy closes its upstream connection soon after: far from 10 GiB were sent.
    assert stopped.wait(5)
    assert sent[0] < 2**30
