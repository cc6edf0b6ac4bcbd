"""The request journal: a bounded ring buffer of what arrived, what was injected and what went back.

Entries are recorded on arrival (so ``wait`` can answer before a held request completes) and
completed on response. Appending is O(1); waiters are woken by asyncio events, never by polling.
No entry holds a credential: query parameters whose decoded names look like secrets are
redacted, and headers are not kept at all beyond a few named ones.

Memory is bounded twice: each text field a client chooses is cut to a few hundred characters
(:data:`FIELD_CHARS`, with a marker naming its length and digest), and the entries' estimated
size to ``max_bytes``, past which the oldest go whatever ``size`` allows.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import translate
from typing import Any
from urllib.parse import unquote_plus

from .._untrusted import session_id
from ._errors import FaultConfigError

_SECRET_PARAM = re.compile(r"(key|token|secret|password|passwd|signature|auth|credential|sig)", re.I)
# Separators a name may hide a word behind: api_key, api-key, api key, api.key...
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")

#: The most characters kept of each client-chosen text field of an entry (the request id is
#: the client's only when at most 128; tenant, fault and rule come from the server).
FIELD_CHARS = {"method": 64, "path": 2048, "query": 2048, "idempotency_key": 256}
# An entry's own size without its variable texts, measured with tracemalloc: the object, its
# floats and the body digest.
_ENTRY_BYTES = 330


def _secret_name(name: str) -> bool:
    # Decode as a server would (percent escapes, "+" for space), and again for double encoding,
    # so "%70assword" and "%2570assword" are "password"; then drop separators and case.
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return (
        _SECRET_PARAM.search(name) is not None
        or _SECRET_PARAM.search(_NOT_ALNUM.sub("", name.lower())) is not None
    )


def redact_query(query: str) -> str:
    """The query string as sent, with the values of secret-looking parameters replaced by ``***``."""
    if not query:
        return query
    # Without "%" or "+" no name can hide a secret word, and most queries have no secret word.
    if "%" not in query and "+" not in query and not _SECRET_PARAM.search(query):
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=***" if sep and _secret_name(name) else part)
    return "&".join(parts)


@dataclass(slots=True, eq=False)
class Entry:
    """One request as the fake saw it.

    ``outcome`` is ``response`` (a full response), ``truncated``, ``reset``, ``closed``, ``timeout``
    (held, then closed), ``client_gone`` (the client left first), ``cancelled`` (by an admin
    reset) or None while the request is in flight.
    """

    seq: int
    request_id: str
    client_request_id: bool
    method: str
    path: str
    query: str
    tenant: str | None
    session: str | None
    idempotency_key: str | None
    arrived_at: float
    arrived_mono: float
    fault: str | None
    rule: str | None
    rules: tuple[str, ...]
    injected_delay_s: float
    status: int | None = None
    outcome: str | None = None
    duration_s: float | None = None
    retry_after_s: float | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset_at: float | None = None
    #: A fingerprint of the request body (never the body), to tell retries from new requests.
    body_digest: str | None = None
    #: Monotonic time the API's last response byte went to the server; the duration ends
    #: there, not when the API's code returns (it may still await something after).
    answered_mono: float | None = None

    @property
    def completed(self) -> bool:
        return self.outcome is not None

    @property
    def failed(self) -> bool:
        """Whether the client saw a failure worth retrying (connection fault, 429 or 5xx)."""
        if self.outcome is None:
            return False
        if self.outcome != "response":
            return self.outcome != "cancelled"
        return self.status is not None and (self.status == 429 or self.status >= 500)

    @property
    def finished_at(self) -> float:
        """Wall time of the response (or of the arrival while in flight)."""
        return self.arrived_at + (self.duration_s or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "tenant": self.tenant,
            "session": self.session,
            "idempotency_key": self.idempotency_key,
            "arrived_at": self.arrived_at,
            "arrived_at_iso": datetime.fromtimestamp(self.arrived_at, UTC).isoformat().replace("+00:00", "Z"),
            "status": self.status,
            "outcome": self.outcome,
            "completed": self.completed,
            "fault": self.fault,
            "rule": self.rule,
            "rules": list(self.rules),
            "injected_delay_ms": round(self.injected_delay_s * 1000.0, 3),
            "duration_ms": None if self.duration_s is None else round(self.duration_s * 1000.0, 3),
            "retry_after_s": self.retry_after_s,
            "ratelimit_remaining": self.ratelimit_remaining,
            "ratelimit_reset_at": self.ratelimit_reset_at,
        }


_FILTER_KEYS = (
    "method",
    "path",
    "status",
    "outcome",
    "session",
    "tenant",
    "fault",
    "rule",
    "request_id",
    "since",
)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which journal entries to select; None selects anything.

    ``path`` is a glob; ``status`` an exact code or a class such as ``5xx``; ``outcome`` one of
    the entry outcomes (``response``, ``reset``...); ``fault`` a fault type or a rule id
    (``none``: requests that were not faulted); ``since`` epoch seconds or ISO-8601.
    """

    method: str | None = None
    path: str | None = None
    status: str | None = None
    outcome: str | None = None
    session: str | None = None
    tenant: str | None = None
    fault: str | None = None
    rule: str | None = None
    request_id: str | None = None
    since: float | None = None

    @property
    def needs_completion(self) -> bool:
        """Whether the filter looks at the response, so an entry can only match once completed."""
        return self.status is not None or self.outcome is not None

    @classmethod
    def parse(cls, params: Mapping[str, Any], loc: tuple[str, ...] = ()) -> Filter:
        """From query parameters or a JSON object; errors name the field."""
        for key in params:
            if key not in _FILTER_KEYS:
                raise FaultConfigError(
                    (*loc, key), f"unknown filter; expected one of {', '.join(_FILTER_KEYS)}"
                )
        values: dict[str, Any] = {}
        for key in _FILTER_KEYS:
            raw = params.get(key)
            if raw is None or raw == "":
                continue
            if key == "since":
                values[key] = _since(raw, (*loc, key))
                continue
            if key == "session":
                # Compare as the journal keeps sessions: bounded.
                values[key] = session_id(str(raw))
                continue
            text = str(raw)
            if key == "status" and not re.fullmatch(r"[1-5](\d\d|xx)", text.lower()):
                raise FaultConfigError((*loc, key), f"must be a status code or class like 5xx, got {text!r}")
            values[key] = text.upper() if key == "method" else text.lower() if key == "status" else text
        return cls(**values)

    def compile(self) -> _CompiledFilter:
        return _CompiledFilter(self)


def _since(raw: Any, loc: tuple[str, ...]) -> float:
    text = str(raw)
    number: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw) if -1e18 < raw < 1e18 else math.inf
    else:
        try:
            number = float(text)
        except ValueError:
            pass
    if number is not None:
        # NaN would match everything and a 400-digit integer overflows a float: not a time.
        if not math.isfinite(number):
            raise FaultConfigError(loc, f"must be finite epoch seconds or ISO-8601, got {text[:40]!r}")
        return number
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FaultConfigError(loc, f"must be epoch seconds or ISO-8601, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class _CompiledFilter:
    __slots__ = ("f", "_path")

    def __init__(self, f: Filter) -> None:
        self.f = f
        self._path = re.compile(translate(f.path)).match if f.path else None

    def __call__(self, e: Entry) -> bool:
        f = self.f
        if f.method is not None and e.method != f.method:
            return False
        if self._path is not None and not self._path(e.path):
            return False
        if f.session is not None and e.session != f.session:
            return False
        if f.tenant is not None and e.tenant != f.tenant:
            return False
        if f.request_id is not None and e.request_id != f.request_id:
            return False
        if f.since is not None and e.arrived_at < f.since:
            return False
        if f.fault is not None:
            if f.fault == "none":
                if e.fault is not None or e.rules:
                    return False
            elif f.fault != e.fault and f.fault not in e.rules:
                return False
        if f.rule is not None and f.rule not in e.rules:
            return False
        if f.outcome is not None and e.outcome != f.outcome:
            return False
        if f.status is not None:
            if e.status is None:
                return False
            if f.status.endswith("xx"):
                return str(e.status)[0] == f.status[0]
            return str(e.status) == f.status
        return True


class _Waiter:
    __slots__ = ("match", "on_completion", "needed", "seen", "event")

    def __init__(self, match: _CompiledFilter, needed: int, seen: int) -> None:
        self.match = match
        self.on_completion = match.f.needs_completion
        self.needed = needed
        self.seen = seen
        self.event = asyncio.Event()
        if seen >= needed:
            self.event.set()


_sizeof = sys.getsizeof


def entry_bytes(entry: Entry) -> int:
    """About how much memory ``entry`` holds (measured estimate; shared strings counted too)."""
    size = _ENTRY_BYTES + _sizeof(entry.request_id) + _sizeof(entry.path) + _sizeof(entry.method)
    query, session, key = entry.query, entry.session, entry.idempotency_key
    if query:
        size += _sizeof(query)
    if session is not None:
        size += _sizeof(session)
    if key is not None:
        size += _sizeof(key)
    return size


class Journal:
    """The last ``size`` requests, in arrival order, within ``max_bytes`` (estimated)."""

    def __init__(self, size: int = 10_000, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        if size < 1:
            raise ValueError("journal size must be positive")
        if max_bytes < 1:
            raise ValueError("journal max_bytes must be positive")
        self.size = size
        self.max_bytes = max_bytes
        self._entries: deque[Entry] = deque()
        # Each entry's estimated size, in step with _entries.
        self._sizes: deque[int] = deque()
        self._bytes = 0
        self._waiters: list[_Waiter] = []
        self._seq = 0
        #: Called with each entry as it completes (an event stream subscribes here); with a shared
        #: backend, entries that other processes completed are passed too.
        self.listeners: list[Callable[[Entry], None]] = []

    @property
    def bytes(self) -> int:
        """The estimated memory the entries hold."""
        return self._bytes

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def record(self, entry: Entry) -> None:
        """Append an arriving request (O(1) amortised), dropping the oldest past ``size`` or
        ``max_bytes``, and wake waiters whose count it completes."""
        entries, sizes = self._entries, self._sizes
        cost = entry_bytes(entry)
        entries.append(entry)
        sizes.append(cost)
        self._bytes += cost
        # The newest entry stays even alone over the budget: a journal that drops what just
        # arrived would make wait() miss it.
        while len(entries) > 1 and (len(entries) > self.size or self._bytes > self.max_bytes):
            entries.popleft()
            self._bytes -= sizes.popleft()
        if self._waiters:
            self._notify(entry, completion=False)

    def complete(self, entry: Entry) -> None:
        """Tell waiters that look at responses, and listeners, that ``entry`` has one now."""
        if self._waiters:
            self._notify(entry, completion=True)
        if self.listeners:
            for listener in self.listeners:
                listener(entry)

    def _notify(self, entry: Entry, *, completion: bool) -> None:
        for waiter in self._waiters:
            if waiter.on_completion == completion and waiter.match(entry):
                waiter.seen += 1
                if waiter.seen >= waiter.needed:
                    waiter.event.set()

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def select(self, f: Filter = Filter(), limit: int | None = None) -> list[Entry]:
        """Matching entries in arrival order; with ``limit``, the newest ``limit`` of them."""
        match = f.compile()
        found = [e for e in self._entries if match(e)]
        return found[-limit:] if limit is not None else found

    def count(self, f: Filter = Filter()) -> int:
        match = f.compile()
        return sum(1 for e in self._entries if match(e))

    async def wait(self, f: Filter, count: int, timeout: float) -> tuple[bool, int]:
        """Wait until ``count`` matching requests have arrived (or been answered, when ``f``
        looks at the status); whether they did within ``timeout``, and how many there are."""
        match = f.compile()
        waiter = _Waiter(match, count, sum(1 for e in self._entries if match(e)))
        if waiter.event.is_set():
            # Already there: answer now (wait_for with no time left would not even look).
            return True, waiter.seen
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.event.wait(), timeout)
            return True, waiter.seen
        except TimeoutError:
            return False, waiter.seen
        finally:
            self._waiters.remove(waiter)

    def clear(self, session: str | None = None) -> int:
        """Forget every entry, or those of one session; how many were dropped."""
        before = len(self._entries)
        if session is None:
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0
        else:
            session = session_id(session)
            kept = [(e, n) for e, n in zip(self._entries, self._sizes, strict=True) if e.session != session]
            self._entries = deque(e for e, _ in kept)
            self._sizes = deque(n for _, n in kept)
            self._bytes = sum(self._sizes)
        return before - len(self._entries)
