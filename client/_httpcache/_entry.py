"""A stored response and what is worked out once, on store, to judge it on every use.

Freshness lifetime (RFC 9111 §4.2.1, §4.2.2) and the corrected initial age (§4.2.3) are
computed here from the response's header fields and the request/response times; a lookup
then only adds the resident time: ``current_age = initial_age + (now - response_time)``.
"""

from __future__ import annotations

from typing import Any

from ._headers import (
    field_lines,
    first,
    hop_by_hop_names,
    list_members,
    parse_age,
    parse_cache_control,
    parse_delta,
    parse_http_date,
    vary_value,
)
from ._model import Headers, StoredResponse
from ._policy import CachePolicy

__all__ = ["HEURISTIC_STATUSES", "Entry", "explicit_freshness", "storable_headers", "vary_names"]

# RFC 9110 §15.1: the status codes that are heuristically cacheable.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

Key = tuple[str, str]


def vary_names(headers: Headers) -> list[str] | None:
    """The lower-case field names a response varies on; ``None`` when ``Vary`` lists "*"."""
    names = [n.lower() for n in list_members(field_lines(headers, "vary"))]
    return None if "*" in names else names


def storable_headers(headers: Headers, directives: dict[str, str | None]) -> Headers:
    """``headers`` without what must not be stored (RFC 9111 §3.1, §5.2.2.4).

    Hop-by-hop fields and those ``Connection`` lists go; so do the fields a qualified
    ``no-cache="..."`` names, which may not be reused without revalidation: a stored copy
    without them can be served, and the caller of a miss still gets them from the origin.
    """
    drop = hop_by_hop_names(headers)
    qualified = directives.get("no-cache")
    if qualified:
        drop = drop | {n.lower() for n in list_members([qualified])}
    if not any(k.lower() in drop for k, _ in headers):
        return headers
    return tuple((k, v) for k, v in headers if k.lower() not in drop)


class Entry:
    """A stored response (``stored``) with its key, variant and freshness worked out."""

    __slots__ = (
        "background_since",
        "base_headers",
        "directives",
        "etag",
        "immutable",
        "initial_age",
        "key",
        "last_modified",
        "lifetime",
        "must_revalidate",
        "no_cache",
        "path",
        "size",
        "stale_if_error",
        "stale_while_revalidate",
        "stored",
        "vary",
    )

    def __init__(
        self,
        *,
        key: Key,
        path: str,
        stored: StoredResponse,
        vary: tuple[tuple[str, str | None], ...],
        policy: CachePolicy,
    ) -> None:
        self.key = key
        self.path = path
        self.stored = stored
        self.vary = vary
        self.background_since: float | None = None
        headers = stored.headers
        cc = self.directives = parse_cache_control(field_lines(headers, "cache-control"))
        self.base_headers: Headers = tuple((k, v) for k, v in headers if k.lower() != "age")
        self.etag = first(headers, "etag")
        self.last_modified = first(headers, "last-modified")
        qualified_no_cache = cc.get("no-cache")
        self.no_cache = "no-cache" in cc and qualified_no_cache is None
        # proxy-revalidate binds shared caches only; treating it as must-revalidate here is the
        # conservative reading the old cache had, kept.
        self.must_revalidate = "must-revalidate" in cc or "proxy-revalidate" in cc
        self.immutable = "immutable" in cc
        self.stale_while_revalidate = float(parse_delta(cc.get("stale-while-revalidate")) or 0)
        self.stale_if_error = float(parse_delta(cc.get("stale-if-error")) or 0)
        self.size = len(stored.body) + sum(len(k) + len(v) + 4 for k, v in headers) + 256
        date = _single_date(headers, "date")
        self.initial_age = _corrected_initial_age(headers, date, stored.request_time, stored.response_time)
        self.lifetime = _freshness_lifetime(stored.status, headers, cc, date, stored.response_time, policy)

    def age(self, now: float) -> float:
        """current_age (RFC 9111 §4.2.3): the corrected initial age plus the resident time."""
        return self.initial_age + max(0.0, now - self.stored.response_time)

    def matches(self, lines: dict[str, list[str]]) -> bool:
        """Whether a request with these header lines (lower-case names) selects this variant."""
        for name, value in self.vary:
            if vary_value(name, lines.get(name, [])) != value:
                return False
        return True

    def __repr__(self) -> str:
        return f"<Entry {self.stored.status} {self.key[1]!r} vary={self.vary!r}>"


def _single_date(headers: Headers, name: str) -> float | None:
    lines = field_lines(headers, name)
    return parse_http_date(lines[0]) if len(lines) == 1 else None


def _corrected_initial_age(
    headers: Headers, date: float | None, request_time: float, response_time: float
) -> float:
    """corrected_initial_age (RFC 9111 §4.2.3).

    apparent_age = max(0, response_time - date_value); response_delay = response_time -
    request_time; corrected_age_value = age_value + response_delay; the larger of the two.
    An invalid or absent Date counts as the response time (RFC 9110 §6.6.1), so adds nothing.
    """
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, parse_age(headers) + response_delay)


def _freshness_lifetime(
    status: int,
    headers: Headers,
    cc: dict[str, str | None],
    date: float | None,
    response_time: float,
    policy: CachePolicy,
) -> float:
    """freshness_lifetime (RFC 9111 §4.2.1), heuristic (§4.2.2) when nothing explicit is given.

    ``s-maxage`` is for shared caches and ignored. An invalid ``max-age`` makes the response
    stale rather than falling back to ``Expires`` (§4.2.1: "consider responses that have
    invalid freshness information to be stale"). Several ``Expires`` lines, or an invalid one,
    mean a time in the past (§5.3). An invalid ``Date`` does not discard ``Expires``: the
    response time stands in for it.
    """
    if "max-age" in cc:
        return float(parse_delta(cc["max-age"]) or 0)
    expires = field_lines(headers, "expires")
    if expires:
        if len(expires) != 1:
            return 0.0
        when = parse_http_date(expires[0])
        if when is None:
            return 0.0
        return max(0.0, when - (date if date is not None else response_time))
    if status in HEURISTIC_STATUSES or "public" in cc:
        lm_lines = field_lines(headers, "last-modified")
        modified = parse_http_date(lm_lines[0]) if len(lm_lines) == 1 else None
        if modified is not None:
            base = date if date is not None else response_time
            return min(policy.heuristic_max, max(0.0, base - modified) * policy.heuristic_fraction)
    return 0.0


def explicit_freshness(headers: Headers, cc: dict[str, Any]) -> bool:
    """Whether a response carries explicit freshness (``max-age`` or ``Expires``)."""
    return "max-age" in cc or bool(field_lines(headers, "expires"))
