"""Idempotency-Key on the three POSTs: replay, mismatch, per tenant, under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mock_server import ServerThread

from .conftest import Caller, error_of

pytestmark = pytest.mark.socket
PROFILE = {"tenant": "demo", "profile_name": "once", "hrv_vector": [0.5] * 8}


def test_repeat_replays_and_creates_nothing(demo: Caller) -> None:
    """The same key and body replays the first 201 with Idempotent-Replayed, creating one profile."""
    first = demo("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "k1"})
    second = demo("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert second.json() == first.json() and second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["Location"] == first.headers["Location"]
    assert len(demo("GET", "/profiles").json()["items"]) == 1


def test_other_body_same_key_is_422(demo: Caller) -> None:
    """Reusing a key with a different body is 422 and changes nothing."""
    demo("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "k2"})
    other = demo(
        "POST", "/profiles", json={**PROFILE, "profile_name": "twice"}, headers={"Idempotency-Key": "k2"}
    )
    assert other.status_code == 422 and error_of(other)["code"] == "validation_error"
    assert [p["profile_name"] for p in demo("GET", "/profiles").json()["items"]] == ["once"]


def test_generate_replays_exactly(demo: Caller) -> None:
    """A keyed generate replays the first answer byte for byte, request id included."""
    first = demo("POST", "/hr_generate", json={"prompt": "p"}, headers={"Idempotency-Key": "g"})
    second = demo("POST", "/hr_generate", json={"prompt": "p"}, headers={"Idempotency-Key": "g"})
    assert second.content == first.content and second.headers["Idempotent-Replayed"] == "true"
    batch = {"prompts": ["a", "b"]}
    b1 = demo("POST", "/hr_generate/batch", json=batch, headers={"Idempotency-Key": "b"})
    b2 = demo("POST", "/hr_generate/batch", json=batch, headers={"Idempotency-Key": "b"})
    assert b1.content == b2.content and b2.headers["Idempotent-Replayed"] == "true"


def test_keys_are_per_tenant(demo: Caller, acme: Caller) -> None:
    """The same key used by two tenants names two different requests."""
    demo("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "shared"})
    theirs = acme(
        "POST", "/profiles", json={**PROFILE, "tenant": "acme"}, headers={"Idempotency-Key": "shared"}
    )
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["tenant"] == "acme"


def test_concurrent_repeats_create_one(mock_server: ServerThread) -> None:
    """Twenty concurrent POSTs with one key create exactly one profile and all answer 201."""

    def post(_: int) -> int:
        caller = Caller(mock_server.url, {"X-API-Key": "demo-key"})
        return caller("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "race"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(20)))
    assert statuses == [201] * 20
    caller = Caller(mock_server.url, {"X-API-Key": "demo-key"})
    assert len(caller("GET", "/profiles").json()["items"]) == 1


def test_bad_key_is_400(demo: Caller) -> None:
    """A key longer than 255 characters is refused before anything happens."""
    response = demo("POST", "/profiles", json=PROFILE, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400
    assert demo("GET", "/profiles").json()["items"] == []
