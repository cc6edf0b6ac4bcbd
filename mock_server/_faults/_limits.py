"""What a connection may cost before its request reaches the app, and the answer when it is over.

Pure decisions, shared by both HTTP protocols the fake runs (h11 and httptools, see ``_h11.py``
and ``_httptools.py``), so a client gets the same refusal whichever parser reads its request.
The limits are nginx's: the request line and headers are limited in size
(``large_client_header_buffers``) and must arrive whole within a timeout
(``client_header_timeout``), and a request whose body length is ambiguous (RFC 9112 section 6.3:
``Content-Length`` with ``Transfer-Encoding``, or a transfer coding other than ``chunked``) is
refused. Each refusal is the contract's error body and the connection is closed after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

from .._errors import error_body
from .._ids import new_request_id
from ..exceptions import ConfigError

#: (status, code, message) of a request refused by the protocol; code None: the status's own.
Refusal = tuple[int, str | None, str]

AMBIGUOUS_LENGTH = (
    "Content-Length and Transfer-Encoding together make the body length ambiguous"
    " (RFC 9112 section 6.3); the connection is closed"
)


@dataclass(frozen=True, kw_only=True)
class ConnectionLimits:
    """What a connection may cost before its request reaches the app (nginx's defaults).

    ``max_header_line_bytes`` bounds the request line and each header line, ``max_header_bytes``
    the whole request head (nginx ``large_client_header_buffers 4 8k``); ``header_timeout`` is how
    long the head of a request may take to arrive once the connection opens or the request's
    first byte arrives (nginx ``client_header_timeout 60s``). Between requests, an idle
    keep-alive connection is governed by uvicorn's keep-alive timeout instead.
    """

    max_header_bytes: int = 32 * 1024
    max_header_line_bytes: int = 8 * 1024
    header_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 256 <= self.max_header_line_bytes <= self.max_header_bytes:
            raise ConfigError(
                f"max_header_line_bytes: must be 256..max_header_bytes ({self.max_header_bytes}),"
                f" got {self.max_header_line_bytes}"
            )
        if not self.header_timeout > 0:
            raise ConfigError(f"header_timeout: must be positive, got {self.header_timeout}")

    def too_large(self) -> Refusal:
        """A head over ``max_header_bytes``, whole or still arriving."""
        return (
            431,
            None,
            f"the request line and headers exceed {self.max_header_bytes} bytes; the connection is closed",
        )

    def timed_out(self) -> Refusal:
        """A head begun but not complete within ``header_timeout``."""
        return (
            408,
            None,
            f"the request headers did not arrive within {self.header_timeout:g} s; the connection is closed",
        )

    def check_head(
        self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> Refusal | None:
        """The refusal a complete request head earns, or None to serve it.

        ``headers`` are (lower-case name, value) pairs as the parser read them.
        """
        limit = self.max_header_line_bytes
        line = len(method) + len(target) + 10  # METHOD SP target SP HTTP/1.1
        if line > limit:
            return 414, None, f"the request line is {line} bytes; at most {limit} are accepted"
        total = line + 2
        length = False
        coding: bytes | None = None
        for name, value in headers:
            size = len(name) + 2 + len(value)
            if size > limit:
                return (
                    431,
                    None,
                    f"header {_shown(name)!r} is {size} bytes; at most {limit} are accepted per header",
                )
            total += size + 2
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                coding = value if coding is None else coding + b"," + value
        if total > self.max_header_bytes:
            return self.too_large()
        if coding is not None:
            if length:
                return 400, None, AMBIGUOUS_LENGTH
            if coding.strip().lower() != b"chunked":
                # RFC 9112 section 6.3: the length of a body in another coding is unknown.
                return malformed(f"Transfer-Encoding {_shown(coding)!r} is not supported; only chunked is")
        return None


def malformed(reason: str) -> Refusal:
    """A request the parser could not read (bad syntax, a transfer coding other than chunked...)."""
    return 400, None, f"malformed HTTP request: {reason}"


def refusal_bytes(refusal: Refusal, default_headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The whole response refusing a request: the contract's error body, then ``connection: close``."""
    status, code, message = refusal
    rid = new_request_id()
    body = error_body(status, message, rid, code=code)
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in default_headers]
    head += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"x-request-id: " + rid.encode(),
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _shown(name: bytes) -> str:
    text = name.decode("latin-1")
    return text if len(text) <= 40 else text[:40] + "..."
