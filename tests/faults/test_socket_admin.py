"""The admin API over real sockets: rules, journal, wait, reset, metrics and access control."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests

from mock_server._faults import FaultLayer

from .conftest import STACKS

pytestmark = pytest.mark.socket

START = {
    "seed": 5,
    "rules": [{"id": "boot", "match": {"path": "/boot"}, "fault": {"type": "status", "status": 500}}],
}


@pytest.fixture
def server(serve_faults):
    return serve_faults(START)


def test_list_add_get_put_delete(server):
    """Rules can be listed, added, read, replaced and removed at runtime."""
    listed = server.admin("GET", "/faults").json()
    assert listed["seed"] == 5
    assert [r["id"] for r in listed["rules"]] == ["boot"]

    rule = {"id": "teapot", "match": {"path": "/hello"}, "fault": {"type": "status", "status": 418}}
    created = server.admin("POST", "/faults", json=rule)
    assert created.status_code == 201
    assert created.headers["Location"] == "/__admin/faults/teapot"
    assert created.json() == rule
    assert requests.get(server.url + "/hello", timeout=5).status_code == 418

    assert server.admin("GET", "/faults/teapot").json() == rule
    replaced = server.admin("PUT", "/faults/teapot", json={"fault": {"type": "status", "status": 409}})
    assert replaced.status_code == 200
    assert requests.get(server.url + "/hello", timeout=5).status_code == 409
    assert server.admin("GET", "/faults").json()["stats"]["teapot"] == {"matched": 1, "fired": 1}

    assert server.admin("DELETE", "/faults/teapot").status_code == 204
    assert server.admin("GET", "/faults/teapot").status_code == 404
    assert server.admin("DELETE", "/faults/teapot").status_code == 404
    assert requests.get(server.url + "/hello", timeout=5).status_code == 200


def test_add_several_and_generated_ids(server):
    """A body with ``rules`` adds them all; rules without an id get a free ``rule-N``."""
    added = server.admin(
        "POST", "/faults", json={"rules": [{"fault": {"type": "reset"}, "match": {"path": "/x"}}]}
    )
    assert added.status_code == 201
    assert added.json()["rules"][0]["id"].startswith("rule-")
    put_new = server.admin("PUT", "/faults/fresh", json={"fault": {"type": "close"}, "match": {"path": "/y"}})
    assert put_new.status_code == 201


def test_bad_rule_is_422_and_old_rules_stay(server):
    """A bad rule is rejected naming the field; the rules in force do not change."""
    before = server.admin("GET", "/faults").json()["rules"]
    bad = server.admin(
        "POST",
        "/faults",
        json={
            "rules": [
                {"id": "ok-one", "fault": {"type": "reset"}},
                {"fault": {"type": "status", "status": 600}},
            ]
        },
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == "rules[1].fault.status: must be 400..599, got 600"
    assert error["details"] == [{"loc": ["rules", 1, "fault", "status"], "msg": "must be 400..599, got 600"}]
    replace = server.admin("PUT", "/faults", json={"rules": [{"fault": {"type": "latency", "fixed_ms": -1}}]})
    assert replace.status_code == 422
    put_one = server.admin("PUT", "/faults/boot", json={"fault": {"type": "nope"}})
    assert put_one.status_code == 422
    assert put_one.json()["error"]["details"][0]["loc"] == ["fault", "type"]
    assert server.admin("GET", "/faults").json()["rules"] == before


def test_conflicts_and_bad_json(server):
    """An existing id is a 409; a body that is not JSON is a 400; an id differing from the path a 422."""
    assert server.admin("POST", "/faults", json={"id": "boot", "fault": {"type": "reset"}}).status_code == 409
    not_json = server.admin("POST", "/faults", data=b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "bad_request"
    mismatch = server.admin("PUT", "/faults/boot", json={"id": "other", "fault": {"type": "reset"}})
    assert mismatch.status_code == 422


def test_replace_whole_set_and_reset_faults(server):
    """PUT /faults swaps every rule; POST /faults/reset brings back the start-up rules."""
    swapped = server.admin(
        "PUT", "/faults", json={"seed": 9, "rules": [{"id": "a", "fault": {"type": "reset"}}]}
    )
    assert swapped.json()["seed"] == 9
    assert [r["id"] for r in server.admin("GET", "/faults").json()["rules"]] == ["a"]
    restored = server.admin("POST", "/faults/reset").json()
    assert [r["id"] for r in restored["rules"]] == ["boot"]


def test_unknown_admin_route_is_a_json_404(server):
    """Unknown admin routes answer 404 with the error body; wrong methods 405."""
    missing = server.admin("GET", "/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = server.admin("PATCH", "/faults")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_admin_requests_never_reach_the_api_nor_match_rules(server):
    """A catch-all rule does not touch /__admin, and admin calls are not journaled."""
    server.admin("POST", "/faults", json={"id": "all", "fault": {"type": "reset"}})
    assert server.admin("GET", "/requests").status_code == 200
    assert server.admin("GET", "/requests/count").json() == {"count": 0}


def test_journal_filters(server):
    """The journal filters by method, path, status, session, fault and limit."""
    requests.get(server.url + "/hello?x=1", headers={"X-Mock-Session": "a"}, timeout=5)
    requests.get(server.url + "/boot", headers={"X-Mock-Session": "b", "Idempotency-Key": "k1"}, timeout=5)
    requests.post(server.url + "/echo", data=b"abc", headers={"X-Mock-Session": "a"}, timeout=5)
    everything = server.admin("GET", "/requests").json()
    assert everything["count"] == 3
    first = everything["requests"][0]
    assert first["path"] == "/hello" and first["query"] == "x=1" and first["status"] == 200
    assert first["completed"] is True and first["duration_ms"] is not None
    assert server.admin("GET", "/requests", params={"session": "a"}).json()["count"] == 2
    assert (
        server.admin("GET", "/requests", params={"method": "POST"}).json()["requests"][0]["path"] == "/echo"
    )
    boot = server.admin("GET", "/requests", params={"status": "5xx"}).json()["requests"]
    assert [(e["path"], e["rule"], e["idempotency_key"]) for e in boot] == [("/boot", "boot", "k1")]
    assert server.admin("GET", "/requests", params={"fault": "boot"}).json()["count"] == 1
    assert server.admin("GET", "/requests", params={"fault": "none"}).json()["count"] == 2
    assert server.admin("GET", "/requests", params={"path": "/h*"}).json()["count"] == 1
    assert server.admin("GET", "/requests", params={"limit": 1}).json()["requests"][0]["path"] == "/echo"
    since = everything["requests"][1]["arrived_at"]
    assert server.admin("GET", "/requests/count", params={"since": since}).json() == {"count": 2}
    assert server.admin("GET", "/requests", params={"status": "abc"}).status_code == 422
    assert server.admin("GET", "/requests", params={"colour": "red"}).status_code == 422
    assert server.admin("DELETE", "/requests", params={"session": "a"}).json() == {"deleted": 2}
    assert server.admin("DELETE", "/requests").json() == {"deleted": 1}
    assert server.admin("GET", "/requests/count").json() == {"count": 0}


def test_journal_keeps_no_secrets(server):
    """Credentials in headers are never kept; secret-looking query parameters are redacted."""
    requests.get(
        server.url + "/hello?api_key=demo-key&page=2",
        headers={"X-API-Key": "demo-key", "Authorization": "Bearer s3cret-token"},
        timeout=5,
    )
    text = server.admin("GET", "/requests").text
    assert "demo-key" not in text and "s3cret" not in text
    entry = server.admin("GET", "/requests").json()["requests"][0]
    assert entry["query"] == "api_key=***&page=2"
    assert entry["tenant"] == "demo"


def test_journal_is_a_bounded_ring(serve_faults):
    """The journal keeps only the newest ``journal_size`` entries."""
    small = serve_faults(journal_size=3)
    for i in range(5):
        requests.get(small.url + f"/hello?i={i}", timeout=5)
    kept = small.admin("GET", "/requests").json()["requests"]
    assert [e["query"] for e in kept] == ["i=2", "i=3", "i=4"]


def test_wait_answers_when_requests_arrive(server):
    """requests/wait returns as soon as the count is reached, and 408 when it is not in time."""
    thread = threading.Thread(
        target=lambda: [
            requests.get(server.url + "/hello", headers={"X-Mock-Session": "w"}, timeout=5) for _ in range(3)
        ]
    )
    thread.start()
    waited = server.admin(
        "POST", "/requests/wait", json={"filter": {"session": "w"}, "count": 3, "timeout_s": 10}
    )
    thread.join()
    assert waited.status_code == 200
    assert waited.json()["count"] == 3
    late = server.admin(
        "POST", "/requests/wait", json={"filter": {"session": "w"}, "count": 4, "timeout_s": 0.05}
    )
    assert late.status_code == 408
    assert "3 of 4" in late.json()["error"]["message"]
    bad = server.admin("POST", "/requests/wait", json={"count": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["count"]


def test_reset_cancels_held_requests_and_calls_on_reset(server):
    """POST /__admin/reset releases requests held by delays and timeouts at once (503)."""
    server.admin(
        "POST",
        "/faults",
        json={
            "rules": [
                {"id": "slow", "match": {"path": "/hello"}, "fault": {"type": "latency", "fixed_ms": 60_000}},
                {"id": "hang", "match": {"path": "/big"}, "fault": {"type": "timeout"}},
            ]
        },
    )
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda p=p: statuses.append(requests.get(server.url + p, timeout=30).status_code)
        )
        for p in ("/hello", "/big")
    ]
    for t in threads:
        t.start()
    assert server.admin("POST", "/requests/wait", json={"count": 2, "timeout_s": 5}).status_code == 200
    reset = server.admin("POST", "/reset").json()
    assert reset["held_requests_cancelled"] == 2
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert sorted(statuses) == [503, 503]
    assert server.resets == [None]
    assert [r["id"] for r in server.admin("GET", "/faults").json()["rules"]] == ["boot"]
    assert server.admin("GET", "/requests/count").json()["count"] <= 2


def test_reset_one_session(server):
    """A session reset clears that session's counters and journal, and tells the API which session."""
    server.admin(
        "POST",
        "/faults",
        json={
            "id": "once",
            "match": {"path": "/hello"},
            "times": 1,
            "fault": {"type": "status", "status": 500},
        },
    )
    for session in ("a", "b"):
        assert (
            requests.get(server.url + "/hello", headers={"X-Mock-Session": session}, timeout=5).status_code
            == 500
        )
        assert (
            requests.get(server.url + "/hello", headers={"X-Mock-Session": session}, timeout=5).status_code
            == 200
        )
    server.admin("POST", "/reset", params={"session": "a"})
    assert server.resets == ["a"]
    assert server.admin("GET", "/requests/count", params={"session": "a"}).json()["count"] == 0
    assert server.admin("GET", "/requests/count", params={"session": "b"}).json()["count"] == 2
    assert requests.get(server.url + "/hello", headers={"X-Mock-Session": "a"}, timeout=5).status_code == 500
    assert requests.get(server.url + "/hello", headers={"X-Mock-Session": "b"}, timeout=5).status_code == 200


def test_metrics_in_prometheus_text(server):
    """Metrics count requests by route and status, faults by rule, and injected vs actual delay."""
    server.admin(
        "POST",
        "/faults",
        json={"id": "lag", "match": {"path": "/hello"}, "fault": {"type": "latency", "fixed_ms": 20}},
    )
    requests.get(server.url + "/hello", timeout=5)
    requests.get(server.url + "/boot", timeout=5)
    response = server.admin("GET", "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'mock_requests_total{route="/hello",method="GET",status="200"} 1' in text
    assert 'mock_requests_total{route="/boot",method="GET",status="500"} 1' in text
    assert 'mock_faults_total{rule="boot",type="status"} 1' in text
    assert 'mock_faults_total{rule="lag",type="latency"} 1' in text
    assert "mock_injected_delay_seconds_count 1" in text
    assert "mock_injected_delay_seconds_sum 0.020000" in text
    assert "mock_delayed_request_duration_seconds_count 1" in text
    assert 'mock_delay_overshoot_seconds_bucket{le="+Inf"} 1' in text


def test_admin_token_required_on_every_call(serve_faults):
    """With a token, admin calls without it or with a wrong one get 401; the right one passes."""
    guarded = serve_faults(admin_token="t0k3n")
    assert guarded.admin("GET", "/faults").status_code == 401
    wrong = guarded.admin("GET", "/requests", headers={"X-Admin-Token": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert guarded.admin("POST", "/reset", headers={"X-Admin-Token": "nope"}).status_code == 401
    assert guarded.admin("GET", "/faults", headers={"X-Admin-Token": "t0k3n"}).status_code == 200
    assert requests.get(guarded.url + "/hello", timeout=5).status_code == 200


async def _call(
    layer: FaultLayer, client: tuple[str, int], path: str = "/__admin/faults"
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"x")],
        "client": client,
        "server": ("10.0.0.2", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await layer(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("127.0.0.1", 200, id="ipv4-loopback"),
        pytest.param("::1", 200, id="ipv6-loopback"),
        pytest.param("::ffff:127.0.0.1", 200, id="mapped-loopback"),
        pytest.param("10.1.2.3", 403, id="lan"),
        pytest.param("2001:db8::1", 403, id="ipv6-remote"),
    ],
)
def test_admin_is_loopback_only_without_a_token(host, status):
    """Without a token, the admin API refuses non-loopback clients with 403."""
    from .conftest import tiny_app

    layer = FaultLayer(tiny_app())
    got, body = asyncio.run(_call(layer, (host, 5555)))
    assert got == status
    if status == 403:
        assert b'"forbidden"' in body


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_server_shutdown_releases_held_requests(serve_faults, stack):
    """Stopping the server ends a request held by a long delay instead of waiting it out (the
    protocol calls the layer's release), on both HTTP stacks."""
    server = serve_faults(
        {"rules": [{"id": "slow", "fault": {"type": "latency", "fixed_ms": 60_000}}]}, stack=stack
    )
    statuses: list[int] = []
    thread = threading.Thread(
        target=lambda: statuses.append(requests.get(server.url + "/hello", timeout=30).status_code)
    )
    thread.start()
    assert server.admin("POST", "/requests/wait", json={"count": 1, "timeout_s": 5}).status_code == 200
    server.stop()
    thread.join(10)
    assert not server.thread.is_alive()
    assert statuses == [503]
