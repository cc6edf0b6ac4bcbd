"""A request's fault arrival rides in the API's first round trip to Redis (mock_server._prelude):
the API runs speculatively up to that round trip, and a fault that fires there unwinds it.
Whatever the fault and its ``when``, the API's operation must then happen exactly as often as on
the embedded fake: never for a fault that answers in its place, once for one that comes after
it or alters its answer, once after a delay."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from mock_server import ServerThread
from mock_server._config import ServerConfig
from mock_server._tenants import RateLimit

from .conftest import KEY, Conn

pytestmark = pytest.mark.socket

CREATE = {"tenant": "demo", "profile_name": "p", "hrv_vector": [0.5] * 8}


@pytest.fixture(scope="module")
def fake(redis_proc: Any) -> Iterator[ServerThread]:
    url = f"redis://{redis_proc.host}:{redis_proc.port}/3"
    # Three failed logins from one address and the fourth request is throttled.
    config = ServerConfig(db=":memory:", state=url, auth_failure_limit=RateLimit(per_minute=1, burst=3))
    with ServerThread(config) as server:
        yield server


@pytest.fixture
def conn(fake: ServerThread) -> Iterator[Conn]:
    c = Conn(fake.url)
    yield c
    c.close()
    admin = Conn(fake.url)
    admin("DELETE", "/__admin/faults", None, {})
    admin("POST", "/__admin/reset", None, {})
    admin("DELETE", "/profiles/demo/p")
    admin.close()


def _attempt(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    """The status, or the name of the connection error the client saw."""
    c = Conn(url)
    try:
        return c(method, path, body, headers)[0]
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return type(exc).__name__
    finally:
        c.close()


@pytest.mark.parametrize(
    ("fault", "when", "created"),
    [
        ({"type": "status", "status": 503}, "before", False),
        ({"type": "status", "status": 503}, "after", True),
        ({"type": "reset"}, "before", False),
        ({"type": "reset"}, "after", True),
        ({"type": "close"}, "after", True),
        ({"type": "timeout", "hang_s": 0.05}, "before", False),
        ({"type": "latency", "fixed_ms": 5}, "before", True),
        ({"type": "latency", "fixed_ms": 5}, "after", True),
        ({"type": "truncate"}, "before", True),
        ({"type": "malformed_json"}, "before", True),
        ({"type": "status", "status": 502, "latency": {"fixed_ms": 5}}, "before", False),
    ],
    ids=lambda v: v if isinstance(v, str) else (v["type"] if isinstance(v, dict) else str(v)),
)
def test_the_api_acts_exactly_as_the_fault_and_its_when_say(
    fake: ServerThread, conn: Conn, fault: dict[str, Any], when: str, created: bool
) -> None:
    rule = {"id": "f", "match": {"method": "POST", "path": "/profiles"}, "fault": fault, "when": when}
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201
    _attempt(fake.url, "POST", "/profiles", CREATE)
    assert conn("DELETE", "/__admin/faults/f", None, {})[0] == 204
    assert conn("GET", "/profiles/demo/p")[0] == (200 if created else 404)
    # Once at most: a second create is refused if the first happened, accepted if not.
    assert conn("POST", "/profiles", CREATE)[0] == (409 if created else 201)
    journal = conn("GET", "/__admin/requests?method=POST&path=/profiles", None, {})[2]["requests"]
    assert [e["rule"] or (e["rules"] or [None])[0] for e in journal][-2:] == ["f", None]


def test_a_fault_that_answers_first_is_not_a_failed_login(fake: ServerThread, conn: Conn) -> None:
    """The wrong key is only seen once the API runs; a 503 in its place must not count it."""
    rule = {"id": "down", "match": {"path": "/profiles/demo/p"}, "fault": {"type": "status", "status": 503}}
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201
    wrong = {"X-API-Key": "not-a-key"}
    for _ in range(5):
        assert _attempt(fake.url, "GET", "/profiles/demo/p", None, wrong) == 503
    assert conn("DELETE", "/__admin/faults/down", None, {})[0] == 204
    # Not throttled: none of the five counted. (Three would have.)
    assert _attempt(fake.url, "GET", "/profiles/demo/p", None, wrong) == 401
    assert _attempt(fake.url, "GET", "/profiles/demo/p", None, dict(KEY)) == 404


@pytest.mark.parametrize("path", ["/nowhere", "/profiles/a/b/c"])
def test_a_request_that_reaches_no_route_still_gets_its_fault(
    fake: ServerThread, conn: Conn, path: str
) -> None:
    """Under /profiles the arrival waits for a state operation that never comes: it is sent when
    the 404 starts, and the fault goes instead."""
    rule = {"id": "gone", "match": {"path": path}, "fault": {"type": "status", "status": 418}}
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201
    assert _attempt(fake.url, "GET", path) == 418
    assert _attempt(fake.url, "GET", path + "x") == 404
