"""The locust users: the reference client with its policies, and a naive plain-requests baseline.

Each logical call fires exactly one request event: ``response_time`` covers the whole call
(every attempt, backoff and rate-limit wait), ``exception`` is set only when the call finally
failed, and ``context`` carries what happened inside it (attempts sent, the status of each
attempt by class, cache outcome, breaker state, rate-limit wait). Neither user is an
``HttpUser``, so no attempt is counted twice.

Both kinds run the same task mix (from the scenario) at the same pacing and send their own
``X-Mock-Session``, so the fake's journal and ``/__admin/compliance`` can tell them apart.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
from locust import User, constant_throughput, task
from requests.adapters import HTTPAdapter

from client import (
    ApiError,
    ApiKeyAuth,
    BreakerPolicy,
    BreakerTransition,
    CachePolicy,
    HttpError,
    Policies,
    RateLimitPolicy,
    ResilientSession,
    ResonanceClient,
    RetriesExhausted,
    RetryBudget,
    RetryPolicy,
    Timeouts,
    call_info,
)
from client._transport import host_key

from . import _scenarios

__all__ = [
    "PROMPTS",
    "CallFailed",
    "NaiveUser",
    "ResilientUser",
    "hot_profile",
    "resilient_policies",
    "seed_profiles",
]

PROMPTS = (
    "Summarise the heart-rate variability of a calm morning.",
    "Describe a resonance profile for focused work.",
    "Write a short note on recovery after a long run.",
    "Explain coherence breathing in two sentences.",
)

# Per greenlet (threading.local is gevent's under locust's monkey-patching): the facts of the
# call in flight, filled by the adapter (each attempt) and the session (the final response).
_call = threading.local()


class CallFailed(Exception):
    """A logical call that finally failed, named by its error class (not its request id), so
    locust's failure table groups alike failures together."""


def hot_profile(i: int) -> str:
    """The name of the ``i``-th profile every user reads."""
    return f"lt-hot-{i:02d}"


def _reset_call() -> None:
    _call.sends = 0
    _call.s429 = 0
    _call.s5xx = 0
    _call.transport = 0
    _call.last = None


class _CountingAdapter(HTTPAdapter):
    """Counts each attempt that really goes to the network, and its outcome."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        _call.sends = getattr(_call, "sends", 0) + 1
        try:
            response = super().send(request, *args, **kwargs)
        except Exception:
            _call.transport = getattr(_call, "transport", 0) + 1
            raise
        status = response.status_code
        if status == 429:
            _call.s429 = getattr(_call, "s429", 0) + 1
        elif status >= 500:
            _call.s5xx = getattr(_call, "s5xx", 0) + 1
        return response


class _TracingSession(ResilientSession):
    """A :class:`ResilientSession` that keeps the final response of the call in flight."""

    def __init__(self, policies: Policies, **kwargs: Any) -> None:
        super().__init__(policies, **kwargs)
        adapter = _CountingAdapter(
            pool_connections=policies.pool_connections, pool_maxsize=policies.pool_maxsize, max_retries=0
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(*args, **kwargs)
        _call.last = response
        return response


def resilient_policies(
    *,
    limiter_rate: float | None,
    cache: bool = True,
    listeners: tuple[Callable[[BreakerTransition], None], ...] = (),
) -> Policies:
    """The reference client's policies as the load tests run it.

    Tuned for a fleet under faults: a short read timeout (the chaos preset holds some requests
    3 s), a retry budget loose enough for a 20% fault rate yet bounded in an outage, a breaker
    that opens when 7 of the last 10 attempts failed with a 5xx or a broken connection (about
    as soon as the fake's compliance check expects after an outage starts, and about once in
    10^4 windows under the chaos preset's ~15% failures; a 429 is the quota, not ill health,
    and is the limiter's business) and sends one probe every 2 s, stale-if-error reads, and a
    limiter that follows the server's quota headers (and stays under ``limiter_rate`` when the
    scenario knows the quota).
    """
    rate = limiter_rate if limiter_rate else 10_000.0
    return Policies(
        retry=RetryPolicy(
            attempts=4,
            backoff_base=0.1,
            backoff_cap=2.0,
            retry_after_cap=10.0,
            budget=RetryBudget(ratio=0.5, min_per_second=2.0),
        ),
        breaker=BreakerPolicy(
            window=10,
            min_calls=5,
            failure_rate=0.7,
            open_for=2.0,
            half_open_permits=1,
            failure_statuses=frozenset(range(500, 600)),
            listeners=listeners,
        ),
        limiter=RateLimitPolicy(rate=rate, burst=max(1, int(rate)), block=True, follow_server=True),
        cache=CachePolicy(stale_if_error=60.0) if cache else None,
        timeouts=Timeouts(connect=2.0, read=2.5, total=20.0),
        pool_connections=4,
        pool_maxsize=256,
    )


def _options(user: User) -> Any:
    return user.environment.parsed_options


class _Shared:
    """What the users of one process share: one resilient client per host, the scenario."""

    client: ResonanceClient | None = None
    breaker_listener: Callable[[BreakerTransition], None] | None = None


def _on_transition(transition: BreakerTransition) -> None:
    listener = _Shared.breaker_listener
    if listener is not None:
        listener(transition)


def _shared_client(user: User) -> ResonanceClient:
    if _Shared.client is None:
        opts = _options(user)
        host = (user.host or user.environment.host or "").rstrip("/")
        rate = float(getattr(opts, "lt_limiter_rate", 0.0) or 0.0) or None
        scenario = _scenarios.get(getattr(opts, "lt_scenario", "steady"))
        session = _TracingSession(
            resilient_policies(limiter_rate=rate, cache=scenario.client_cache, listeners=(_on_transition,)),
            auth=ApiKeyAuth(getattr(opts, "lt_api_key", "demo-key")),
        )
        session.headers["X-Mock-Session"] = f"{getattr(opts, 'lt_run_id', 'run')}-resilient"
        _Shared.client = ResonanceClient(host, session=session)
    return _Shared.client


class _Base(User):
    """Shared plumbing: the scenario's task mix and pacing, and firing one event per call."""

    abstract = True
    kind = "base"

    def on_start(self) -> None:
        opts = _options(self)
        self.scenario = _scenarios.get(getattr(opts, "lt_scenario", "steady"))
        self.tenant = getattr(opts, "lt_tenant", "demo")
        self.run_id = getattr(opts, "lt_run_id", "run")
        self.rng = random.Random()
        self._names = [n for n in self.scenario.mix if self.scenario.mix[n] > 0]
        self._weights = [self.scenario.mix[n] for n in self._names]
        pacing = self.scenario.pacing
        self._waiter = constant_throughput(pacing) if pacing > 0 else None

    def wait_time(self) -> float:
        return self._waiter(self) if self._waiter is not None else 0.0

    @task
    def act(self) -> None:
        getattr(self, self.rng.choices(self._names, self._weights)[0])()

    def fire(
        self,
        method: str,
        route: str,
        started: float,
        length: int,
        error: str | None,
        context: dict[str, Any],
    ) -> None:
        self.environment.events.request.fire(
            request_type=method,
            name=f"{self.kind} {route}",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=CallFailed(error) if error is not None else None,
            context={"kind": self.kind, "error": error, **context},
        )

    def new_profile_name(self) -> str:
        return f"lt-{self.kind[:1]}-{uuid.uuid4().hex[:12]}"

    def hot_name(self) -> str:
        return hot_profile(self.rng.randrange(self.scenario.hot_profiles))

    def vector(self) -> list[float]:
        return [round(self.rng.random(), 4) for _ in range(8)]


def _describe(exc: BaseException) -> str:
    """A short, stable name for a failure: the error class, the status, the final cause."""
    if isinstance(exc, RetriesExhausted) and exc.last is not None:
        return f"RetriesExhausted({_describe(exc.last)})"
    if isinstance(exc, HttpError):
        return f"{type(exc).__name__} {exc.status}"
    return type(exc).__name__


class ResilientUser(_Base):
    """The reference client (retry, breaker, limiter, cache, timeouts), shared by the process."""

    kind = "resilient"

    def on_start(self) -> None:
        super().on_start()
        self.client = _shared_client(self)
        self._host = host_key(self.client.base_url)

    def _run(self, method: str, route: str, fn: Callable[[], Any]) -> Any:
        _reset_call()
        started = time.perf_counter()
        error: str | None = None
        result = None
        try:
            result = fn()
        except ApiError as exc:
            error = _describe(exc)
        response = getattr(_call, "last", None)
        info = call_info(response) if response is not None else None
        cache = getattr(response, "cache_status", None) or (info.cache if info is not None else None)
        breakers = self.client.session.pipeline.breakers  # type: ignore[attr-defined]
        state = breakers.get(self._host).state.value if breakers is not None else "none"
        length = len(response.content) if response is not None and error is None else 0
        self.fire(
            method,
            route,
            started,
            length,
            error,
            {
                "attempts": _call.sends,
                "attempt_429": _call.s429,
                "attempt_5xx": _call.s5xx,
                "attempt_transport": _call.transport,
                "cache": cache,
                "breaker_state": state,
                "ratelimit_wait_s": info.rate_limit_wait if info is not None else 0.0,
                "backoff_s": info.idle_for if info is not None else 0.0,
            },
        )
        return result

    def generate(self) -> None:
        prompt = self.rng.choice(PROMPTS)
        self._run("POST", "/hr_generate", lambda: self.client.generate(prompt, max_length=64))

    def get_profile(self) -> None:
        name = self.hot_name()
        self._run("GET", "/profiles/{tenant}/{name}", lambda: self.client.profiles.get(self.tenant, name))

    def list_profiles(self) -> None:
        self._run("GET", "/profiles", lambda: next(self.client.profiles.pages(limit=20)))

    def write_profile(self) -> None:
        name = self.new_profile_name()
        created = self._run(
            "POST",
            "/profiles",
            lambda: self.client.profiles.create(self.tenant, name, self.vector(), {"by": "load_tests"}),
        )
        if created is None:
            return
        etag = getattr(created, "_etag", None)
        self._run(
            "PUT",
            "/profiles/{tenant}/{name}",
            lambda: self.client.profiles.update(self.tenant, name, self.vector(), if_match=etag),
        )


class NaiveUser(_Base):
    """Plain ``requests``: one attempt per call, no retry, breaker, limiter or cache."""

    kind = "naive"

    def on_start(self) -> None:
        super().on_start()
        opts = _options(self)
        self.base = (self.host or self.environment.host or "").rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {
                "X-API-Key": getattr(opts, "lt_api_key", "demo-key"),
                "X-Mock-Session": f"{self.run_id}-naive",
                "Accept": "application/json",
            }
        )

    def on_stop(self) -> None:
        self.session.close()

    def _send(self, method: str, route: str, path: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        error: str | None = None
        status: int | None = None
        body: Any = None
        length = 0
        try:
            response = self.session.request(method, self.base + path, timeout=10, **kwargs)
            status = response.status_code
            length = len(response.content)
            if status >= 400:
                error = f"HTTP {status}"
            else:
                body = response.json()
                body = (body, response.headers.get("ETag"))
        except requests.exceptions.JSONDecodeError:
            error = "InvalidJSON"
        except requests.RequestException as exc:
            error = type(exc).__name__
        self.fire(
            method,
            route,
            started,
            length if error is None else 0,
            error,
            {
                "attempts": 1,
                "attempt_429": int(status == 429),
                "attempt_5xx": int(status is not None and status >= 500),
                "attempt_transport": int(status is None and error != "InvalidJSON"),
                "cache": None,
                "breaker_state": "none",
                "ratelimit_wait_s": 0.0,
                "backoff_s": 0.0,
            },
        )
        return body

    def generate(self) -> None:
        body = {"prompt": self.rng.choice(PROMPTS), "max_length": 64}
        self._send("POST", "/hr_generate", "/hr_generate", json=body)

    def get_profile(self) -> None:
        path = f"/profiles/{self.tenant}/{self.hot_name()}"
        self._send("GET", "/profiles/{tenant}/{name}", path)

    def list_profiles(self) -> None:
        self._send("GET", "/profiles", "/profiles", params={"limit": 20})

    def write_profile(self) -> None:
        name = self.new_profile_name()
        body = {
            "tenant": self.tenant,
            "profile_name": name,
            "hrv_vector": self.vector(),
            "metadata": {"by": "x"},
        }
        created = self._send("POST", "/profiles", "/profiles", json=body)
        if created is None:
            return
        headers = {"If-Match": created[1]} if created[1] else {}
        self._send(
            "PUT",
            "/profiles/{tenant}/{name}",
            f"/profiles/{self.tenant}/{name}",
            json={"hrv_vector": self.vector()},
            headers=headers,
        )


def seed_profiles(host: str, *, api_key: str, tenant: str, count: int, session_id: str) -> int:
    """Create the hot profiles the users read (an existing one is fine); returns how many exist."""
    policies = Policies(
        retry=RetryPolicy(attempts=8, backoff_cap=1.0, budget=None),
        breaker=None,
        cache=None,
        timeouts=Timeouts(connect=2.0, read=2.5, total=30.0),
    )
    session = ResilientSession(policies, auth=ApiKeyAuth(api_key))
    session.headers["X-Mock-Session"] = session_id
    ok = 0
    with ResonanceClient(host, session=session) as client:
        for i in range(count):
            try:
                client.profiles.create(tenant, hot_profile(i), [0.5] * 8, {"hot": True})
                ok += 1
            except HttpError as exc:
                ok += exc.status == 409
            except ApiError:
                pass
    return ok
