"""The engine's vocabulary: a request, what came back, and the two things a driver is asked to do.

No HTTP library here. A driver wraps its library's request in a :class:`Request` (sharing the
library's own header object, so nothing is copied), then runs the engine's call flow (see
``_engine``): the flow yields :class:`Send` or :class:`Sleep`, the driver does it and sends back
a :class:`Received` (or the error the attempt ended in), until the flow returns a
:class:`Final`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, KeysView, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._httpcache import ServedResponse
from ._timeouts import Deadline

__all__ = [
    "CallInfo",
    "Final",
    "MEMO_URL_CHARS",
    "Headers",
    "Received",
    "Request",
    "Send",
    "Served",
    "Sleep",
    "host_key",
]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: The longest URL a driver or the engine remembers anything by: memos are bounded in count,
#: and this bounds what each entry holds (a longer URL is simply not remembered).
MEMO_URL_CHARS = 2048
_host_keys: dict[str, str] = {}


def host_key(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, default port filled in (memoised)."""
    scheme_end = url.find("://")
    end = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    prefix = url if end < 0 else url[:end]
    key = _host_keys.get(prefix)
    if key is None:
        scheme = prefix[:scheme_end].lower() if scheme_end >= 0 else "http"
        netloc = prefix[scheme_end + 3 :] if scheme_end >= 0 else prefix
        netloc = netloc.rsplit("@", 1)[-1].split("?", 1)[0].split("#", 1)[0].lower()
        if not netloc.endswith("]") and ":" in netloc.rsplit("]", 1)[-1]:
            key = f"{scheme}://{netloc}"
        else:
            key = f"{scheme}://{netloc}:{_DEFAULT_PORTS.get(scheme, '')}"
        if len(_host_keys) < 4096:
            _host_keys[prefix] = key
    return key


class Headers(MutableMapping[str, str]):
    """Case-insensitive headers that keep the case they were set with (for engine tests and
    drivers whose library has no such mapping)."""

    __slots__ = ("_store", "touched")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        #: Lower-cased names set since :meth:`track`, each with whether it was absent before
        #: (``None``: not tracking): a driver appends a new field without looking for it.
        self.touched: dict[str, bool] | None = None
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self[name] = value

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Headers from ``(name, value)`` pairs (a later pair replaces an earlier one)."""
        headers = cls.__new__(cls)
        headers._store = {name.lower(): (name, value) for name, value in pairs}
        headers.touched = None
        return headers

    @classmethod
    def from_store(cls, store: dict[str, tuple[str, str]]) -> Headers:
        """Headers over ``store``, a dict of lower-case name to ``(name, value)`` (taken as it is:
        a driver builds it in one pass over its library's fields)."""
        headers = cls.__new__(cls)
        headers._store = store
        headers.touched = None
        return headers

    def lower_names(self) -> KeysView[str]:
        """The field names, lower-case (what the engine tests at once)."""
        return self._store.keys()

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` pairs, as the cache takes them (no per-name look-ups)."""
        return tuple(self._store.values())

    def track(self) -> Headers:
        """Start noting which names are set from now on (a driver copies only those back)."""
        self.touched = {}
        return self

    def get(self, name: str, default: Any = None) -> Any:  # no KeyError on the hot path
        item = self._store.get(name.lower())
        return default if item is None else item[1]

    def __getitem__(self, name: str) -> str:
        return self._store[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        lower = name.lower()
        touched = self.touched
        if touched is not None and lower not in touched:
            touched[lower] = lower not in self._store
        self._store[lower] = (name, value)

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        del self._store[lower]
        if self.touched is not None:
            self.touched[lower] = False  # the driver's copy may still have it: no blind append

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class Request:
    """One logical request as the engine sees it.

    ``headers`` is the driver's own case-insensitive mapping (the engine adds the request id,
    the idempotency key, validators and credentials to it); ``url`` may be changed by auth (a
    key in the query); ``body`` is the exact bytes every attempt sends (``None``: no body, or a
    stream, see ``replayable``).
    """

    __slots__ = ("body", "headers", "method", "replayable", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: MutableMapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        replayable: bool = True,
    ) -> None:
        self.method = method.upper()
        self.url = url
        self.headers: MutableMapping[str, str] = headers if headers is not None else Headers()
        self.body = body
        self.replayable = replayable

    @property
    def path_url(self) -> str:
        """The path and query of ``url`` (what a signature covers)."""
        start = self.url.find("://")
        slash = self.url.find("/", start + 3 if start >= 0 else 0)
        path = "/" if slash < 0 else self.url[slash:]
        if path.startswith("?"):
            path = "/" + path
        return path.split("#", 1)[0]

    def __repr__(self) -> str:
        return f"Request({self.method} {self.url})"


class Received:
    """What one attempt got back: status, headers, the body when it was read, the native object."""

    __slots__ = ("body", "headers", "native", "status")

    def __init__(
        self, status: int, headers: Mapping[str, str], body: bytes | None, native: Any = None
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.native = native


#: A response the cache answers with instead of the origin's (``status``, ``headers`` as
#: pairs, ``body``, ``cache_status``, ``reason``).
Served = ServedResponse


class Send:
    """Send ``request`` once: connect within ``connect`` s, each read within ``read`` s (already
    clipped to the time left), and read the whole body before ``deadline`` (unless streaming)."""

    __slots__ = ("attempt", "call", "connect", "deadline", "lookup", "read", "request")

    def __init__(
        self,
        request: Request,
        connect: float | None,
        read: float | None,
        deadline: Deadline,
        attempt: int,
        lookup: Any = None,
        call: Any = None,
    ) -> None:
        self.request = request
        self.connect = connect
        self.read = read
        self.deadline = deadline
        self.attempt = attempt
        #: The cache's verdict on this call's request (``None``: no cache), for
        #: ``Engine.body_wanted``.
        self.lookup = lookup
        #: The engine's state of the call (for ``Engine.settle`` after a straight path's send).
        self.call = call

    def __repr__(self) -> str:
        return f"Send({self.request!r}, attempt={self.attempt}, connect={self.connect}, read={self.read})"


class Sleep:
    """Wait ``seconds`` (a backoff, a Retry-After, a rate-limit slot), then send ``None`` back."""

    __slots__ = ("reason", "seconds")

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds = seconds
        self.reason = reason

    def __repr__(self) -> str:
        return f"Sleep({self.seconds:.3f}, {self.reason!r})"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What happened during one logical call (see ``client.call_info``).

    ``attempts`` is the number of requests sent (0 for a fresh cache hit); ``request_id`` the
    call's ``X-Request-ID`` (``None`` for a hit, unless the caller gave one); ``cache`` the
    cache's verdict (``hit``, ``miss``, ``revalidated``, ``stale``, or ``None`` when the cache
    was not asked); ``rate_limit_wait`` the seconds waited for the limiter; ``idle_for`` the
    seconds slept between attempts.
    """

    attempts: int
    request_id: str | None
    cache: str | None
    rate_limit_wait: float
    idle_for: float


class Final:
    """How the call ended well: ``received`` (the origin's answer, possibly an error status the
    caller gets back as a response) or ``served`` (the cache's), and the :class:`CallInfo`."""

    __slots__ = ("info", "received", "revalidate", "served")

    def __init__(
        self,
        info: CallInfo,
        received: Received | None = None,
        served: Served | None = None,
        revalidate: Any = None,
    ) -> None:
        self.info = info
        self.received = received
        self.served = served
        # A stale answer under stale-while-revalidate (RFC 5861 section 3): the cache lookup
        # the driver must revalidate in the background (``Engine.call(..., revalidate=)``).
        self.revalidate = revalidate
