"""The API's per-request plumbing: requests with headers read through a dict, handlers served
without a wrapper, and responses whose headers are already bytes.

An API request reads half a dozen headers (credentials, session, conditional-request headers),
most of them absent. Starlette's ``Headers`` scans the whole list for each read and raises and
catches a ``KeyError`` for each absent one; a profile read spent more time there than in its
handler. :class:`RequestHeaders` decodes the list once, on the first read, into a dict.

:class:`Endpoint` serves a handler as a plain ASGI app, so Starlette's router calls it directly
instead of through its per-request wrappers (``request_response``): the API renders its own
errors, and anything else it raises reaches the same exception handlers as before.

:class:`RawResponse` takes its headers as ASGI raw headers: Starlette's ``Response`` encodes and
lower-cases a dict of them on every request, the hot reads' largest cost after the headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class RequestHeaders(Headers):
    """Request headers; a name given more than once reads as its first value, as in Starlette."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        self._first: dict[str, str] | None = None

    def _by_name(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = self._first = {}
            for key, value in reversed(self._list):
                first[key.decode("latin-1")] = value.decode("latin-1")
        return first

    def get(self, key: str, default: Any = None) -> Any:
        return self._by_name().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._by_name()[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._by_name()


class ApiRequest(Request):
    """A Starlette request whose headers are :class:`RequestHeaders`."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(scope, receive, send)
        self._fast_headers = RequestHeaders(scope)

    @property
    def headers(self) -> Headers:
        return self._fast_headers


class Endpoint:
    """An ASGI app answering each request with ``handler(ApiRequest)``.

    A class, not a function: Starlette's ``Route`` wraps a function in ``request_response`` and
    calls anything else as an ASGI app.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(ApiRequest(scope, receive, send))
        await response(scope, receive, send)


class RawResponse(Response):
    """A response of an encoded body, ``media_type`` and raw headers (lower-case names)."""

    def __init__(
        self,
        body: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        *,
        status_code: int = 200,
        media_type: bytes = b"application/json",
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [
            *raw_headers,
            (b"content-length", b"%d" % len(body)),
            (b"content-type", media_type),
        ]
