"""A 200 MB body each way through the proxy (a process of its own, recording too), its RSS
sampled throughout: memory does not follow the body's size."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from .conftest import RawServer, free_port, read_head, run_cli, wait_for_port

pytestmark = pytest.mark.socket

SIZE = 200 * 1024 * 1024
CHUNK = b"\x5a" * (1024 * 1024)
#: RSS may grow by this much at most over the idle proxy's while 200 MB pass each way.
ALLOWED_GROWTH = 40 * 1024 * 1024


def _upstream(conn: socket.socket) -> None:
    head = read_head(conn)
    if head.startswith(b"GET"):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % SIZE
        )
        for _ in range(SIZE // len(CHUNK)):
            conn.sendall(CHUNK)
        return
    # POST: read the body to its end (chunked or with a length), answer with what it counted.
    length = (
        int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if b"content-length:" in head.lower()
        else None
    )
    got = len(head.partition(b"\r\n\r\n")[2])
    while length is None or got < length:
        piece = conn.recv(1 << 20)
        if not piece:
            break
        got += len(piece)
    body = str(got).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@contextmanager
def _sampling(pid: int) -> Iterator[list[int]]:
    process = psutil.Process(pid)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(process.memory_info().rss)
            done.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def test_200_mb_each_way_in_bounded_memory(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer], tmp_path: Path
) -> None:
    upstream = raw_server(_upstream)
    port = free_port()
    proc = run_cli(
        "proxy", "--upstream", upstream.url, "--port", str(port), "--record", str(tmp_path / "big.har")
    )
    try:
        wait_for_port(port, proc=proc)
        with socket.create_connection(("127.0.0.1", port)) as sock:  # warm up: imports, first connection
            sock.sendall(b"POST /warm HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            assert b"200 OK" in sock.recv(4096)
        idle = psutil.Process(proc.pid).memory_info().rss
        started = time.monotonic()
        with _sampling(proc.pid) as samples:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                received = 0
                while received < SIZE:
                    piece = sock.recv(1 << 20)
                    assert piece
                    received += len(piece)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
                for _ in range(SIZE // len(CHUNK)):
                    sock.sendall(CHUNK)
                answer = sock.recv(4096)
        elapsed = time.monotonic() - started
        assert received >= SIZE
        assert answer.endswith(str(SIZE).encode()), answer
        peak = max(samples)
        assert peak - idle < ALLOWED_GROWTH, (
            f"RSS grew {(peak - idle) / 2**20:.0f} MiB (idle {idle / 2**20:.0f} MiB)"
        )
        assert elapsed < 20
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
