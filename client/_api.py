"""``ResonanceClient``: typed methods over the ResonanceOS v6 API, on the resilient layer."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx
import requests
from pydantic import BaseModel

from ._auth import ApiKeyAuth, Auth, BasicAuth, BearerAuth, HmacAuth, OAuth2ClientCredentials
from ._exceptions import ApiError, ConfigError, ResponseInvalid, error_for_response, error_from_body
from ._limiter import RateLimitPolicy
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
from ._retry import RetryPolicy, parse_retry_after
from ._timeouts import Timeouts
from ._transport import Policies, ResilientAdapter, ResilientSession

__all__ = ["Analytics", "Profiles", "ResonanceClient"]

M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BATCH_LIMIT = 50
_KEYED = frozenset({"POST", "PATCH"})


class ResonanceClient:
    """The ResonanceOS v6 API as typed methods returning pydantic models.

    ``session`` may be a :class:`ResilientSession` (used as is), any other ``requests.Session``
    (a :class:`ResilientAdapter` is mounted on it for ``base_url``), an ``httpx.Client`` (whose
    transport should be a :class:`~client.ResilientTransport`), or ``None`` (a new
    :class:`ResilientSession` with ``policies`` and ``auth``). Error statuses raise the
    :class:`HttpError` subclass for the status; a body that does not match its model raises
    :class:`ResponseInvalid`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        auth: Auth | None = None,
        policies: Policies | None = None,
        session: requests.Session | httpx.Client | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if isinstance(auth, OAuth2ClientCredentials) and auth.token_url is None:
            auth.token_url = f"{self.base_url}/oauth/token"
        if isinstance(auth, HmacAuth) and isinstance(auth.inner, OAuth2ClientCredentials):
            if auth.inner.token_url is None:
                auth.inner.token_url = f"{self.base_url}/oauth/token"
        if session is None:
            session = ResilientSession(policies, auth=auth, metrics=metrics)
            self._metrics = session.metrics
        elif isinstance(session, ResilientSession):
            if auth is not None:
                session.pipeline.auth = auth
            self._metrics = session.metrics
        elif isinstance(session, httpx.Client):
            from ._httpx import ResilientTransport

            transport = getattr(session, "_transport", None)
            if isinstance(transport, ResilientTransport):
                if auth is not None:
                    transport.engine.auth = auth
                self._metrics = transport.metrics
            else:
                self._metrics = metrics or Metrics()
        else:
            adapter = ResilientAdapter(policies, auth=auth, metrics=metrics)
            session.mount(self.base_url + "/", adapter)
            self._metrics = adapter.pipeline.metrics
        # Typed as the requests session most callers hold; an httpx.Client offers the same
        # request(), headers and close() this class uses.
        self.session: requests.Session = cast(requests.Session, session)
        self.session.headers.setdefault("Accept", "application/json")
        self.profiles = Profiles(self)
        self.analytics = Analytics(self)

    # -- plumbing -----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one call; an error status raises its :class:`HttpError` subclass.

        A POST or PATCH without an ``Idempotency-Key`` gets one: the API honours keys, so the
        typed client opts in to retrying them (the generic layer does not, by default).
        """
        if method.upper() in _KEYED and not any(k.lower() == "idempotency-key" for k in headers or {}):
            headers = {**(headers or {}), "Idempotency-Key": str(uuid.uuid4())}
        response = self.session.request(
            method, self.base_url + path, params=params, json=json, headers=headers
        )
        if response.status_code >= 400:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            raise error_for_response(response, retry_after=retry_after)
        return response

    def _get(self, model: type[M], path: str, params: Mapping[str, Any] | None = None) -> M:
        return parse(model, self.request("GET", path, params=params).content, what=f"GET {path}")

    # -- endpoints ----------------------------------------------------------------------------
    def health(self) -> Health:
        """``GET /health``."""
        return self._get(Health, "/health")

    def generate(
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
        response = self.request("POST", "/hr_generate", json=body, headers=headers)
        return parse(GenerateResult, response.content, what="POST /hr_generate")

    def generate_batch(
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

        Prompts go in chunks of ``chunk_size`` (at most 50) to ``POST /hr_generate/batch``, at
        most ``concurrency`` chunks at a time. A failed item, or every item of a failed chunk,
        is an :class:`ApiError` in the returned list: one bad prompt never aborts the batch.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if not 1 <= chunk_size <= BATCH_LIMIT:
            raise ValueError(f"chunk_size must be within 1..{BATCH_LIMIT}, got {chunk_size}")
        prompts = list(prompts)
        options = _options(
            tenant=tenant, profile_name=profile_name, max_length=max_length, temperature=temperature
        )
        starts = list(range(0, len(prompts), chunk_size))
        results: list[GenerateResult | ApiError | None] = [None] * len(prompts)

        def run(start: int) -> None:
            chunk = prompts[start : start + chunk_size]
            try:
                response = self.request("POST", "/hr_generate/batch", json={"prompts": chunk, **options})
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
                    results[start + item.index] = error_from_body(info)
            for i in range(len(chunk)):
                if results[start + i] is None:
                    results[start + i] = ResponseInvalid(
                        f"batch response has no result for prompt {start + i}"
                    )

        if len(starts) <= 1 or concurrency == 1:
            for start in starts:
                run(start)
        else:
            with ThreadPoolExecutor(
                max_workers=min(concurrency, len(starts)), thread_name_prefix="batch"
            ) as pool:
                list(pool.map(run, starts))
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
        session: requests.Session | httpx.Client | None = None,
    ) -> ResonanceClient:
        """A client configured from ``RESONANCE_*`` variables (and a ``.env`` file, which never
        overrides a variable already set).

        ``RESONANCE_BASE_URL``; credentials: ``RESONANCE_API_KEY``, ``RESONANCE_BEARER_TOKEN``,
        ``RESONANCE_BASIC_USER`` + ``RESONANCE_BASIC_PASSWORD``, ``RESONANCE_CLIENT_ID`` +
        ``RESONANCE_CLIENT_SECRET`` (OAuth2), ``RESONANCE_SIGNING_SECRET`` (signs on top of any of
        them); ``RESONANCE_TIMEOUT`` (total seconds), ``RESONANCE_CONNECT_TIMEOUT``,
        ``RESONANCE_READ_TIMEOUT``, ``RESONANCE_RETRIES`` (retries after the first attempt),
        ``RESONANCE_RATE_LIMIT`` (requests a second, enables the client-side limiter),
        ``RESONANCE_CACHE`` (``true``/``false``). A bad value raises :class:`ConfigError`
        naming the variable.
        """
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
        return cls(base_url, auth=auth, policies=policies, session=session)

    def close(self) -> None:
        """Close the connection pools."""
        self.session.close()

    def __enter__(self) -> ResonanceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResonanceClient({self.base_url!r})"


class Profiles:
    """``/profiles``: list (every page), get, create, update, delete."""

    def __init__(self, client: ResonanceClient) -> None:
        self._client = client

    def pages(self, *, limit: int = 20) -> Iterator[ProfilePage]:
        """Every page, following ``next_cursor``."""
        params: dict[str, Any] = {"limit": limit}
        seen: set[str] = set()
        while True:
            page = self._client._get(ProfilePage, "/profiles", params)
            yield page
            cursor = page.next_cursor
            if not cursor or not page.has_more:
                return
            if cursor in seen:
                raise ResponseInvalid(f"GET /profiles returned cursor {cursor!r} twice")
            seen.add(cursor)
            params = {"limit": limit, "cursor": cursor}

    def list(self, *, limit: int = 20) -> Iterator[Profile]:
        """Every profile of the caller's tenant, by name, fetching ``limit`` per page."""
        for page in self.pages(limit=limit):
            yield from page.items

    def get(self, tenant: str, profile_name: str) -> Profile:
        """One profile; its ``etag`` is kept on the model for :meth:`update` and :meth:`delete`."""
        response = self._client.request("GET", _path(tenant, profile_name))
        return _with_etag(parse(Profile, response.content, what="GET /profiles/{tenant}/{name}"), response)

    def create(
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
        response = self._client.request("POST", "/profiles", json=body, headers=headers)
        return _with_etag(parse(Profile, response.content, what="POST /profiles"), response)

    def update(
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
        response = self._client.request("PUT", _path(tenant, profile_name), json=body, headers=headers)
        return _with_etag(parse(Profile, response.content, what="PUT /profiles/{tenant}/{name}"), response)

    def delete(self, tenant: str, profile_name: str, *, if_match: str | None = None) -> None:
        """``DELETE``; with ``if_match``, only that version (else 412)."""
        headers = {"If-Match": if_match} if if_match else None
        self._client.request("DELETE", _path(tenant, profile_name), headers=headers)


class Analytics:
    """``/analytics``: usage and performance, computed by the server from real traffic."""

    def __init__(self, client: ResonanceClient) -> None:
        self._client = client

    def usage(self, *, date_range: str = "7d") -> UsageReport:
        """Request totals by endpoint, status and day (``today``, ``7d``, ``30d`` or ``A..B``)."""
        return self._client._get(UsageReport, "/analytics/usage", {"date_range": date_range})

    def performance(self, *, metric_type: str = "all", timeframe: str = "5m") -> PerformanceReport:
        """Latency percentiles, error rate and throughput over ``timeframe`` (1m, 5m, 1h, 24h)."""
        return self._client._get(
            PerformanceReport, "/analytics/performance", {"metric_type": metric_type, "timeframe": timeframe}
        )


# -- helpers ------------------------------------------------------------------------------------


def _options(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _path(tenant: str, profile_name: str) -> str:
    return f"/profiles/{quote(tenant, safe='')}/{quote(profile_name, safe='')}"


def _with_etag(profile: Profile, response: requests.Response) -> Profile:
    profile._etag = response.headers.get("ETag")
    return profile


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (``export``, comments and quotes allowed)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[name] = value
    return out


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be positive and finite, got {raw!r}")
    return value


def _auth_from_env(env: Mapping[str, str]) -> Auth | None:
    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value else None

    auth: Auth | None = None
    client_id, client_secret = get("RESONANCE_CLIENT_ID"), get("RESONANCE_CLIENT_SECRET")
    user, password = get("RESONANCE_BASIC_USER"), get("RESONANCE_BASIC_PASSWORD")
    if (client_id is None) != (client_secret is None):
        missing = "RESONANCE_CLIENT_SECRET" if client_secret is None else "RESONANCE_CLIENT_ID"
        raise ConfigError(f"{missing} must be set together with its pair")
    if (user is None) != (password is None):
        missing = "RESONANCE_BASIC_PASSWORD" if password is None else "RESONANCE_BASIC_USER"
        raise ConfigError(f"{missing} must be set together with its pair")
    if get("RESONANCE_API_KEY"):
        auth = ApiKeyAuth(env["RESONANCE_API_KEY"])
    elif get("RESONANCE_BEARER_TOKEN"):
        auth = BearerAuth(env["RESONANCE_BEARER_TOKEN"])
    elif client_id is not None and client_secret is not None:
        auth = OAuth2ClientCredentials(client_id, client_secret)
    elif user is not None and password is not None:
        auth = BasicAuth(user, password)
    secret = get("RESONANCE_SIGNING_SECRET")
    if secret is not None:
        auth = HmacAuth(secret, inner=auth)
    return auth


def _policies_from_env(env: Mapping[str, str]) -> Policies:
    total = _float(env, "RESONANCE_TIMEOUT")
    connect = _float(env, "RESONANCE_CONNECT_TIMEOUT")
    read = _float(env, "RESONANCE_READ_TIMEOUT")
    timeouts = Timeouts(
        connect=connect or 3.05,
        read=read or (min(10.0, total) if total else 10.0),
        total=total if total is not None else 30.0,
    )
    retry: RetryPolicy | None = RetryPolicy()
    raw = env.get("RESONANCE_RETRIES")
    if raw:
        if not raw.strip().isdigit():
            raise ConfigError(f"RESONANCE_RETRIES must be a whole number >= 0, got {raw!r}")
        retry = RetryPolicy(attempts=int(raw) + 1)
    limiter = None
    rate = _float(env, "RESONANCE_RATE_LIMIT")
    if rate is not None:
        limiter = RateLimitPolicy(rate=rate, burst=max(1, int(rate)))
    cache_flag = env.get("RESONANCE_CACHE", "true").strip().lower()
    if cache_flag not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"RESONANCE_CACHE must be true or false, got {cache_flag!r}")
    defaults = Policies()
    return Policies(
        retry=retry,
        breaker=defaults.breaker,
        limiter=limiter,
        cache=defaults.cache if cache_flag in ("1", "true", "yes", "on") else None,
        timeouts=timeouts,
    )
