"""Keeping secrets out of messages and logs.

Credentials reach error messages and log lines by three routes: a query parameter in a URL
(``?api_key=...``), a header value (``Authorization``), and the text of a lower-layer exception
that quotes either. ``redact`` covers all three: it masks sensitive query parameters and header
lines by name, and any value an auth object registered with :func:`register_secret`.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

MASK = "***"

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-signature",
        "cookie",
        "set-cookie",
    }
)

_PARAM_NAMES = (
    r"(?:api[_-]?key|apikey|key|token|access_token|refresh_token|client_secret|secret"
    r"|password|passwd|signature|sig)"
)
_QUERY_PARAM = re.compile(rf"(?i)([?&;]{_PARAM_NAMES}=)[^&#\s'\"]*")
_HEADER_LINE = re.compile(
    r"(?i)((?:authorization|proxy-authorization|x-api-key|api-key|x-signature|cookie)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:bearer|basic|digest)\s+)?[^'\"\s,}]+"
)

_MAX_SECRETS = 256
_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears.

    Auth objects call this with every key, password, token and signing secret they hold.
    Values shorter than four characters are ignored (masking them would mangle ordinary text).
    """
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    """``text`` with sensitive query parameters, header values and registered secrets masked."""
    if not text:
        return text
    text = _QUERY_PARAM.sub(rf"\1{MASK}", text)
    text = _HEADER_LINE.sub(rf"\1{MASK}", text)
    with _secrets_lock:
        known = list(_secrets)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str) -> str:
    """``url`` with sensitive query parameter values and user info masked."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = MASK + "@" + rest.split("@", 1)[1]
        url = scheme + sep + rest
    return redact(url)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` safe to log: sensitive values replaced by a mask."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (MASK if k.lower() in SENSITIVE_HEADERS else redact(v)) for k, v in items}
