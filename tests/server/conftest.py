from __future__ import annotations

from typing import Any

import pytest
import requests

from mock_server import ServerThread


class Caller:
    """A requests session bound to one fake and one credential."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def create(self, name: str, tenant: str = "demo", vector: float = 0.5, **extra: Any) -> requests.Response:
        body = {"tenant": tenant, "profile_name": name, "hrv_vector": [vector] * 8, **extra}
        return self("POST", "/profiles", json=body)


@pytest.fixture
def demo(mock_server: ServerThread) -> Caller:
    return Caller(mock_server.url, {"X-API-Key": "demo-key"})


@pytest.fixture
def acme(mock_server: ServerThread) -> Caller:
    return Caller(mock_server.url, {"X-API-Key": "acme-key"})


@pytest.fixture
def anon(mock_server: ServerThread) -> Caller:
    return Caller(mock_server.url)


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert error["message"]
    return error
