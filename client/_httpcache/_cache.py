"""HttpCache: lookup, store, revalidation and invalidation, driven by an engine without I/O."""

from __future__ import annotations

from .._clock import Clock
from ._model import HeaderInput, Lookup, Outcome, ServedResponse
from ._policy import CachePolicy

__all__ = ["HttpCache"]


class HttpCache:
    """The running state of a :class:`CachePolicy` (see the package docstring for the loop)."""

    def __init__(self, policy: CachePolicy | None = None, *, clock: Clock | None = None) -> None:
        self.policy = policy if policy is not None else CachePolicy()
        self._clock = clock if clock is not None else self.policy.wall_clock

    def lookup(
        self,
        method: str,
        url: str,
        request_headers: HeaderInput | None = None,
        *,
        credential: str = "",
        now: float | None = None,
    ) -> Lookup:
        """What to do with a request: serve ``lookup.response`` or send ``lookup.request_headers``."""
        raise NotImplementedError

    def on_response(
        self,
        lookup: Lookup,
        status: int,
        headers: HeaderInput,
        body: bytes | None,
        *,
        request_time: float | None = None,
        response_time: float | None = None,
    ) -> Outcome:
        """Digest the origin's final response to ``lookup``'s request."""
        raise NotImplementedError

    def on_error(self, lookup: Lookup, *, now: float | None = None) -> ServedResponse | None:
        """A stale stored response to stand in for a failed origin, or ``None``."""
        raise NotImplementedError

    def invalidate(self, method: str, url: str, status: int, headers: HeaderInput) -> int:
        """Invalidate after an unsafe method's non-error response (§4.4); return entries dropped."""
        raise NotImplementedError

    def invalidate_url(self, url: str, *, base: str | None = None) -> int:
        """Drop every entry for ``url``'s path (any query, credential); return how many."""
        raise NotImplementedError

    def clear(self) -> None:
        """Drop everything."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError
