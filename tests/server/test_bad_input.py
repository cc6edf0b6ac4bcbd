"""Bad input gets the contract's error body with a helpful message, never a 500, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Caller, error_of

pytestmark = pytest.mark.socket
JSON = {"Content-Type": "application/json"}
GOOD = {"tenant": "demo", "profile_name": "fresh", "hrv_vector": [0.5] * 8}


def _profile(**changes: Any) -> dict[str, Any]:
    return {"json": {**GOOD, **changes}}


CASES = [
    pytest.param(
        "POST", "/profiles", {"data": b"{not json", "headers": JSON}, 400, "bad_request", id="malformed"
    ),
    pytest.param("POST", "/profiles", {"data": b"", "headers": JSON}, 400, "bad_request", id="empty-body"),
    pytest.param(
        "POST", "/profiles", {"data": b"[" * 100_000, "headers": JSON}, 400, "bad_request", id="deep"
    ),
    pytest.param(
        "POST", "/profiles", {"data": b"\xff\xfe", "headers": JSON}, 400, "bad_request", id="not-utf8"
    ),
    pytest.param(
        "POST",
        "/profiles",
        {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        id="text-plain",
    ),
    pytest.param("POST", "/profiles", {"data": b"{}"}, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param(
        "POST",
        "/profiles",
        {"data": b"x" * (1024 * 1024 + 1), "headers": JSON},
        413,
        "payload_too_large",
        id="over-1mib",
    ),
    pytest.param("POST", "/profiles", {"json": [1, 2]}, 422, "validation_error", id="array-body"),
    pytest.param(
        "POST", "/profiles", _profile(hrv_vector=[0.5] * 7), 422, "validation_error", id="7-elements"
    ),
    pytest.param(
        "POST", "/profiles", _profile(hrv_vector=[0.5] * 9), 422, "validation_error", id="9-elements"
    ),
    pytest.param(
        "POST",
        "/profiles",
        {"data": b'{"tenant":"demo","profile_name":"x","hrv_vector":[NaN,0,0,0,0,0,0,0]}', "headers": JSON},
        422,
        "validation_error",
        id="nan",
    ),
    pytest.param(
        "POST",
        "/profiles",
        {
            "data": b'{"tenant":"demo","profile_name":"x","hrv_vector":[Infinity,0,0,0,0,0,0,0]}',
            "headers": JSON,
        },
        422,
        "validation_error",
        id="infinity",
    ),
    pytest.param(
        "POST",
        "/profiles",
        _profile(hrv_vector=[1.5] + [0.5] * 7),
        422,
        "validation_error",
        id="out-of-range",
    ),
    pytest.param(
        "POST", "/profiles", _profile(hrv_vector=["0.5"] * 8), 422, "validation_error", id="strings"
    ),
    pytest.param(
        "POST", "/profiles", _profile(hrv_vector=[True] * 8), 422, "validation_error", id="booleans"
    ),
    pytest.param("POST", "/profiles", _profile(profile_name="a/b"), 422, "validation_error", id="slash"),
    pytest.param("POST", "/profiles", _profile(profile_name=".."), 422, "validation_error", id="dotdot"),
    pytest.param("POST", "/profiles", _profile(profile_name="a b"), 422, "validation_error", id="space"),
    pytest.param(
        "POST", "/profiles", _profile(profile_name="x" * 65), 422, "validation_error", id="65-chars"
    ),
    pytest.param("POST", "/profiles", _profile(profile_name="ok\n"), 422, "validation_error", id="newline"),
    pytest.param(
        "POST",
        "/profiles",
        _profile(metadata={"k": "v" * 17_000}),
        422,
        "validation_error",
        id="metadata-too-big",
    ),
    pytest.param("POST", "/profiles", _profile(metadata=[1]), 422, "validation_error", id="metadata-list"),
    pytest.param("POST", "/profiles", {"json": {"tenant": "demo"}}, 422, "validation_error", id="missing"),
    pytest.param(
        "POST", "/hr_generate", {"json": {"prompt": ""}}, 422, "validation_error", id="empty-prompt"
    ),
    pytest.param(
        "POST", "/hr_generate", {"json": {"prompt": "x" * 10_001}}, 422, "validation_error", id="long-prompt"
    ),
    pytest.param("POST", "/hr_generate", {"json": {"prompt": 5}}, 422, "validation_error", id="prompt-int"),
    pytest.param(
        "POST",
        "/hr_generate",
        {"json": {"prompt": "x", "max_length": 0}},
        422,
        "validation_error",
        id="max-length-0",
    ),
    pytest.param(
        "POST",
        "/hr_generate",
        {"json": {"prompt": "x", "max_length": "5"}},
        422,
        "validation_error",
        id="max-length-str",
    ),
    pytest.param(
        "POST",
        "/hr_generate",
        {"json": {"prompt": "x", "temperature": 2.5}},
        422,
        "validation_error",
        id="temperature",
    ),
    pytest.param(
        "POST",
        "/hr_generate",
        {"data": b'{"prompt":"x","temperature":1e999}', "headers": JSON},
        422,
        "validation_error",
        id="huge-float",
    ),
    pytest.param(
        "POST", "/hr_generate/batch", {"json": {"prompts": []}}, 422, "validation_error", id="no-prompts"
    ),
    pytest.param(
        "POST",
        "/hr_generate/batch",
        {"json": {"prompts": ["x"] * 51}},
        422,
        "validation_error",
        id="51-prompts",
    ),
    pytest.param(
        "POST",
        "/hr_generate/batch",
        {"json": {"prompts": [1]}},
        422,
        "validation_error",
        id="prompt-not-string",
    ),
    pytest.param("GET", "/profiles?limit=0", {}, 422, "validation_error", id="limit-0"),
    pytest.param("GET", "/profiles?limit=101", {}, 422, "validation_error", id="limit-101"),
    pytest.param("GET", "/profiles?limit=abc", {}, 422, "validation_error", id="limit-abc"),
    pytest.param("GET", "/profiles?cursor=zzz", {}, 400, "bad_request", id="unknown-cursor"),
    pytest.param("GET", "/profiles/demo/a%20b", {}, 422, "validation_error", id="path-space"),
    pytest.param("GET", "/profiles/demo/" + "x" * 65, {}, 422, "validation_error", id="path-65"),
    pytest.param("GET", "/profiles/demo/a/b", {}, 404, "not_found", id="path-slash"),
    pytest.param(
        "PUT", "/profiles/demo/p1", {"json": {"hrv_vector": [2] * 8}}, 422, "validation_error", id="put-range"
    ),
    pytest.param(
        "PUT", "/profiles/demo/p1", {"data": b"{", "headers": JSON}, 400, "bad_request", id="put-json"
    ),
    pytest.param(
        "GET", "/analytics/usage?date_range=yesterday", {}, 422, "validation_error", id="range-word"
    ),
    pytest.param(
        "GET",
        "/analytics/usage?date_range=2024-13-01..2024-13-02",
        {},
        422,
        "validation_error",
        id="range-month-13",
    ),
    pytest.param("GET", "/analytics/performance?timeframe=2h", {}, 422, "validation_error", id="timeframe"),
    pytest.param("GET", "/analytics/performance?metric_type=cpu", {}, 422, "validation_error", id="metric"),
    pytest.param("DELETE", "/profiles", {}, 405, "method_not_allowed", id="wrong-method"),
    pytest.param("GET", "/profile", {}, 404, "not_found", id="unknown-route"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), CASES)
def test_bad_input(
    demo: Caller, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    """Each bad request gets its status and code, a message naming the problem, and stores nothing."""
    demo.create("p1")
    before = demo("GET", "/profiles").json()
    response = demo(method, path, **kwargs)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    if status == 422:
        assert error["details"] and all("loc" in d and "msg" in d for d in error["details"])
    assert demo("GET", "/profiles").json() == before


def test_validation_names_the_field(demo: Caller) -> None:
    """A 422 says which field is wrong and why."""
    error = error_of(demo.create("x", hrv_vector=[0.5] * 7))
    assert error["message"].startswith("hrv_vector:")
    assert error["details"][0]["loc"] == ["body", "hrv_vector"]


def test_unknown_fields_are_ignored(demo: Caller) -> None:
    """Fields the API does not know are ignored, not rejected."""
    assert demo.create("extra", colour="blue").status_code == 201
