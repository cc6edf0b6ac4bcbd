"""Round trips to Redis on the hot path, counted by the redis-server itself (INFO commandstats):
a request that no fault rule matches costs its API operation's one script and nothing else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mock_server import ServerThread
from mock_server._auth import sign
from mock_server._config import ServerConfig

from .conftest import KEY, Conn

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


def test_writes_over_a_profile_this_process_has_seen_cost_one_round_trip(
    fake: tuple[Conn, redis.Redis], redis_url: str
) -> None:
    """A compare-and-set on the version this process saw last; a stale copy costs one more."""
    conn, client = fake
    body = {"tenant": "demo", "profile_name": "w", "hrv_vector": [0.5] * 8}
    assert conn("POST", "/profiles", body)[0] == 201
    etag = conn("GET", "/profiles/demo/w")[1]["etag"]
    trips = 0
    for i in range(M):
        before = _calls(client)
        status, headers, _ = conn(
            "PUT", "/profiles/demo/w", {"hrv_vector": [i / M] * 8}, {**KEY, "If-Match": etag}
        )
        trips += _calls(client) - before
        assert status == 200
        etag = headers["etag"]
    assert trips == M
    # Written meanwhile by another fake on the same Redis: this one's copy is stale.
    with ServerThread(ServerConfig(db=":memory:", state=redis_url)) as other:
        far = Conn(other.url)
        assert far("PUT", "/profiles/demo/w", {"hrv_vector": [0.9] * 8})[0] == 200
        before = _calls(client)
        status, _, error = conn(
            "PUT", "/profiles/demo/w", {"hrv_vector": [0.1] * 8}, {**KEY, "If-Match": etag}
        )
        # Refused on the stored version, which came back with the refusal (one round trip).
        assert (status, error["error"]["code"], _calls(client) - before) == (412, "precondition_failed", 1)
        assert far("PUT", "/profiles/demo/w", {"hrv_vector": [0.8] * 8})[0] == 200
        far.close()
    before = _calls(client)
    assert conn("DELETE", "/profiles/demo/w")[0] == 204
    assert _calls(client) - before == 2  # the stale copy, then the stored version
    assert conn("GET", "/profiles/demo/w")[0] == 404


def test_a_keyed_generation_costs_one_round_trip_first_time_and_again(fake: tuple[Conn, redis.Redis]) -> None:
    """Generating changes nothing: the answer is produced, then kept (or the kept one replayed)
    in one script, instead of a claim before and a write after."""
    conn, client = fake
    trips = []
    for i in range(M):
        keyed = {**KEY, "Idempotency-Key": f"g{i}"}
        for replayed in (None, "true"):
            before = _calls(client)
            status, headers, _ = conn("POST", "/hr_generate", {"prompt": "p", "max_length": 8}, keyed)
            trips.append(_calls(client) - before)
            assert (status, headers.get("idempotent-replayed")) == (200, replayed)
    assert trips == [1] * (2 * M)
    keyed = {**KEY, "Idempotency-Key": "g0"}
    status, _, error = conn("POST", "/hr_generate", {"prompt": "other", "max_length": 8}, keyed)
    assert (status, error["error"]["message"]) == (
        422,
        "this Idempotency-Key was used with a different request body",
    )
    # An invalid body under a kept key is the same 422, as on the embedded fake.
    status, _, error = conn("POST", "/hr_generate", {"prompt": ""}, keyed)
    assert (status, error["error"]["message"]) == (
        422,
        "this Idempotency-Key was used with a different request body",
    )


def test_a_keyed_generation_from_a_profile_is_one_round_trip_and_never_from_a_stale_copy(
    fake: tuple[Conn, redis.Redis], redis_url: str
) -> None:
    """Made from this process's copy of the profile; kept only if the copy is current."""
    conn, client = fake
    body = {"tenant": "demo", "profile_name": "vec", "hrv_vector": [0.2] * 8}
    assert conn("POST", "/profiles", body)[0] == 201
    ask = {"prompt": "p", "max_length": 8, "profile_name": "vec"}
    before = _calls(client)
    first = conn("POST", "/hr_generate", ask, {**KEY, "Idempotency-Key": "v1"})
    assert (first[0], _calls(client) - before) == (200, 1)
    with ServerThread(ServerConfig(db=":memory:", state=redis_url)) as other:
        far = Conn(other.url)
        assert far("PUT", "/profiles/demo/vec", {"hrv_vector": [0.9] * 8})[0] == 200
        fresh = far("POST", "/hr_generate", ask)  # no key: read from Redis
        far.close()
    before = _calls(client)
    second = conn("POST", "/hr_generate", ask, {**KEY, "Idempotency-Key": "v2"})
    # The stale copy's answer is not kept: made again from the stored profile, and kept.
    assert (second[0], _calls(client) - before) == (200, 2)
    assert second[2]["hrv_vector"] == fresh[2]["hrv_vector"] != first[2]["hrv_vector"]
    again = conn("POST", "/hr_generate", ask, {**KEY, "Idempotency-Key": "v2"})
    assert (again[1].get("idempotent-replayed"), again[2]) == ("true", second[2])


def test_a_keyed_create_keeps_its_answer_in_its_one_round_trip(fake: tuple[Conn, redis.Redis]) -> None:
    conn, client = fake
    keyed = {**KEY, "Idempotency-Key": "create-1"}
    body = {"tenant": "demo", "profile_name": "kept", "hrv_vector": [0.5] * 8}
    trips = []
    answers = []
    for _ in range(2):
        before = _calls(client)
        answers.append(conn("POST", "/profiles", body, keyed))
        trips.append(_calls(client) - before)
    assert trips == [1, 1]
    (first, _, created), (again, headers, replayed) = answers
    assert (first, again, headers.get("idempotent-replayed"), replayed) == (201, 201, "true", created)
    status, _, error = conn("POST", "/profiles", {**body, "profile_name": "other"}, keyed)
    assert (status, error["error"]["message"]) == (
        422,
        "this Idempotency-Key was used with a different request body",
    )
    # The name taken under a new key: a 409, and nothing kept for that key.
    assert conn("POST", "/profiles", body, {**KEY, "Idempotency-Key": "create-2"})[0] == 409
    assert (
        conn("POST", "/profiles", {**body, "profile_name": "free"}, {**KEY, "Idempotency-Key": "create-2"})[0]
        == 201
    )


def test_signed_requests_and_usage_reports_cost_one_round_trip(fake: tuple[Conn, redis.Redis]) -> None:
    """The replay check of a signature and the usage counters ride with the request's token."""
    conn, client = fake
    before = _calls(client)
    for i in range(M):
        stamp = str(int(time.time()))
        path = f"/profiles?limit={i + 1}"
        signed = {"X-Timestamp": stamp, "X-Signature": sign("demo-signing-secret", "GET", path, stamp, b"")}
        assert conn("GET", path, None, signed)[0] == 200
        status, _, body = conn("GET", path, None, signed)
        assert (status, body["error"]["message"]) == (401, "this request signature was already used (replay)")
    signed_trips = _calls(client) - before
    usage = _count(client, conn, ("GET", "/analytics/usage"), 200)
    # A repeat through the same process is caught before any round trip (test_shared_state
    # has one through another process).
    assert (signed_trips, usage) == (M, M)


def test_a_rule_added_meanwhile_applies_to_the_very_next_request(fake: tuple[Conn, redis.Redis]) -> None:
    conn, _ = fake
    assert conn("GET", "/health")[0] == 200
    rule = {"id": "now", "match": {"path": "/health"}, "fault": {"type": "status", "status": 503}}
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201
    assert conn("GET", "/health")[0] == 503
    assert conn("DELETE", "/__admin/faults/now", None, {})[0] == 204
    assert conn("GET", "/health")[0] == 200


def _rule(conn: Conn, rule: dict[str, Any]) -> None:
    assert conn("POST", "/__admin/faults", rule, {})[0] == 201


# Few enough that the authenticated ones stay within the demo tenant's burst.
M = 10


def _count(client: redis.Redis, conn: Conn, request: tuple[Any, ...], status: int) -> int:
    before = _calls(client)
    for _ in range(M):
        assert conn(*request)[0] == status
    return _calls(client) - before


def test_a_request_a_rule_matches_costs_one_round_trip_when_nothing_fires(
    fake: tuple[Conn, redis.Redis],
) -> None:
    """The fault arrival goes in the same script as the API's operation (mock_server._prelude)."""
    conn, client = fake
    body = {"tenant": "demo", "profile_name": "rt", "hrv_vector": [0.5] * 8}
    assert conn("POST", "/profiles", body)[0] == 201
    # Matches everything, counts every request, and has not fired yet.
    _rule(conn, {"id": "later", "after": 100_000, "fault": {"type": "status", "status": 503}})
    reads = _count(client, conn, ("GET", "/profiles/demo/rt"), 200)
    health = _count(client, conn, ("GET", "/health"), 200)
    missing = _count(client, conn, ("GET", "/nowhere"), 404)
    invalid = _count(client, conn, ("POST", "/profiles", {"tenant": "demo"}), 422)
    writes = 0
    for i in range(M):
        before = _calls(client)
        created = {"tenant": "demo", "profile_name": f"w{i}", "hrv_vector": [0.5] * 8}
        assert conn("POST", "/profiles", created)[0] == 201
        writes += _calls(client) - before
    assert (reads, health, missing, invalid, writes) == (M, M, M, M, M)
    # Every one of them was counted for the rule.
    assert conn("GET", "/__admin/faults", None, {})[2]["stats"]["later"]["matched"] == 5 * M


def test_a_fault_that_answers_instead_of_the_api_costs_one_round_trip_and_the_api_never_acts(
    fake: tuple[Conn, redis.Redis],
) -> None:
    conn, client = fake
    _rule(conn, {"id": "down", "match": {"method": "POST"}, "fault": {"type": "status", "status": 503}})
    trips = 0
    for i in range(M):
        before = _calls(client)
        created = {"tenant": "demo", "profile_name": f"gone{i}", "hrv_vector": [0.5] * 8}
        assert conn("POST", "/profiles", created)[0] == 503
        trips += _calls(client) - before
    assert trips == M
    assert conn("DELETE", "/__admin/faults/down", None, {})[0] == 204
    # Nothing was created, and no rate-limit token was taken: the full burst is still there.
    assert conn("GET", "/profiles/demo/gone0")[0] == 404
    page = conn("GET", "/profiles?tenant=demo&limit=100")
    assert page[0] == 200 and not [p for p in page[2]["items"] if p["profile_name"].startswith("gone")]


@pytest.mark.parametrize(
    ("fault", "when", "status"),
    [
        ({"type": "status", "status": 503}, "after", 503),
        ({"type": "malformed_json"}, "before", None),
        ({"type": "wrong_content_type"}, "before", 201),
    ],
    ids=["status-after", "malformed_json", "wrong_content_type"],
)
def test_a_fault_the_api_acts_before_costs_one_round_trip(
    fake: tuple[Conn, redis.Redis], fault: dict[str, Any], when: str, status: int | None
) -> None:
    """The operation runs in the arrival's script; the fault is carried out around its answer."""
    conn, client = fake
    _rule(conn, {"id": "f", "match": {"method": "POST"}, "fault": fault, "when": when})
    body = {"tenant": "demo", "profile_name": "acted", "hrv_vector": [0.5] * 8}
    before = _calls(client)
    try:
        got: int | None = conn("POST", "/profiles", body)[0]
    except ValueError:  # the malformed JSON
        got = None
    assert (got, _calls(client) - before) == (status, 1)
    assert conn("DELETE", "/__admin/faults/f", None, {})[0] == 204
    assert conn("POST", "/profiles", body)[0] == 409  # it was created, once


def test_a_delay_costs_a_second_round_trip_after_it_and_the_operation_runs_once(
    fake: tuple[Conn, redis.Redis],
) -> None:
    """A delay preempts the speculative run; the API then runs once more, after the delay, and
    its operation happens exactly once."""
    conn, client = fake
    _rule(
        conn,
        {"id": "slow", "match": {"method": "POST"}, "fault": {"type": "latency", "fixed_ms": 1}},
    )
    body = {"tenant": "demo", "profile_name": "once", "hrv_vector": [0.5] * 8}
    before = _calls(client)
    assert conn("POST", "/profiles", body)[0] == 201
    # The arrival, then (after the delay) the operation: two, the second off the hot path.
    assert _calls(client) - before == 2
    assert conn("POST", "/profiles", body)[0] == 409
    entries = conn("GET", "/__admin/requests?path=/profiles", None, {})[2]["requests"]
    assert [(e["fault"], e["rules"]) for e in entries][-2:] == [("latency", ["slow"])] * 2
