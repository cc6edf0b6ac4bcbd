"""A private HTTP cache, sans-IO: the subset of RFC 9111 a single client needs.

Freshness from ``max-age`` (or ``Expires`` minus ``Date``) less the ``Age``; ``no-store`` keeps
a response out; ``no-cache`` stores it but revalidates every use; ``must-revalidate`` forbids
serving it stale, even when the origin fails; ETag / Last-Modified revalidation, where a 304
refreshes the stored headers and freshness; ``Vary``; one variant per URL. Keys carry a digest
of the credential, so one tenant never reads another's entry, and never the secret itself.
Unsafe methods invalidate their URL (every query of its path) and, after success, their
``Location``. Optional stale-if-error. Bounded, least recently used first out.

The engine asks, does the I/O, and tells (the interface of ``client._httpcache``):
:meth:`HttpCache.lookup` before sending, :meth:`HttpCache.on_response` with the final response,
:meth:`HttpCache.on_error` when the call failed. Times are the policy's wall clock.
"""

from __future__ import annotations

import enum
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from ._clock import Clock, monotonic, to_seconds, wall
from ._errors import ConfigError
from ._http import Served

__all__ = [
    "Action",
    "CachePolicy",
    "HttpCache",
    "Lookup",
    "Outcome",
    "credential_digest",
    "parse_cache_control",
    "secret_free_url",
]

_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("[^"]*"|[^,\s]*))?\s*(?:,|$)')
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:api[_-]?key|apikey|key|token|access_token|signature|sig|password|client_secret)=)([^&#]*)"
)
_CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 410})
_NOT_REFRESHED = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-type"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """``Cache-Control`` directives as a dict (names lower-cased, quotes removed)."""
    if not value:
        return {}
    out: dict[str, str | None] = {}
    for m in _DIRECTIVE.finditer(value):
        if m.group(1):
            arg = m.group(2)
            out[m.group(1).lower()] = arg.strip('"') if arg is not None else None
    return out


def _seconds(directives: Mapping[str, str | None], name: str) -> float | None:
    raw = directives.get(name)
    if raw is None or not raw.isdigit():
        return None
    return float(raw)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def secret_free_url(url: str) -> str:
    """``url`` with the values of credential-like query parameters replaced by digests."""
    if "=" not in url:
        return url
    return _SECRET_QUERY.sub(lambda m: m.group(1) + "#" + _hash(m.group(2)), url)


def credential_digest(*parts: str | None) -> str:
    """A digest standing for the credentials in ``parts`` ("" when there are none)."""
    present = [p for p in parts if p]
    return _hash("\x00".join(present)) if present else ""


@dataclass(frozen=True, kw_only=True, slots=True)
class CachePolicy:
    """What the private cache keeps and for how long.

    Defaults: at most ``max_entries`` 512 responses (least recently used evicted), none larger
    than ``max_entry_bytes`` 1 MiB; ``stale_if_error`` 0 s: how long past its freshness a
    stored response may stand in when the origin fails (a response's own ``stale-if-error=N``
    extends it); ``methods`` GET and HEAD.
    """

    max_entries: int = 512
    max_entry_bytes: int = 1 << 20
    stale_if_error: float = 0.0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    clock: Clock = field(default=monotonic, repr=False, compare=False)
    wall_clock: Clock = field(default=wall, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_entry_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CachePolicy.{name} must be an integer >= 1, got {value!r}")
        object.__setattr__(
            self, "stale_if_error", to_seconds("CachePolicy.stale_if_error", self.stale_if_error)
        )
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))


class Action(enum.Enum):
    """What a lookup found."""

    HIT = "hit"
    REVALIDATE = "revalidate"
    MISS = "miss"
    BYPASS = "bypass"


CacheKey = tuple[str, str, str]


class _Entry:
    """A stored response and what is needed to judge and revalidate it."""

    __slots__ = (
        "body",
        "expires_at",
        "headers",
        "hit",
        "index_url",
        "must_revalidate",
        "reason",
        "stale_if_error",
        "status",
        "vary",
    )

    def __init__(
        self,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        index_url: str,
        vary: tuple[tuple[str, str | None], ...],
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = ""
        self.index_url = index_url
        self.vary = vary
        self.expires_at = 0.0
        self.must_revalidate = False
        self.stale_if_error = 0.0
        self.hit = Served(status, headers, body, "hit")

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for n, v in self.headers:
            if n.lower() == lower:
                return v
        return None

    def served(self, cache_status: str) -> Served:
        return Served(self.status, self.headers, self.body, cache_status, self.reason)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The cache's answer before sending: serve ``response`` now, or send with
    ``request_headers`` (the validators to add)."""

    action: Action
    response: Served | None
    request_headers: tuple[tuple[str, str], ...] = ()
    background: bool = False
    method: str = ""
    url: str = ""
    key: CacheKey | None = None
    entry: _Entry | None = None
    vary_values: Mapping[str, str] | None = None
    no_store: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the cache made of the final response: ``response`` replaces the origin's when set."""

    response: Served | None
    cache_status: str | None
    stored: bool = False


def _pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


def _get(headers: Mapping[str, str] | tuple[tuple[str, str], ...], name: str) -> str | None:
    if isinstance(headers, Mapping):
        value = headers.get(name)
        return None if value is None else str(value)
    lower = name.lower()
    for n, v in headers:
        if n.lower() == lower:
            return v
    return None


class HttpCache:
    """The running state of a :class:`CachePolicy`: entries and a URL index for invalidation."""

    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._by_url: dict[str, set[CacheKey]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    # -- before sending ------------------------------------------------------------------------
    def lookup(self, method: str, url: str, headers: Mapping[str, str], *, credential: str = "") -> Lookup:
        """What to do with a request: serve a fresh entry, revalidate one, or send."""
        method = method.upper()
        if method not in self.policy.methods:
            return Lookup(Action.BYPASS, None, method=method, url=url)
        request_cc = headers.get("Cache-Control")
        directives = parse_cache_control(request_cc) if request_cc else {}
        if "no-store" in directives:
            return Lookup(Action.BYPASS, None, method=method, url=url, no_store=True)
        if "If-None-Match" in headers or "If-Modified-Since" in headers:
            # The caller validates on its own: its 304 is its business, not the cache's.
            return Lookup(Action.BYPASS, None, method=method, url=url)
        key: CacheKey = (method, secret_free_url(url), credential)
        entry = self._entries.get(key)
        if entry is not None and entry.vary and not all(headers.get(n) == v for n, v in entry.vary):
            entry = None
        if entry is None:
            return Lookup(Action.MISS, None, method=method, url=url, key=key)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        if (
            entry.expires_at > self.policy.wall_clock()
            and "no-cache" not in directives
            and directives.get("max-age") != "0"
        ):
            return Lookup(Action.HIT, entry.hit, method=method, url=url, key=key, entry=entry)
        validators: list[tuple[str, str]] = []
        etag = entry.header("ETag")
        if etag:
            validators.append(("If-None-Match", etag))
        last_modified = entry.header("Last-Modified")
        if last_modified:
            validators.append(("If-Modified-Since", last_modified))
        return Lookup(
            Action.REVALIDATE, None, tuple(validators), method=method, url=url, key=key, entry=entry
        )

    # -- after the call ------------------------------------------------------------------------
    def on_response(
        self,
        lookup: Lookup,
        status: int,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        request_headers: Mapping[str, str] | None = None,
        request_time: float | None = None,
        response_time: float | None = None,
    ) -> Outcome:
        """Store, refresh on a 304, or invalidate, after the final response of a call."""
        if lookup.action is Action.BYPASS:
            if lookup.method not in _SAFE:
                self.invalidate(lookup.method, lookup.url, status, headers)
            return Outcome(None, None)
        key = lookup.key
        assert key is not None
        entry = lookup.entry
        if status == 304 and entry is not None:
            self._refresh(key, entry, headers, request_time)
            return Outcome(entry.served("revalidated"), "revalidated")
        stored = False
        if body is not None:
            stored = self._store(key, lookup.url, status, headers, body, request_headers or {}, request_time)
        return Outcome(None, "miss", stored)

    def on_error(self, lookup: Lookup, now: float | None = None) -> Served | None:
        """A stale entry to stand in for a failed origin (stale-if-error), or ``None``."""
        entry = lookup.entry
        if entry is None:
            return None
        now = self.policy.wall_clock() if now is None else now
        limit = entry.expires_at if entry.must_revalidate else entry.expires_at + entry.stale_if_error
        return entry.served("stale") if limit > now else None

    def invalidate(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """What an unsafe method does to the cache: drop its URL and, after success, its Location."""
        self.invalidate_url(url)
        if status < 400:
            for name in ("Location", "Content-Location"):
                target = headers.get(name)
                if target:
                    self.invalidate_url(target, base=url)

    # -- storage -------------------------------------------------------------------------------
    def _store(
        self,
        key: CacheKey,
        url: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        request_headers: Mapping[str, str],
        request_time: float | None,
    ) -> bool:
        directives = parse_cache_control(headers.get("Cache-Control"))
        if (
            status not in _CACHEABLE_STATUSES
            or "no-store" in directives
            or "no-store" in parse_cache_control(request_headers.get("Cache-Control"))
        ):
            self.invalidate_key(key)
            return False
        vary_names = headers.get("Vary")
        vary: tuple[tuple[str, str | None], ...] = ()
        if vary_names:
            names = [n.strip() for n in vary_names.split(",") if n.strip()]
            if "*" in names:
                self.invalidate_key(key)
                return False
            vary = tuple((n, request_headers.get(n)) for n in names)
        if len(body) > self.policy.max_entry_bytes:
            return False
        stored_headers = _pairs(headers)
        lifetime = self._lifetime(directives, stored_headers)
        has_validator = "ETag" in headers or "Last-Modified" in headers
        if not lifetime and not has_validator:
            return False
        index_url = url.split("#", 1)[0].split("?", 1)[0]
        entry = _Entry(status, stored_headers, body, index_url, vary)
        self._set_freshness(entry, directives, self.policy.wall_clock(), request_time)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            self._entries[key] = entry
            self._by_url.setdefault(index_url, set()).add(key)
            while len(self._entries) > self.policy.max_entries:
                k, e = self._entries.popitem(last=False)
                self._unindex(k, e)
        return True

    def _refresh(
        self, key: CacheKey, entry: _Entry, not_modified: Mapping[str, str], request_time: float | None
    ) -> None:
        """Fold a 304's headers into ``entry`` and recompute its freshness."""
        merged = {n.lower(): (n, v) for n, v in entry.headers}
        for name, value in not_modified.items():
            if name.lower() not in _NOT_REFRESHED:
                merged[name.lower()] = (name, value)
        entry.headers = tuple(merged.values())
        entry.hit = Served(entry.status, entry.headers, entry.body, "hit")
        directives = parse_cache_control(entry.header("Cache-Control"))
        if "no-store" in directives:
            self.invalidate_key(key)
            return
        self._set_freshness(entry, directives, self.policy.wall_clock(), request_time)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)

    def _lifetime(self, directives: Mapping[str, str | None], headers: tuple[tuple[str, str], ...]) -> float:
        max_age = _seconds(directives, "max-age")
        if max_age is not None:
            return max_age
        expires = _get(headers, "Expires")
        if expires is None:
            return 0.0
        date = _get(headers, "Date")
        try:
            end = parsedate_to_datetime(expires)
            start = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError, IndexError):
            return 0.0  # an invalid Expires means "already expired" (RFC 9111 5.3)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        base = (
            (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()
            if start
            else self.policy.wall_clock()
        )
        return max(0.0, end.timestamp() - base)

    def _set_freshness(
        self, entry: _Entry, directives: Mapping[str, str | None], now: float, request_time: float | None
    ) -> None:
        lifetime = 0.0 if "no-cache" in directives else self._lifetime(directives, entry.headers)
        age_header = entry.header("Age")
        age = float(age_header) if age_header and age_header.isdigit() else 0.0
        if request_time is not None and now > request_time:
            age += now - request_time
        entry.expires_at = now + lifetime - age
        entry.must_revalidate = (
            "must-revalidate" in directives or "proxy-revalidate" in directives or "no-cache" in directives
        )
        own = _seconds(directives, "stale-if-error")
        entry.stale_if_error = max(self.policy.stale_if_error, own or 0.0)

    def invalidate_key(self, key: CacheKey) -> None:
        """Drop one entry."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._unindex(key, entry)

    def invalidate_url(self, url: str, *, base: str | None = None) -> int:
        """Drop every entry for ``url``'s path (any query, method or credential); return how many."""
        if base is not None:
            url = urljoin(base, url)
        index_url = url.split("#", 1)[0].split("?", 1)[0]
        with self._lock:
            keys = self._by_url.pop(index_url, None)
            if not keys:
                return 0
            for key in keys:
                self._entries.pop(key, None)
            return len(keys)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self._by_url.clear()

    def _unindex(self, key: CacheKey, entry: _Entry) -> None:
        keys = self._by_url.get(entry.index_url)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_url[entry.index_url]


def entry_keys(cache: HttpCache) -> list[Any]:
    """The keys of the stored entries (for tests: they must never hold a secret)."""
    return list(cache._entries)
