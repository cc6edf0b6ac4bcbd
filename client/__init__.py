"""The reference client of ResonanceOS v6.

A sans-IO engine (``_engine``: retry, breaker, limiter, cache, deadline, auth; no HTTP library)
and thin drivers around it: a resilient ``requests`` layer for any base URL
(:class:`ResilientSession`, :class:`ResilientAdapter`), ``httpx`` transports
(:class:`ResilientTransport`, :class:`AsyncResilientTransport`), all configured by
:class:`Policies`; and :class:`ResonanceClient` / :class:`AsyncResonanceClient`, typed methods
over the API returning pydantic models.

The names below are loaded on first use, so the engine's own modules can be imported (and
tested) without ``requests`` or ``httpx``.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from ._api import Analytics, Profiles, ResonanceClient
    from ._async_api import AsyncAnalytics, AsyncProfiles, AsyncResonanceClient
    from ._auth import ApiKeyAuth, Auth, BasicAuth, BearerAuth, HmacAuth, OAuth2ClientCredentials
    from ._breaker import BreakerPolicy, BreakerState, BreakerTransition, CircuitBreaker
    from ._clock import Clock, FakeClock, Sleep
    from ._exceptions import (
        ApiError,
        BadRequest,
        CircuitOpen,
        ConfigError,
        Conflict,
        ConnectionFailed,
        ConnectTimeout,
        DeadlineExceeded,
        Forbidden,
        HttpError,
        NotFound,
        PreconditionFailed,
        RateLimited,
        ReadTimeout,
        RequestInvalid,
        ResponseInvalid,
        RetriesExhausted,
        ServerError,
        TransportError,
        Unauthorized,
        ValidationFailed,
    )
    from ._http import CallInfo
    from ._httpcache import CachePolicy
    from ._httpx import AsyncResilientTransport, ResilientTransport
    from ._limiter import RateLimitPolicy, TokenBucket
    from ._metrics import Metrics, MetricsSnapshot
    from ._models import (
        BatchItem,
        BatchResult,
        DateRange,
        ErrorInfo,
        GenerateMetadata,
        GenerateResult,
        Health,
        LatencySummary,
        PerformanceReport,
        Profile,
        ProfilePage,
        Token,
        UsageDay,
        UsageReport,
    )
    from ._policies import Policies
    from ._retry import RetryBudget, RetryDetails, RetryPolicy, RetryState, backoff, parse_retry_after
    from ._timeouts import Deadline, Timeouts
    from ._transport import CachedResponse, ResilientAdapter, ResilientSession, call_info

__all__ = [
    "Analytics",
    "ApiError",
    "ApiKeyAuth",
    "AsyncAnalytics",
    "AsyncProfiles",
    "AsyncResilientTransport",
    "AsyncResonanceClient",
    "Auth",
    "BadRequest",
    "BasicAuth",
    "BatchItem",
    "BatchResult",
    "BearerAuth",
    "BreakerPolicy",
    "BreakerState",
    "BreakerTransition",
    "CachePolicy",
    "CachedResponse",
    "CallInfo",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "Conflict",
    "ConnectTimeout",
    "ConnectionFailed",
    "DateRange",
    "Deadline",
    "DeadlineExceeded",
    "ErrorInfo",
    "FakeClock",
    "Forbidden",
    "GenerateMetadata",
    "GenerateResult",
    "Health",
    "HmacAuth",
    "HttpError",
    "LatencySummary",
    "Metrics",
    "MetricsSnapshot",
    "NotFound",
    "OAuth2ClientCredentials",
    "PerformanceReport",
    "Policies",
    "PreconditionFailed",
    "Profile",
    "ProfilePage",
    "Profiles",
    "RateLimitPolicy",
    "RateLimited",
    "ReadTimeout",
    "RequestInvalid",
    "ResilientAdapter",
    "ResilientSession",
    "ResilientTransport",
    "ResonanceClient",
    "ResponseInvalid",
    "RetriesExhausted",
    "RetryBudget",
    "RetryDetails",
    "RetryPolicy",
    "RetryState",
    "ServerError",
    "Sleep",
    "Timeouts",
    "Token",
    "TokenBucket",
    "TransportError",
    "Unauthorized",
    "UsageDay",
    "UsageReport",
    "ValidationFailed",
    "backoff",
    "call_info",
    "parse_retry_after",
]


#: Where the public names live; ``_exceptions`` first, so the public error classes (the
#: engine's with requests' mixed in) are registered before anything can raise.
_MODULES = (
    "._exceptions",
    "._api",
    "._async_api",
    "._httpx",
    "._auth",
    "._breaker",
    "._httpcache",
    "._clock",
    "._http",
    "._limiter",
    "._metrics",
    "._models",
    "._policies",
    "._retry",
    "._timeouts",
    "._transport",
)


def _load() -> None:
    """Import every public name (the drivers, and so ``requests``) into this module."""
    namespace = globals()
    for module in _MODULES:
        loaded = _importlib.import_module(module, __name__)
        for name in __all__:
            if name not in namespace and hasattr(loaded, name):
                namespace[name] = getattr(loaded, name)


def __getattr__(name: str) -> _Any:
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
