"""Tenants and their credentials, from ``--tenants FILE`` or the built-in default."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A token bucket: ``per_minute`` tokens a minute, at most ``burst`` at once."""

    per_minute: int = 600
    burst: int = 100


@dataclass(frozen=True, kw_only=True)
class Tenant:
    """One tenant: its name, every credential that names it, and its limits."""

    name: str
    api_keys: tuple[str, ...] = ()
    basic: Mapping[str, str] = field(default_factory=dict)
    oauth_clients: Mapping[str, str] = field(default_factory=dict)
    signing_secret: str | None = None
    require_signature: bool = False
    rate_limit: RateLimit = RateLimit()

    def __repr__(self) -> str:
        # Secrets never reach a log line, not even through a repr.
        return f"Tenant(name={self.name!r}, require_signature={self.require_signature})"


DEFAULT_TENANTS: tuple[Tenant, ...] = tuple(
    Tenant(
        name=name,
        api_keys=(f"{name}-key",),
        basic={name: f"{name}-pass"},
        oauth_clients={f"{name}-client": f"{name}-secret"},
        signing_secret=f"{name}-signing-secret",
    )
    for name in ("demo", "acme")
)


class TenantDirectory:
    """Look-ups from each credential to its tenant; every credential names exactly one."""

    def __init__(self, tenants: tuple[Tenant, ...]) -> None:
        self.tenants = tenants
        self.by_name: dict[str, Tenant] = {}
        self.by_api_key: dict[str, Tenant] = {}
        self.by_basic_user: dict[str, tuple[str, Tenant]] = {}
        self.by_client_id: dict[str, tuple[str, Tenant]] = {}
        for tenant in tenants:
            if tenant.name in self.by_name:
                raise ConfigError(f"tenants: duplicate tenant name {tenant.name!r}")
            self.by_name[tenant.name] = tenant
            for key in tenant.api_keys:
                _claim(self.by_api_key, key, tenant, "api_keys")
            for user, password in tenant.basic.items():
                _claim(self.by_basic_user, user, (password, tenant), "basic")
            for client_id, secret in tenant.oauth_clients.items():
                _claim(self.by_client_id, client_id, (secret, tenant), "oauth_clients")


def _claim(index: dict[str, Any], key: str, value: Any, what: str) -> None:
    if key in index:
        raise ConfigError(f"tenants: a credential in {what} belongs to more than one tenant")
    index[key] = value


#: The keys each level of the file may have; anything else is refused, not ignored: a
#: misspelt ``apikeys:`` would otherwise leave a tenant with no key and every request a 401.
_TOP_KEYS = ("tenants",)
_TENANT_KEYS = (
    "name",
    "api_keys",
    "basic",
    "oauth_clients",
    "signing_secret",
    "require_signature",
    "rate_limit",
)
_RATE_KEYS = ("per_minute", "burst")


def load_tenants(path: str | Path) -> tuple[Tenant, ...]:
    """Read a tenants file (YAML or JSON); raises ConfigError naming the file and the bad field
    (or the line and column of a syntax error), always on one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"tenants file {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"tenants file {str(path)!r}: not UTF-8 (byte {exc.start})") from exc
    is_json = str(path).endswith(".json")
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"tenants file {str(path)!r}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"tenants file {str(path)!r}: not valid YAML{_yaml_where(exc)}") from exc
    try:
        return parse_tenants(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _yaml_where(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` from a YAML error (1-based, like an editor), one line."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f": {' '.join(str(exc).split())}"
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = exc.problem or exc.context or "syntax error"
    if exc.problem and exc.context:
        started = exc.context_mark
        since = f" started at line {started.line + 1}, column {started.column + 1}" if started else ""
        text += f" ({exc.context}{since})"
    return f"{where}: {text}"


def _only(raw: dict[Any, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            place = f"{where}.{key}" if where else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{place}: unknown key; expected one of {', '.join(allowed)}{hint}")


def parse_tenants(data: Any) -> tuple[Tenant, ...]:
    """Build tenants from parsed YAML/JSON; raises ConfigError naming the bad field."""
    if not isinstance(data, dict) or not isinstance(data.get("tenants"), list) or not data["tenants"]:
        raise ConfigError("tenants: expected a mapping with a non-empty list under 'tenants'")
    _only(data, _TOP_KEYS, "")
    tenants = []
    for i, raw in enumerate(data["tenants"]):
        where = f"tenants[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        _only(raw, _TENANT_KEYS, where)
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}.name: must be 1..64 characters of [A-Za-z0-9_.-]")
        rate = raw.get("rate_limit") or {}
        if not isinstance(rate, dict):
            raise ConfigError(f"{where}.rate_limit: expected a mapping")
        _only(rate, _RATE_KEYS, f"{where}.rate_limit")
        per_minute = rate.get("per_minute", 600)
        burst = rate.get("burst", 100)
        for key, value in (("per_minute", per_minute), ("burst", burst)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}.rate_limit.{key}: must be a positive integer")
        tenants.append(
            Tenant(
                name=name,
                api_keys=tuple(_strings(raw.get("api_keys", []), f"{where}.api_keys")),
                basic=_string_map(raw.get("basic", {}), f"{where}.basic"),
                oauth_clients=_string_map(raw.get("oauth_clients", {}), f"{where}.oauth_clients"),
                signing_secret=_optional_string(raw.get("signing_secret"), f"{where}.signing_secret"),
                require_signature=_bool(raw.get("require_signature", False), f"{where}.require_signature"),
                rate_limit=RateLimit(per_minute=per_minute, burst=burst),
            )
        )
    result = tuple(tenants)
    TenantDirectory(result)  # rejects shared credentials and duplicate names now, not at first request
    for tenant in result:
        if tenant.require_signature and not tenant.signing_secret:
            raise ConfigError(f"tenants: {tenant.name!r} requires signatures but has no signing_secret")
    return result


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where}: expected a mapping of strings to strings")
    return value


def _optional_string(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    return value
