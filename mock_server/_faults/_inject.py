"""The ASGI-level pieces of fault injection: error responses, captured responses, draining.

Kept apart from the layer's bookkeeping so each piece can be read (and tested) alone.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import WWW_AUTHENTICATE, code_for
from ._model import Fault

RawHeaders = list[tuple[bytes, bytes]]
JSON = b"application/json"
DEFAULT_WRONG_TYPE = "text/html; charset=utf-8"


def error_body(status: int, message: str, request_id: str, code: str | None = None) -> bytes:
    """The contract's error body for an injected status (``code``: the status's by default)."""
    error = {"code": code or code_for(status), "message": message, "request_id": request_id}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def unavailable(message: str, request_id: str) -> tuple[int, RawHeaders, bytes]:
    """The 503 ``state_unavailable`` answer while the shared state cannot be reached."""
    body = error_body(503, message, request_id, "state_unavailable")
    headers: RawHeaders = [
        (b"content-type", JSON),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1", "replace")),
        (b"retry-after", b"1"),
    ]
    return 503, headers, body


def status_response(
    fault: Fault, request_id: str, wall: float, *, rate_limit: int = 600, rule: str | None = None
) -> tuple[int, RawHeaders, bytes]:
    """Status, headers and body of an injected status fault.

    A 429 always says when to come back (``Retry-After``, 1 s unless configured) and carries the
    contract's rate-limit headers with nothing remaining, as the real limiter's 429 does.
    """
    status = fault.status or 500
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    message = fault.message or f"{phrase} (injected fault{f' {rule}' if rule else ''})"
    body = error_body(status, message, request_id)
    headers: RawHeaders = [
        (b"content-type", JSON),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1", "replace")),
    ]
    if status == 401:
        headers.append((b"www-authenticate", WWW_AUTHENTICATE.encode()))
    retry = fault.retry_after
    seconds = retry.seconds if retry is not None else (1 if status == 429 else None)
    if seconds is not None:
        if retry is not None and retry.http_date:
            value = formatdate(math.ceil(wall) + seconds, usegmt=True)
        else:
            value = str(seconds)
        headers.append((b"retry-after", value.encode()))
    if status == 429:
        reset = max(1, seconds or 1)
        headers += [
            (b"x-ratelimit-limit", str(rate_limit).encode()),
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", str(math.ceil(wall) + reset).encode()),
            (b"ratelimit-policy", f'"default";q={rate_limit};w=60'.encode()),
            (b"ratelimit", f'"default";r=0;t={reset}'.encode()),
        ]
    return status, headers, body


async def send_response(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def drain(receive: Receive) -> bool:
    """Read the request body to its end; False when the client left first.

    Reading it matters before a graceful close: a socket closed with unread input sends a
    reset, and a ``close`` fault must look like a close.
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has gone (uvicorn sends ``http.disconnect`` when the socket closes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def wait_closed(receive: Receive, timeout: float = 2.0) -> None:
    """After closing the transport, wait until the server has seen the connection go, so it does
    not think the app forgot to answer."""
    try:
        await asyncio.wait_for(until_disconnect(receive), timeout)
    except TimeoutError:
        pass


class Captured:
    """A response the API produced, held back so a fault can alter it."""

    __slots__ = ("status", "headers", "body", "complete")

    def __init__(self) -> None:
        self.status = 500
        self.headers: RawHeaders = []
        self.body = bytearray()
        self.complete = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def replaced(self, name: bytes, value: bytes | None) -> RawHeaders:
        """The headers with ``name`` set to ``value`` (or removed, for None)."""
        out = [(k, v) for k, v in self.headers if k.lower() != name]
        if value is not None:
            out.append((name, value))
        return out


async def capture(app: ASGIApp, scope: Scope, receive: Receive) -> Captured:
    """Run the API and keep its whole response instead of sending it."""
    captured = Captured()

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = message["status"]
            captured.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            captured.body += message.get("body", b"")
            if not message.get("more_body", False):
                captured.complete = True

    await app(scope, receive, keep)
    return captured


def corrupt_json(body: bytes) -> bytes:
    """A body no JSON parser accepts: the first half of the real one, then a broken token."""
    return bytes(body[: len(body) // 2]) + b'{"\x00'


def without_length(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    return [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
