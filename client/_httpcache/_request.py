"""What the cache reads from a request: its directives (RFC 9111 §5.2.1), conditionals, Range."""

from __future__ import annotations

from ._headers import DELTA_MAX, list_members, parse_cache_control, parse_delta
from ._model import Headers

__all__ = ["RequestView"]


class RequestView:
    """A request's header lines by lower-case name, and the directives the cache obeys.

    ``Pragma: no-cache`` counts as ``Cache-Control: no-cache`` when the request has no
    ``Cache-Control`` (RFC 9111 §5.4, RFC 7234 §5.4). Invalid directive values are ignored;
    ``max-stale`` without a value accepts any staleness.
    """

    __slots__ = (
        "conditional",
        "lines",
        "max_age",
        "max_stale",
        "min_fresh",
        "no_cache",
        "no_store",
        "only_if_cached",
        "precondition",
        "stale_if_error",
    )

    def __init__(self, headers: Headers) -> None:
        lines: dict[str, list[str]] = {}
        for k, v in headers:
            lines.setdefault(k.lower(), []).append(v)
        self.lines = lines
        self.no_cache = self.no_store = self.only_if_cached = False
        self.max_age: int | None = None
        self.max_stale: int | None = None
        self.min_fresh: int | None = None
        self.stale_if_error: int | None = None
        cc_lines = lines.get("cache-control")
        if cc_lines is not None:
            cc = parse_cache_control(cc_lines)
            self.no_cache = "no-cache" in cc
            self.no_store = "no-store" in cc
            self.only_if_cached = "only-if-cached" in cc
            self.max_age = parse_delta(cc.get("max-age"))
            self.min_fresh = parse_delta(cc.get("min-fresh"))
            self.stale_if_error = parse_delta(cc.get("stale-if-error"))
            if "max-stale" in cc:
                arg = cc["max-stale"]
                self.max_stale = DELTA_MAX if arg is None else parse_delta(arg)
        elif "pragma" in lines:
            self.no_cache = any(m.lower() == "no-cache" for m in list_members(lines["pragma"]))
        # If-None-Match / If-Modified-Since: the cache may answer them from a fresh response
        # (§4.3.2). If-Match / If-Unmodified-Since are the origin's to judge: sent as they are.
        self.conditional = "if-none-match" in lines or "if-modified-since" in lines
        self.precondition = "if-match" in lines or "if-unmodified-since" in lines

    def get(self, name: str) -> str | None:
        """The first line of ``name`` (lower-case), or ``None``."""
        values = self.lines.get(name)
        return values[0] if values else None
