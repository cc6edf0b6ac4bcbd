"""The resilient layer: every policy around one logical call, for any base URL.

Order per call: cache (a fresh hit returns here) -> per attempt: breaker -> rate limiter ->
auth -> send with timeouts -> classify -> retry decision and sleep. One ``X-Request-ID`` and,
for POST, one ``Idempotency-Key`` per logical call; the prepared body is built once, so every
attempt sends the same bytes.

Two ways in, one engine (:class:`Pipeline`):

- :class:`ResilientSession`, a ``requests.Session`` whose ``request()`` runs the policies; it
  answers a fresh cache hit before ``requests`` even prepares the request.
- :class:`ResilientAdapter`, an ``HTTPAdapter`` to mount on an existing session.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from ._auth import Auth
from ._breaker import BreakerPolicy, BreakerRegistry
from ._cache import (
    CacheKey,
    CachePolicy,
    Entry,
    HttpCache,
    credential_digest,
    parse_cache_control,
    secret_free_url,
)
from ._clock import Clock, Sleep
from ._exceptions import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    HttpError,
    RateLimited,
    RetriesExhausted,
    TransportError,
    error_for_response,
    map_exception,
)
from ._limiter import LimiterRegistry, RateLimitPolicy
from ._metrics import Metrics
from ._redaction import redact_url
from ._retry import BudgetTracker, RetryPolicy, RetryState, parse_retry_after
from ._timeouts import Deadline, Timeouts

__all__ = [
    "CallInfo",
    "Pipeline",
    "Policies",
    "ResilientAdapter",
    "ResilientSession",
    "call_info",
    "host_key",
]

logger = logging.getLogger("client")

SendFn = Callable[[requests.PreparedRequest, tuple[float, float] | float | None], requests.Response]

_LOWER_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_host_keys: dict[str, str] = {}


def host_key(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, default port filled in (memoised)."""
    scheme_end = url.find("://")
    end = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    prefix = url if end < 0 else url[:end]
    key = _host_keys.get(prefix)
    if key is None:
        scheme = prefix[:scheme_end].lower() if scheme_end >= 0 else "http"
        netloc = prefix[scheme_end + 3 :] if scheme_end >= 0 else prefix
        netloc = netloc.rsplit("@", 1)[-1].split("?", 1)[0].split("#", 1)[0].lower()
        if not netloc.endswith("]") and ":" in netloc.rsplit("]", 1)[-1]:
            key = f"{scheme}://{netloc}"
        else:
            key = f"{scheme}://{netloc}:{_DEFAULT_PORTS.get(scheme, '')}"
        if len(_host_keys) < 4096:
            _host_keys[prefix] = key
    return key


def _default_retry() -> RetryPolicy | None:
    return RetryPolicy()


def _default_breaker() -> BreakerPolicy | None:
    return BreakerPolicy()


def _default_cache() -> CachePolicy | None:
    return CachePolicy()


@dataclass(frozen=True, kw_only=True, slots=True)
class Policies:
    """Every policy of the resilient layer; ``None`` turns one off.

    Defaults: retries (:class:`RetryPolicy`), a circuit breaker per host
    (:class:`BreakerPolicy`), a private cache (:class:`CachePolicy`), :class:`Timeouts`; no
    client-side rate limiter (``limiter``), since only the caller knows its quota. Connection
    pools: ``pool_connections`` hosts, ``pool_maxsize`` connections each (10 and 10).
    """

    retry: RetryPolicy | None = field(default_factory=_default_retry)
    breaker: BreakerPolicy | None = field(default_factory=_default_breaker)
    limiter: RateLimitPolicy | None = None
    cache: CachePolicy | None = field(default_factory=_default_cache)
    timeouts: Timeouts = field(default_factory=Timeouts)
    pool_connections: int = 10
    pool_maxsize: int = 10

    @classmethod
    def off(cls, *, timeouts: Timeouts | None = None) -> Policies:
        """No retry, breaker, limiter or cache: only timeouts."""
        return cls(retry=None, breaker=None, limiter=None, cache=None, timeouts=timeouts or Timeouts())

    def with_time(self, *, clock: Clock, wall_clock: Clock, sleep: Sleep) -> Policies:
        """A copy whose every policy uses the given clocks and sleep (tests pass a ``FakeClock``)."""
        changes: dict[str, Any] = {"timeouts": dataclasses.replace(self.timeouts, clock=clock)}
        if self.retry is not None:
            changes["retry"] = dataclasses.replace(
                self.retry, clock=clock, wall_clock=wall_clock, sleep=sleep
            )
        if self.breaker is not None:
            changes["breaker"] = dataclasses.replace(self.breaker, clock=clock)
        if self.limiter is not None:
            changes["limiter"] = dataclasses.replace(
                self.limiter, clock=clock, wall_clock=wall_clock, sleep=sleep
            )
        if self.cache is not None:
            changes["cache"] = dataclasses.replace(self.cache, clock=clock, wall_clock=wall_clock)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What happened during one logical call (see :func:`call_info`)."""

    attempts: int
    request_id: str | None
    cache: str | None
    rate_limit_wait: float
    idle_for: float


def call_info(response: requests.Response) -> CallInfo | None:
    """The :class:`CallInfo` the resilient layer attached to ``response``, if any."""
    info = response.__dict__.get("resilience")
    return info if isinstance(info, CallInfo) else None


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r


class Pipeline:
    """The runtime of a :class:`Policies`: shared state and the per-call algorithm."""

    def __init__(
        self, policies: Policies, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        self.policies = policies
        self.auth = auth
        self.metrics = metrics or Metrics(read_timeout=policies.timeouts.read)
        self.clock = policies.timeouts.clock
        retry = policies.retry
        self.retry = retry
        self.rng = (retry.rng if retry is not None and retry.rng is not None else None) or random.Random()
        self.budget = (
            BudgetTracker(retry.budget, retry.clock)
            if retry is not None and retry.budget is not None
            else None
        )
        self.breakers = (
            BreakerRegistry(policies.breaker, extra_listeners=(self.metrics.breaker_listener,))
            if policies.breaker is not None
            else None
        )
        self.limiters = LimiterRegistry(policies.limiter) if policies.limiter is not None else None
        self.cache = HttpCache(policies.cache) if policies.cache is not None else None
        self._cache_methods = policies.cache.methods if policies.cache is not None else frozenset()

    # -- cache keys ----------------------------------------------------------------------------
    def fast_key(
        self,
        method: str,
        url: str,
        params: Any,
        headers: Mapping[str, Any] | None,
        session_headers: Mapping[str, Any],
        auth: Any,
    ) -> CacheKey | None:
        """A cache key from ``Session.request`` arguments, or ``None`` when they are too unusual."""
        if params:
            if not isinstance(params, Mapping):
                return None
            items = []
            for k, v in params.items():
                if not isinstance(v, str | int | float) or isinstance(v, bool):
                    return None
                items.append(f"{k}={v}")
            query = secret_free_url("?" + "&".join(sorted(items)))
        else:
            query = ""
        if "?" in url:
            url = secret_free_url(url)
        authz = api_key = None
        if headers:
            authz = headers.get("Authorization")
            api_key = headers.get("X-API-Key")
        if authz is None:
            authz = session_headers.get("Authorization")
        if api_key is None:
            api_key = session_headers.get("X-API-Key")
        return (method, url, query, self._credential(auth, authz, api_key))

    def prep_key(self, prep: requests.PreparedRequest, auth: Any) -> CacheKey:
        """A cache key from a prepared request."""
        headers = prep.headers
        return (
            prep.method,
            secret_free_url(prep.url or ""),
            "",
            self._credential(auth, headers.get("Authorization"), headers.get("X-API-Key")),
        )

    @staticmethod
    def _credential(auth: Any, authz: str | None, api_key: str | None) -> str:
        identity = getattr(auth, "identity", None)
        if identity is None and auth is not None and auth is not _no_auth:
            identity = (
                credential_digest(*auth) if isinstance(auth, tuple) else f"{type(auth).__name__}@{id(auth)}"
            )
        if authz is None and api_key is None:
            return identity or ""
        return credential_digest(identity, authz, api_key)

    def fresh_hit(self, key: CacheKey, header: Callable[[str], str | None]) -> requests.Response | None:
        """A copy of a fresh entry for ``key``, or ``None``: the hot path."""
        assert self.cache is not None
        entry = self.cache.get(key)
        if entry is None or entry.expires_at <= self.clock():
            return None
        if entry.vary and not entry.vary_matches(header):
            return None
        self.metrics.record_hit()
        return entry.copy("hit")

    # -- the call ------------------------------------------------------------------------------
    def execute(
        self,
        prep: requests.PreparedRequest,
        send: SendFn,
        *,
        auth: Auth | None = None,
        cache_key: CacheKey | None = None,
        timeout: tuple[float, float] | float | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Run one logical call through every policy; see the module docstring."""
        started = self.clock()
        auth = auth or self.auth
        method = (prep.method or "GET").upper()
        url = prep.url or ""
        headers = prep.headers
        retry = self.retry
        request_id: str | None = None
        if retry is not None:
            if retry.request_id_header:
                request_id = headers.get(retry.request_id_header)
                if request_id is None:
                    request_id = headers[retry.request_id_header] = str(uuid.uuid4())
            if method in retry.idempotency_methods and retry.idempotency_header not in headers:
                headers[retry.idempotency_header] = str(uuid.uuid4())

        cache = self.cache
        entry: Entry | None = None
        key: CacheKey | None = None
        if cache is not None:
            if method in self._cache_methods and not stream:
                request_cc = (
                    parse_cache_control(headers.get("Cache-Control")) if "Cache-Control" in headers else {}
                )
                if (
                    "If-None-Match" not in headers
                    and "If-Modified-Since" not in headers
                    and "no-store" not in request_cc
                ):
                    key = cache_key or self.prep_key(prep, auth)
                    entry = cache.get(key)
                    if entry is not None and entry.vary and not entry.vary_matches(headers.get):
                        entry = None
                    if entry is not None:
                        if (
                            entry.expires_at > self.clock()
                            and "no-cache" not in request_cc
                            and (request_cc.get("max-age") != "0")
                        ):
                            self.metrics.record_hit()
                            return entry.copy("hit")
                        if entry.etag:
                            headers["If-None-Match"] = entry.etag
                        if entry.last_modified:
                            headers["If-Modified-Since"] = entry.last_modified
            elif method in _UNSAFE:
                cache.invalidate_url(url)

        host = host_key(url)
        deadline = self.policies.timeouts.deadline()
        body = prep.body
        state = RetryState(
            method,
            url,
            retryable_method=retry.is_retryable_method(method, retry.idempotency_header in headers)
            if retry is not None
            else False,
            replayable=body is None or isinstance(body, bytes | str),
        )
        if self.budget is not None:
            self.budget.record_request()
        if auth is not None:
            auth.apply(prep)
        reauthenticated = False
        waited = 0.0
        response: requests.Response | None = None
        while True:
            state.attempt += 1
            error: ApiError | None = None
            try:
                if state.attempt > 1 and auth is not None:
                    auth.reapply(prep)
                sent_at = self.clock()
                response, wait = self._attempt(prep, send, host, deadline, timeout)
                waited += wait
            except ApiError as exc:
                error = exc
                response = None
            if response is not None:
                status = response.status_code
                if (
                    status == 401
                    and auth is not None
                    and not reauthenticated
                    and auth.on_unauthorized(response)
                ):
                    reauthenticated = True
                    self.metrics.incr("auth_refreshes")
                    response.close()
                    continue
                if retry is None or status not in retry.statuses:
                    return self._finish(
                        prep, response, key, entry, sent_at, started, state, request_id, waited
                    )
                error = error_for_response(
                    response,
                    retry_after=parse_retry_after(
                        response.headers.get("Retry-After"), now=retry.wall_clock()
                    ),
                )
            assert error is not None
            if (
                retry is None
                or isinstance(error, CircuitOpen | DeadlineExceeded)
                or (isinstance(error, RateLimited) and error.status == 0)
            ):
                return self._fail(error, response, entry, started, state, request_id, waited)
            try:
                delay = retry.next_sleep(state, error, deadline=deadline, rng=self.rng, budget=self.budget)
            except ApiError as final:
                if isinstance(final, RetriesExhausted) and "budget" in final.message:
                    self.metrics.incr("budget_refusals")
                return self._fail(final, None, entry, started, state, request_id, waited)
            if delay is None:
                return self._fail(error, response, entry, started, state, request_id, waited)
            if response is not None:
                response.close()
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "retrying %s %s in %.3f s after attempt %d: %s",
                    method,
                    redact_url(url),
                    delay,
                    state.attempt,
                    type(error).__name__,
                )
            if delay > 0:
                retry.sleep(delay)
            state.idle_for += delay

    def _attempt(
        self,
        prep: requests.PreparedRequest,
        send: SendFn,
        host: str,
        deadline: Deadline,
        timeout: tuple[float, float] | float | None,
    ) -> tuple[requests.Response, float]:
        breaker = self.breakers.get(host) if self.breakers is not None else None
        ticket = breaker.acquire() if breaker is not None else None
        try:
            waited = 0.0
            if self.limiters is not None:
                waited = self.limiters.get(host).acquire(deadline)
                if waited:
                    self.metrics.record_wait(waited)
            if timeout is None:
                attempt_timeout: tuple[float, float] | float | None = self.policies.timeouts.for_attempt(
                    deadline
                )
            else:
                left = deadline.remaining()
                if left <= 0:
                    raise DeadlineExceeded("the total deadline ran out before the next attempt")
                if isinstance(timeout, tuple):
                    attempt_timeout = (min(timeout[0], left), min(timeout[1], left))
                else:
                    attempt_timeout = min(timeout, left)
            try:
                response = send(prep, attempt_timeout)
            except _LOWER_ERRORS as exc:
                if isinstance(exc, ApiError):
                    raise
                raise map_exception(exc, method=prep.method or "", url=prep.url or "") from exc
        except TransportError:
            if breaker is not None and ticket is not None:
                breaker.record(ticket, failure=breaker.policy.is_failure(None))
            raise
        except BaseException:
            # Whatever else happened (deadline, limiter, interrupt), the permit must come back.
            if breaker is not None and ticket is not None:
                breaker.release(ticket)
            raise
        status = response.status_code
        if breaker is not None and ticket is not None:
            breaker.record(ticket, failure=breaker.policy.is_failure(status))
        if self.limiters is not None:
            self.limiters.get(host).observe(status, response.headers)
        if status == 429:
            self.metrics.record_status(429)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %d", prep.method, redact_url(prep.url or ""), status)
        return response, waited

    def _finish(
        self,
        prep: requests.PreparedRequest,
        response: requests.Response,
        key: CacheKey | None,
        entry: Entry | None,
        sent_at: float,
        started: float,
        state: RetryState,
        request_id: str | None,
        waited: float,
    ) -> requests.Response:
        cache = self.cache
        cache_status: str | None = None
        status = response.status_code
        if cache is not None:
            if key is not None:
                if status == 304 and entry is not None:
                    cache.refresh(key, entry, response, sent_at)
                    self.metrics.incr("cache_revalidations")
                    response.close()
                    response = entry.copy("revalidated")
                    cache_status = "revalidated"
                else:
                    self.metrics.incr("cache_misses")
                    cache_status = "miss"
                    if response._content_consumed and isinstance(response._content, bytes):  # type: ignore[attr-defined]
                        cache.store(
                            key,
                            response,
                            index_url=prep.url or "",
                            request_headers=prep.headers,
                            sent_at=sent_at,
                        )
            elif state.method in _UNSAFE:
                cache.invalidate_url(prep.url or "")
                if status < 400:
                    for name in ("Location", "Content-Location"):
                        target = response.headers.get(name)
                        if target:
                            cache.invalidate_url(target, base=prep.url)
        self.metrics.record_call(
            latency=self.clock() - started, attempts=state.attempt, status=status, error=None
        )
        response.__dict__["resilience"] = CallInfo(
            state.attempt, request_id, cache_status, waited, state.idle_for
        )
        return response

    def _fail(
        self,
        error: ApiError,
        response: requests.Response | None,
        entry: Entry | None,
        started: float,
        state: RetryState,
        request_id: str | None,
        waited: float,
    ) -> requests.Response:
        """End a call that did not succeed: stale-if-error, a returned response, or a raise."""
        cache = self.cache
        if entry is not None and cache is not None and cache.usable_on_error(entry):
            if isinstance(error, TransportError | CircuitOpen | DeadlineExceeded | RetriesExhausted) or (
                isinstance(error, HttpError) and error.status >= 500
            ):
                if response is not None:
                    response.close()
                self.metrics.incr("cache_stale_served")
                stale = entry.copy("stale")
                self.metrics.record_call(
                    latency=self.clock() - started, attempts=state.attempt, status=200, error=None
                )
                stale.__dict__["resilience"] = CallInfo(
                    state.attempt, request_id, "stale", waited, state.idle_for
                )
                return stale
        if isinstance(error, CircuitOpen):
            self.metrics.incr("breaker_rejections")
        if response is not None and isinstance(error, HttpError) and error.response is response:
            # Not retryable (or not any more, by configuration): hand the response back like requests.
            self.metrics.record_call(
                latency=self.clock() - started,
                attempts=state.attempt,
                status=response.status_code,
                error=None,
            )
            response.__dict__["resilience"] = CallInfo(
                state.attempt, request_id, None, waited, state.idle_for
            )
            return response
        self.metrics.record_call(
            latency=self.clock() - started,
            attempts=state.attempt,
            status=getattr(error, "status", None) or None,
            error=type(error).__name__,
        )
        raise error


class ResilientSession(requests.Session):
    """A ``requests.Session`` whose every request runs through :class:`Policies`.

    Drop it in wherever code takes a session. Errors are the client's (see ``_exceptions``),
    each also an instance of the matching ``requests`` exception. A response with an error
    status is returned, as ``requests`` does, unless retrying it ran out of attempts or time.
    """

    def __init__(
        self, policies: Policies | None = None, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        super().__init__()
        self.policies = policies or Policies()
        self.pipeline = Pipeline(self.policies, auth=auth, metrics=metrics)
        adapter = HTTPAdapter(
            pool_connections=self.policies.pool_connections,
            pool_maxsize=self.policies.pool_maxsize,
            max_retries=0,
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    @property
    def metrics(self) -> Metrics:
        """The counters of every call made through this session."""
        return self.pipeline.metrics

    def request(  # type: ignore[override]
        self,
        method: str | bytes,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        pipe = self.pipeline
        method = method.decode() if isinstance(method, bytes) else method.upper()
        call_auth: Auth | None = None
        if isinstance(auth, Auth):
            call_auth, auth = auth, _no_auth
        elif auth is None and isinstance(self.auth, Auth):
            call_auth, auth = self.auth, _no_auth
        elif auth is None and pipe.auth is not None:
            call_auth, auth = pipe.auth, _no_auth
        key: CacheKey | None = None
        if (
            pipe.cache is not None
            and method in pipe._cache_methods
            and data is None
            and json is None
            and files is None
            and not stream
            and isinstance(url, str)
        ):
            call_headers = None if not headers else CaseInsensitiveDict(headers)
            session_headers = self.headers
            if call_headers is None or (
                "If-None-Match" not in call_headers
                and "If-Modified-Since" not in call_headers
                and "Cache-Control" not in call_headers
            ):
                if "Cache-Control" not in session_headers:
                    key = pipe.fast_key(method, url, params, call_headers, session_headers, call_auth or auth)
                if key is not None:

                    def header(name: str) -> str | None:
                        if call_headers is not None and name in call_headers:
                            return str(call_headers[name])
                        value = session_headers.get(name)
                        return None if value is None else str(value)

                    hit = pipe.fresh_hit(key, header)
                    if hit is not None:
                        return hit
        req = requests.Request(
            method=method,
            url=url,
            headers=headers,
            files=files,
            data=data or {},
            json=json,
            params=params or {},
            auth=auth,
            cookies=cookies,
            hooks=hooks,
        )
        prep = self.prepare_request(req)
        settings = self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)

        def send(p: requests.PreparedRequest, t: tuple[float, float] | float | None) -> requests.Response:
            return requests.Session.send(self, p, timeout=t, allow_redirects=allow_redirects, **settings)

        return pipe.execute(
            prep, send, auth=call_auth, cache_key=key, timeout=timeout, stream=bool(settings["stream"])
        )


class ResilientAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` running :class:`Policies`; mount it on any existing session.

    Each redirect hop is its own call here (the session follows redirects above the adapter).
    """

    def __init__(
        self, policies: Policies | None = None, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        self.policies = policies or Policies()
        self.pipeline = Pipeline(self.policies, auth=auth, metrics=metrics)
        super().__init__(
            pool_connections=self.policies.pool_connections,
            pool_maxsize=self.policies.pool_maxsize,
            max_retries=0,
        )

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        def send(p: requests.PreparedRequest, t: tuple[float, float] | float | None) -> requests.Response:
            response = HTTPAdapter.send(
                self, p, stream=stream, timeout=t, verify=verify, cert=cert, proxies=proxies
            )
            if not stream:
                response.content  # noqa: B018 -- read now, so a broken body is this attempt's error
            return response

        return self.pipeline.execute(request, send, timeout=timeout, stream=stream)
