"""``--cors``: browser preflights answered, cross-origin responses readable, admin API left out."""

from __future__ import annotations

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server.exceptions import ConfigError

from .conftest import error_of

pytestmark = pytest.mark.socket

APP = "http://localhost:3000"
KEY = {"X-API-Key": "demo-key"}


def preflight(server: ServerThread, path: str, origin: str = APP, method: str = "POST") -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-api-key,idempotency-key",
    }
    return requests.options(server.url + path, headers=headers, timeout=5)


@pytest.mark.mock_server(cors=f"{APP}, http://127.0.0.1:5173")
def test_a_preflight_from_an_allowed_origin_is_answered(mock_server: ServerThread) -> None:
    answer = preflight(mock_server, "/profiles")
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert answer.headers["Access-Control-Allow-Headers"] == "content-type,x-api-key,idempotency-key"
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in answer.headers["Vary"]


@pytest.mark.mock_server(cors=APP)
def test_preflights_take_no_rate_limit_token_and_are_not_journalled(mock_server: ServerThread) -> None:
    url = mock_server.url + "/profiles"
    before = int(requests.get(url, headers=KEY, timeout=5).headers["X-RateLimit-Remaining"])
    for _ in range(30):
        assert preflight(mock_server, "/profiles", method="GET").status_code == 204
    after = int(requests.get(url, headers=KEY, timeout=5).headers["X-RateLimit-Remaining"])
    assert after >= before - 1  # one GET, not 30 preflights
    assert [e["method"] for e in mock_server.admin.requests()] == ["GET", "GET"]


@pytest.mark.mock_server(cors=APP)
def test_a_cross_origin_request_can_read_the_response_and_its_headers(mock_server: ServerThread) -> None:
    body = {"tenant": "demo", "profile_name": "cors", "hrv_vector": [0.5] * 8}
    created = requests.post(
        mock_server.url + "/profiles", json=body, headers={**KEY, "Origin": APP}, timeout=5
    )
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == APP
    exposed = {h.strip().lower() for h in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "x-request-id",
        "etag",
        "location",
        "retry-after",
        "x-ratelimit-remaining",
        "ratelimit",
    } <= exposed
    denied = requests.get(mock_server.url + "/profiles", headers={"Origin": APP}, timeout=5)
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == APP


@pytest.mark.mock_server(cors=APP)
def test_another_origin_gets_no_cors_headers(mock_server: ServerThread) -> None:
    refused = preflight(mock_server, "/profiles", origin="http://evil.example")
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "http://evil.example" in error_of(refused)["message"]
    plain = requests.get(
        mock_server.url + "/profiles", headers={**KEY, "Origin": "http://evil.example"}, timeout=5
    )
    assert plain.status_code == 200 and "Access-Control-Allow-Origin" not in plain.headers


@pytest.mark.mock_server(cors="*")
def test_a_star_allows_every_origin(mock_server: ServerThread) -> None:
    answer = preflight(mock_server, "/hr_generate", origin="http://anything.example:8080")
    assert answer.status_code == 204 and answer.headers["Access-Control-Allow-Origin"] == "*"
    got = requests.get(mock_server.url + "/health", headers={"Origin": "http://x.example"}, timeout=5)
    assert got.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.mock_server(cors="*")
def test_the_admin_api_is_not_opened_to_browsers(mock_server: ServerThread) -> None:
    answer = preflight(mock_server, "/__admin/faults")
    assert "Access-Control-Allow-Origin" not in answer.headers
    got = requests.get(mock_server.url + "/__admin/requests", headers={"Origin": APP}, timeout=5)
    assert "Access-Control-Allow-Origin" not in got.headers


def test_without_cors_a_preflight_is_a_405(mock_server: ServerThread) -> None:
    answer = preflight(mock_server, "/profiles")
    assert answer.status_code == 405 and "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize("bad", ["localhost:3000", "http://localhost:3000/app", "*, http://a.example", ""])
def test_a_bad_origin_list_names_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match="cors"):
        ServerThread(ServerConfig(db=":memory:", cors=bad))
