"""Answering a Range request from a stored complete response (RFC 9111 §3.4, RFC 9110 §14).

One satisfiable byte range gets a 206 with ``Content-Range``; byte ranges none of which is
satisfiable get a 416 with ``Content-Range: bytes */length``. Anything else (several ranges,
another unit, bad syntax, an ``If-Range`` that does not match) is answered with the whole
stored response, which RFC 9110 §14.2 allows ("a server MAY ignore the Range header field").
"""

from __future__ import annotations

from ._headers import is_strong, parse_http_date

__all__ = ["RangeAnswer", "if_range_allows", "select_range"]

# (kind, first, last): kind is "full", "partial" or "unsatisfiable"; first/last inclusive.
RangeAnswer = tuple[str, int, int]

_FULL: RangeAnswer = ("full", 0, 0)


def select_range(value: str, length: int) -> RangeAnswer:
    """What a ``Range`` value asks of a representation of ``length`` bytes."""
    unit, eq, spec = value.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return _FULL
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if not specs:
        return _FULL
    parsed: list[tuple[int, int] | None] = []
    for s in specs:
        first, dash, last = s.partition("-")
        first, last = first.strip(), last.strip()
        if (
            not dash
            or (first and not first.isdigit())
            or (last and not last.isdigit())
            or not (first or last)
        ):
            return _FULL
        if len(first) > 18 or len(last) > 18:
            return _FULL
        if first:
            a = int(first)
            b = int(last) if last else length - 1
            if last and b < a:
                return _FULL  # an invalid range-spec makes the whole header invalid
            parsed.append((a, min(b, length - 1)) if a < length else None)
        else:
            n = int(last)
            parsed.append((max(0, length - n), length - 1) if n > 0 and length > 0 else None)
    satisfiable = [p for p in parsed if p is not None]
    if not satisfiable:
        return ("unsatisfiable", 0, 0)
    if len(parsed) > 1:
        return _FULL
    a, b = satisfiable[0]
    return ("partial", a, b)


def if_range_allows(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    """Whether an ``If-Range`` (RFC 9110 §13.1.5) lets the range apply to the stored response."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value[:2] in ("W/", "w/"):
        # A strong comparison: both strong and identical.
        return etag is not None and is_strong(value) and is_strong(etag) and etag.strip() == value
    date = parse_http_date(value)
    return date is not None and last_modified is not None and parse_http_date(last_modified) == date
