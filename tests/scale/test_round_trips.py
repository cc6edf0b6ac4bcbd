"""Round trips to Redis on the hot path, counted by the redis-server itself (INFO commandstats):
a request that no fault rule matches costs its API operation's one script and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mock_server import ServerThread
from mock_server._config import ServerConfig

from .conftest import Conn

pytestmark = pytest.mark.socket

N = 40
# What a request's round trip runs: one script (the API's operation with its rate-limit token, or
# the fault layer's arrival). Commands run inside a script are counted under their own names too,
# so only the scripts are counted; the journal, metrics and usage writers batch theirs apart.
_PER_REQUEST = ("evalsha", "eval", "evalsha_ro", "eval_ro")


def _calls(client: redis.Redis) -> int:
    stats: Any = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in _PER_REQUEST)


@pytest.fixture
def fake(redis_url: str) -> Iterator[tuple[Conn, redis.Redis]]:
    with ServerThread(ServerConfig(db=":memory:", state=redis_url)) as server:
        conn = Conn(server.url)
        client = redis.Redis.from_url(redis_url)
        yield conn, client
        client.close()
        conn.close()


def test_a_request_no_rule_matches_costs_at_most_one_round_trip(fake: tuple[Conn, redis.Redis]) -> None:
    conn, client = fake
    body = {"tenant": "demo", "profile_name": "rt", "hrv_vector": [0.5] * 8}
    assert conn("POST", "/profiles", body)[0] == 201
    before = _calls(client)
    for _ in range(N):
        assert conn("GET", "/profiles/demo/rt")[0] == 200
    reads = _calls(client) - before
    before = _calls(client)
    for _ in range(N):
        assert conn("GET", "/health")[0] == 200
    health = _calls(client) - before
    assert (reads, health) == (N, 0)


def test_a_rule_added_meanwhile_applies_to_the_very_next_request(fake: tuple[Conn, redis.Redis]) -> None:
    conn, _ = fake
    assert conn("GET", "/health")[0] == 200
    rule = {"id": "now", "match": {"path": "/health"}, "fault": {"type": "status", "status": 503}}
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201
    assert conn("GET", "/health")[0] == 503
    assert conn("DELETE", "/__admin/faults/now", None, {})[0] == 204
    assert conn("GET", "/health")[0] == 200
