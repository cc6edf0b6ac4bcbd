"""The fake's fault model keeps its promises: documented fault responses, rates within
binomial bounds, and the same schedule for the same seed whatever the concurrency."""

from __future__ import annotations

import json
import math
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth

from mock_server import ServerConfig, ServerThread

from ._support import new_session
from .test_provider_schema import OPERATIONS, fresh_idempotency_key

pytestmark = pytest.mark.socket
#: Only requests carrying this header meet the faulty fixture's rules: the schema fetch never
#: does, so whether it succeeds never depends on the seed's draws.
UNDER_TEST = {"X-Mock-Session": "faulty"}
STATUS_FAULTS = {
    "seed": 11,
    "rules": [
        {
            "id": "throttle",
            "probability": 0.15,
            "fault": {"type": "status", "status": 429, "retry_after": {"seconds": 2, "format": "http-date"}},
        },
        # A 429 whose rule says nothing of Retry-After must still carry one (the document
        # requires it on every 429).
        {"id": "throttle-bare", "probability": 0.1, "fault": {"type": "status", "status": 429}},
        {
            "id": "unavailable",
            "probability": 0.15,
            "fault": {"type": "status", "status": 503, "retry_after": 1},
        },
        {"id": "broken", "probability": 0.1, "fault": {"type": "status", "status": 500}},
        {
            "id": "gateway",
            "probability": 0.1,
            "fault": {"type": "status", "status": 502, "latency": {"fixed_ms": 1}},
        },
        {"id": "slow", "probability": 0.1, "fault": {"type": "status", "status": 504}},
    ],
}
for _rule in STATUS_FAULTS["rules"]:
    _rule["match"] = {"headers": UNDER_TEST}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("faults") / "status.json"
    path.write_text(json.dumps(STATUS_FAULTS))
    # Injected 401s are part of the point: the fake must not also throttle the address for them.
    with ServerThread(ServerConfig(db=":memory:", faults=str(path), auth_failure_limit=None)) as server:
        yield server


def test_fault_rules_never_touch_the_document(faulty: ServerThread) -> None:
    """The fixture's rules spoil the requests under test, never ``/openapi.json``: the schema
    loads however the seed's draws fall, and a failure to load it is never a fault's doing."""
    for _ in range(40):
        assert requests.get(f"{faulty.url}/openapi.json", timeout=10).status_code == 200
    entries = faulty.admin.requests(path="/openapi.json")
    assert entries and not any(e["fault"] or e["rule"] for e in entries)


@pytest.fixture(scope="module")
def faulty_schema(faulty: ServerThread) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            **tomllib.loads(
                '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "3xx", "400", "401",'
                ' "403", "404", "409", "412", "429", "5xx"]\n'
                '[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405",'
                ' "406", "409", "413", "414", "415", "422", "428", "429", "431", "5xx"]\n'
            ),
            "base-url": faulty.url,
            "auth": {"openapi": {"ApiKey": {"api_key": "demo-key"}}},
        }
    )
    return schemathesis.openapi.from_url(f"{faulty.url}/openapi.json", config=config)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fault_responses_are_documented(faulty_schema: Any, method: str, path: str) -> None:
    """With status faults on every route, every response still matches the document."""
    operation = faulty_schema[path][method]
    session = requests.Session()
    session.headers.update(UNDER_TEST)

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        fresh_idempotency_key(case)
        # Injected 5xx are the point here, and a fault answers before authentication (as a
        # gateway would): what must hold is that every response is documented.
        case.call_and_validate(session=session, excluded_checks=[not_a_server_error, ignored_auth])

    run()


def _rule(rule_id: str, probability: float) -> dict[str, Any]:
    return {
        "id": rule_id,
        "match": {"path": "/health"},
        "probability": probability,
        "fault": {"type": "status", "status": 503},
    }


@pytest.mark.parametrize("probability", [0.05, 0.3, 0.7])
def test_fault_rate_within_binomial_bounds(fake: ServerThread, probability: float) -> None:
    """Over 1000 requests a rule with probability p fires within 4.5 standard deviations of n*p."""
    n = 1000
    session_id = f"binomial-{probability}"
    fake.admin.add_fault(
        {
            **_rule(session_id, probability),
            "match": {"path": "/health", "headers": {"X-Mock-Session": session_id}},
        }
    )
    try:
        http = requests.Session()
        hits = sum(
            http.get(f"{fake.url}/health", headers={"X-Mock-Session": session_id}).status_code == 503
            for _ in range(n)
        )
    finally:
        fake.admin.delete_fault(session_id)
    sigma = math.sqrt(n * probability * (1 - probability))
    assert abs(hits - n * probability) <= 4.5 * sigma, (hits, n * probability, sigma)


def _schedule(seed: int, workers: int, keep_alive: bool) -> list[Any]:
    rules = {
        "seed": seed,
        "rules": [
            {"id": "coin", "probability": 0.3, "fault": {"type": "status", "status": 503}},
            {
                "id": "lag",
                "probability": 0.5,
                "fault": {"type": "latency", "uniform": {"min_ms": 0, "max_ms": 3}},
            },
            {"id": "fifth", "every_nth": 5, "fault": {"type": "status", "status": 429}},
        ],
    }
    config = ServerConfig(db=":memory:", faults=None, seed=seed)
    with ServerThread(config) as server:
        server.admin.put_fault("coin", rules["rules"][0])
        server.admin.put_fault("lag", rules["rules"][1])
        server.admin.put_fault("fifth", rules["rules"][2])

        def call(_: int) -> None:
            if keep_alive:
                local.get(f"{server.url}/health", timeout=10)
            else:
                requests.get(f"{server.url}/health", timeout=10, headers={"Connection": "close"})

        local = requests.Session()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(call, range(120)))
        entries = sorted(server.admin.requests(limit=1000), key=lambda e: e["seq"])
        return [(e["rule"], e["fault"], e["status"], round(e["injected_delay_ms"], 6)) for e in entries]


def test_same_seed_same_schedule_whatever_the_concurrency() -> None:
    """The n-th request gets the same fault with 1 or 20 connections, with or without keep-alive;
    another seed gives another schedule."""
    serial = _schedule(5, 1, True)
    assert serial == _schedule(5, 20, True) == _schedule(5, 20, False)
    assert serial != _schedule(6, 1, True)
    assert sum(1 for _, fault, _, _ in serial if fault) > 10


def _seconds_until(value: str) -> float:
    """What a Retry-After value asks for, read independently of the client under test."""
    if value.isdigit():
        return float(value)
    return parsedate_to_datetime(value).timestamp() - time.time()


@given(
    retry=st.one_of(
        st.none(),
        st.integers(0, 30),
        st.integers(0, 30).map(lambda s: {"seconds": s, "format": "http-date"}),
    ),
    path=st.sampled_from(["/health", "/profiles", "/profiles/demo/x", "/analytics/usage", "/nowhere"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_every_injected_429_says_when_to_come_back(
    fake: ServerThread, retry: Any, path: str, method: str
) -> None:
    """An injected 429, on any route, with or without a Retry-After in its rule, carries a
    parseable Retry-After: the rule's, or 1 s; and the rate-limit headers say none remain."""
    sid = new_session()
    fault: dict[str, Any] = {"type": "status", "status": 429}
    if retry is not None:
        fault["retry_after"] = retry
    rule = fake.admin.add_fault(
        {"id": f"429-{sid}", "match": {"headers": {"X-Mock-Session": sid}}, "fault": fault}
    )
    try:
        response = requests.request(method, f"{fake.url}{path}", headers={"X-Mock-Session": sid}, timeout=10)
    finally:
        fake.admin.delete_fault(rule["id"])
    assert response.status_code == 429
    value = response.headers.get("Retry-After")
    assert value, "an injected 429 without Retry-After"
    expected = 1 if retry is None else retry if isinstance(retry, int) else retry["seconds"]
    if isinstance(retry, dict):
        assert expected - 1 <= _seconds_until(value) <= expected + 1, value
    else:
        assert value == str(expected)
    assert response.headers.get("X-RateLimit-Remaining") == "0"
    assert response.json()["error"]["code"]
