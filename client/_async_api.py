"""``AsyncResonanceClient``: the typed methods of ``ResonanceClient`` as coroutines, on httpx.

::

    async with AsyncResonanceClient("http://127.0.0.1:8000", auth=ApiKeyAuth("demo-key")) as api:
        health = await api.health()
        async for profile in api.profiles.list():
            ...
        results = await api.generate_batch(prompts, concurrency=4)

Built on ``httpx.AsyncClient`` with an :class:`~client.AsyncResilientTransport`, so every call
runs through the same engine (retry, breaker, limiter, cache, deadline) as the sync client, and
raises the same errors.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ._api import (
    _KEYED,
    BATCH_LIMIT,
    DEFAULT_BASE_URL,
    _auth_from_env,
    _options,
    _path,
    _policies_from_env,
    read_dotenv,
)
from ._auth import Auth, HmacAuth, OAuth2ClientCredentials
from ._errors import ApiError, ConfigError, ResponseInvalid, error_for_status, error_from_body
from ._exceptions import public
from ._httpx import AsyncResilientTransport
from ._metrics import Metrics, MetricsSnapshot
from ._models import (
    BatchResult,
    GenerateResult,
    Health,
    PerformanceReport,
    Profile,
    ProfilePage,
    UsageReport,
    parse,
)
from ._policies import Policies
from ._retry import parse_retry_after

__all__ = ["AsyncAnalytics", "AsyncProfiles", "AsyncResonanceClient"]

M = TypeVar("M", bound=BaseModel)


class AsyncResonanceClient:
    """The ResonanceOS v6 API as coroutines returning pydantic models.

    ``client`` may be an ``httpx.AsyncClient`` you configured (its transport should be an
    :class:`~client.AsyncResilientTransport` for the policies to apply), or ``None`` (a new one
    with ``policies``, ``auth`` and ``metrics``). Error statuses raise the :class:`HttpError`
    subclass for the status; a body that does not match its model raises
    :class:`ResponseInvalid`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        auth: Auth | None = None,
        policies: Policies | None = None,
        client: httpx.AsyncClient | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        for candidate in (auth, getattr(auth, "inner", None)):
            if isinstance(candidate, OAuth2ClientCredentials) and candidate.token_url is None:
                candidate.token_url = f"{self.base_url}/oauth/token"
        if client is None:
            self.transport: AsyncResilientTransport | None = AsyncResilientTransport(
                policies, auth=auth, metrics=metrics
            )
            client = httpx.AsyncClient(transport=self.transport, headers={"Accept": "application/json"})
        else:
            transport = getattr(client, "_transport", None)
            self.transport = transport if isinstance(transport, AsyncResilientTransport) else None
            if self.transport is not None and auth is not None:
                self.transport.engine.auth = auth
        self.client = client
        self._metrics = self.transport.metrics if self.transport is not None else (metrics or Metrics())
        self.profiles = AsyncProfiles(self)
        self.analytics = AsyncAnalytics(self)

    # -- plumbing -----------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one call; an error status raises its :class:`HttpError` subclass.

        A POST or PATCH without an ``Idempotency-Key`` gets one (the API honours keys).
        """
        if method.upper() in _KEYED and not any(k.lower() == "idempotency-key" for k in headers or {}):
            headers = {**(headers or {}), "Idempotency-Key": str(uuid.uuid4())}
        response = await self.client.request(
            method, self.base_url + path, params=dict(params) if params else None, json=json, headers=headers
        )
        if response.status_code >= 400:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=_wall())
            raise public(
                error_for_status(
                    response.status_code,
                    response.headers,
                    response.content,
                    response=response,
                    retry_after=retry_after,
                )
            )
        return response

    async def _get(self, model: type[M], path: str, params: Mapping[str, Any] | None = None) -> M:
        response = await self.request("GET", path, params=params)
        return parse(model, response.content, what=f"GET {path}")

    # -- endpoints ----------------------------------------------------------------------------
    async def health(self) -> Health:
        """``GET /health``."""
        return await self._get(Health, "/health")

    async def generate(
        self,
        prompt: str,
        *,
        tenant: str | None = None,
        profile_name: str | None = None,
        max_length: int | None = None,
        temperature: float | None = None,
        idempotency_key: str | None = None,
    ) -> GenerateResult:
        """``POST /hr_generate``; safe to retry (an ``Idempotency-Key`` is always sent)."""
        body = _options(
            prompt=prompt,
            tenant=tenant,
            profile_name=profile_name,
            max_length=max_length,
            temperature=temperature,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self.request("POST", "/hr_generate", json=body, headers=headers)
        return parse(GenerateResult, response.content, what="POST /hr_generate")

    async def generate_batch(
        self,
        prompts: Sequence[str],
        *,
        concurrency: int = 4,
        chunk_size: int = BATCH_LIMIT,
        tenant: str | None = None,
        profile_name: str | None = None,
        max_length: int | None = None,
        temperature: float | None = None,
    ) -> list[GenerateResult | ApiError]:
        """Generate for every prompt: one result or error per prompt, in input order.

        Chunks of ``chunk_size`` (at most 50) go to ``POST /hr_generate/batch``, at most
        ``concurrency`` at a time (a semaphore, not a thread pool). A failed item, or every item
        of a failed chunk, is an :class:`ApiError` in the returned list.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if not 1 <= chunk_size <= BATCH_LIMIT:
            raise ValueError(f"chunk_size must be within 1..{BATCH_LIMIT}, got {chunk_size}")
        prompts = list(prompts)
        options = _options(
            tenant=tenant, profile_name=profile_name, max_length=max_length, temperature=temperature
        )
        results: list[GenerateResult | ApiError | None] = [None] * len(prompts)
        gate = asyncio.Semaphore(concurrency)

        async def run(start: int) -> None:
            chunk = prompts[start : start + chunk_size]
            async with gate:
                try:
                    response = await self.request(
                        "POST", "/hr_generate/batch", json={"prompts": chunk, **options}
                    )
                    batch = parse(BatchResult, response.content, what="POST /hr_generate/batch")
                except ApiError as exc:
                    for i in range(len(chunk)):
                        results[start + i] = exc
                    return
            for item in batch.results:
                if not 0 <= item.index < len(chunk):
                    continue
                if item.status == "ok" and item.result is not None:
                    results[start + item.index] = item.result
                else:
                    info = item.error.model_dump() if item.error is not None else {"code": "internal_error"}
                    error = public(error_from_body(info))
                    assert isinstance(error, ApiError)
                    results[start + item.index] = error
            for i in range(len(chunk)):
                if results[start + i] is None:
                    results[start + i] = ResponseInvalid(
                        f"batch response has no result for prompt {start + i}"
                    )

        await asyncio.gather(*(run(start) for start in range(0, len(prompts), chunk_size)))
        return [r if r is not None else ResponseInvalid("missing result") for r in results]

    def metrics(self) -> MetricsSnapshot:
        """The client-side counters (requests, attempts, retries, cache, breaker, latency)."""
        return self._metrics.snapshot()

    def advice(self) -> list[str]:
        """What to tune, from the client-side counters."""
        return self._metrics.advice()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_env(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        dotenv: str | os.PathLike[str] | None = ".env",
        policies: Policies | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> AsyncResonanceClient:
        """A client configured from ``RESONANCE_*`` variables, as ``ResonanceClient.from_env``."""
        env: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            env.update(read_dotenv(Path(dotenv)))
        env.update(os.environ if environ is None else environ)
        base_url = env.get("RESONANCE_BASE_URL", DEFAULT_BASE_URL).strip()
        if not base_url.startswith(("http://", "https://")) or len(base_url) <= len("https://"):
            raise ConfigError(f"RESONANCE_BASE_URL must be an http(s) URL, got {base_url!r}")
        auth = _auth_from_env(env)
        if policies is None:
            policies = _policies_from_env(env)
        return cls(base_url, auth=auth, policies=policies, client=client)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def __aenter__(self) -> AsyncResonanceClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncResonanceClient({self.base_url!r})"


def _wall() -> float:
    import time

    return time.time()


def _with_etag(profile: Profile, response: httpx.Response) -> Profile:
    profile._etag = response.headers.get("ETag")
    return profile


class AsyncProfiles:
    """``/profiles``: list (an async iterator over every page), get, create, update, delete."""

    def __init__(self, client: AsyncResonanceClient) -> None:
        self._client = client

    async def pages(self, *, limit: int = 20) -> AsyncIterator[ProfilePage]:
        """Every page, following ``next_cursor``."""
        params: dict[str, Any] = {"limit": limit}
        seen: set[str] = set()
        while True:
            page = await self._client._get(ProfilePage, "/profiles", params)
            yield page
            cursor = page.next_cursor
            if not cursor or not page.has_more:
                return
            if cursor in seen:
                raise ResponseInvalid(f"GET /profiles returned cursor {cursor!r} twice")
            seen.add(cursor)
            params = {"limit": limit, "cursor": cursor}

    async def list(self, *, limit: int = 20) -> AsyncIterator[Profile]:
        """Every profile of the caller's tenant, by name: ``async for p in api.profiles.list()``."""
        async for page in self.pages(limit=limit):
            for profile in page.items:
                yield profile

    async def get(self, tenant: str, profile_name: str) -> Profile:
        """One profile; its ``etag`` is kept on the model for :meth:`update` and :meth:`delete`."""
        response = await self._client.request("GET", _path(tenant, profile_name))
        return _with_etag(parse(Profile, response.content, what="GET /profiles/{tenant}/{name}"), response)

    async def create(
        self,
        tenant: str,
        profile_name: str,
        hrv_vector: Sequence[float],
        metadata: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Profile:
        """``POST /profiles``; retried safely under one ``Idempotency-Key``. 409 if it exists."""
        body: dict[str, Any] = {
            "tenant": tenant,
            "profile_name": profile_name,
            "hrv_vector": list(hrv_vector),
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = await self._client.request("POST", "/profiles", json=body, headers=headers)
        return _with_etag(parse(Profile, response.content, what="POST /profiles"), response)

    async def update(
        self,
        tenant: str,
        profile_name: str,
        hrv_vector: Sequence[float],
        metadata: Mapping[str, Any] | None = None,
        *,
        if_match: str | None = None,
    ) -> Profile:
        """``PUT``: replace the vector (and metadata); with ``if_match``, only that version (else 412)."""
        body: dict[str, Any] = {"hrv_vector": list(hrv_vector)}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        headers = {"If-Match": if_match} if if_match else None
        response = await self._client.request("PUT", _path(tenant, profile_name), json=body, headers=headers)
        return _with_etag(parse(Profile, response.content, what="PUT /profiles/{tenant}/{name}"), response)

    async def delete(self, tenant: str, profile_name: str, *, if_match: str | None = None) -> None:
        """``DELETE``; with ``if_match``, only that version (else 412)."""
        headers = {"If-Match": if_match} if if_match else None
        await self._client.request("DELETE", _path(tenant, profile_name), headers=headers)


class AsyncAnalytics:
    """``/analytics``: usage and performance, computed by the server from real traffic."""

    def __init__(self, client: AsyncResonanceClient) -> None:
        self._client = client

    async def usage(self, *, date_range: str = "7d") -> UsageReport:
        """Request totals by endpoint, status and day (``today``, ``7d``, ``30d`` or ``A..B``)."""
        return await self._client._get(UsageReport, "/analytics/usage", {"date_range": date_range})

    async def performance(self, *, metric_type: str = "all", timeframe: str = "5m") -> PerformanceReport:
        """Latency percentiles, error rate and throughput over ``timeframe`` (1m, 5m, 1h, 24h)."""
        return await self._client._get(
            PerformanceReport, "/analytics/performance", {"metric_type": metric_type, "timeframe": timeframe}
        )


_ = HmacAuth  # the auth classes AsyncResonanceClient accepts are ResonanceClient's
