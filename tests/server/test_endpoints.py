"""Each endpoint's success paths over real HTTP."""

from __future__ import annotations

import pytest

from .conftest import Caller, error_of

pytestmark = pytest.mark.socket


def test_health_needs_no_credentials(anon: Caller) -> None:
    """/health answers without credentials, with status, version and a timestamp."""
    response = anon("GET", "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["version"].startswith("6.")
    assert body["timestamp"].endswith("Z")
    assert response.headers["X-Request-ID"]


def test_request_id_is_echoed(anon: Caller) -> None:
    """A client's X-Request-ID comes back unchanged, on errors too."""
    assert anon("GET", "/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    missing = anon("GET", "/nowhere", headers={"X-Request-ID": "r-404"})
    assert error_of(missing)["request_id"] == "r-404"


def test_generate_is_deterministic(demo: Caller) -> None:
    """The same inputs give the same content and vector; other inputs differ."""
    body = {"prompt": "a calm story", "max_length": 64, "temperature": 0.3}
    first = demo("POST", "/hr_generate", json=body).json()
    second = demo("POST", "/hr_generate", json=body).json()
    other = demo("POST", "/hr_generate", json={**body, "temperature": 0.4}).json()
    assert first["content"] == second["content"] and first["hrv_vector"] == second["hrv_vector"]
    assert first["hrv_vector"] != other["hrv_vector"]
    assert len(first["hrv_vector"]) == 8 and all(0 <= v <= 1 for v in first["hrv_vector"])
    meta = first["metadata"]
    assert meta["tenant"] == "demo" and meta["max_length"] == 64 and meta["temperature"] == 0.3
    assert 1 <= meta["tokens"] <= 64


def test_generate_uses_a_profile(demo: Caller) -> None:
    """A profile_name that exists shapes the vector; an unknown one is 404."""
    assert demo.create("warm", vector=1.0).status_code == 201
    shaped = demo("POST", "/hr_generate", json={"prompt": "x", "profile_name": "warm"}).json()
    assert shaped["metadata"]["profile_name"] == "warm"
    # The profile's vector of ones pulls every component to at least one half.
    assert all(v >= 0.5 for v in shaped["hrv_vector"])
    missing = demo("POST", "/hr_generate", json={"prompt": "x", "profile_name": "cold"})
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_generate_rejects_another_tenant(demo: Caller) -> None:
    """Naming another tenant in the body is 403."""
    response = demo("POST", "/hr_generate", json={"prompt": "x", "tenant": "acme"})
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"


def test_batch_keeps_order_and_reports_items(demo: Caller) -> None:
    """A batch answers one entry per prompt, in order, with per-item errors."""
    response = demo("POST", "/hr_generate/batch", json={"prompts": ["one", "", "three"]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert results[1]["error"]["code"] == "validation_error"
    single = demo("POST", "/hr_generate", json={"prompt": "three"}).json()
    assert results[2]["result"]["content"] == single["content"]


def test_profile_lifecycle(demo: Caller) -> None:
    """Create, read, update and delete one profile with its validators."""
    created = demo.create("p1", metadata={"mood": "warm"})
    assert created.status_code == 201
    assert created.headers["Location"] == "/profiles/demo/p1"
    profile = created.json()
    assert profile["version"] == 1 and profile["metadata"] == {"mood": "warm"}
    got = demo("GET", "/profiles/demo/p1")
    assert got.json() == profile
    assert got.headers["ETag"] == created.headers["ETag"]
    assert got.headers["Cache-Control"] == "private, max-age=30"
    assert got.headers["Last-Modified"].endswith("GMT")
    updated = demo("PUT", "/profiles/demo/p1", json={"hrv_vector": [0.1] * 8})
    assert updated.status_code == 200
    assert updated.json()["version"] == 2 and updated.json()["metadata"] == {"mood": "warm"}
    assert updated.headers["ETag"] != got.headers["ETag"]
    assert demo("DELETE", "/profiles/demo/p1").status_code == 204
    assert demo("GET", "/profiles/demo/p1").status_code == 404
    assert demo("DELETE", "/profiles/demo/p1").status_code == 404


def test_create_twice_conflicts(demo: Caller) -> None:
    """Creating an existing profile is 409 and leaves it unchanged."""
    demo.create("dup", vector=0.2)
    again = demo.create("dup", vector=0.9)
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    assert demo("GET", "/profiles/demo/dup").json()["hrv_vector"] == [0.2] * 8


def test_conditional_get(demo: Caller) -> None:
    """A matching If-None-Match or a later If-Modified-Since gives 304 without a body."""
    created = demo.create("cond")
    etag, modified = created.headers["ETag"], created.headers["Last-Modified"]
    assert demo("GET", "/profiles/demo/cond", headers={"If-None-Match": etag}).status_code == 304
    assert demo("GET", "/profiles/demo/cond", headers={"If-None-Match": '"other"'}).status_code == 200
    not_modified = demo("GET", "/profiles/demo/cond", headers={"If-Modified-Since": modified})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert demo("GET", "/profiles/demo/cond", headers={"If-Modified-Since": old}).status_code == 200


def test_if_match_guards_writes(demo: Caller) -> None:
    """A stale If-Match is 412 on PUT and DELETE; the current one succeeds."""
    etag = demo.create("guarded").headers["ETag"]
    fresh = demo("PUT", "/profiles/demo/guarded", json={"hrv_vector": [0.3] * 8}, headers={"If-Match": etag})
    assert fresh.status_code == 200
    stale = demo("PUT", "/profiles/demo/guarded", json={"hrv_vector": [0.4] * 8}, headers={"If-Match": etag})
    assert stale.status_code == 412 and error_of(stale)["code"] == "precondition_failed"
    assert demo("DELETE", "/profiles/demo/guarded", headers={"If-Match": etag}).status_code == 412
    assert demo("GET", "/profiles/demo/guarded").json()["hrv_vector"] == [0.3] * 8
    current = fresh.headers["ETag"]
    assert demo("DELETE", "/profiles/demo/guarded", headers={"If-Match": current}).status_code == 204


def test_pagination_walks_every_profile_once(demo: Caller) -> None:
    """Cursors walk all profiles in name order without repeats; a list ETag allows 304."""
    names = [f"n{i:02d}" for i in range(23)]
    for name in reversed(names):
        assert demo.create(name).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = demo("GET", "/profiles", params=params).json()
        seen += [item["profile_name"] for item in page["items"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == names and pages == 5
    listing = demo("GET", "/profiles")
    assert demo("GET", "/profiles", headers={"If-None-Match": listing.headers["ETag"]}).status_code == 304


def test_cursor_tampering_is_400(demo: Caller, acme: Caller) -> None:
    """A changed cursor, or one issued to another tenant, is 400."""
    for name in ("a", "b", "c"):
        demo.create(name)
    cursor = demo("GET", "/profiles", params={"limit": 1}).json()["next_cursor"]
    forged = cursor[:-1] + ("0" if cursor[-1] != "0" else "1")
    response = demo("GET", "/profiles", params={"cursor": forged})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_request"
    assert acme("GET", "/profiles", params={"cursor": cursor}).status_code == 400
    assert demo("GET", "/profiles", params={"cursor": "garbage"}).status_code == 400


def test_usage_counts_real_traffic(demo: Caller, acme: Caller) -> None:
    """Usage totals count the caller's own requests by endpoint, status and day."""
    for _ in range(3):
        demo("GET", "/profiles")
    demo("GET", "/profiles/demo/missing")
    acme("GET", "/profiles")
    usage = demo("GET", "/analytics/usage", params={"date_range": "today"}).json()
    assert usage["by_endpoint"] == {"GET /profiles": 3, "GET /profiles/{tenant}/{profile_name}": 1}
    assert usage["by_status"] == {"200": 3, "404": 1}
    assert usage["total"] == 4 and len(usage["by_day"]) == 1
    day = usage["date_range"]["start"]
    explicit = demo("GET", "/analytics/usage", params={"date_range": f"{day}..{day}"}).json()
    assert explicit["total"] == 5  # the first usage call counts too
    reversed_range = demo("GET", "/analytics/usage", params={"date_range": "2030-01-02..2030-01-01"}).json()
    assert reversed_range["total"] == 0


def test_performance_reflects_traffic(demo: Caller) -> None:
    """Performance reports latency percentiles, error rate and throughput of real requests."""
    for _ in range(5):
        demo("GET", "/profiles")
    report = demo(
        "GET", "/analytics/performance", params={"timeframe": "1m", "metric_type": "latency"}
    ).json()
    assert report["requests"] == 5 and report["window"] == "1m"
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert report["error_rate"] == 0 and report["requests_per_second"] == pytest.approx(5 / 60, abs=1e-5)


def test_openapi_is_served(anon: Caller) -> None:
    """/openapi.json is OpenAPI 3.1 describing every route."""
    doc = anon("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/health",
        "/oauth/token",
        "/hr_generate",
        "/hr_generate/batch",
        "/profiles",
        "/profiles/{tenant}/{profile_name}",
        "/analytics/usage",
        "/analytics/performance",
    }


def test_unknown_route_and_method(anon: Caller, demo: Caller) -> None:
    """Unknown routes are 404 JSON and wrong methods 405 JSON with Allow."""
    missing = anon("GET", "/v2/nothing")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = demo("PATCH", "/profiles")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"] and "POST" in wrong.headers["Allow"]
