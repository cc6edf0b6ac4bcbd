"""Probes: small programs whose observations a mutant must change, to show it is not equivalent.

``python -m mutants._probes NAME`` prints the observations of probe ``NAME`` as one JSON object
(sorted keys). Every observation is computed on its own, so one that raises (its value is then
the exception's name) does not hide the others. Probes use only public APIs and fake time, and
are deterministic: the same code gives the same output.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import requests
from requests.adapters import BaseAdapter

from client import (
    BreakerPolicy,
    CachePolicy,
    CircuitBreaker,
    CircuitOpen,
    FakeClock,
    Policies,
    RateLimitPolicy,
    ResilientSession,
    RetryBudget,
    RetryPolicy,
    Timeouts,
    TokenBucket,
    backoff,
    parse_retry_after,
)
from client._retry import BudgetTracker
from mock_server import DEFAULT_TENANTS, RateLimit, ServerConfig, ServerThread

Observations = dict[str, Any]
T = TypeVar("T")
Reply = tuple[int, Mapping[str, str]] | BaseException


class Scripted(BaseAdapter):
    """Answers from a script (the last entry repeats) and keeps the requests it was sent."""

    def __init__(self, script: Sequence[Reply | Callable[[], Reply]]) -> None:
        super().__init__()
        self.script = list(script)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request.copy())
        step = self.script[min(len(self.sent), len(self.script)) - 1]
        answer = step() if callable(step) else step
        if isinstance(answer, BaseException):
            raise answer
        status, headers = answer
        response = requests.Response()
        response.status_code = status
        response.headers.update({"Content-Type": "application/json", **headers})
        response._content = b"{}"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def _session(
    policies: Policies, script: Sequence[Reply | Callable[[], Reply]]
) -> tuple[Any, Scripted, FakeClock]:
    clock = FakeClock(start=1000.0, epoch=1_700_000_000.5)
    session = ResilientSession(
        policies.with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
    )
    adapter = Scripted(script)
    session.mount("http://", adapter)
    return session, adapter, clock


def _only(**policies: Any) -> Policies:
    base: dict[str, Any] = {"retry": None, "breaker": None, "limiter": None, "cache": None}
    return Policies(**{**base, **policies}, timeouts=Timeouts(read=5, total=None))


def _call(session: Any, method: str, url: str = "http://upstream.invalid/x", **kwargs: Any) -> str:
    try:
        return str(session.request(method, url, **kwargs).status_code)
    except Exception as exc:  # the observation is which error it was
        return type(exc).__name__


def _observe(observations: Observations, name: str, compute: Callable[[], Any]) -> None:
    try:
        observations[name] = compute()
    except Exception as exc:  # a mutant may make a probe raise: that is an observation too
        observations[name] = f"raised {type(exc).__name__}"


# -- retry ----------------------------------------------------------------------------------------
def retry() -> Observations:
    out: Observations = {}

    def attempts(status: int) -> int:
        policy = RetryPolicy(attempts=3, budget=None, rng=random.Random(0), raise_on_exhausted=False)
        session, adapter, _ = _session(_only(retry=policy), [(status, {})])
        _call(session, "GET")
        return len(adapter.sent)

    for status in (404, 409, 501, 505, 503):
        _observe(out, f"attempts after {status}", functools.partial(attempts, status))

    def retry_after_sleeps(value: str) -> list[float]:
        policy = RetryPolicy(
            attempts=2, budget=None, backoff_cap=1.0, retry_after_cap=60, rng=random.Random(0)
        )
        session, _, clock = _session(_only(retry=policy), [(503, {"Retry-After": value}), (200, {})])
        _call(session, "GET")
        return [round(s, 3) for s in clock.sleeps]

    _observe(out, "sleep for Retry-After: 15", lambda: retry_after_sleeps("15"))
    _observe(out, "sleep for a Retry-After date", lambda: retry_after_sleeps("Tue, 14 Nov 2023 22:13:40 GMT"))
    _observe(
        out,
        "parse an HTTP-date",
        lambda: parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now=1_700_000_000.0),
    )

    def post_attempts(first: BaseException) -> int:
        policy = RetryPolicy(attempts=3, budget=None, idempotency_methods=frozenset(), rng=random.Random(0))
        session, adapter, _ = _session(_only(retry=policy), [first, (200, {})])
        _call(session, "POST", json={"a": 1})
        return len(adapter.sent)

    _observe(
        out, "POST attempts after a read timeout", lambda: post_attempts(requests.exceptions.ReadTimeout())
    )
    _observe(
        out,
        "POST attempts after a connect timeout",
        lambda: post_attempts(requests.exceptions.ConnectTimeout()),
    )
    _observe(
        out,
        "backoff(3, base=1, cap=10) for seeds 0..4",
        lambda: [round(backoff(3, base=1.0, cap=10.0, rng=random.Random(s)), 6) for s in range(5)],
    )
    _observe(
        out,
        "backoff(12, base=1, cap=2) ceiling",
        lambda: backoff(12, base=1.0, cap=2.0, rng=random.Random(9)) <= 2,
    )

    def budget_allows() -> bool:
        clock = FakeClock()
        return BudgetTracker(RetryBudget(ratio=0.0, min_per_second=0.0), clock.clock).try_spend()

    _observe(out, "an empty budget allows a retry", budget_allows)

    def headers_of_attempts() -> dict[str, int]:
        policy = RetryPolicy(
            attempts=3,
            budget=None,
            backoff_base=0.001,
            idempotency_methods=frozenset({"POST"}),
            rng=random.Random(0),
        )
        session, adapter, _ = _session(_only(retry=policy), [(503, {}), (503, {}), (201, {})])
        _call(session, "POST", json={"a": 1})
        return {
            "attempts": len(adapter.sent),
            "request ids": len({r.headers.get("X-Request-ID") for r in adapter.sent}),
            "idempotency keys": len({r.headers.get("Idempotency-Key") for r in adapter.sent}),
            "keyless attempts": sum("Idempotency-Key" not in r.headers for r in adapter.sent),
        }

    _observe(out, "a POST through two 503s", headers_of_attempts)

    def budgeted_sends() -> int:
        budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0)
        policy = RetryPolicy(attempts=4, budget=budget, backoff_base=0.001, rng=random.Random(0))
        session, adapter, _ = _session(_only(retry=policy), [(503, {})])
        for _ in range(3):
            _call(session, "GET")
        return len(adapter.sent)

    _observe(out, "attempts of three failing GETs on a ratio-0.5 budget", budgeted_sends)
    return out


# -- breaker --------------------------------------------------------------------------------------
def breaker() -> Observations:
    out: Observations = {}

    def make(permits: int = 1) -> tuple[CircuitBreaker, FakeClock]:
        clock = FakeClock()
        policy = BreakerPolicy(
            window=4,
            min_calls=3,
            failure_rate=0.5,
            open_for=10.0,
            half_open_permits=permits,
            clock=clock.clock,
        )
        return CircuitBreaker(policy, "host"), clock

    def acquired(b: CircuitBreaker) -> str:
        try:
            return "probe" if b.acquire().probe else "call"
        except CircuitOpen:
            return "refused"

    def story() -> list[str]:
        b, clock = make()
        states = []
        for _ in range(2):
            b.record(b.acquire(), failure=True)
        states.append(b.state.value)
        b.record(b.acquire(), failure=True)
        states.append(b.state.value)
        clock.advance(10.0)
        probe = b.acquire()
        states.append(acquired(b))
        b.record(probe, failure=False)
        states.append(b.state.value)
        return states

    _observe(out, "two failures, a third, a probe, a second probe, success", story)
    _observe(out, "a 404 is a failure", lambda: BreakerPolicy().is_failure(404))

    def failed_probe() -> str:
        b, clock = make()
        for _ in range(3):
            b.record(b.acquire(), failure=True)
        clock.advance(10.0)
        b.record(b.acquire(), failure=True)
        return b.state.value

    _observe(out, "state after a failed probe", failed_probe)

    def released() -> str:
        b, clock = make()
        for _ in range(3):
            b.record(b.acquire(), failure=True)
        clock.advance(10.0)
        b.release(b.acquire())
        return acquired(b)

    _observe(out, "acquire after a released probe", released)

    def stale() -> str:
        b, clock = make(permits=2)
        for _ in range(3):
            b.record(b.acquire(), failure=True)
        clock.advance(10.0)
        first, second = b.acquire(), b.acquire()
        b.record(first, failure=True)  # reopens: the second probe's outcome is stale
        clock.advance(5.0)
        b.record(second, failure=True)
        clock.advance(5.5)
        return acquired(b)

    _observe(out, "acquire 10.5 s after a reopen, a stale failure in between", stale)

    def session_after_404s() -> list[str]:
        policy = BreakerPolicy(window=4, min_calls=3, failure_rate=0.5, open_for=10.0)
        session, _, _ = _session(_only(breaker=policy), [(404, {})])
        return [_call(session, "GET") for _ in range(4)]

    _observe(out, "four GETs answered 404 through a session", session_after_404s)
    return out


# -- limiter --------------------------------------------------------------------------------------
def limiter() -> Observations:
    out: Observations = {}

    def pause(status: int, headers: Mapping[str, str]) -> float:
        clock = FakeClock(start=1000.0, epoch=1_700_000_000.5)
        bucket = TokenBucket(
            RateLimitPolicy(rate=100, burst=100, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
        )
        bucket.observe(status, headers)
        return round(bucket.paused_until - clock.clock(), 3)

    reset = str(1_700_000_000 + 5)
    _observe(
        out,
        "pause for X-RateLimit-Reset",
        lambda: pause(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}),
    )
    _observe(out, "pause for RateLimit t=7", lambda: pause(200, {"RateLimit": '"default";r=0;t=7'}))
    _observe(out, "pause for a 429 with Retry-After: 9", lambda: pause(429, {"Retry-After": "9"}))

    def level_after_idle() -> float:
        clock = FakeClock()
        bucket = TokenBucket(
            RateLimitPolicy(rate=1, burst=2, clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
        )
        clock.advance(100.0)
        return bucket.level()

    _observe(out, "tokens after 100 s idle (burst 2)", level_after_idle)

    def session_sleeps_after_none_remain() -> list[float]:
        policy = RateLimitPolicy(rate=100, burst=100)
        script: list[Reply] = [(200, {"RateLimit": '"default";r=0;t=5'}), (200, {})]
        session, _, clock = _session(_only(limiter=policy), script)
        _call(session, "GET")
        _call(session, "GET")
        return [round(s, 3) for s in clock.sleeps]

    _observe(out, "a session's sleeps after RateLimit r=0;t=5", session_sleeps_after_none_remain)
    return out


# -- cache ----------------------------------------------------------------------------------------
def cache() -> Observations:
    out: Observations = {}
    url = "http://upstream.invalid/profiles/demo/p"

    def reaches(reply: Mapping[str, str], calls: Sequence[tuple[str, Mapping[str, str], float]]) -> int:
        session, adapter, clock = _session(_only(cache=CachePolicy()), [(200, {"ETag": '"e"', **reply})])
        for method, headers, wait in calls:
            clock.advance(wait)
            _call(
                session,
                method,
                url,
                headers={"X-API-Key": "a", **headers},
                **({"json": {}} if method != "GET" else {}),
            )
        return len(adapter.sent)

    fresh = {"Cache-Control": "max-age=60"}
    _observe(
        out,
        "Vary: Accept-Language, en then fr",
        lambda: reaches(
            {**fresh, "Vary": "Accept-Language"},
            [("GET", {"Accept-Language": "en"}, 0), ("GET", {"Accept-Language": "fr"}, 0)],
        ),
    )
    _observe(
        out,
        "max-age=10 with Age: 8, again 5 s later",
        lambda: reaches({"Cache-Control": "max-age=10", "Age": "8"}, [("GET", {}, 0), ("GET", {}, 5)]),
    )
    _observe(
        out,
        "no-cache, max-age=60 twice",
        lambda: reaches({"Cache-Control": "no-cache, max-age=60"}, [("GET", {}, 0), ("GET", {}, 0)]),
    )
    _observe(
        out,
        "another credential",
        lambda: reaches(fresh, [("GET", {}, 0), ("GET", {"X-API-Key": "b"}, 0)]),
    )
    _observe(out, "GET, PUT, GET", lambda: reaches(fresh, [("GET", {}, 0), ("PUT", {}, 0), ("GET", {}, 0)]))
    _observe(
        out, "GET, DELETE, GET", lambda: reaches(fresh, [("GET", {}, 0), ("DELETE", {}, 0), ("GET", {}, 0)])
    )

    def conditional_after_no_store() -> bool:
        session, adapter, _ = _session(
            _only(cache=CachePolicy()), [(200, {"ETag": '"e"', "Cache-Control": "no-store"})]
        )
        _call(session, "GET", url)
        _call(session, "GET", url)
        return "If-None-Match" in adapter.sent[-1].headers

    _observe(out, "revalidates a no-store answer", conditional_after_no_store)
    return out


# -- the fake -------------------------------------------------------------------------------------
def fake() -> Observations:
    out: Observations = {}
    tight = replace(DEFAULT_TENANTS[0], rate_limit=RateLimit(per_minute=6, burst=2))
    config = ServerConfig(db=":memory:", tenants=(tight, DEFAULT_TENANTS[1]), seed=3, auth_failure_limit=None)
    with ServerThread(config) as server:
        url = server.url
        http = requests.Session()
        acme = {"X-API-Key": "acme-key"}

        def with_rule(rule: dict[str, Any], calls: Callable[[], T]) -> T:
            server.admin.add_fault(rule)
            try:
                return calls()
            finally:
                server.admin.delete_fault(rule["id"])

        def retry_after(fault: dict[str, Any]) -> str | None:
            rule = {"id": "p429", "match": {"path": "/health"}, "fault": fault}
            return with_rule(rule, lambda: http.get(f"{url}/health").headers.get("Retry-After"))

        _observe(
            out, "Retry-After of a bare injected 429", lambda: retry_after({"type": "status", "status": 429})
        )
        _observe(
            out,
            "Retry-After of an injected 429 saying 7",
            lambda: retry_after({"type": "status", "status": 429, "retry_after": 7}),
        )

        def sequence() -> list[int]:
            rule = {
                "id": "seq",
                "match": {"path": "/health"},
                "sequence": [{"type": "status", "status": 503}, {"type": "status", "status": 502}],
            }
            return with_rule(rule, lambda: [http.get(f"{url}/health").status_code for _ in range(3)])

        _observe(out, "a sequence 503, 502, then ok", sequence)

        def fired() -> int:
            rule = {
                "id": "coin",
                "match": {"path": "/health"},
                "probability": 0.2,
                "fault": {"type": "status", "status": 503},
            }
            return with_rule(
                rule, lambda: sum(http.get(f"{url}/health").status_code == 503 for _ in range(100))
            )

        _observe(out, "503s of a p=0.2 rule over 100 requests", fired)

        def truncated() -> str:
            rule = {
                "id": "cut",
                "match": {"path": "/profiles"},
                "fault": {"type": "truncate", "fraction": 0.5},
            }
            return with_rule(rule, lambda: _call(http, "GET", f"{url}/profiles", headers=acme))

        _observe(out, "a truncated answer", truncated)

        def limited() -> dict[str, Any]:
            answers = [http.get(f"{url}/profiles", headers={"X-API-Key": "demo-key"}) for _ in range(3)]
            last = answers[-1]
            reset = int(last.headers.get("X-RateLimit-Reset", "0"))
            return {
                "statuses": [a.status_code for a in answers],
                "remaining": [a.headers.get("X-RateLimit-Remaining") for a in answers],
                "reset is an epoch": reset > time.time() - 5,
                "429 Retry-After": "Retry-After" in last.headers,
            }

        _observe(out, "burst 2: three requests", limited)

        def pages() -> list[list[str]]:
            for name in ("a", "b", "c"):
                http.post(
                    f"{url}/profiles",
                    json={"tenant": "acme", "profile_name": name, "hrv_vector": [0.5] * 8},
                    headers=acme,
                )
            first = http.get(f"{url}/profiles", params={"limit": 2}, headers=acme).json()
            second = http.get(
                f"{url}/profiles", params={"limit": 2, "cursor": first["next_cursor"]}, headers=acme
            ).json()
            return [[p["profile_name"] for p in page["items"]] for page in (first, second)]

        _observe(out, "pages of 2 over a, b, c", pages)

        def replay() -> list[int]:
            body = {"tenant": "acme", "profile_name": "keyed", "hrv_vector": [0.5] * 8}
            headers = {**acme, "Idempotency-Key": "probe-key"}
            return [http.post(f"{url}/profiles", json=body, headers=headers).status_code for _ in range(2)]

        _observe(out, "a POST sent twice with one key", replay)
        _observe(
            out,
            "an hrv_vector of 1s",
            lambda: (
                http.post(
                    f"{url}/profiles",
                    json={"tenant": "acme", "profile_name": "ones", "hrv_vector": [1.0] * 8},
                    headers=acme,
                ).status_code
            ),
        )
        _observe(
            out,
            "a 7-number hrv_vector",
            lambda: (
                http.post(
                    f"{url}/profiles",
                    json={"tenant": "acme", "profile_name": "short", "hrv_vector": [0.5] * 7},
                    headers=acme,
                ).status_code
            ),
        )
    return out


PROBES: dict[str, Callable[[], Observations]] = {
    "retry": retry,
    "breaker": breaker,
    "limiter": limiter,
    "cache": cache,
    "fake": fake,
}


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in PROBES:
        print(f"usage: python -m mutants._probes {{{','.join(PROBES)}}}", file=sys.stderr)
        return 2
    print(json.dumps(PROBES[argv[0]](), sort_keys=True, default=repr))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
