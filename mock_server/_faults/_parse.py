"""Validating fault rules from files, admin bodies and the ``X-Mock-Fault`` header.

Every error is a :class:`FaultConfigError` naming the bad field, for instance
``rules[2].fault.status: must be 400..599``. Unknown keys are errors too: in a rule file a
typo (``probabilty``) would otherwise silently make a rule fire every time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from ._errors import FaultConfigError, Loc
from ._model import FAULT_TYPES, WHEN, Fault, FaultType, Latency, Match, RetryAfter, Rule, RuleSet, Window

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RULE_KEYS = frozenset(
    {
        "id",
        "match",
        "fault",
        "sequence",
        "every_nth",
        "probability",
        "times",
        "after",
        "window",
        "when",
        "enabled",
    }
)
_MATCH_KEYS = frozenset({"method", "path", "tenant", "session", "headers"})
_LATENCY_KEYS = ("fixed_ms", "uniform", "normal", "lognormal")
_TYPE_KEYS: Mapping[str, frozenset[str]] = {
    "latency": frozenset(_LATENCY_KEYS),
    "status": frozenset({"status", "retry_after", "message"}),
    "timeout": frozenset({"hang_s"}),
    "reset": frozenset(),
    "close": frozenset(),
    "truncate": frozenset({"fraction"}),
    "malformed_json": frozenset(),
    "wrong_content_type": frozenset({"content_type"}),
    "slow_body": frozenset({"bytes_per_s", "chunk_delay_ms", "chunk_bytes"}),
}
_MAX_MS = 3_600_000.0


def _fail(loc: Loc, msg: str) -> FaultConfigError:
    return FaultConfigError(loc, msg)


def _mapping(value: Any, loc: Loc) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(loc, f"must be an object, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _fail(loc, f"keys must be strings, got {key!r}")
    return cast(Mapping[str, Any], value)


def _only(obj: Mapping[str, Any], allowed: frozenset[str] | tuple[str, ...], loc: Loc) -> None:
    for key in obj:
        if key not in allowed:
            raise _fail((*loc, key), f"unknown field; expected one of {', '.join(sorted(allowed))}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


_MAX_INT = 2**63 - 1


def _number(
    value: Any,
    loc: Loc,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    integer: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(loc, f"must be {'an integer' if integer else 'a number'}, got {_kind(value)}")
    if isinstance(value, int) and not -_MAX_INT <= value <= _MAX_INT:
        # Beyond any limit here, and past about 309 digits too big for a float at all.
        raise _fail(loc, f"is out of range, got a {len(str(abs(value)))}-digit integer")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise _fail(loc, f"must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise _fail(loc, f"must be finite, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    if below or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise _fail(loc, f"must be {_fmt(lo)}..{_fmt(hi)}, got {value!r}")
        raise _fail(loc, f"must be {'>' if lo_open else '>='} {_fmt(lo or 0)}, got {value!r}")
    return float(value)


def _int(value: Any, loc: Loc, *, lo: int, hi: int | None = None) -> int:
    return int(_number(value, loc, lo=lo, hi=hi, integer=True))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bool(value: Any, loc: Loc) -> bool:
    # Strictly true or false: YAML's "yes" is already a boolean, and a quoted "false" is a
    # mistake that would otherwise read as true.
    if not isinstance(value, bool):
        raise _fail(loc, f"must be true or false, got {_kind(value)}")
    return value


def _string(value: Any, loc: Loc) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(loc, f"must be a non-empty string, got {_kind(value) if value != '' else 'an empty one'}")
    return value


def parse_latency(obj: Mapping[str, Any], loc: Loc) -> Latency:
    """The latency given by one of ``fixed_ms``, ``uniform``, ``normal``, ``lognormal``."""
    given = [key for key in _LATENCY_KEYS if key in obj]
    if len(given) != 1:
        what = "none" if not given else ", ".join(given)
        raise _fail(loc, f"needs exactly one of {', '.join(_LATENCY_KEYS)}, got {what}")
    key = given[0]
    where = (*loc, key)
    if key == "fixed_ms":
        return Latency("fixed", _number(obj[key], where, lo=0, hi=_MAX_MS))
    params = _mapping(obj[key], where)
    names = {
        "uniform": ("min_ms", "max_ms"),
        "normal": ("mean_ms", "sd_ms"),
        "lognormal": ("median_ms", "sigma"),
    }
    first, second = names[key]
    _only(params, (first, second), where)
    for name in (first, second):
        if name not in params:
            raise _fail((*where, name), "is required")
    if key == "lognormal":
        a = _number(params[first], (*where, first), lo=0, hi=_MAX_MS, lo_open=True)
        b = _number(params[second], (*where, second), lo=0, hi=5)
        return Latency("lognormal", a, b)
    a = _number(params[first], (*where, first), lo=0, hi=_MAX_MS)
    b = _number(params[second], (*where, second), lo=0, hi=_MAX_MS)
    if key == "uniform" and b < a:
        raise _fail((*where, second), f"must be >= {first} ({_fmt(a)}), got {_fmt(b)}")
    return Latency(cast(Any, key), a, b)


def parse_fault(value: Any, loc: Loc = ()) -> Fault:
    """One fault object, e.g. ``{"type": "status", "status": 503, "retry_after": 2}``."""
    obj = _mapping(value, loc)
    if "type" not in obj:
        raise _fail((*loc, "type"), f"is required; one of {', '.join(FAULT_TYPES)}")
    ftype = obj["type"]
    if ftype not in FAULT_TYPES:
        raise _fail((*loc, "type"), f"must be one of {', '.join(FAULT_TYPES)}, got {ftype!r}")
    allowed = _TYPE_KEYS[ftype] | {"type"} | ({"latency"} if ftype != "latency" else set())
    _only(obj, frozenset(allowed), loc)
    kw: dict[str, Any] = {}
    if ftype == "latency":
        return Fault("latency", latency=parse_latency(obj, loc))
    if "latency" in obj:
        kw["latency"] = parse_latency(_mapping(obj["latency"], (*loc, "latency")), (*loc, "latency"))
    if ftype == "status":
        if "status" not in obj:
            raise _fail((*loc, "status"), "is required for type status")
        kw["status"] = _int(obj["status"], (*loc, "status"), lo=400, hi=599)
        if "retry_after" in obj:
            kw["retry_after"] = _retry_after(obj["retry_after"], (*loc, "retry_after"))
        if "message" in obj:
            kw["message"] = _string(obj["message"], (*loc, "message"))
    elif ftype == "timeout":
        if "hang_s" in obj and obj["hang_s"] is not None:
            kw["hang_s"] = _number(obj["hang_s"], (*loc, "hang_s"), lo=0, hi=3600, lo_open=True)
    elif ftype == "truncate":
        kw["fraction"] = _number(obj.get("fraction", 0.5), (*loc, "fraction"), lo=0, hi=0.999)
    elif ftype == "wrong_content_type":
        if "content_type" in obj:
            kw["content_type"] = _string(obj["content_type"], (*loc, "content_type"))
    elif ftype == "slow_body":
        given = [k for k in ("bytes_per_s", "chunk_delay_ms") if k in obj]
        if len(given) != 1:
            raise _fail(loc, "slow_body needs exactly one of bytes_per_s, chunk_delay_ms")
        if given[0] == "bytes_per_s":
            kw["bytes_per_s"] = _number(obj["bytes_per_s"], (*loc, "bytes_per_s"), lo=0, lo_open=True)
        else:
            kw["chunk_delay_ms"] = _number(obj["chunk_delay_ms"], (*loc, "chunk_delay_ms"), lo=0, hi=60_000)
        if "chunk_bytes" in obj:
            kw["chunk_bytes"] = _int(obj["chunk_bytes"], (*loc, "chunk_bytes"), lo=1, hi=1 << 20)
    return Fault(cast(FaultType, ftype), **kw)


def _retry_after(value: Any, loc: Loc) -> RetryAfter:
    if isinstance(value, Mapping):
        obj = _mapping(value, loc)
        _only(obj, ("seconds", "format"), loc)
        if "seconds" not in obj:
            raise _fail((*loc, "seconds"), "is required")
        seconds = _int(obj["seconds"], (*loc, "seconds"), lo=0, hi=86_400)
        fmt = obj.get("format", "seconds")
        if fmt not in ("seconds", "http-date"):
            raise _fail((*loc, "format"), f"must be seconds or http-date, got {fmt!r}")
        return RetryAfter(seconds, fmt == "http-date")
    # Delta-seconds is an integer on the wire (RFC 9110 10.2.3).
    return RetryAfter(_int(value, loc, lo=0, hi=86_400))


def parse_match(value: Any, loc: Loc) -> Match:
    obj = _mapping(value, loc)
    _only(obj, _MATCH_KEYS, loc)
    methods: frozenset[str] | None = None
    if "method" in obj:
        raw = obj["method"]
        items = raw if isinstance(raw, list) else [raw]
        found = []
        for i, item in enumerate(items):
            where = (*loc, "method", i) if isinstance(raw, list) else (*loc, "method")
            name = _string(item, where).upper()
            if name != "*" and name not in _HTTP_METHODS:
                raise _fail(
                    where, f"must be an HTTP method ({', '.join(sorted(_HTTP_METHODS))}), got {item!r}"
                )
            found.append(name)
        if not found:
            raise _fail((*loc, "method"), "must not be empty")
        methods = None if "*" in found else frozenset(found)
    path = None
    if "path" in obj:
        path = _string(obj["path"], (*loc, "path"))
        if path.startswith("/__admin"):
            raise _fail((*loc, "path"), "rules never apply to /__admin")
    headers: list[tuple[str, str]] = []
    if "headers" in obj:
        hobj = _mapping(obj["headers"], (*loc, "headers"))
        for name, hvalue in hobj.items():
            if isinstance(hvalue, bool) or not isinstance(hvalue, str | int | float):
                raise _fail((*loc, "headers", name), f"must be a string, got {_kind(hvalue)}")
            headers.append((name.lower(), str(hvalue)))
    return Match(
        methods=methods,
        path=None if path in (None, "*", "/*") else path,
        tenant=_string(obj["tenant"], (*loc, "tenant")) if "tenant" in obj else None,
        session=_string(obj["session"], (*loc, "session")) if "session" in obj else None,
        headers=tuple(headers),
    )


def parse_rule(value: Any, loc: Loc = (), *, default_id: str | None = None) -> Rule:
    """One rule in the contract's format (a rule file's entry or the admin API's body)."""
    obj = _mapping(value, loc)
    _only(obj, _RULE_KEYS, loc)
    if "id" in obj:
        rule_id = _string(obj["id"], (*loc, "id"))
        if not RULE_ID.match(rule_id):
            raise _fail((*loc, "id"), "must be 1..100 of A-Z a-z 0-9 _ . : - starting with a letter or digit")
    elif default_id is not None:
        rule_id = default_id
    else:
        raise _fail((*loc, "id"), "is required")
    has_fault, has_sequence = "fault" in obj, "sequence" in obj
    if has_fault == has_sequence:
        raise _fail((*loc, "fault"), "a rule needs exactly one of fault, sequence")
    fault = parse_fault(obj["fault"], (*loc, "fault")) if has_fault else None
    sequence = None
    if has_sequence:
        raw = obj["sequence"]
        if not isinstance(raw, list) or not raw:
            raise _fail((*loc, "sequence"), "must be a non-empty list of faults or 'ok'")
        sequence = tuple(
            None if item == "ok" else parse_fault(item, (*loc, "sequence", i)) for i, item in enumerate(raw)
        )
    every_nth = None
    if "every_nth" in obj:
        if has_sequence:
            raise _fail((*loc, "every_nth"), "cannot be combined with sequence")
        every_nth = _int(obj["every_nth"], (*loc, "every_nth"), lo=1)
    window = None
    if "window" in obj:
        wobj = _mapping(obj["window"], (*loc, "window"))
        _only(wobj, ("start_s", "duration_s"), (*loc, "window"))
        for name in ("start_s", "duration_s"):
            if name not in wobj:
                raise _fail((*loc, "window", name), "is required")
        window = Window(
            _number(wobj["start_s"], (*loc, "window", "start_s"), lo=0),
            _number(wobj["duration_s"], (*loc, "window", "duration_s"), lo=0, lo_open=True),
        )
    when = obj.get("when", "before")
    if when not in WHEN:
        raise _fail((*loc, "when"), f"must be one of {', '.join(WHEN)}, got {when!r}")
    enabled = _bool(obj["enabled"], (*loc, "enabled")) if "enabled" in obj else True
    return Rule(
        id=rule_id,
        match=parse_match(obj["match"], (*loc, "match")) if "match" in obj else Match(),
        fault=fault,
        sequence=sequence,
        every_nth=every_nth,
        probability=_number(obj["probability"], (*loc, "probability"), lo=0, hi=1)
        if "probability" in obj
        else 1.0,
        times=_int(obj["times"], (*loc, "times"), lo=1) if "times" in obj else None,
        after=_int(obj["after"], (*loc, "after"), lo=0) if "after" in obj else 0,
        window=window,
        when=when,
        enabled=enabled,
    )


def parse_rules(value: Any) -> RuleSet:
    """A rule set from a parsed file: ``{"seed": N?, "rules": [...]}`` (a bare list is also accepted)."""
    if isinstance(value, list):
        value = {"rules": value}
    obj = _mapping(value, ())
    _only(obj, ("seed", "rules"), ())
    seed = _int(obj["seed"], ("seed",), lo=0, hi=2**63 - 1) if obj.get("seed") is not None else None
    raw = obj.get("rules", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _fail(("rules",), f"must be a list, got {_kind(raw)}")
    rules = tuple(parse_rule(item, ("rules", i), default_id=f"rule-{i + 1}") for i, item in enumerate(raw))
    return RuleSet(rules, seed)


def load_rules(path: str | Path) -> RuleSet:
    """The rule set in a YAML or JSON file; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaultConfigError((), f"{path}: cannot read the fault file: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise FaultConfigError(
            (), f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    try:
        return parse_rules({} if data is None else data)
    except FaultConfigError as exc:
        raise FaultConfigError((), f"{path}: {exc}") from exc


# The X-Mock-Fault header: ';'-separated items, "name" or "name=value".
_HEADER_TYPES = frozenset(FAULT_TYPES) - {"latency"}
_HEADER_MODIFIERS = frozenset(
    {
        "retry_after",
        "retry_after_date",
        "latency",
        "message",
        "hang_s",
        "fraction",
        "chunk_delay_ms",
        "chunk_bytes",
    }
)
HEADER = "X-Mock-Fault"


def parse_fault_header(value: str) -> Fault:
    """The fault an ``X-Mock-Fault`` header asks for.

    Items: one of ``status=503``, ``timeout[=SECONDS]``, ``reset``, ``close``, ``truncate[=FRACTION]``,
    ``malformed_json``, ``wrong_content_type[=TYPE]``, ``slow_body[=BYTES_PER_S]``; modifiers
    ``latency=MS`` (or ``MIN..MAX``), ``retry_after=S``, ``retry_after_date=S``, ``chunk_delay_ms=MS``,
    ``chunk_bytes=N``. ``latency=200`` alone is a pure delay.
    """
    items: dict[str, str | None] = {}
    for raw in value.split(";"):
        item = raw.strip()
        if not item:
            continue
        name, eq, arg = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if name not in _HEADER_TYPES and name not in _HEADER_MODIFIERS:
            known = ", ".join(sorted(_HEADER_TYPES | _HEADER_MODIFIERS))
            raise FaultConfigError((HEADER,), f"unknown item {name!r}; known: {known}")
        if name in items:
            raise FaultConfigError((HEADER,), f"{name!r} given twice")
        items[name] = arg.strip() if eq else None
    types = [name for name in items if name in _HEADER_TYPES]
    if len(types) > 1:
        raise FaultConfigError((HEADER,), f"one fault at a time, got {', '.join(types)}")
    if not types and "latency" not in items:
        raise FaultConfigError((HEADER,), "names no fault (e.g. status=503, latency=200, reset)")
    ftype = types[0] if types else "latency"
    obj: dict[str, Any] = {"type": ftype}
    main = items.get(ftype) if types else None
    argument_field = {
        "status": "status",
        "timeout": "hang_s",
        "truncate": "fraction",
        "slow_body": "bytes_per_s",
        "wrong_content_type": "content_type",
    }
    if main is not None:
        if ftype not in argument_field:
            raise FaultConfigError((HEADER, ftype), "takes no value")
        field_name = argument_field[ftype]
        obj[field_name] = main if field_name == "content_type" else _header_number(main, (HEADER, ftype))
    for key, given in items.items():
        if key == ftype and types:
            continue
        if given is None or given == "":
            raise FaultConfigError((HEADER, key), "needs a value")
        if key == "latency":
            lat = _header_latency(given)
            if ftype == "latency":
                obj.update(lat)
            else:
                obj["latency"] = lat
        elif key == "retry_after":
            obj["retry_after"] = _header_number(given, (HEADER, key))
        elif key == "retry_after_date":
            obj["retry_after"] = {"seconds": _header_number(given, (HEADER, key)), "format": "http-date"}
        elif key == "message":
            obj["message"] = given
        else:
            obj[key] = _header_number(given, (HEADER, key))
    return parse_fault(obj, (HEADER,))


def _header_number(text: str, loc: Loc) -> float | int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise FaultConfigError(loc, f"must be a number, got {text!r}") from None


def _header_latency(text: str) -> dict[str, Any]:
    loc = (HEADER, "latency")
    if ".." in text:
        lo, _, hi = text.partition("..")
        return {"uniform": {"min_ms": _header_number(lo, loc), "max_ms": _header_number(hi, loc)}}
    return {"fixed_ms": _header_number(text, loc)}
