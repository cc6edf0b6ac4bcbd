"""``serve --workers 2`` as a user starts it (its private redis-server): a rule disabled through
one worker is off in the other at once, keeps its place and counters, and a reset through either
brings the start-up rules back everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mock_server._config import ServerConfig
from mock_server._workers import Workers

from ..scale.conftest import Conn, conns_on_distinct_workers

pytestmark = pytest.mark.socket

# Matched by session: finding the workers sends requests to /health too.
DOWN = {"id": "down", "match": {"session": "en"}, "fault": {"type": "status", "status": 503}}
EN = {"X-API-Key": "demo-key", "X-Mock-Session": "en"}


@pytest.fixture
def conns(tmp_path: Path) -> Iterator[tuple[Conn, Conn]]:
    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps({"rules": [DOWN]}))
    with Workers(ServerConfig(db=":memory:", workers=2, faults=str(rules))) as pool:
        a, b = conns_on_distinct_workers(pool.url, pool.pids, 2)[:2]
        yield a, b
        a.close()
        b.close()


def admin(conn: Conn, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, answer = conn(method, f"/__admin{path}", body, {})
    return status, answer


def test_a_rule_disabled_through_one_worker_is_off_in_the_other_with_its_counters(
    conns: tuple[Conn, Conn],
) -> None:
    a, b = conns
    assert b("GET", "/health", headers=EN)[0] == 503
    status, rule = admin(a, "PATCH", "/faults/down", {"enabled": False})
    assert status == 200 and rule["enabled"] is False
    assert b("GET", "/health", headers=EN)[0] == 200
    listed = admin(b, "GET", "/faults")[1]
    assert listed["rules"][0]["enabled"] is False
    assert listed["stats"]["down"] == {"matched": 1, "fired": 1}
    assert admin(b, "PATCH", "/faults/down", {"enabled": True})[0] == 200
    assert a("GET", "/health", headers=EN)[0] == 503
    assert admin(a, "GET", "/faults")[1]["stats"]["down"] == {"matched": 2, "fired": 2}
    # A reset comes back to the start-up rules (here: enabled) in every worker.
    assert admin(a, "PATCH", "/faults/down", {"enabled": False})[0] == 200
    assert admin(b, "POST", "/reset")[0] == 200
    assert a("GET", "/health", headers=EN)[0] == 503
    assert "enabled" not in admin(b, "GET", "/faults/down")[1]
