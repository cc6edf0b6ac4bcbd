"""The provider honours its own OpenAPI: schemathesis with every check, faults off.

Each operation is driven with valid data (which must be accepted) and invalid data (which
must be rejected), and every response is validated against the document: status, headers,
content type and body. Beyond schemathesis's defaults, a valid request may also meet 400
(an opaque ``cursor`` the server did not issue) and 412 (an ``If-Match`` that names another
version): both reject state, not format. Invalid data may also be refused for its size before
it is parsed (413, 414, 431).
"""

from __future__ import annotations

import time
import tomllib
import uuid
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.socket

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "412", "429", "5xx"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428",
    "429", "431", "5xx"]
"""
OPERATIONS = [
    ("GET", "/health"),
    ("POST", "/oauth/token"),
    ("POST", "/hr_generate"),
    ("POST", "/hr_generate/batch"),
    ("GET", "/profiles"),
    ("POST", "/profiles"),
    ("GET", "/profiles/{tenant}/{profile_name}"),
    ("PUT", "/profiles/{tenant}/{profile_name}"),
    ("DELETE", "/profiles/{tenant}/{profile_name}"),
    ("GET", "/analytics/usage"),
    ("GET", "/analytics/performance"),
]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def fresh_idempotency_key(case: Any) -> None:
    """A generated key repeats across examples with other bodies, which the contract answers
    with 422 (state, not format): keep the header, make the key fresh."""
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


@pytest.fixture(scope="session")
def provider_schema(provider_url: str, api_key: str) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            **tomllib.loads(CONFIG),
            "base-url": provider_url,
            "auth": {"openapi": {"ApiKey": {"api_key": api_key}}},
        }
    )
    return schemathesis.openapi.from_url(f"{provider_url}/openapi.json", config=config)


def test_every_route_is_covered(provider_schema: Any) -> None:
    """The list below names every operation of the document, so none goes untested."""
    documented = {
        (op.method.upper(), op.path) for op in (r.ok() for r in provider_schema.get_all_operations())
    }
    assert documented == set(OPERATIONS)


# /health takes no input, so there is no invalid input to send it.
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if path != "/health" or mode is GenerationMode.POSITIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms(
    provider_schema: Any, api_key: str, method: str, path: str, mode: GenerationMode
) -> None:
    """Every operation answers as documented for valid and for invalid input."""
    operation = provider_schema[path][method]
    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def run(case: Any) -> None:
        if mode is GenerationMode.POSITIVE:
            fresh_idempotency_key(case)
        case.call_and_validate(session=session)

    run()


def _get(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    """GET that waits out a 429 (a real provider's limit applies to the suite too)."""
    for _ in range(10):
        response = session.get(url, timeout=10, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 10.0))
    return response


def _wipe_profiles(base: str, api_key: str) -> None:
    """Delete the tenant's profiles, then wait until its rate limit has room for a sequence."""
    session = requests.Session()
    session.headers["X-API-Key"] = api_key
    while True:
        listing = _get(session, f"{base}/profiles", params={"limit": 100})
        assert listing.status_code == 200, f"cannot list profiles: {listing.status_code} {listing.text[:200]}"
        items = listing.json()["items"]
        if not items:
            break
        for item in items:
            session.delete(f"{base}/profiles/{item['tenant']}/{item['profile_name']}", timeout=10)
    remaining = listing.headers.get("X-RateLimit-Remaining")
    reset = listing.headers.get("X-RateLimit-Reset")
    if remaining is not None and reset is not None and int(remaining) < 40:
        # A sequence that meets 429s half-way behaves differently when replayed.
        time.sleep(max(0.0, min(float(reset) - time.time(), 60.0)))


def test_stateful_links(provider_schema: Any, provider_url: str, api_key: str) -> None:
    """Sequences that follow the schema's links (create, then get, update, delete) conform.

    Each sequence starts from no profiles, so what it can do never depends on an earlier one
    (hypothesis replays sequences and needs them to behave the same).
    """

    class Machine(provider_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            _wipe_profiles(provider_url, api_key)

        def before_call(self, case: Any) -> None:
            # Generated keys repeat across steps with other bodies (a 422 by contract).
            fresh_idempotency_key(case)

    Machine.run(
        settings=settings(
            max_examples=20, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
