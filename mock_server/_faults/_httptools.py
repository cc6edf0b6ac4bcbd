"""uvicorn's httptools protocol with the fake's connection guard: the default, and the fast one.

httptools wraps llhttp (node's parser, in C), which already refuses ambiguous framing
(Content-Length twice, or with Transfer-Encoding) but bounds nothing: a head of any size is
buffered, and uvicorn gives it no timeout. This protocol counts the bytes of each head as they
arrive and checks each complete head with the same rules as the h11 fallback (``_limits.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._connection import GuardedProtocol, quiet_log
from ._limits import Refusal, malformed
from ._transport import TRANSPORT_KEY

_UPGRADE_WITH_BODY = (
    "an Upgrade request with a body is not served (this server speaks HTTP/1.1 only):"
    " send it without the Upgrade header"
)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is on the protocol."""


class FaultHttpToolsProtocol(GuardedProtocol, HttpToolsProtocol):
    """uvicorn's httptools protocol, exposing the connection's transport to the app in the scope
    and bounding what a connection may cost (:class:`~._limits.ConnectionLimits`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = quiet_log(self.logger)
        self._guard_init()
        # Between a request's first byte and the end of its head.
        self._in_head = False
        # Heads begun on this connection, to tell whether one began in the latest read.
        self._heads = 0
        # Bytes of the head being read so far (counted only while it is incomplete).
        self._head_bytes = 0
        # Body bytes the parser passed on during the latest read.
        self._read_body = 0
        self._refusal: Refusal | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(self._guard_connection(transport))
        self._guard_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.pipeline

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        heads = self._heads
        self._read_body = 0
        while True:
            try:
                self.parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as upgrade:
                # httptools stops after the head of a request asking to switch protocols. The
                # fake speaks HTTP/1.1 only, so it ignores the request's Upgrade (RFC 9110
                # section 7.8), answers it as it is, and reads on.
                data = data[upgrade.args[0] :]
                self._read_body = 0
                if not data:
                    break
            except httptools.HttpParserError as exc:
                self._refuse_request(self._refusal or malformed(str(exc)))
                return
        if self.transport.is_closing():
            self._cancel_header_timer()
            return
        if self._in_head:
            if self._heads == heads:  # begun in an earlier read: all of this one is head
                self._head_bytes += len(data)
            else:
                # Begun in this read, after whatever came before it: the end of an earlier
                # request's head (a head has no blank line in it, so this one is at most what
                # follows the last blank line) or of its body.
                end = data.rfind(b"\r\n\r\n")
                after_blank = len(data) - end - 4 if end >= 0 else len(data)
                self._head_bytes = min(after_blank, len(data) - self._read_body)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_request(self.limits.too_large())
                return
        self._head_arriving(self._awaiting_head())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_KEY: self.fault_extension}  # type: ignore[dict-item]
        self._in_head = True
        self._heads += 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers = self.headers
        refusal = self.limits.check_head(self.parser.get_method(), self.url, headers)
        if refusal is None and self.parser.should_upgrade() and _declares_body(headers):
            # httptools would take the body for the new protocol's bytes.
            refusal = 400, None, _UPGRADE_WITH_BODY
        if refusal is not None:
            self._refusal = refusal
            raise _Refused
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._read_body += len(body)
        super().on_body(body)

    def send_400_response(self, msg: str) -> None:
        self._refuse_request(self._refusal or malformed(msg))

    def shutdown(self) -> None:
        self._release_held()
        super().shutdown()


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
