"""Parsing what the cache reads from header fields: Cache-Control, dates, Age, entity tags, Vary.

Every parser is total: a malformed value yields ``None`` (or is skipped), never an exception,
because field values come from servers no one here wrote.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Iterable
from functools import lru_cache

from ._model import Headers

__all__ = [
    "DELTA_MAX",
    "HOP_BY_HOP",
    "combined",
    "credential_digest",
    "field_lines",
    "first",
    "hop_by_hop_names",
    "list_members",
    "parse_age",
    "parse_cache_control",
    "parse_delta",
    "parse_etags",
    "parse_http_date",
    "secret_free_url",
    "vary_value",
]

# RFC 9111 §1.2.2: a delta-seconds beyond what a cache represents is taken as 2^31.
DELTA_MAX = 2147483648

# RFC 9111 §3.1 / RFC 9110 §7.6.1: hop-by-hop fields are not stored, nor are fields that
# Connection lists.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
        "trailer",
    }
)

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"

_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:api[_-]?key|apikey|key|token|access_token|signature|sig|password|client_secret)=)([^&#]*)"
)


def field_lines(headers: Headers, name: str) -> list[str]:
    """Every line of field ``name`` (lower-case), in order."""
    return [v for k, v in headers if k.lower() == name]


def first(headers: Headers, name: str) -> str | None:
    """The first line of field ``name`` (lower-case), or ``None``."""
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def combined(headers: Headers, name: str) -> str | None:
    """Field ``name`` (lower-case) with its lines joined by ", " (RFC 9110 §5.3), or ``None``."""
    lines = field_lines(headers, name)
    return ", ".join(lines) if lines else None


def _split_members(value: str) -> list[str]:
    """The comma-separated members of a list field, quoted commas kept, OWS trimmed."""
    if '"' not in value:
        return [m.strip(_WS) for m in value.split(",")]
    out: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in value:
        if quoted:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            buf.append(ch)
        elif ch == ",":
            out.append("".join(buf).strip(_WS))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf).strip(_WS))
    return out


def list_members(lines: Iterable[str]) -> list[str]:
    """The non-empty members of a list field given as lines (RFC 9110 §5.6.1)."""
    out: list[str] = []
    for line in lines:
        out.extend(m for m in _split_members(line) if m)
    return out


def _unquote(value: str) -> str | None:
    """The content of a quoted-string, or ``None`` when ``value`` is not one."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None
    out: list[str] = []
    escaped = False
    for ch in value[1:-1]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return None
        else:
            out.append(ch)
    return None if escaped else "".join(out)


def _is_token(value: str) -> bool:
    return bool(value) and all(c in _TCHAR for c in value)


# Parsers memoise short values only: a server's megabyte-long field must not stay pinned in a cache.
_MEMO_MAX_LEN = 256


def _parse_cc_line(line: str) -> tuple[tuple[str, str | None], ...]:
    return _parse_cc_line_memo(line) if len(line) <= _MEMO_MAX_LEN else _parse_cc_line_raw(line)


def _parse_cc_line_raw(line: str) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for member in _split_members(line):
        if not member:
            continue
        name, eq, arg = member.partition("=")
        # RFC 9111 §5.2: token [ "=" ( token / quoted-string ) ], no whitespace around "=":
        # "max-age =3600" and "max-age= 3600" are malformed, and a malformed member is skipped.
        if not _is_token(name):
            continue
        if not eq:
            out.append((name.lower(), None))
            continue
        if _is_token(arg):
            out.append((name.lower(), arg))
            continue
        unquoted = _unquote(arg)
        if unquoted is not None:
            out.append((name.lower(), unquoted))
    return tuple(out)


_parse_cc_line_memo = lru_cache(maxsize=512)(_parse_cc_line_raw)


def parse_cache_control(value: str | Iterable[str] | None) -> dict[str, str | None]:
    """``Cache-Control`` directives (one line or several) as a dict, names lower-cased.

    Arguments are unquoted (RFC 9111 §5.2: recipients accept both forms). A directive given
    twice keeps its first value (§4.2.1), except ``no-cache`` and ``private``, where the most
    restrictive wins: any unqualified occurrence makes the value ``None``, otherwise the
    field lists are joined.
    """
    if not value:
        return {}
    lines = [value] if isinstance(value, str) else list(value)
    out: dict[str, str | None] = {}
    for line in lines:
        for name, arg in _parse_cc_line(line):
            if name not in out:
                out[name] = arg
            elif name in ("no-cache", "private"):
                prev = out[name]
                out[name] = None if prev is None or arg is None else f"{prev}, {arg}"
    return out


def parse_delta(value: str | None) -> int | None:
    """A delta-seconds (RFC 9111 §1.2.2), capped at 2^31; ``None`` when invalid."""
    if value is None or not value or not value.isascii() or not value.isdigit():
        return None
    return min(int(value[:12]), DELTA_MAX) if len(value) <= 12 else DELTA_MAX


def parse_age(headers: Headers) -> int:
    """The ``Age`` value (RFC 9111 §5.1): the first member of the first line; 0 when invalid.

    Several lines or members: the first wins, as the HTTP WG's cache tests expect
    (``age-parse-suffix``, ``age-parse-prefix-twoline``); a non-numeric, negative or
    fractional value is ignored.
    """
    value = first(headers, "age")
    if value is None:
        return 0
    member = value.split(",", 1)[0].strip(_WS)
    age = parse_delta(member)
    return age if age is not None else 0


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = {m: i + 1 for i, m in enumerate(("jan feb mar apr may jun jul aug sep oct nov dec").split())}
_IMF = re.compile(r"([a-z]{3}), (\d\d) ([a-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) gmt")
_RFC850 = re.compile(r"([a-z]{6,9}), (\d\d)-([a-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) gmt")
_ASCTIME = re.compile(r"([a-z]{3}) ([a-z]{3}) ( \d|\d\d) (\d\d):(\d\d):(\d\d) (\d{4})")


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as epoch seconds, or ``None`` when invalid.

    The three formats only, with day and month names in any case (a recipient-friendly
    reading the cache tests call optimal), and nothing else: "UTC" or another zone, a
    two-digit year in IMF-fixdate, missing commas, doubled spaces, dashes, periods or a
    one-digit hour are all invalid, and an invalid date is a date in the past (§5.3).
    An rfc850 two-digit year more than 50 years ahead is read as the previous century's
    (against the real calendar: this rare format is not worth a clock).
    """
    if value is None or len(value) > 64:
        return None
    return _parse_http_date(value)


@lru_cache(maxsize=1024)
def _parse_http_date(value: str) -> float | None:
    text = value.strip(_WS).lower()
    if m := _IMF.fullmatch(text):
        if m[1] not in _DAYS:
            return None
        day, month, year, hh, mm, ss = (
            int(m[2]),
            _MONTHS.get(m[3]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            int(m[7]),
        )
    elif m := _RFC850.fullmatch(text):
        if m[1] not in _LONG_DAYS:
            return None
        day, month, yy, hh, mm, ss = int(m[2]), _MONTHS.get(m[3]), int(m[4]), int(m[5]), int(m[6]), int(m[7])
        this_year = time.gmtime().tm_year
        year = (this_year // 100) * 100 + yy
        if year > this_year + 50:
            year -= 100
    elif m := _ASCTIME.fullmatch(text):
        if m[1] not in _DAYS:
            return None
        month, day, hh, mm, ss, year = (
            _MONTHS.get(m[2]),
            int(m[3]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            int(m[7]),
        )
    else:
        return None
    if month is None or not 1 <= day <= calendar.monthrange(year, month)[1] or hh > 23 or mm > 59 or ss > 60:
        return None
    return float(calendar.timegm((year, month, day, hh, mm, min(ss, 59), 0, 0, 0)))


def hop_by_hop_names(headers: Headers) -> frozenset[str]:
    """The lower-case names not to store or forward: hop-by-hop ones and those Connection lists."""
    listed = list_members(field_lines(headers, "connection"))
    if not listed:
        return HOP_BY_HOP
    return HOP_BY_HOP | {n.lower() for n in listed}


def parse_etags(value: str | None) -> list[str] | None:
    """The entity tags of an If-None-Match value; ``["*"]`` for "*"; ``None`` when absent."""
    if value is None:
        return None
    members = list_members([value])
    if members == ["*"]:
        return ["*"]
    return members


def weak_match(a: str, b: str) -> bool:
    """Weak comparison of two entity tags (RFC 9110 §8.8.3.2): opaque tags equal, W/ ignored."""
    return _opaque(a) == _opaque(b)


def _opaque(tag: str) -> str:
    tag = tag.strip(_WS)
    return tag[2:] if tag[:2] in ("W/", "w/") else tag


def is_strong(tag: str) -> bool:
    """Whether an entity tag is strong (no ``W/`` prefix)."""
    return tag.strip(_WS)[:2] not in ("W/", "w/")


def vary_value(name: str, lines: list[str]) -> str | None:
    """A selecting header's normalised value (RFC 9111 §4.1), or ``None`` when absent.

    Lines are combined and whitespace around list members dropped, since a field sent as
    lines or as one comma-joined line, with or without optional whitespace, is the same
    field. ``Accept-Language`` members are also case-folded and put in order, since language
    ranges are case-insensitive and their preference is carried by q-values, not order.
    """
    if not lines:
        return None
    members = list_members(lines)
    if name == "accept-language":
        return ",".join(sorted(m.lower().replace(" ", "").replace("\t", "") for m in members))
    return ",".join(members)


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
