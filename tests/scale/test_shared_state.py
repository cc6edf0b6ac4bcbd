"""Several processes act as one fake: 3 workers on one port, and a second fake on the same
Redis. Each test pins connections to distinct worker processes (found through /proc), so a
property that held only within one process would fail."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from mock_server import ServerThread
from mock_server._auth import sign
from mock_server._config import ServerConfig
from mock_server._tenants import DEFAULT_TENANTS, RateLimit, Tenant
from mock_server._workers import Workers

from .conftest import Conn, conns_on_distinct_workers

pytestmark = pytest.mark.socket

SLOW = Tenant(name="slow", api_keys=("slow-key",), rate_limit=RateLimit(per_minute=60, burst=5))
SLOW_KEY = {"X-API-Key": "slow-key"}


@pytest.fixture(scope="module")
def shared_url(redis_proc: Any) -> str:
    url = f"redis://{redis_proc.host}:{redis_proc.port}/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="module")
def pool(shared_url: str) -> Iterator[Workers]:
    config = ServerConfig(db=":memory:", workers=3, state=shared_url, tenants=(*DEFAULT_TENANTS, SLOW))
    with Workers(config) as workers:
        yield workers


@pytest.fixture(scope="module")
def other(shared_url: str) -> Iterator[ServerThread]:
    """A second, separate fake on the same Redis (another port, its own process state). No cursor
    key is given to either: both take the one the first put in Redis."""
    config = ServerConfig(db=":memory:", state=shared_url, tenants=(*DEFAULT_TENANTS, SLOW))
    with ServerThread(config) as fake:
        yield fake


@pytest.fixture
def conns(pool: Workers) -> Iterator[list[Conn]]:
    """One connection on each of the 3 workers."""
    chosen = conns_on_distinct_workers(pool.url, pool.pids, 3)
    yield chosen
    for conn in chosen:
        conn.close()


def profile(name: str, value: float = 0.5) -> dict[str, Any]:
    return {"tenant": "demo", "profile_name": name, "hrv_vector": [value] * 8}


def test_a_profile_written_through_one_process_is_read_through_every_other(
    conns: list[Conn], other: ServerThread
) -> None:
    a, b, c = conns
    far = Conn(other.url)
    status, headers, _ = a("POST", "/profiles", profile("shared-1"))
    assert status == 201
    etag = headers["etag"]
    for conn in (b, c, far):
        status, got, body = conn("GET", "/profiles/demo/shared-1")
        assert (status, got["etag"], body["hrv_vector"]) == (200, etag, [0.5] * 8)
    # A write through another process is seen at once, and If-Match sees the new version.
    status, headers, _ = far("PUT", "/profiles/demo/shared-1", {"hrv_vector": [0.25] * 8}, {**KEY_IF(etag)})
    assert status == 200
    assert b("PUT", "/profiles/demo/shared-1", {"hrv_vector": [0.75] * 8}, KEY_IF(etag))[0] == 412
    status, got, body = c("GET", "/profiles/demo/shared-1")
    assert (status, got["etag"], body["hrv_vector"][0]) == (200, headers["etag"], 0.25)
    assert b("POST", "/profiles", profile("shared-1"))[0] == 409
    assert c("DELETE", "/profiles/demo/shared-1")[0] == 204
    assert a("GET", "/profiles/demo/shared-1")[0] == 404
    far.close()


def KEY_IF(etag: str) -> dict[str, str]:  # noqa: N802 - reads as a header set
    return {"X-API-Key": "demo-key", "If-Match": etag}


def test_a_cursor_from_one_process_pages_on_another(conns: list[Conn], other: ServerThread) -> None:
    a, b, _ = conns
    for i in range(5):
        assert a("POST", "/profiles", profile(f"page-{i}"))[0] == 201
    status, _, first = a("GET", "/profiles?limit=2")
    assert status == 200 and first["has_more"]
    status, _, second = b("GET", f"/profiles?limit=2&cursor={first['next_cursor']}")
    far = Conn(other.url)
    status_far, _, second_far = far("GET", f"/profiles?limit=2&cursor={first['next_cursor']}")
    far.close()
    assert status == status_far == 200
    assert second == second_far
    names = [p["profile_name"] for p in first["items"] + second["items"]]
    assert names == sorted(set(names)) and len(names) == 4


def test_buckets_are_exact_across_processes(conns: list[Conn], other: ServerThread) -> None:
    """burst 5, 1 a second: over every process together, never more than 5 + t admitted."""
    far = Conn(other.url)
    callers = [*conns, far]
    t0 = time.monotonic()
    statuses = []
    for i in range(40):
        statuses.append(callers[i % len(callers)]("GET", "/profiles", headers=SLOW_KEY)[0])
    elapsed = time.monotonic() - t0
    far.close()
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # Each process with a bucket of its own would admit 5 here: 20 in all.
    assert 5 <= admitted <= 5 + int(elapsed * 1.0) + 1, (admitted, elapsed)


def test_idempotency_records_are_shared(conns: list[Conn], other: ServerThread) -> None:
    a, b, _ = conns
    far = Conn(other.url)
    keyed = {"X-API-Key": "demo-key", "Idempotency-Key": "shared-key-1"}
    first = a("POST", "/hr_generate", {"prompt": "hello"}, keyed)
    again = b("POST", "/hr_generate", {"prompt": "hello"}, keyed)
    far_again = far("POST", "/hr_generate", {"prompt": "hello"}, keyed)
    other_body = far("POST", "/hr_generate", {"prompt": "other"}, keyed)
    far.close()
    assert first[0] == again[0] == far_again[0] == 200
    assert again[2] == first[2] == far_again[2]
    assert again[1]["idempotent-replayed"] == far_again[1]["idempotent-replayed"] == "true"
    assert other_body[0] == 422


def test_oauth_tokens_are_shared(conns: list[Conn], other: ServerThread) -> None:
    a, b, _ = conns
    form = b"grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"
    status, _, body = a("POST", "/oauth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    far = Conn(other.url)
    assert b("GET", "/profiles", headers=bearer)[0] == 200
    assert far("GET", "/profiles", headers=bearer)[0] == 200
    assert far("GET", "/profiles", headers={"Authorization": "Bearer not-a-token"})[0] == 401
    far.close()


def test_usage_counters_add_up_across_processes(conns: list[Conn], other: ServerThread) -> None:
    far = Conn(other.url)
    callers = [*conns, far]
    before = callers[0]("GET", "/analytics/usage?date_range=today", headers={"X-API-Key": "acme-key"})[2][
        "total"
    ]
    for conn in callers:
        assert conn("GET", "/profiles", headers={"X-API-Key": "acme-key"})[0] == 200
    # Counters are written in batches every half second; then every process sees them all.
    deadline = time.monotonic() + 5
    while True:
        totals = [
            c("GET", "/analytics/usage?date_range=today", headers={"X-API-Key": "acme-key"})[2]["total"]
            for c in callers
        ]
        # Each read counts itself too, once it is written: at least the 4 listings, seen by all.
        if all(t >= before + 4 + 1 for t in totals) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    far.close()
    assert all(t >= before + 5 for t in totals), (before, totals)


def test_kill_9_of_a_worker_or_a_fake_loses_no_acknowledged_write(
    pool: Workers, shared_url: str, cli_fake: Callable[..., Any]
) -> None:
    second = cli_fake("--state", shared_url, "--db", ":memory:")
    conns = conns_on_distinct_workers(pool.url, pool.pids, 3)
    far = Conn(second.url)
    written = []
    for i in range(30):
        conn = [*conns, far][i % 4]
        status, headers, _ = conn("POST", "/profiles", profile(f"durable-{i}", i / 40))
        assert status == 201
        written.append((f"durable-{i}", headers["etag"]))
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    second.proc.kill()  # kill -9 of a whole fake
    second.proc.wait()
    for conn in conns:
        conn.close()
    far.close()
    deadline = time.monotonic() + 10
    while pool.restart_dead() == 0:  # what the CLI's supervisor does on its own
        assert time.monotonic() < deadline, "the killed worker was not noticed"
        time.sleep(0.02)
    # Read back through two different workers (a just-started one wins fewer accepts).
    fresh = conns_on_distinct_workers(pool.url, pool.pids, 2)
    for i, (name, etag) in enumerate(written):
        status, headers, _ = fresh[i % 2]("GET", f"/profiles/demo/{name}")
        assert (status, headers.get("etag")) == (200, etag)
    assert victim not in pool.pids
    for conn in fresh:
        conn.close()


def test_a_signature_used_through_one_process_is_a_replay_on_every_other(
    conns: list[Conn], other: ServerThread
) -> None:
    a, b, _ = conns
    stamp = str(int(time.time()))
    signed = {
        "X-Timestamp": stamp,
        "X-Signature": sign("demo-signing-secret", "GET", "/profiles?limit=1", stamp, b""),
    }
    assert a("GET", "/profiles?limit=1", headers=signed)[0] == 200
    far = Conn(other.url)
    for conn in (b, far):
        status, _, body = conn("GET", "/profiles?limit=1", headers=signed)
        assert (status, body["error"]["message"]) == (401, "this request signature was already used (replay)")
    far.close()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        # The create keeps its answer in its own script; the first one written is the effect.
        ("/profiles", profile("raced"), 201),
        # Generation is produced first, then kept: each racer produces one, the first kept wins.
        ("/hr_generate", {"prompt": "race", "max_length": 8}, 200),
    ],
    ids=["create", "generate"],
)
def test_concurrent_repeats_of_one_key_through_several_processes_have_one_effect(
    conns: list[Conn], other: ServerThread, path: str, body: dict[str, Any], status: int
) -> None:
    far = Conn(other.url)
    callers = [*conns, far]
    keyed = {"X-API-Key": "demo-key", "Idempotency-Key": f"race-{path}"}
    answers: list[tuple[int, dict[str, str], Any]] = []
    go = threading.Barrier(len(callers))

    def post(conn: Conn) -> None:
        go.wait()
        answers.append(conn("POST", path, body, keyed))

    threads = [threading.Thread(target=post, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    far.close()
    assert sorted(a[0] for a in answers) == [status] * 4  # one made it, the others replayed that
    assert sum(a[1].get("idempotent-replayed") == "true" for a in answers) == 3
    assert len({json.dumps(a[2], sort_keys=True) for a in answers}) == 1


def test_a_reset_through_one_process_refills_a_session_bucket_for_every_process(
    conns: list[Conn], other: ServerThread
) -> None:
    a, b, c = conns
    far = Conn(other.url)
    long_session = "s" * 300  # longer than a session is kept: the reset must name the same one
    slow = {**SLOW_KEY, "X-Mock-Session": long_session}
    statuses = [conn("GET", "/profiles", headers=slow)[0] for conn in (a, b, c, far) * 3]
    assert statuses.count(429) >= 6
    assert a("POST", f"/__admin/reset?session={long_session}", headers={})[0] in (200, 204)
    assert [conn("GET", "/profiles", headers=slow)[0] for conn in (b, c, far)] == [200, 200, 200]
    far.close()
