"""The compliance report catches a naive requests loop and passes a client that behaves."""

from __future__ import annotations

import time
import uuid
from email.utils import parsedate_to_datetime

import pytest
import requests

pytestmark = pytest.mark.socket

RULES = {
    "rules": [
        {
            "id": "throttle",
            "match": {"path": "/hello"},
            "sequence": [{"type": "status", "status": 429, "retry_after": 1}, "ok"],
        },
        {
            "id": "post-fails",
            "match": {"method": "POST", "path": "/echo"},
            "sequence": [{"type": "status", "status": 503}, "ok"],
        },
        {
            "id": "outage",
            "match": {"path": "/big"},
            "window": {"start_s": 0, "duration_s": 600},
            "fault": {"type": "status", "status": 503},
        },
    ]
}


def report(server, session: str) -> dict:
    return server.admin("GET", "/compliance", params={"session": session}).json()


def kinds(rep: dict) -> set[str]:
    return {f["kind"] for f in rep["findings"]}


def naive_client(url: str, session: str) -> None:
    """What people write first: retry at once, whatever the server said."""
    headers = {"X-Mock-Session": session}
    for _ in range(5):
        if requests.get(url + "/hello", headers=headers, timeout=5).status_code == 200:
            break
    for _ in range(5):
        if requests.post(url + "/echo", data=b"{}", headers=headers, timeout=5).status_code < 500:
            break
    for _ in range(12):
        requests.get(url + "/big", headers=headers, timeout=5)


def retry_after_seconds(response: requests.Response) -> float:
    value = response.headers["Retry-After"]
    if value.isdigit():
        return float(value)
    return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())


def good_client(url: str, session: str) -> None:
    """Honours Retry-After, keys its POSTs, backs off and gives up on an outage."""
    headers = {"X-Mock-Session": session}
    for _ in range(3):
        response = requests.get(url + "/hello", headers=headers, timeout=5)
        if response.status_code != 429:
            break
        time.sleep(retry_after_seconds(response) + 0.05)
    post_headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(3):
        if requests.post(url + "/echo", data=b"{}", headers=post_headers, timeout=5).status_code < 500:
            break
        time.sleep(0.03 * 2**attempt)
    request_id = uuid.uuid4().hex
    for attempt in range(4):
        get_headers = {**headers, "X-Request-ID": request_id}
        if requests.get(url + "/big", headers=get_headers, timeout=5).status_code < 500:
            break
        time.sleep(0.03 * 2**attempt)


def test_naive_loop_is_flagged_and_good_client_passes(serve_faults):
    """The naive loop fails with named findings; the polite client, against the same rules, passes."""
    server = serve_faults(RULES)
    naive_client(server.url, "naive")
    good_client(server.url, "good")

    bad = report(server, "naive")
    assert bad["verdict"] == "fail"
    assert (
        {
            "retry_before_retry_after",
            "request_while_rate_limited",
            "unsafe_retry_without_idempotency_key",
            "no_backoff",
            "requests_into_outage",
            "excessive_attempts",
        }
        >= kinds(bad)
        >= {"retry_before_retry_after", "unsafe_retry_without_idempotency_key", "no_backoff"}
    )
    early = next(f for f in bad["findings"] if f["kind"] == "retry_before_retry_after")
    assert early["requests"][0]["path"] == "/hello"
    assert early["requests"][0]["request_id"]
    assert "requests_into_outage" in kinds(bad)
    assert bad["score"] < 100

    good = report(server, "good")
    assert good["findings"] == [], good["findings"]
    assert good["verdict"] == "pass"
    assert good["score"] == 100
    assert good["attempts"]["max"] == 4
    assert good["logical_requests"] == 3


def test_compliance_over_all_sessions(serve_faults):
    """Without ?session, the report covers everyone and still names the offenders' sessions."""
    server = serve_faults(RULES)
    naive_client(server.url, "n1")
    everyone = server.admin("GET", "/compliance").json()
    assert everyone["verdict"] == "fail"
    sessions = {r["session"] for f in everyone["findings"] for r in f["requests"]}
    assert sessions == {"n1"}
