"""Which HTTP protocol uvicorn runs the fake with: httptools when installed, else h11.

Both reach the socket for the fault layer and bound each connection the same way
(``_connection.py``, ``_limits.py``); httptools parses in C and is the default, h11 (pure Python,
always there since uvicorn depends on it) is the fallback, or the choice with ``http="h11"``.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from ..exceptions import ConfigError
from ._connection import ConnectionHook, GuardedProtocol
from ._h11 import FaultH11Protocol
from ._limits import ConnectionLimits

try:
    from ._httptools import FaultHttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency, but a C extension
    FaultHttpToolsProtocol = None  # type: ignore[assignment,misc]

HttpChoice = Literal["auto", "httptools", "h11"]
HTTP_CHOICES: tuple[HttpChoice, ...] = ("auto", "httptools", "h11")


def protocol_class(http: str = "auto") -> type[GuardedProtocol]:
    """The protocol for ``http``: ``httptools``, ``h11``, or ``auto`` (httptools when installed)."""
    if http not in HTTP_CHOICES:
        raise ConfigError(f"http: must be one of {', '.join(HTTP_CHOICES)}, got {http!r}")
    if http == "h11" or (http == "auto" and FaultHttpToolsProtocol is None):
        return FaultH11Protocol
    if FaultHttpToolsProtocol is None:
        raise ConfigError("http: httptools is not installed (pip install httptools), or choose h11")
    return FaultHttpToolsProtocol


def protocol_with(
    limits: ConnectionLimits, *, http: str = "auto", on_connection: ConnectionHook | None = None
) -> type[asyncio.Protocol]:
    """The protocol for ``http`` bound to ``limits``: pass it as uvicorn's ``http`` setting.

    ``on_connection`` is told of each new connection's transport.
    """
    base = protocol_class(http)
    attrs = {"limits": limits, "on_connection": staticmethod(on_connection) if on_connection else None}
    return type(base.__name__, (base,), attrs)


def protocol_name(protocol: type[asyncio.Protocol]) -> str:
    """``httptools`` or ``h11``: which parser a protocol from :func:`protocol_with` uses."""
    if FaultHttpToolsProtocol is not None and issubclass(protocol, FaultHttpToolsProtocol):
        return "httptools"
    return "h11"


#: What to pass as uvicorn's ``http`` setting so the fault layer reaches the socket (default limits).
UVICORN_HTTP: type[asyncio.Protocol] = protocol_class("auto")  # type: ignore[assignment]
