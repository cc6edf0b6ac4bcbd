"""Same seed, same schedule over real sockets: whatever the concurrency and connection reuse."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.socket

RULES = {
    "seed": 1234,
    "rules": [
        {
            "id": "jitter",
            "match": {"path": "/hello"},
            "fault": {"type": "latency", "uniform": {"min_ms": 0, "max_ms": 3}},
        },
        {
            "id": "flaky",
            "match": {"path": "/hello"},
            "probability": 0.3,
            "fault": {"type": "status", "status": 503},
        },
        {
            "id": "nth",
            "match": {"path": "/hello"},
            "every_nth": 7,
            "fault": {"type": "status", "status": 429},
        },
    ],
}
SESSIONS = [f"s{i:02d}" for i in range(50)]
PER_SESSION = 8


def journal_schedule(server) -> dict[str, list[tuple[int, float]]]:
    """Per session, in arrival order: (status, injected delay) of each request."""
    entries = server.admin("GET", "/requests").json()["requests"]
    out: dict[str, list[tuple[int, float]]] = {}
    for e in entries:
        out.setdefault(e["session"], []).append((e["status"], e["injected_delay_ms"]))
    return out


def run_concurrent_keep_alive(server) -> dict[str, list[int]]:
    """50 connections at once, one per session, each reusing its connection."""
    barrier = threading.Barrier(len(SESSIONS))

    def worker(session: str) -> list[int]:
        with requests.Session() as http:
            http.headers["X-Mock-Session"] = session
            barrier.wait()
            return [http.get(server.url + "/hello", timeout=10).status_code for _ in range(PER_SESSION)]

    with ThreadPoolExecutor(len(SESSIONS)) as pool:
        return dict(zip(SESSIONS, pool.map(worker, SESSIONS), strict=True))


def run_sequential_fresh_connections(server, sessions: list[str] = SESSIONS) -> dict[str, list[int]]:
    """One request at a time, round-robin over sessions, a new connection each time."""
    out: dict[str, list[int]] = {s: [] for s in sessions}
    for _ in range(PER_SESSION):
        for session in reversed(sessions):
            response = requests.get(
                server.url + "/hello", headers={"X-Mock-Session": session, "Connection": "close"}, timeout=10
            )
            out[session].append(response.status_code)
    return out


def test_same_schedule_with_1_or_50_connections(serve_faults):
    """Each session's faults (and latency samples) are identical across concurrency and keep-alive."""
    server = serve_faults(RULES)
    concurrent = run_concurrent_keep_alive(server)
    concurrent_journal = journal_schedule(server)
    server.admin("POST", "/reset")
    sequential = run_sequential_fresh_connections(server)
    assert sequential == concurrent
    assert journal_schedule(server) == concurrent_journal
    statuses = Counter(s for seq in sequential.values() for s in seq)
    assert statuses[503] > 0 and statuses[429] > 0 and statuses[200] > 0


def test_same_schedule_on_a_second_server_with_the_same_seed(serve_faults):
    """A fresh server with the same seed replays the schedule; another seed does not."""
    few = SESSIONS[:12]
    first = run_sequential_fresh_connections(serve_faults(RULES), few)
    assert run_sequential_fresh_connections(serve_faults(RULES), few) == first
    assert run_sequential_fresh_connections(serve_faults(RULES, seed=99), few) != first


def test_one_session_under_concurrency_gets_the_same_faults(serve_faults):
    """Without sessions, concurrency may reorder who gets which fault, but not how many there are."""
    server = serve_faults(RULES)
    total = 200
    with ThreadPoolExecutor(20) as pool:
        concurrent = Counter(
            pool.map(lambda _: requests.get(server.url + "/hello", timeout=10).status_code, range(total))
        )
    server.admin("POST", "/reset")
    with requests.Session() as http:
        sequential = Counter(http.get(server.url + "/hello", timeout=10).status_code for _ in range(total))
    assert concurrent == sequential


def test_sessions_in_parallel_do_not_see_each_other(serve_faults):
    """Parallel tests, each in its own session, each see 'fail, fail, ok' from their own start."""
    server = serve_faults(
        {
            "rules": [
                {
                    "id": "first-two-fail",
                    "match": {"path": "/hello"},
                    "sequence": [{"type": "status", "status": 500}, {"type": "status", "status": 500}, "ok"],
                }
            ]
        }
    )
    barrier = threading.Barrier(10)

    def a_test(session: str) -> list[int]:
        barrier.wait()
        got = [
            requests.get(server.url + "/hello", headers={"X-Mock-Session": session}, timeout=10).status_code
            for _ in range(4)
        ]
        seen = server.admin("GET", "/requests/count", params={"session": session}).json()["count"]
        assert seen == 4
        return got

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(a_test, [f"test-{i}" for i in range(10)]))
    assert results == [[500, 500, 200, 200]] * 10
