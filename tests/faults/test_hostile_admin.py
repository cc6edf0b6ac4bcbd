"""Hostile input to the fault layer (admin API, X-Mock-Fault) over real HTTP: a 4xx with the
contract's error body, never a 500, and nothing changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from .conftest import Served

pytestmark = pytest.mark.socket
JSON = {"Content-Type": "application/json"}
HUGE = "9" * 400


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"fault": {"type": "latency", "fixed_ms": ' + HUGE + "}}", id="fixed-ms"),
        pytest.param(
            '{"fault": {"type": "status", "status": 503}, "probability": ' + HUGE + "}", id="probability"
        ),
        pytest.param('{"fault": {"type": "status", "status": ' + HUGE + "}}", id="status"),
        pytest.param('{"fault": {"type": "reset"}, "times": -' + HUGE + "}", id="negative-times"),
        pytest.param('{"seed": ' + HUGE + ', "rules": []}', id="seed"),
    ],
)
def test_rules_with_huge_integers_are_a_422(serve_faults: Callable[..., Served], body: str) -> None:
    """A 400-digit integer in a rule is a 422 naming the field; the rules stay as they were."""
    server = serve_faults()
    method = "PUT" if body.startswith('{"seed"') else "POST"
    response = server.admin(method, "/faults", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"]
    assert server.admin("GET", "/faults").json()["rules"] == []


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("status=503;retry_after=" + HUGE, id="retry-after"),
        pytest.param("slow_body=" + HUGE, id="slow-body"),
        pytest.param("timeout=" + HUGE, id="timeout"),
        pytest.param("latency=" + HUGE, id="latency"),
        pytest.param("latency=1.." + HUGE, id="latency-range"),
    ],
)
def test_fault_header_with_huge_numbers_is_a_400(serve_faults: Callable[..., Served], header: str) -> None:
    """X-Mock-Fault with a 400-digit number is a 400 naming X-Mock-Fault."""
    server = serve_faults(allow_fault_header=True)
    response = requests.get(server.url + "/hello", headers={"X-Mock-Fault": header}, timeout=5)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("X-Mock-Fault")


@pytest.mark.parametrize(
    "since",
    [
        pytest.param(HUGE, id="400-digits"),
        pytest.param("NaN", id="nan"),
        pytest.param("-" + HUGE, id="negative"),
    ],
)
def test_wait_with_an_absurd_since_is_a_422(serve_faults: Callable[..., Served], since: str) -> None:
    """``since`` must be a finite time: a 400-digit integer or NaN is a 422 naming it."""
    server = serve_faults()
    body = '{"filter": {"since": ' + since + '}, "timeout_s": 0}'
    response = server.admin("POST", "/requests/wait", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == ["filter", "since"]
    listed = server.admin("GET", "/requests", params={"since": "nan"})
    assert listed.status_code == 422, listed.text


def test_wait_with_no_time_answers_what_has_arrived(serve_faults: Callable[..., Served]) -> None:
    """``timeout_s: 0`` answers at once: 200 when the requests are already there, 408 when not."""
    server = serve_faults()
    assert requests.get(server.url + "/hello", timeout=5).ok
    there = server.admin("POST", "/requests/wait", json={"filter": {"path": "/hello"}, "timeout_s": 0})
    assert there.status_code == 200, there.text
    missing = server.admin("POST", "/requests/wait", json={"filter": {"path": "/nowhere"}, "timeout_s": 0})
    assert missing.status_code == 408


def test_an_admin_crash_still_answers_with_the_error_body(serve_faults: Callable[..., Served]) -> None:
    """Whatever goes wrong inside the admin API, the answer is the contract's error body."""
    server = serve_faults()

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    server.layer.journal.count = boom  # type: ignore[method-assign]
    response = server.admin("GET", "/requests/count")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "boom" not in error["message"]


def test_wrong_admin_tokens_are_throttled(serve_faults: Callable[..., Served]) -> None:
    """Wrong X-Admin-Token values count as failed authentications: past the burst, even the
    right token waits (429, Retry-After, the error body); no token at all is not a guess."""
    from mock_server import RateLimit
    from mock_server._ratelimit import FailureLimiter

    server = serve_faults(
        admin_token="s3cret", auth_failures=FailureLimiter(RateLimit(per_minute=60, burst=2))
    )
    assert server.admin("GET", "/faults").status_code == 401
    assert server.admin("GET", "/faults", headers={"X-Admin-Token": "s3cret"}).status_code == 200
    for guess in ("a", "b"):
        assert server.admin("GET", "/faults", headers={"X-Admin-Token": guess}).status_code == 401
    refused = server.admin("GET", "/faults", headers={"X-Admin-Token": "s3cret"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
