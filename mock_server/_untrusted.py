"""Client bytes and text the fake keeps or parses: strict JSON decoding and bounded copies.

JSON must be UTF-8 (RFC 8259 §8.1) and its strings Unicode scalar values. ``json.loads`` on
bytes decodes with ``surrogatepass`` and admits ``"\\ud800"`` escapes, so both let lone
surrogates in, which later fail to encode (a 500) or are stored as they came. :func:`loads`
decodes strictly and refuses them. :func:`bounded` caps text a client sends and the server
keeps (journal fields, session ids), so no one client can pin memory with a long header.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

# A \u escape of a surrogate code point; only then can a lone surrogate appear.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonError(ValueError):
    """The bytes are not JSON this server accepts; the message says why."""


def _constant(name: str) -> float:
    # NaN and Infinity are not JSON, but json.loads accepts them; parse them into floats so
    # validation names the field they landed in.
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def loads(body: bytes, *, parse_constant: Callable[[str], Any] | None = _constant) -> Any:
    """``body`` parsed as JSON: strict UTF-8, no lone surrogates; raises :class:`JsonError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    # RFC 8259 lets a parser ignore a byte order mark; json.loads on bytes always has.
    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text, parse_constant=parse_constant)
    except RecursionError:
        raise JsonError("nested too deeply") from None
    except ValueError as exc:
        raise JsonError(str(exc)) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        where = lone_surrogate(data)
        if where is not None:
            raise JsonError(f"{where} holds a \\u escape of a lone surrogate, which is not Unicode text")
    return data


def lone_surrogate(data: Any) -> str | None:
    """Where in ``data`` (``body.a.0``) a string or key holds a lone surrogate, else None.
    Iterative, so any depth json.loads built is safe to walk."""
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return where
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):
                    return f"{where} (a key)"
                stack.append((item, f"{where}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}") for i, item in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bounded(value: str, limit: int) -> str:
    """``value``, or when longer than ``limit`` (at least 64) its start and a marker with its
    length and a digest, ``limit`` characters in all. The same long value always gives the
    same bounded one, and a bounded value is its own bound, so filters by a bounded field
    still find it."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    marker = f"...[{len(value)} chars, sha256:{digest}]"
    return value[: max(0, limit - len(marker))] + marker


def bounded_or_none(value: str | None, limit: int) -> str | None:
    """:func:`bounded` for an optional value."""
    return None if value is None else bounded(value, limit)


#: The longest ``X-Mock-Session`` kept as sent; longer ones are kept :func:`bounded`.
SESSION_CHARS = 256


def session_id(raw: str | None) -> str | None:
    """The session a request names, bounded: what every per-session structure is keyed by."""
    if raw is None or len(raw) <= SESSION_CHARS:
        return raw
    return bounded(raw, SESSION_CHARS)


class BodyTooLarge(ValueError):
    """A request body over its limit; the message says by how much. Raised before the body is
    read when its declared length is over, else as soon as the bytes read pass the limit."""


async def read_body(declared: str | None, stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The body from ``stream``, at most ``limit`` bytes; ``declared`` is its Content-Length."""
    declared = declared or ""
    # The length check keeps int() off absurd digit runs (over 4,300 digits it raises).
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise BodyTooLarge(f"the body is {declared[:20]} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
