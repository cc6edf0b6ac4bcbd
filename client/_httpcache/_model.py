"""The values the cache and its engine pass each other: responses, lookups and outcomes."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "Action",
    "CacheStatus",
    "HeaderInput",
    "Headers",
    "Lookup",
    "Outcome",
    "ServedResponse",
    "StoredResponse",
    "as_headers",
]

Headers = tuple[tuple[str, str], ...]
HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]
CacheStatus = Literal["hit", "stale", "revalidated", "miss", "bypass", "unavailable"]


def as_headers(headers: HeaderInput | None) -> Headers:
    """``headers`` as a tuple of ``(name, value)`` pairs, wire order kept."""
    if headers is None:
        return ()
    if isinstance(headers, tuple):
        for pair in headers:  # a loop, not all() over a generator: this runs on every lookup
            if type(pair) is not tuple:
                break
        else:
            return headers
    pairs = getattr(headers, "pairs", None)
    if pairs is not None:
        # The engine's header mappings give their (name, value) pairs of text at once, where a
        # Mapping's items() looks every name up again.
        given = pairs()
        return given if type(given) is tuple else tuple(given)
    if isinstance(headers, Mapping):
        return tuple((str(k), str(v)) for k, v in headers.items())
    return tuple((str(k), str(v)) for k, v in headers)


class Action(enum.Enum):
    """What :meth:`HttpCache.lookup` decided."""

    HIT = "hit"
    STALE = "stale"
    REVALIDATE = "revalidate"
    MISS = "miss"
    UNAVAILABLE = "unavailable"
    BYPASS = "bypass"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResponse:
    """A response as stored: ``request_time`` / ``response_time`` are epoch seconds (§4.2.3)."""

    status: int
    headers: Headers
    body: bytes
    request_time: float
    response_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedResponse:
    """A response the cache answers with; ``headers`` carry a computed ``Age``."""

    status: int
    headers: Headers
    body: bytes
    cache_status: CacheStatus

    @property
    def reason(self) -> str:
        """The standard reason phrase of ``status`` ("" for an unregistered one)."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (any case), or ``None``."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


@dataclass(slots=True, kw_only=True, eq=False)
class Lookup:
    """The cache's answer to a request; pass it back to ``on_response`` / ``on_error``.

    Treat it as read-only. It is made on every call that may be cached, so it is not a frozen
    dataclass: that ``__init__`` sets each of its eleven fields through ``object.__setattr__``,
    three times the cost of a plain one (and one lookup is never compared with another).
    """

    action: Action
    response: ServedResponse | None
    request_headers: Headers
    background: bool = False
    # Private state for on_response / on_error: the request as the caller made it, the key,
    # the stored entries the request's validators came from, the time of the lookup.
    method: str = field(default="GET", repr=False)
    url: str = field(default="", repr=False)
    caller_headers: Headers = field(default=(), repr=False)
    key: Any = field(default=None, repr=False)
    entry: Any = field(default=None, repr=False)
    validators_from: tuple[Any, ...] = field(default=(), repr=False)
    now: float = field(default=0.0, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What ``on_response`` decided: ``response`` ``None`` means "the origin's response"."""

    response: ServedResponse | None
    cache_status: CacheStatus
    stored: bool = False
