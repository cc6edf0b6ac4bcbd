"""A private HTTP cache: the subset of RFC 9111 a single client needs.

Freshness from ``max-age`` (or ``Expires`` minus ``Date``) less the ``Age``; ``no-store`` keeps
a response out; ``no-cache`` stores it but revalidates every use; ``must-revalidate`` forbids
serving it stale, even when the origin fails; ETag / Last-Modified revalidation, where a 304
refreshes the stored headers and freshness; ``Vary``; one variant per URL. Keys carry a digest
of the credential, so one tenant never reads another's entry, and never the secret itself.
Unsafe methods invalidate their URL (every query of its path) and, after success, their
``Location``. Optional stale-if-error. Bounded, least recently used first out.

The fresh hit is the hot path: a tuple key, one dict lookup, one float compare and a shallow
copy of the stored ``requests.Response``. Nothing is parsed on a hit; parsing happens once, on
store.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import requests
from requests.structures import CaseInsensitiveDict

from ._clock import Clock, monotonic, to_seconds, wall
from ._exceptions import ConfigError

__all__ = [
    "CachePolicy",
    "CachedResponse",
    "Entry",
    "HttpCache",
    "credential_digest",
    "parse_cache_control",
    "secret_free_url",
]

CacheKey = tuple[Any, ...]

_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("[^"]*"|[^,\s]*))?\s*(?:,|$)')
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:api[_-]?key|apikey|key|token|access_token|signature|sig|password|client_secret)=)([^&#]*)"
)
_CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 410})
_NOT_REFRESHED = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-type"})
_ZERO = timedelta(0)


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


class CachedResponse(requests.Response):
    """A response served by the cache; ``cache_status`` is ``hit``, ``revalidated`` or ``stale``."""

    from_cache = True
    cache_status: str


class Entry:
    """A stored response and what is needed to judge and revalidate it."""

    __slots__ = (
        "expires_at",
        "index_url",
        "must_revalidate",
        "response",
        "stale_if_error",
        "stored_at",
        "vary",
    )

    def __init__(self, response: requests.Response, index_url: str, vary: tuple[tuple[str, str | None], ...]):
        self.response = response
        self.index_url = index_url
        self.vary = vary
        self.expires_at = 0.0
        self.stored_at = 0.0
        self.must_revalidate = False
        self.stale_if_error = 0.0

    @property
    def etag(self) -> str | None:
        """The stored ``ETag``."""
        return self.response.headers.get("ETag")

    @property
    def last_modified(self) -> str | None:
        """The stored ``Last-Modified``."""
        return self.response.headers.get("Last-Modified")

    def vary_matches(self, header: Callable[[str], str | None]) -> bool:
        """Whether a request whose headers ``header`` looks up selects this variant."""
        return all(header(name) == value for name, value in self.vary)

    def copy(self, status: str) -> CachedResponse:
        """A caller-owned copy of the stored response (the body bytes are shared, immutably)."""
        r = CachedResponse.__new__(CachedResponse)
        d = r.__dict__
        d.update(self.response.__dict__)
        h: CaseInsensitiveDict[str] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        h._store = self.response.headers._store.copy()  # type: ignore[attr-defined]
        d["headers"] = h
        d["history"] = []
        d["elapsed"] = _ZERO
        d["cache_status"] = status
        return r


class HttpCache:
    """The running state of a :class:`CachePolicy`: entries and a URL index for invalidation."""

    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self._entries: OrderedDict[CacheKey, Entry] = OrderedDict()
        self._by_url: dict[str, set[CacheKey]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Entry | None:
        """The entry stored under ``key``, marked as recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
        return entry

    def store(
        self,
        key: CacheKey,
        response: requests.Response,
        *,
        index_url: str,
        request_headers: Mapping[str, str],
        sent_at: float | None = None,
    ) -> Entry | None:
        """Store ``response`` if RFC 9111 allows; return the entry, or ``None`` when not stored.

        ``sent_at`` (monotonic) is when the request left; the time since counts towards the age.
        """
        directives = parse_cache_control(response.headers.get("Cache-Control"))
        if (
            response.status_code not in _CACHEABLE_STATUSES
            or "no-store" in directives
            or "no-store" in parse_cache_control(request_headers.get("Cache-Control"))
        ):
            self.invalidate_key(key)
            return None
        vary_names = response.headers.get("Vary")
        vary: tuple[tuple[str, str | None], ...] = ()
        if vary_names:
            names = [n.strip() for n in vary_names.split(",") if n.strip()]
            if "*" in names:
                self.invalidate_key(key)
                return None
            vary = tuple((n, request_headers.get(n)) for n in names)
        content = response._content
        if not isinstance(content, bytes) or len(content) > self.policy.max_entry_bytes:
            return None
        lifetime = self._lifetime(directives, response.headers)
        has_validator = "ETag" in response.headers or "Last-Modified" in response.headers
        if not lifetime and not has_validator:
            return None
        if "no-cache" in directives:
            lifetime = 0.0
        now = self.policy.clock()
        index_url = index_url.split("#", 1)[0].split("?", 1)[0]
        entry = Entry(response, index_url, vary)
        self._set_freshness(entry, directives, response.headers, now, sent_at)
        evicted: list[CacheKey] = []
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            self._entries[key] = entry
            self._by_url.setdefault(index_url, set()).add(key)
            while len(self._entries) > self.policy.max_entries:
                k, e = self._entries.popitem(last=False)
                self._unindex(k, e)
                evicted.append(k)
        return entry

    def refresh(
        self, key: CacheKey, entry: Entry, not_modified: requests.Response, sent_at: float | None = None
    ) -> None:
        """Fold a 304's headers into ``entry`` and recompute its freshness."""
        stored = entry.response
        headers = stored.headers.copy()
        for name, value in not_modified.headers.items():
            if name.lower() not in _NOT_REFRESHED:
                headers[name] = value
        fresh = requests.Response.__new__(requests.Response)
        fresh.__dict__.update(stored.__dict__)
        fresh.headers = headers
        entry.response = fresh
        directives = parse_cache_control(headers.get("Cache-Control"))
        if "no-store" in directives:
            self.invalidate_key(key)
            return
        self._set_freshness(entry, directives, headers, self.policy.clock(), sent_at)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)

    def _lifetime(self, directives: Mapping[str, str | None], headers: Mapping[str, str]) -> float:
        max_age = _seconds(directives, "max-age")
        if max_age is not None:
            return max_age
        expires = headers.get("Expires")
        if expires is None:
            return 0.0
        date = headers.get("Date")
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
        self,
        entry: Entry,
        directives: Mapping[str, str | None],
        headers: Mapping[str, str],
        now: float,
        sent_at: float | None,
    ) -> None:
        lifetime = 0.0 if "no-cache" in directives else self._lifetime(directives, headers)
        age_header = headers.get("Age")
        age = float(age_header) if age_header and age_header.isdigit() else 0.0
        if sent_at is not None and now > sent_at:
            age += now - sent_at
        entry.stored_at = now
        entry.expires_at = now + lifetime - age
        entry.must_revalidate = "must-revalidate" in directives or "proxy-revalidate" in directives
        own = _seconds(directives, "stale-if-error")
        entry.stale_if_error = max(self.policy.stale_if_error, own or 0.0)

    def usable_on_error(self, entry: Entry) -> bool:
        """Whether ``entry`` may stand in for a failed origin (stale-if-error)."""
        if entry.must_revalidate:
            return entry.expires_at > self.policy.clock()
        return entry.expires_at + entry.stale_if_error > self.policy.clock()

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

    def _unindex(self, key: CacheKey, entry: Entry) -> None:
        keys = self._by_url.get(entry.index_url)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_url[entry.index_url]
