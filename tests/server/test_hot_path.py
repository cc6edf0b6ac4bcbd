"""What the per-request shortcuts must keep: the journal's view of each response, header reads
equal to Starlette's, and one send() per response that never loses or delays a byte."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import requests
from starlette.datastructures import Headers

from mock_server import ServerThread
from mock_server._faults._connection import CoalescingTransport
from mock_server._request import RequestHeaders
from mock_server._tenants import parse_tenants

SLOW_REFILL = parse_tenants(
    {"tenants": [{"name": "demo", "api_keys": ["demo-key"], "rate_limit": {"per_minute": 6, "burst": 1}}]}
)


@pytest.mark.socket
def test_the_journal_keeps_the_rate_limit_headers_of_a_2xx_and_compliance_uses_them(
    mock_server_factory: Callable[..., ServerThread],
) -> None:
    """A 200 saying Remaining: 0 is in the journal as such, so a request sent before its reset is
    flagged: the limiter's headers are appended as raw headers, lower case as ASGI wants them."""
    server = mock_server_factory(tenants=SLOW_REFILL)
    headers = {"X-API-Key": "demo-key", "X-Mock-Session": "eager"}
    last_token = requests.get(server.url + "/profiles", headers=headers, timeout=5)
    assert last_token.status_code == 200 and last_token.headers["X-RateLimit-Remaining"] == "0"
    refused = requests.get(server.url + "/profiles", headers=headers, timeout=5)
    assert refused.status_code == 429
    journal = {e["request_id"]: e for e in server.admin.requests(session="eager")}
    first = journal[last_token.headers["X-Request-ID"]]
    assert first["ratelimit_remaining"] == 0
    assert first["ratelimit_reset_at"] == float(last_token.headers["X-RateLimit-Reset"])
    report = requests.get(server.url + "/__admin/compliance", params={"session": "eager"}, timeout=5).json()
    (finding,) = [f for f in report["findings"] if f["kind"] == "request_while_rate_limited"]
    assert [r["request_id"] for r in finding["requests"]] == [refused.headers["X-Request-ID"]]


RAW = [
    (b"host", b"x"),
    (b"x-api-key", b"first"),
    (b"x-api-key", b"second"),
    (b"if-none-match", b'"1-abc"'),
    (b"x-mock-session", b"s\xe9"),
]


@pytest.mark.parametrize("name", ["x-api-key", "X-API-Key", "If-None-Match", "x-mock-session", "absent"])
def test_request_headers_read_as_starlettes(name: str) -> None:
    ours, theirs = RequestHeaders({"headers": list(RAW)}), Headers(scope={"headers": list(RAW)})
    assert ours.get(name) == theirs.get(name)
    assert ours.get(name, "default") == theirs.get(name, "default")
    assert (name in ours) == (name in theirs)
    if name in theirs:
        assert ours[name] == theirs[name]
    else:
        with pytest.raises(KeyError):
            ours[name]
    assert ours.getlist(name) == theirs.getlist(name)
    assert 42 not in ours


class _Recorder:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _coalescing() -> tuple[CoalescingTransport, _Recorder, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    recorder = _Recorder()
    return CoalescingTransport(recorder, loop), recorder, loop  # type: ignore[arg-type]


def test_writes_of_one_turn_leave_in_one_write_at_the_next() -> None:
    transport, recorder, loop = _coalescing()
    try:
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(memoryview(b"body"))
        assert recorder.calls == [] and transport.get_write_buffer_size() == 23
        loop.run_until_complete(asyncio.sleep(0))
        assert recorder.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]
        transport.write(b"next")  # a later turn: a write of its own
        loop.run_until_complete(asyncio.sleep(0))
        assert recorder.calls[-1] == ("write", b"next")
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    finally:
        loop.close()


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    """A truncated body must reach the client before the FIN; a reset sends nothing more."""
    transport, recorder, loop = _coalescing()
    try:
        transport.write(b"head")
        transport.write(b"part of the body")
        transport.close()
        assert recorder.calls == [("write", b"headpart of the body"), ("close", None)]
        loop.run_until_complete(asyncio.sleep(0))  # the scheduled flush finds nothing
        assert len(recorder.calls) == 2
    finally:
        loop.close()
    transport, recorder, loop = _coalescing()
    try:
        transport.write(b"head")
        transport.abort()
        loop.run_until_complete(asyncio.sleep(0))
        assert recorder.calls == [("abort", None)]
    finally:
        loop.close()
