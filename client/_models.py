"""Pydantic models of every ResonanceOS response (CONTRACT section 2).

Unknown fields are ignored, so a newer server does not break an older client; a body that does
not match is :class:`ResponseInvalid` (see :func:`parse`), never a ``KeyError``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ._exceptions import ResponseInvalid

__all__ = [
    "BatchItem",
    "BatchResult",
    "DateRange",
    "ErrorInfo",
    "GenerateMetadata",
    "GenerateResult",
    "Health",
    "LatencySummary",
    "PerformanceReport",
    "Profile",
    "ProfilePage",
    "Token",
    "UsageDay",
    "UsageReport",
    "parse",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Health(_Model):
    """``GET /health``."""

    status: str
    version: str
    timestamp: str


class GenerateMetadata(_Model):
    """How a generation was produced."""

    tenant: str
    profile_name: str | None = None
    model: str
    tokens: int
    temperature: float
    max_length: int
    request_id: str
    created_at: str


class GenerateResult(_Model):
    """``POST /hr_generate``."""

    content: str
    hrv_vector: list[float] = Field(min_length=8, max_length=8)
    metadata: GenerateMetadata


class ErrorInfo(_Model):
    """The ``error`` object of an error body or of a failed batch item."""

    code: str
    message: str
    request_id: str | None = None
    details: list[Any] | None = None


class BatchItem(_Model):
    """One prompt's outcome in a batch."""

    index: int
    status: Literal["ok", "error"]
    result: GenerateResult | None = None
    error: ErrorInfo | None = None


class BatchResult(_Model):
    """``POST /hr_generate/batch``: one item per prompt, in order."""

    results: list[BatchItem]


class Profile(_Model):
    """An HRV profile."""

    tenant: str
    profile_name: str
    hrv_vector: list[float] = Field(min_length=8, max_length=8)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int
    created_at: str
    updated_at: str
    _etag: str | None = PrivateAttr(default=None)

    @property
    def etag(self) -> str | None:
        """The ``ETag`` the server sent with this profile (for ``if_match``), when known."""
        return self._etag


class ProfilePage(_Model):
    """``GET /profiles``: one page."""

    items: list[Profile]
    next_cursor: str | None = None
    has_more: bool = False


class DateRange(_Model):
    """The inclusive days a usage report covers."""

    start: str
    end: str


class UsageDay(_Model):
    """Requests on one day."""

    date: str
    requests: int


class UsageReport(_Model):
    """``GET /analytics/usage``: totals by endpoint, status and day."""

    tenant: str
    date_range: DateRange
    total: int
    by_endpoint: dict[str, int] = Field(default_factory=dict)
    by_status: dict[str, int] = Field(default_factory=dict)
    by_day: list[UsageDay] = Field(default_factory=list)


class LatencySummary(_Model):
    """Latency percentiles in milliseconds."""

    p50: float
    p95: float
    p99: float
    mean: float


class PerformanceReport(_Model):
    """``GET /analytics/performance``."""

    latency_ms: LatencySummary
    error_rate: float
    requests_per_second: float
    window: str
    requests: int | None = None
    metric_type: str | None = None


class Token(_Model):
    """``POST /oauth/token``."""

    access_token: str
    token_type: str
    expires_in: int


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], content: bytes, *, what: str = "") -> M:
    """``content`` (JSON bytes) validated as ``model``; anything else is :class:`ResponseInvalid`."""
    try:
        return model.model_validate_json(content)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ResponseInvalid(
            f"{what or model.__name__} response did not match {model.__name__}: {problems}"
        ) from exc
