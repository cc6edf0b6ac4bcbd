"""Hostile clients over a raw socket: oversized headers, ambiguous framing, slow headers.

Each refusal is the contract's error body, and the connection is closed after it, so nothing a
client queued behind a refused request is ever served. Every test runs against both HTTP stacks
the fake has: httptools on uvloop (the default) and h11 on asyncio (the fallback).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server._tenants import RateLimit
from mock_server.exceptions import ConfigError

pytestmark = pytest.mark.socket


STACKS = {"httptools": {"http": "httptools", "loop": "uvloop"}, "h11": {"http": "h11", "loop": "asyncio"}}


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(STACKS[request.param])


@pytest.fixture(scope="module")
def server(stack: dict[str, Any]) -> Iterator[ServerThread]:
    """One fake with the default limits for the module: these tests leave no state behind."""
    with ServerThread(ServerConfig(db=":memory:", **stack)) as served:
        yield served


@pytest.fixture(scope="module")
def quick(stack: dict[str, Any]) -> Iterator[ServerThread]:
    """A fake whose header timeout is half a second."""
    with ServerThread(ServerConfig(db=":memory:", header_timeout=0.5, **stack)) as served:
        yield served


GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def connect(server: ServerThread, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or goes quiet for the timeout (False)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        return out, False
    except ConnectionResetError:
        pass
    return out, True


def exchange(server: ServerThread, data: bytes, quiet: float = 2.0) -> tuple[bytes, bool]:
    with connect(server) as sock:
        sock.settimeout(quiet)
        sock.sendall(data)
        return read_all(sock)


def read_response(sock: socket.socket) -> bytes:
    """One Content-Length-framed response from a connection that stays open."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(responses(raw, partial=True)) == 0:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {raw!r}"
        raw += chunk
    return raw


def responses(raw: bytes, *, partial: bool = False) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of Content-Length-framed responses."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if partial and len(rest) < length:
            break
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def refused(raw: bytes, closed: bool, status: int) -> dict[str, Any]:
    """The one response before the close: ``status`` with the contract's error body."""
    assert closed, "the connection was left open"
    [(got, headers, body)] = responses(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message", "request_id"}
    assert error["request_id"] == headers["x-request-id"]
    return dict(error)


def get_with(*headers: bytes) -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


# -- header size ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [80_000, 100_000])
def test_a_huge_header_is_refused_with_431(server: ServerThread, size: int) -> None:
    """A header of 80 or 100 KB is 431 with the error body; the connection closes.

    Read whole, the head is refused for its line (over 8 KiB); read in pieces, as a loaded
    machine may deliver it, for its size while still arriving (over 32 KiB). Both are right.
    """
    error = refused(*exchange(server, get_with(b"X-Big: " + b"a" * size)), 431)
    assert error["code"] == "headers_too_large"
    assert "'x-big' is" in error["message"] and "8192" in error["message"] or "32768" in error["message"]


def test_a_head_over_the_total_is_refused_even_if_each_line_fits(server: ServerThread) -> None:
    """40 headers of 1 KB: each line fits in 8 KiB, the head does not fit in 32 KiB."""
    many = [b"X-H%d: " % i + b"b" * 1000 for i in range(40)]
    error = refused(*exchange(server, get_with(*many)), 431)
    assert "32768" in error["message"]


def test_an_incomplete_head_over_the_total_is_refused(server: ServerThread) -> None:
    """A head that keeps coming without its end is refused once past the limit, not buffered."""
    with connect(server) as sock:
        sock.settimeout(2)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"X-Pad: " + b"c" * 4000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was sent
        raw, closed = read_all(sock)
    refused(raw, closed, 431)


def test_a_long_request_line_is_refused_with_414(server: ServerThread) -> None:
    line = b"GET /health?q=" + b"d" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert refused(*exchange(server, line), 414)["code"] == "uri_too_long"


def test_headers_within_the_limits_are_served(server: ServerThread) -> None:
    """Just under the limits: a 7 KB header line, 30 KB in all."""
    near = [b"X-H%d: " % i + b"e" * 7000 for i in range(4)]
    raw, closed = exchange(server, get_with(b"Connection: close", *near))
    assert closed and [r[0] for r in responses(raw)] == [200]


def test_the_header_limits_are_configurable(
    mock_server_factory: Callable[..., ServerThread], stack: dict[str, Any]
) -> None:
    small = mock_server_factory(max_header_bytes=4096, max_header_line_bytes=1024, **stack)
    refused(*exchange(small, get_with(b"X-H: " + b"f" * 1100)), 431)
    refused(*exchange(small, get_with(*[b"X-H%d: " % i + b"f" * 900 for i in range(5)])), 431)
    raw, _ = exchange(small, get_with(b"Connection: close", b"X-H: " + b"f" * 900))
    assert [r[0] for r in responses(raw)] == [200]


def test_a_pipelined_head_after_a_large_body_is_counted_from_its_own_start(server: ServerThread) -> None:
    """A 40 KB body then half of the next head in one write, the rest later: the second head is
    not charged for the first request's body (no 431); both are answered."""
    body = b"x" * 40_000
    first = b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with connect(server) as sock:
        sock.settimeout(5)
        sock.sendall(first + GET[:20])
        time.sleep(0.1)
        sock.sendall(GET[20:].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        raw, closed = read_all(sock)
    statuses = [status for status, _, _ in responses(raw)]
    assert closed and len(statuses) == 2 and 431 not in statuses, raw[:300]


# -- request smuggling (RFC 9112 section 6.3) ----------------------------------------------


SMUGGLED = b"GET /profiles HTTP/1.1\r\nHost: x\r\nX-API-Key: demo-key\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5",
        b"Transfer-Encoding: gzip",
        b"Transfer-Encoding: gzip, chunked",
        b"Content-Length: 5\r\nContent-Length: 6",
        b"Content-Length: 5, 6",
    ],
    ids=["cl-te", "te-cl", "te-gzip", "te-gzip-chunked", "cl-twice", "cl-list"],
)
def test_ambiguous_body_framing_is_refused_and_nothing_behind_it_is_served(
    server: ServerThread, framing: bytes
) -> None:
    """400 with the error body, the connection closed, and the pipelined request never served."""
    first = b"POST /profiles HTTP/1.1\r\nHost: x\r\nX-API-Key: demo-key\r\n" + framing + b"\r\n\r\n0\r\n\r\n"
    error = refused(*exchange(server, first + SMUGGLED), 400)
    assert error["code"] == "bad_request"
    journal = server.admin.requests()
    assert [e for e in journal if e["path"] == "/profiles"] == []


# -- header timeout ------------------------------------------------------------------------


def test_a_silent_connection_is_closed_after_the_header_timeout(quick: ServerThread) -> None:
    with connect(quick) as sock:
        t0 = time.monotonic()
        raw, closed = read_all(sock)
        waited = time.monotonic() - t0
    assert closed and raw == b""  # nothing was asked, nothing is answered
    assert 0.4 < waited < 3


def test_a_dribbled_header_is_cut_off_at_the_header_timeout(quick: ServerThread) -> None:
    """A byte every 0.1 s keeps the connection busy but the head never completes: 408, closed."""
    with connect(quick) as sock:
        t0 = time.monotonic()
        sent = b""
        try:
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100:
                sock.sendall(bytes([byte]))
                sent += bytes([byte])
                time.sleep(0.1)
                if time.monotonic() - t0 > 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        waited = time.monotonic() - t0
        sock.settimeout(2)
        raw, closed = read_all(sock)
    assert waited < 3, f"still open after {waited:.1f} s and {len(sent)} bytes"
    assert refused(raw, closed, 408)["code"] == "request_timeout"


def test_an_idle_keep_alive_connection_outlives_the_header_timeout(quick: ServerThread) -> None:
    """Between requests the keep-alive timeout governs; the header timeout restarts per request."""
    with connect(quick) as sock:
        sock.settimeout(2)
        for pause in (0.7, 0.0):
            sock.sendall(GET)
            raw = read_response(sock)
            assert raw.startswith(b"HTTP/1.1 200"), raw[:100]
            time.sleep(pause)  # idle longer than the header timeout
        sock.sendall(GET[:10])  # a new head begins: its own header timeout starts
        t0 = time.monotonic()
        raw, closed = read_all(sock)
        assert closed and time.monotonic() - t0 < 2
    refused(raw, closed, 408)


def test_a_connection_sending_only_blank_lines_is_closed_at_the_header_timeout(quick: ServerThread) -> None:
    """Blank lines before a request are allowed (RFC 9112 section 2.2) but begin no request: they
    do not keep a connection open past the header timeout."""
    with connect(quick) as sock:
        t0 = time.monotonic()
        try:
            for _ in range(30):
                sock.sendall(b"\r\n")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(2)
        raw, closed = read_all(sock)
        waited = time.monotonic() - t0
    assert closed and waited < 3.5, f"still open after {waited:.1f} s"


def test_an_upgrade_request_is_answered_as_http_1_1_and_the_connection_goes_on(server: ServerThread) -> None:
    """The fake speaks HTTP/1.1 only: `curl --http2` on http:// asks to switch to h2c, and gets
    its answer in HTTP/1.1 (RFC 9110 section 7.8); the next request on the connection is served."""
    upgrade = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    upgrade += b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
    raw, closed = exchange(server, upgrade + get_with(b"Connection: close"))
    assert closed and [status for status, _, _ in responses(raw)] == [200, 200], raw[:300]


def test_an_upgrade_request_with_a_body(server: ServerThread, stack: dict[str, Any]) -> None:
    """h11 reads the body and answers; httptools would take the body for the new protocol's bytes,
    so that request is refused with the error body instead of being misread."""
    request = b"POST /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
    request += b"Content-Length: 5\r\n\r\nhello" + get_with(b"Connection: close")
    raw, closed = exchange(server, request)
    if stack["http"] == "httptools":
        assert "Upgrade" in refused(raw, closed, 400)["message"]
    else:
        assert closed and [status for status, _, _ in responses(raw)] == [405, 200], raw[:300]


def test_refusals_are_not_logged_one_line_each(
    server: ServerThread, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client sending many bad requests gets its answers; the fake's log stays quiet."""
    for _ in range(5):
        refused(*exchange(server, get_with(b"Content-Length: 1\r\nTransfer-Encoding: chunked")), 400)
    assert "Invalid HTTP request" not in capfd.readouterr().err


def test_x_forwarded_for_does_not_choose_the_address_failed_logins_count_under(
    mock_server_factory: Callable[..., ServerThread],
) -> None:
    """A loopback client naming a new address in each X-Forwarded-For is still one address to the
    failed-authentication throttle (uvicorn trusts that header from loopback unless told not to)."""
    server = mock_server_factory(auth_failure_limit=RateLimit(per_minute=60, burst=3))
    statuses = [
        requests.get(
            server.url + "/profiles",
            headers={"X-API-Key": "wrong", "X-Forwarded-For": f"10.0.0.{i}"},
            timeout=5,
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"header_timeout": 0}, "header_timeout"),
        ({"max_header_line_bytes": 100}, "max_header_line_bytes"),
        ({"max_header_bytes": 4096, "max_header_line_bytes": 8192}, "max_header_line_bytes"),
        ({"http": "h2"}, "http"),
        ({"loop": "trio"}, "loop"),
    ],
)
def test_bad_limits_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ServerThread(ServerConfig(db=":memory:", **settings))
