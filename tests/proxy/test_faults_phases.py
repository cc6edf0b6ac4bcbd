"""Every fault type in both phases, through the proxy, with the fake as the upstream.

``when: before`` answers without the upstream (except the faults that alter its answer, which need
one); ``when: after`` lets the upstream act first: the profile is created, then the client loses
the answer. The upstream's own journal and state show which happened. The plain fake honours
``when: after`` too (the API acts first).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from mock_server import ServerConfig, ServerThread
from mock_server._proxy._app import FrontThread

from .conftest import ROOMY

pytestmark = pytest.mark.socket

KEY = {"X-API-Key": "demo-key", "Content-Type": "application/json"}
FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"type": "latency", "fixed_ms": 150},
    "status": {"type": "status", "status": 503, "retry_after": 1},
    "timeout": {"type": "timeout", "hang_s": 0.2},
    "reset": {"type": "reset"},
    "close": {"type": "close"},
    "truncate": {"type": "truncate", "fraction": 0.5},
    "malformed_json": {"type": "malformed_json"},
    "wrong_content_type": {"type": "wrong_content_type"},
    "slow_body": {"type": "slow_body", "chunk_delay_ms": 5, "chunk_bytes": 64},
}
#: Faults that answer in place of the upstream when they come before it.
ANSWERING = {"status", "timeout", "reset", "close"}


def _profile(name: str) -> bytes:
    return json.dumps({"tenant": "demo", "profile_name": name, "hrv_vector": [0.5] * 8}).encode()


def _post(port: int, name: str) -> tuple[str, Any]:
    """POST a profile; what the client saw: ("answer", (status, headers, body)), or the error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        started = time.monotonic()
        conn.request("POST", "/profiles", body=_profile(name), headers=KEY)
        response = conn.getresponse()
        body = response.read()
        return "answer", (response.status, dict(response.getheaders()), body, time.monotonic() - started)
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        return type(exc).__name__, None
    finally:
        conn.close()


def _created(upstream: ServerThread, name: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    conn.request("GET", f"/profiles/demo/{name}", headers=KEY)
    status = conn.getresponse().status
    conn.close()
    return status == 200


def _check_seen(kind: str, seen: tuple[str, Any]) -> None:
    outcome, answer = seen
    if kind in ("latency",):
        assert outcome == "answer" and answer[0] == 201 and answer[3] >= 0.15
    elif kind == "status":
        assert outcome == "answer" and answer[0] == 503
        assert json.loads(answer[2])["error"]["code"] == "service_unavailable"
    elif kind in ("timeout", "close", "reset"):
        assert outcome in ("RemoteDisconnected", "ConnectionResetError", "BadStatusLine"), seen
    elif kind == "truncate":
        assert outcome == "IncompleteRead", seen
    elif kind == "malformed_json":
        assert outcome == "answer" and answer[0] == 201
        with pytest.raises(ValueError):
            json.loads(answer[2])
    elif kind == "wrong_content_type":
        assert outcome == "answer" and answer[1]["content-type"].startswith("text/html")
        assert json.loads(answer[2])["profile_name"]
    else:  # slow_body
        assert outcome == "answer" and json.loads(answer[2])["profile_name"] and answer[3] > 0.01


@pytest.mark.parametrize("when", ["before", "after"])
def test_every_fault_in_both_phases(fake: ServerThread, front: Callable[..., FrontThread], when: str) -> None:
    proxy = front(upstream=fake.url)
    for kind, fault in FAULTS.items():
        name = f"{kind}-{when}".replace("_", "-")
        proxy.admin.add_fault(
            {
                "id": name,
                "match": {"method": "POST", "path": "/profiles"},
                "fault": fault,
                "when": when,
                "times": 1,
            }
        )
        seen = _post(proxy.port, name)
        _check_seen(kind, seen)
        reached = kind not in ANSWERING or when == "after"
        assert _created(fake, name) is reached, (kind, when, seen)
        # The upstream's journal agrees: one POST reached it, or none.
        assert fake.admin.count(method="POST", path="/profiles") == sum(
            1 for k in list(FAULTS)[: list(FAULTS).index(kind) + 1] if k not in ANSWERING or when == "after"
        )
        # The proxy's journal names the fault, whatever the phase.
        last = proxy.admin.requests(method="POST")[-1]
        assert last["fault"] == kind and name in last["rules"]
        proxy.admin.delete_fault(name)


def test_latency_after_delays_the_answer_not_the_request(
    fake: ServerThread, front: Callable[..., FrontThread]
) -> None:
    proxy = front(upstream=fake.url)
    proxy.admin.add_fault({"id": "lag", "fault": {"type": "latency", "fixed_ms": 300}, "when": "after"})
    sent = time.time()
    outcome, answer = _post(proxy.port, "lagged")
    answered = time.time()
    assert outcome == "answer" and answer[0] == 201 and answer[3] >= 0.3
    # The upstream had it first: its journal's arrival is the delay before the answer came.
    arrived = fake.admin.requests(method="POST")[-1]["arrived_at"]
    assert sent <= arrived + 0.01 and answered - arrived >= 0.29


def test_the_plain_fake_honours_when_after() -> None:
    rules = {
        "rules": [{"id": "lost", "match": {"method": "POST"}, "fault": {"type": "reset"}, "when": "after"}]
    }
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.json"
        path.write_text(json.dumps(rules))
        config = ServerConfig(db=":memory:", tenants=ROOMY, auth_failure_limit=None, faults=str(path))
        with ServerThread(config) as server:
            outcome, _ = _post(server.port, "acted")
            assert outcome in ("ConnectionResetError", "RemoteDisconnected")
            assert _created(server, "acted")
