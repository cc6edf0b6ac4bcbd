"""The document's bounds hold exactly on the wire: a value on a bound is accepted, one step past it
is refused with 422 naming the field, and the refused write changes nothing.

Generated invalid data seldom lands one step past a bound with everything else valid (right
tenant, free name), so an off-by-one in validation slips past schemathesis; these checks aim at
the edges directly. The bounds are read from the provider's own ``/openapi.json``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.socket


@pytest.fixture(scope="module")
def http(provider_url: str, api_key: str) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["X-API-Key"] = api_key
    yield session
    session.close()


@pytest.fixture(scope="module")
def vector_bounds(provider_url: str, http: requests.Session) -> dict[str, Any]:
    """The hrv_vector schema the document gives for a create."""
    document = http.get(f"{provider_url}/openapi.json", timeout=10).json()
    vector = document["components"]["schemas"]["ProfileCreate"]["properties"]["hrv_vector"]
    return {
        "min_items": int(vector["minItems"]),
        "max_items": int(vector["maxItems"]),
        "minimum": float(vector["items"]["minimum"]),
        "maximum": float(vector["items"]["maximum"]),
    }


def _vectors(b: dict[str, Any]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Vectors on each bound (valid) and one step past it (invalid)."""
    middle = (b["minimum"] + b["maximum"]) / 2
    n = b["min_items"]
    on = {
        "shortest": [middle] * b["min_items"],
        "longest": [middle] * b["max_items"],
        "lowest values": [b["minimum"]] * n,
        "highest values": [b["maximum"]] * n,
    }
    past = {
        "one number short": [middle] * (b["min_items"] - 1),
        "one number long": [middle] * (b["max_items"] + 1),
        "a value below the minimum": [middle] * (n - 1) + [b["minimum"] - 0.001],
        "a value above the maximum": [middle] * (n - 1) + [b["maximum"] + 0.001],
    }
    return on, past


def _refused(response: requests.Response, field: str) -> None:
    assert response.status_code == 422, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    assert error["code"] and error["request_id"]
    named = [str(part) for detail in error.get("details", []) for part in detail.get("loc", [])]
    assert field in named or field in error["message"], error


def test_vectors_on_the_bounds_are_accepted_and_past_them_refused(
    provider_url: str, tenant: str, http: requests.Session, vector_bounds: dict[str, Any]
) -> None:
    """POST /profiles and PUT on a profile: every vector on a bound is stored as sent; every
    vector one step past one is 422 naming hrv_vector, and nothing is created or changed."""
    on, past = _vectors(vector_bounds)
    name = f"bounds-{uuid.uuid4().hex[:12]}"
    url = f"{provider_url}/profiles/{tenant}/{name}"
    for why, vector in past.items():
        body = {"tenant": tenant, "profile_name": name, "hrv_vector": vector}
        _refused(http.post(f"{provider_url}/profiles", json=body, timeout=10), "hrv_vector")
        assert http.get(url, timeout=10).status_code == 404, f"a create with {why} left a profile"
    first = next(iter(on.values()))
    created = http.post(
        f"{provider_url}/profiles",
        json={"tenant": tenant, "profile_name": name, "hrv_vector": first},
        timeout=10,
    )
    assert created.status_code == 201, created.text[:300]
    try:
        for why, vector in on.items():
            response = http.put(url, json={"hrv_vector": vector}, timeout=10)
            assert response.status_code == 200, f"{why}: {response.status_code} {response.text[:300]}"
            assert response.json()["hrv_vector"] == vector
        stored = http.get(url, timeout=10).json()
        for why, vector in past.items():
            _refused(http.put(url, json={"hrv_vector": vector}, timeout=10), "hrv_vector")
            after = http.get(url, timeout=10).json()
            assert after["hrv_vector"] == stored["hrv_vector"], f"a refused update with {why} changed it"
            assert after["version"] == stored["version"]
    finally:
        http.delete(url, timeout=10)
