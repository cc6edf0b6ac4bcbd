"""The keep-alive pool to the upstream: connections are reused; one the upstream closed while
idle is replaced without the client seeing it; request bodies stream framed as the client framed
them; an answer without a length ends with the connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from mock_server._proxy._app import FrontThread

from .conftest import RawServer, raw_request, read_head

pytestmark = pytest.mark.socket


def _read_request(conn: socket.socket, pending: bytes) -> tuple[bytes, bytes]:
    """One request's head and body (by Content-Length or chunked), and the bytes after it."""
    while b"\r\n\r\n" not in pending:
        piece = conn.recv(65536)
        if not piece:
            return b"", b""
        pending += piece
    head, _, rest = pending.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest[:length], rest[length:]
    if b"transfer-encoding: chunked" in lower:
        while not rest.endswith(b"0\r\n\r\n"):
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest, b""
    return head + b"\r\n\r\n", rest


def test_connections_to_the_upstream_are_kept_alive(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    accepted: list[int] = []

    def keep_alive(conn: socket.socket) -> None:
        accepted.append(1)
        pending = b""
        while True:
            request, pending = _read_request(conn, pending)
            if not request:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    upstream = raw_server(keep_alive)
    proxy = front(upstream=upstream.url)
    for _ in range(10):
        assert raw_request(proxy.port, "GET", "/x").body == b"ok"
    assert len(accepted) == 1


def test_an_idle_connection_the_upstream_closed_is_replaced(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    served = threading.Semaphore(0)

    def one_per_connection(conn: socket.socket) -> None:
        read_head(conn)
        # Says keep-alive, then closes after the answer: as a server whose idle timeout passed.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        served.release()

    upstream = raw_server(one_per_connection)
    proxy = front(upstream=upstream.url)
    for _ in range(5):
        answer = raw_request(proxy.port, "GET", "/x")
        assert answer.status == 200 and answer.body == b"ok"
        assert served.acquire(timeout=5)


def test_request_bodies_keep_their_framing(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    seen: list[bytes] = []

    def echo_framing(conn: socket.socket) -> None:
        pending = b""
        while True:
            request, pending = _read_request(conn, pending)
            if not request:
                return
            seen.append(request)
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    upstream = raw_server(echo_framing)
    proxy = front(upstream=upstream.url)
    assert raw_request(proxy.port, "PUT", "/sized", [], b"0123456789").status == 204
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(
            b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 204")
    sized, chunked = seen
    assert b"\r\ncontent-length: 10\r\n" in sized.lower() and sized.endswith(b"\r\n\r\n0123456789")
    assert b"\r\ntransfer-encoding: chunked\r\n" in chunked.lower()
    body = chunked.partition(b"\r\n\r\n")[2]
    # Re-framed chunk by chunk as the pieces came; the bytes are the client's.
    pieces = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        pieces.append(body[:size])
        body = body[size + 2 :]
    assert b"".join(pieces) == b"hello world"


def test_an_answer_without_a_length_ends_with_the_connection(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    def http10_style(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end")

    upstream = raw_server(http10_style)
    proxy = front(upstream=upstream.url)
    answer = raw_request(proxy.port, "GET", "/x")
    assert answer.status == 200 and answer.body == b"until the end"
    assert answer.header(b"connection") is None  # hop-by-hop, not passed on


def test_bytes_on_an_idle_connection_are_never_taken_for_an_answer(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], front: Callable[..., FrontThread]
) -> None:
    def chatty(conn: socket.socket) -> None:
        pending = b""
        request, pending = _read_request(conn, pending)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        # Then, unasked, what some servers send on an idle keep-alive connection before closing.
        conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        request, pending = _read_request(conn, pending)
        if request:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong")

    upstream = raw_server(chatty)
    proxy = front(upstream=upstream.url)
    assert raw_request(proxy.port, "GET", "/one").body == b"first"
    time.sleep(0.05)  # the unasked bytes arrive while the connection is idle
    second = raw_request(proxy.port, "GET", "/two")
    assert second.status == 200 and second.body == b"first"  # a fresh connection's first answer
