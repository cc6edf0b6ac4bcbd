"""The fault side acts as one across processes too: 3 workers and a second fake on one Redis.
Journal, count and wait, rule changes, per-session counters, reset and the release of held
requests, metrics and compliance reach every process, whichever one an admin call lands on;
and the same seed and requests give the same fault schedule with 1 worker as with 3."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mock_server import ServerThread
from mock_server._app import build
from mock_server._config import ServerConfig
from mock_server._workers import Workers

from .conftest import Conn, conns_on_distinct_workers

pytestmark = pytest.mark.socket


def _fault_state_is_shared(url: str) -> bool:
    """Whether this build's fault layer keeps its state in Redis (issue 9's fault side)."""
    app, _ = build(ServerConfig(db=":memory:", state=url))
    return bool(getattr(getattr(app, "state", None), "shared", False))


@pytest.fixture(scope="module")
def url(redis_proc: Any) -> str:
    shared = f"redis://{redis_proc.host}:{redis_proc.port}/2"
    client = redis.Redis.from_url(shared)
    client.flushdb()
    client.close()
    if not _fault_state_is_shared(shared):
        pytest.skip("the fault layer's state is not on Redis in this build yet")
    return shared


@pytest.fixture(scope="module")
def pool(url: str) -> Iterator[Workers]:
    with Workers(ServerConfig(db=":memory:", workers=3, state=url, seed=7)) as workers:
        yield workers


@pytest.fixture(scope="module")
def other(url: str) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=":memory:", state=url, seed=7)) as fake:
        yield fake


@pytest.fixture
def conns(pool: Workers, other: ServerThread) -> Iterator[list[Conn]]:
    """A connection on each of the 3 workers, and one to the other fake."""
    chosen = [*conns_on_distinct_workers(pool.url, pool.pids, 3), Conn(other.url)]
    yield chosen
    for conn in chosen:
        conn.close()


def session(name: str) -> dict[str, str]:
    return {"X-API-Key": "demo-key", "X-Mock-Session": name}


def admin(conn: Conn, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, answer = conn(method, f"/__admin{path}", body, {})
    return status, answer


def test_the_journal_count_and_wait_see_every_process(conns: list[Conn]) -> None:
    for conn in conns:
        assert conn("GET", "/health", headers=session("journal"))[0] == 200
    for conn in conns:  # an admin call on any process sees the requests of all, within 50 ms
        status, body = admin(
            conn, "POST", "/requests/wait", {"filter": {"session": "journal"}, "count": 4, "timeout_s": 0.05}
        )
        assert status == 200, body
        assert admin(conn, "GET", "/requests/count?session=journal")[1]["count"] == 4
        listed = admin(conn, "GET", "/requests?session=journal")[1]["requests"]
        assert len(listed) == 4


def test_a_rule_added_through_one_process_applies_on_every_other_at_once(conns: list[Conn]) -> None:
    a, b, c, far = conns
    rule = {"id": "down", "match": {"session": "rules"}, "fault": {"type": "status", "status": 503}}
    assert admin(a, "POST", "/faults", rule)[0] == 201
    assert [conn("GET", "/health", headers=session("rules"))[0] for conn in (b, c, far)] == [503] * 3
    assert admin(far, "DELETE", "/faults/down")[0] == 204
    assert [conn("GET", "/health", headers=session("rules"))[0] for conn in (a, b, c)] == [200] * 3


def test_per_session_counters_are_counted_across_processes(conns: list[Conn]) -> None:
    """Every 2nd request of a session fails, whichever process each one reaches."""
    a = conns[0]
    rule = {
        "id": "second",
        "match": {"session": "nth"},
        "every_nth": 2,
        "fault": {"type": "status", "status": 500},
    }
    assert admin(a, "POST", "/faults", rule)[0] == 201
    statuses = [conns[i % 4]("GET", "/health", headers=session("nth"))[0] for i in range(8)]
    assert statuses == [200, 500] * 4
    assert admin(a, "DELETE", "/faults/second")[0] == 204


def test_a_reset_through_one_process_releases_requests_held_by_another(conns: list[Conn]) -> None:
    a, b, _, far = conns
    rule = {"id": "hold", "match": {"session": "held"}, "fault": {"type": "latency", "fixed_ms": 30_000}}
    assert admin(a, "POST", "/faults", rule)[0] == 201
    answers: list[int] = []
    holders = [
        threading.Thread(target=lambda c=c: answers.append(c("GET", "/health", headers=session("held"))[0]))
        for c in (b, far)
    ]
    for t in holders:
        t.start()
    assert (
        admin(a, "POST", "/requests/wait", {"filter": {"session": "held"}, "count": 2, "timeout_s": 5})[0]
        == 200
    )
    started = time.monotonic()
    assert admin(a, "POST", "/reset")[0] in (200, 204)
    for t in holders:
        t.join(10)
    assert time.monotonic() - started < 5
    assert answers == [503, 503]
    # The reset reached every process: the rule is gone and the journal empty everywhere.
    # (Every count before any new request of the session: each such request is journaled too.)
    assert [admin(conn, "GET", "/requests/count?session=held")[1]["count"] for conn in conns] == [0] * 4
    assert [conn("GET", "/health", headers=session("held"))[0] for conn in conns] == [200] * 4


def test_metrics_and_compliance_cover_every_process(conns: list[Conn]) -> None:
    def served(body: Any) -> float:
        text = body.decode() if isinstance(body, bytes) else str(body)
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mock_requests_total{") and 'route="/profiles"' in line
        )

    before = served(admin(conns[0], "GET", "/metrics")[1])
    for conn in conns:
        assert conn("GET", "/profiles", headers=session("graded"))[0] == 200
    deadline = time.monotonic() + 2  # metrics are written in batches a few milliseconds apart
    for conn in conns:
        while served(admin(conn, "GET", "/metrics")[1]) < before + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert served(admin(conn, "GET", "/metrics")[1]) >= before + 4
        status, report = admin(conn, "GET", "/compliance?session=graded")
        assert (status, report["requests"], report["verdict"]) == (200, 4, "pass")


def _schedule(url: str, rules: list[dict[str, Any]], seed: int) -> list[int]:
    """Statuses of 40 requests of two sessions, in one order, against a fake at ``url``."""
    conn = Conn(url)
    assert admin(conn, "PUT", "/faults", {"rules": rules, "seed": seed})[0] == 200
    statuses = [conn("GET", "/health", headers=session(f"d{i % 2}"))[0] for i in range(40)]
    conn.close()
    return statuses


def test_the_same_seed_and_sequence_give_the_same_schedule_with_1_worker_or_3(
    url: str, pool: Workers
) -> None:
    rules = [
        {"id": "p503", "probability": 0.3, "fault": {"type": "status", "status": 503}},
        {"id": "p500", "probability": 0.2, "fault": {"type": "status", "status": 500}},
        {"id": "third", "every_nth": 3, "fault": {"type": "status", "status": 429}},
    ]
    with ServerThread(ServerConfig(db=":memory:", seed=11)) as single:
        expected = _schedule(single.url, rules, 11)
    # Three workers (and the other fake idle): each request on the next worker in turn.
    conns = conns_on_distinct_workers(pool.url, pool.pids, 3)
    assert admin(conns[0], "PUT", "/faults", {"rules": rules, "seed": 11})[0] == 200
    try:
        got = [conns[i % 3]("GET", "/health", headers=session(f"d{i % 2}"))[0] for i in range(40)]
    finally:
        assert admin(conns[0], "PUT", "/faults", {"rules": [], "seed": 7})[0] == 200
        for conn in conns:
            conn.close()
    assert set(expected) > {200}
    assert got == expected


def test_a_rule_for_a_tenant_matches_a_token_another_process_issued(conns: list[Conn]) -> None:
    """The other fake has never seen the token when its first request arrives: the rule still
    matches the token's tenant (and the request is then authenticated through Redis)."""
    a, _, _, far = conns
    form = b"grant_type=client_credentials&client_id=acme-client&client_secret=acme-secret"
    status, _, body = a("POST", "/oauth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    bearer = {"Authorization": f"Bearer {body['access_token']}", "X-Mock-Session": "tenant-rule"}
    rule = {"id": "acme-down", "match": {"tenant": "acme"}, "fault": {"type": "status", "status": 502}}
    assert admin(a, "POST", "/faults", rule)[0] == 201
    try:
        assert far("GET", "/profiles", headers=bearer)[0] == 502
        assert far("GET", "/profiles", headers={"X-API-Key": "demo-key"})[0] == 200
    finally:
        assert admin(a, "DELETE", "/faults/acme-down")[0] == 204
    assert far("GET", "/profiles", headers=bearer)[0] == 200


def test_socket_faults_stay_real_on_every_worker(conns: list[Conn]) -> None:
    """A reset rule added through one process is a TCP RST on each worker, and a truncated body
    is cut short there: the workers serve with the fake's own protocols."""
    a = conns[0]
    rules = [
        {"id": "rst", "match": {"session": "rst"}, "fault": {"type": "reset"}},
        {"id": "cut", "match": {"session": "cut"}, "fault": {"type": "truncate", "fraction": 0.5}},
    ]
    for rule in rules:
        assert admin(a, "POST", "/faults", rule)[0] == 201
    try:
        for conn in conns:
            conn.http.request("GET", "/health", headers=session("rst"))
            with pytest.raises(ConnectionResetError):
                conn.http.getresponse()
            conn.http.close()
            conn.http.connect()
            conn.http.request("GET", "/health", headers=session("cut"))
            response = conn.http.getresponse()
            with pytest.raises(http.client.IncompleteRead):
                response.read()
            conn.http.close()
            conn.http.connect()
    finally:
        for rule in rules:
            assert admin(a, "DELETE", f"/faults/{rule['id']}")[0] == 204
