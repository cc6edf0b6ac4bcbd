"""Proxy fidelity against a real upstream no one here wrote: httpbin under gunicorn.

Each answer through the proxy is compared with the same request sent direct, read with a raw
HTTP/1.1 parser (h11), so framing (Content-Length or chunked) and the exact body bytes show.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import h11
import pytest

from mock_server._proxy._app import FrontThread, ProxyConfig

from .conftest import Raw, Upstream, raw_request

pytestmark = pytest.mark.socket


@pytest.fixture(scope="module")
def proxy(httpbin: Upstream) -> Iterator[FrontThread]:
    """One proxy for the module's stateless checks (starting and stopping one per test is slow)."""
    with FrontThread(ProxyConfig(upstream=httpbin.url, port=0)) as thread:
        yield thread


# Date differs by the clock; Connection and Keep-Alive are each hop's own.
_PER_HOP = frozenset({b"date", b"connection", b"keep-alive"})


def _comparable(raw: Raw) -> tuple[int, list[tuple[bytes, bytes]], int, bytes]:
    # The body as its length and hash: a mismatch then prints short.
    import hashlib

    headers = [(k, v) for k, v in raw.headers if k not in _PER_HOP]
    return raw.status, headers, len(raw.body), hashlib.sha256(raw.body).digest()


@pytest.mark.parametrize(
    "target",
    [
        "/bytes/4096?seed=7",  # binary, Content-Length
        "/stream-bytes/20000?seed=7&chunk_size=1000",  # binary, chunked
        "/redirect/3",  # a redirect, returned, not followed
        "/status/204",
        "/status/304",
        "/status/418",
        "/status/503",
        "/robots.txt",
    ],
)
def test_answers_are_byte_for_byte_the_upstreams(httpbin: Upstream, proxy: FrontThread, target: str) -> None:
    direct = raw_request(httpbin.port, "GET", target)
    proxied = raw_request(proxy.port, "GET", target)
    assert _comparable(proxied) == _comparable(direct)


def test_gzip_is_not_re_encoded(httpbin: Upstream, proxy: FrontThread) -> None:
    proxied = raw_request(proxy.port, "GET", "/gzip", [("Accept-Encoding", "gzip")])
    assert proxied.header(b"content-encoding") == b"gzip"
    assert proxied.body[:2] == b"\x1f\x8b"
    assert proxied.header(b"content-length") == str(len(proxied.body)).encode()
    assert json.loads(__import__("gzip").decompress(proxied.body))["gzipped"] is True


def test_framing_follows_the_upstream(proxy: FrontThread) -> None:
    fixed = raw_request(proxy.port, "GET", "/bytes/1000")
    assert fixed.header(b"content-length") == b"1000" and fixed.header(b"transfer-encoding") is None
    chunked = raw_request(proxy.port, "GET", "/stream-bytes/1000?chunk_size=100")
    assert chunked.header(b"transfer-encoding") == b"chunked" and chunked.header(b"content-length") is None
    assert len(chunked.body) == 1000


def test_head_and_redirects(proxy: FrontThread, httpbin: Upstream) -> None:
    head = raw_request(proxy.port, "HEAD", "/bytes/512")
    assert head.status == 200 and head.body == b""
    assert head.header(b"content-length") == b"512"
    moved = raw_request(proxy.port, "GET", "/redirect-to?url=/get&status_code=307")
    assert moved.status == 307 and moved.header(b"location") == b"/get"


def test_request_passes_unchanged(proxy: FrontThread, httpbin: Upstream) -> None:
    body = bytes(range(256)) * 4
    answer = raw_request(
        proxy.port,
        "PATCH",
        "/anything/a%20b/%C3%A9?z=1&a=2&a=3&empty=",
        [
            ("Content-Type", "application/octet-stream"),
            ("X-Custom", "kept"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "named in Connection: dropped"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
        body,
    )
    echoed = json.loads(answer.body)
    assert echoed["method"] == "PATCH"
    target = "/anything/a%20b/%C3%A9?z=1&a=2&a=3&empty="
    direct = json.loads(
        raw_request(httpbin.port, "PATCH", target, [("Content-Type", "text/plain")], b"x").body
    )
    assert echoed["url"] == direct["url"]
    assert echoed["args"] == {"z": "1", "a": ["2", "3"], "empty": ""}
    assert (
        echoed["data"]
        == "data:application/octet-stream;base64," + __import__("base64").b64encode(body).decode()
    )
    headers = echoed["headers"]
    assert headers["X-Custom"] == "kept"
    for gone in ("X-Hop", "Keep-Alive", "Te"):
        assert gone not in headers
    # The upstream sees its own Host, and where the request came from.
    assert headers["Host"] == f"127.0.0.1:{httpbin.port}"
    assert headers["X-Forwarded-Host"] == f"127.0.0.1:{proxy.port}"


def test_forwarded_headers_reach_the_upstream(
    raw_server: Callable[..., object], front: Callable[..., FrontThread]
) -> None:
    # httpbin hides X-Forwarded-For and -Proto from its echo: a raw upstream shows them.
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        from .conftest import read_head

        seen.append(read_head(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    upstream = raw_server(handler)
    proxy = front(upstream=upstream.url)  # type: ignore[attr-defined]
    raw_request(proxy.port, "GET", "/x?q=%C3%A9%20", [("X-Forwarded-For", "10.0.0.1")])
    head = seen[0].lower()
    assert b"x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n" in head
    assert b"x-forwarded-proto: http\r\n" in head
    assert head.startswith(b"get /x?q=%c3%a9%20 http/1.1\r\n")
    assert f"host: 127.0.0.1:{upstream.port}\r\n".encode() in head  # type: ignore[attr-defined]
    kept = front(upstream=upstream.url, preserve_host=True)  # type: ignore[attr-defined]
    raw_request(kept.port, "GET", "/x")
    assert f"host: 127.0.0.1:{kept.port}\r\n".encode() in seen[1].lower()


def test_drip_streams_as_it_comes(proxy: FrontThread) -> None:
    # 5 bytes over 1 s: the first arrives well before the last (nothing is buffered).
    conn = h11.Connection(h11.CLIENT)
    arrivals: list[float] = []
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            conn.send(
                h11.Request(
                    method="GET", target="/drip?numbytes=5&duration=1&delay=0", headers=[("Host", "x")]
                )
            )
        )
        sock.sendall(conn.send(h11.EndOfMessage()))
        start = time.monotonic()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Data):
                arrivals.extend([time.monotonic() - start] * len(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
    assert len(arrivals) == 5
    # Buffered, they would all arrive at once.
    assert arrivals[-1] - arrivals[0] > 0.5


def test_journal_and_admin_work_in_front_of_httpbin(
    httpbin: Upstream, front: Callable[..., FrontThread]
) -> None:
    proxy = front(upstream=httpbin.url)
    raw_request(proxy.port, "GET", "/status/503", [("X-Mock-Session", "s1")])
    raw_request(proxy.port, "GET", "/status/503", [("X-Mock-Session", "s1")])
    entries = proxy.admin.requests()
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [("GET", "/status/503", 503)] * 2
    # Compliance grades the client from the journal, as in front of the fake: the 503 said
    # nothing of when to come back, and the client came straight back.
    report = proxy.admin.compliance(session="s1")
    assert report["requests"] == 2 and "verdict" in report
    assert 'route="/status/503"' in proxy.admin.metrics() or "/status/503" in proxy.admin.metrics()
    # /__admin is the proxy's own, never forwarded.
    assert raw_request(proxy.port, "GET", "/__admin/faults").status == 200
