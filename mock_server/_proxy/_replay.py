"""The replay app: answers each request with the response recorded for it in a HAR file.

A request matches a recorded one on method, path and query (the query's parameters in any order;
a value recorded as ``REDACTED`` matches any value, since the recorder hid a secret there); with
``match="exact"`` the body must match too (JSON bodies compared as JSON, forms as their
parameters, others byte for byte). The host is not compared, so a HAR exported from a browser's
devtools for ``https://api.example.com`` replays on loopback. Repeated requests get the recorded
responses in recording order, then the last one again; counts are kept per ``X-Mock-Session``.
An unrecorded request gets a 404 with the contract's error body, naming the closest recorded
requests.

Responses are sent as recorded, but for what HAR changes or the wire would not carry: a body
stored decoded (as HAR stores it) is sent without the ``Content-Encoding`` it came with, each
``Content-Length`` is the body's own, HTTP/2 pseudo-headers and hop-by-hop headers are dropped, a
redacted ``Set-Cookie`` is left out, and ``X-Request-ID`` is this request's.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from starlette.types import Receive, Scope, Send

from .._untrusted import session_id
from ._forward import HOP_BY_HOP, RawHeaders, error_response, request_id_of
from ._har import REDACTED, HarError, read_har

MatchMode = Literal["exact", "path"]
MATCH_MODES: tuple[str, ...] = ("exact", "path")
_CLOSEST = 3
_MAX_COUNTERS = 100_000
# Recorded headers never sent back as they were: recomputed, or not this hop's.
_RECOMPUTED = frozenset({b"content-length", b"date"})


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded exchange, ready to match and to send."""

    index: int
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    mime: str
    status: int
    headers: RawHeaders
    content: bytes

    @property
    def label(self) -> str:
        query = "&".join(f"{n}={v}" for n, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''}"


def _decode(text: str, encoding: Any) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            return text.encode("utf-8")
    return text.encode("utf-8")


def _headers(raw: Any) -> list[tuple[str, str]]:
    out = []
    for item in raw if isinstance(raw, list) else []:
        if (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("value"), str)
        ):
            out.append((item["name"], item["value"]))
    return out


def recorded(index: int, entry: dict[str, Any]) -> Recorded | None:
    """``entry`` of a HAR file as a :class:`Recorded`; None for one with nothing to replay (a
    request the browser never sent, status 0)."""
    request, response = entry["request"], entry["response"]
    status = response.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        return None
    parts = urlsplit(request["url"])
    post = request.get("postData") if isinstance(request.get("postData"), dict) else {}
    body = _decode(post.get("text") or "", post.get("_encoding", post.get("encoding")))
    content = response.get("content") if isinstance(response.get("content"), dict) else {}
    raw_body = _decode(content.get("text") or "", content.get("encoding"))
    stored_encoded = bool(content.get("_encoded"))
    headers: RawHeaders = []
    # An answer to HEAD has no body to measure: the length it gave is the one to give.
    head = request["method"].upper() == "HEAD"
    for name, value in _headers(response.get("headers")):
        key = name.lower().encode("latin-1", "replace")
        recomputed = key in _RECOMPUTED and not (head and key == b"content-length")
        if key.startswith(b":") or key in HOP_BY_HOP or recomputed:
            continue
        if key == b"content-encoding" and not stored_encoded:
            continue
        if key == b"set-cookie" and REDACTED in value:
            continue
        headers.append((key, value.encode("latin-1", "replace")))
    return Recorded(
        index=index,
        method=request["method"].upper(),
        path=unquote(parts.path or "/"),
        query=tuple(sorted(parse_qsl(parts.query, keep_blank_values=True))),
        body=body,
        mime=post.get("mimeType") or "",
        status=status,
        headers=headers,
        content=raw_body,
    )


def _query_matches(recorded: tuple[tuple[str, str], ...], given: tuple[tuple[str, str], ...]) -> bool:
    if len(recorded) != len(given):
        return False
    return all(
        r[0] == g[0] and (r[1] == g[1] or r[1] == REDACTED) for r, g in zip(recorded, given, strict=True)
    )


def _same_json(recorded: Any, given: Any) -> bool:
    if recorded == REDACTED and not isinstance(given, dict | list):
        return True
    if isinstance(recorded, dict) and isinstance(given, dict):
        return recorded.keys() == given.keys() and all(_same_json(recorded[k], given[k]) for k in recorded)
    if isinstance(recorded, list) and isinstance(given, list):
        return len(recorded) == len(given) and all(
            _same_json(r, g) for r, g in zip(recorded, given, strict=True)
        )
    return bool(recorded == given)


def _body_matches(entry: Recorded, body: bytes, mime: str) -> bool:
    if entry.body == body:
        return True
    kind = (mime or entry.mime).split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json" or kind.endswith("+json"):
            return _same_json(json.loads(entry.body), json.loads(body))
        if kind == "application/x-www-form-urlencoded":
            recorded_pairs = tuple(sorted(parse_qsl(entry.body.decode(), keep_blank_values=True)))
            given_pairs = tuple(sorted(parse_qsl(body.decode(), keep_blank_values=True)))
            return _query_matches(recorded_pairs, given_pairs)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return False


class Replay:
    """The ASGI app answering from the HAR file at ``path`` (see the module docstring).

    ``max_body_bytes`` bounds the request body read to match it (``exact``); over it: 413.
    """

    def __init__(
        self, path: str | Path, *, match: str = "path", max_body_bytes: int = 16 * 1024 * 1024
    ) -> None:
        if match not in MATCH_MODES:
            raise ValueError(f"match: must be one of {', '.join(MATCH_MODES)}, got {match!r}")
        self.path = Path(path)
        self.match = match
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._counters: OrderedDict[tuple[str | None, tuple[int, ...]], int] = OrderedDict()
        self.entries: tuple[Recorded, ...] = ()
        self._by_key: dict[tuple[str, str], list[Recorded]] = {}
        self.recovered = False
        self.reload()

    def reload(self) -> dict[str, Any]:
        """Read the file again (its entries replace the old ones; counts start again); raises
        :class:`HarError` and keeps the old entries when the file is not a HAR."""
        log = read_har(self.path)
        entries = tuple(r for i, e in enumerate(log.entries) if (r := recorded(i, e)) is not None)
        by_key: dict[tuple[str, str], list[Recorded]] = {}
        for entry in entries:
            by_key.setdefault((entry.method, entry.path), []).append(entry)
        with self._lock:
            self.entries = entries
            self._by_key = by_key
            self._counters.clear()
            self.recovered = log.recovered
        return {"file": str(self.path), "entries": len(entries), "recovered": log.recovered}

    def candidates(
        self, method: str, path: str, query: bytes, body: bytes | None, mime: str
    ) -> list[Recorded]:
        given = tuple(sorted(parse_qsl(query.decode("latin-1"), keep_blank_values=True)))
        out = []
        for entry in self._by_key.get((method, path), ()):
            if not _query_matches(entry.query, given):
                continue
            if body is not None and not _body_matches(entry, body, mime):
                continue
            out.append(entry)
        return out

    def pick(self, matches: list[Recorded], session: str | None) -> Recorded:
        """The next of ``matches`` for ``session``: in order, then the last one again."""
        key = (session, tuple(m.index for m in matches))
        with self._lock:
            n = self._counters.pop(key, 0)
            self._counters[key] = n + 1
            while len(self._counters) > _MAX_COUNTERS:
                self._counters.popitem(last=False)
        return matches[min(n, len(matches) - 1)]

    def closest(self, label: str) -> list[Recorded]:
        scored = sorted(
            ((difflib.SequenceMatcher(None, label, e.label).ratio(), -e.index, e) for e in self._unique()),
            key=lambda t: (t[0], t[1]),
            reverse=True,
        )
        return [e for _, _, e in scored[:_CLOSEST]]

    def _unique(self) -> Iterable[Recorded]:
        seen: set[str] = set()
        for entry in self.entries:
            if entry.label not in seen:
                seen.add(entry.label)
                yield entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rpartition(".")[2]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":  # pragma: no cover - served with ws="none"
            return
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        mime = session = ""
        for key, value in headers:
            if key == b"content-type":
                mime = value.decode("latin-1")
            elif key == b"x-mock-session":
                session = value.decode("latin-1")
        body = await self._body(receive, keep=self.match == "exact")
        if body is _TOO_LARGE:
            await self._send_error(
                scope, send, 413, "payload_too_large", f"the body is over {self.max_body_bytes} bytes"
            )
            return
        query: bytes = scope.get("query_string", b"")
        lookup_method = "GET" if method == "HEAD" and (method, scope["path"]) not in self._by_key else method
        matches = self.candidates(lookup_method, scope["path"], query, body, mime)
        if not matches:
            await self._not_found(scope, send, method, query)
            return
        entry = self.pick(matches, session_id(session) if session else None)
        rid = request_id_of(scope)
        out = [(k, v) for k, v in entry.headers if k != b"x-request-id"]
        out.append((b"x-request-id", rid.encode("latin-1", "replace")))
        content = b"" if method == "HEAD" else entry.content
        if entry.status not in (204, 304) and not 100 <= entry.status < 200 and entry.method != "HEAD":
            out.append((b"content-length", str(len(entry.content)).encode()))
        await send({"type": "http.response.start", "status": entry.status, "headers": out})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _body(self, receive: Receive, *, keep: bool) -> bytes | None:
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(chunks) if keep else None
            if keep:
                chunks += message.get("body", b"")
                if len(chunks) > self.max_body_bytes:
                    return _TOO_LARGE
            if not message.get("more_body", False):
                return bytes(chunks) if keep else None

    async def _not_found(self, scope: Scope, send: Send, method: str, query: bytes) -> None:
        label = f"{method} {scope['path']}{'?' + query.decode('latin-1') if query else ''}"
        closest = self.closest(label)
        if closest:
            hint = "; closest recorded: " + ", ".join(e.label for e in closest)
        else:
            hint = f"; {self.path} has no entries"
        message = (
            f"no recorded response for {label}{' with this body' if self.match == 'exact' else ''}{hint}"
        )
        headers, body = error_response(404, "not_found", message[:2000], request_id_of(scope))
        data = json.loads(body)
        data["error"]["details"] = [{"method": e.method, "path": e.label.partition(" ")[2]} for e in closest]
        payload = json.dumps(data, separators=(",", ":")).encode()
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _send_error(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        headers, body = error_response(status, code, message, request_id_of(scope))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


_TOO_LARGE = b"\x00too large"

__all__ = ["MATCH_MODES", "HarError", "Recorded", "Replay", "recorded"]
