"""Record through the proxy, stop the upstream, replay; secrets never reach the file; a cut file
(kill -9) is recovered; a devtools export replays; the admin API reloads the file."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mock_server._proxy._app import FrontThread
from mock_server._proxy._har import HarWriter, read_har

from .conftest import Upstream, raw_request, run_cli, stop, wait_for_port

pytestmark = pytest.mark.socket

DATA = Path(__file__).parent / "data"
SECRETS = {
    "api_key_header": "key-4f1c9e2ab7",
    "bearer": "tok-8d2e7710c3aa",
    "basic_password": "pw-s3cr3t-9911",
    "cookie": "sess-77aa19b0c2",
    "query_token": "qtok-5521e0",
    "form_password": "form-pw-0c9d1e",
    "json_secret": "client-secret-aa01",
}


def _record(proxy: FrontThread) -> dict[str, httpx.Response]:
    """Traffic with every kind of credential in it; the answers as the client saw them."""
    s = SECRETS
    basic = base64.b64encode(f"alice:{s['basic_password']}".encode()).decode()
    seen: dict[str, httpx.Response] = {}
    with httpx.Client(base_url=proxy.url) as client:
        seen["key"] = client.get("/anything/key", headers={"X-API-Key": s["api_key_header"]})
        seen["bearer"] = client.get("/bearer", headers={"Authorization": f"Bearer {s['bearer']}"})
        seen["basic"] = client.get(
            "/basic-auth/alice/" + s["basic_password"], headers={"Authorization": f"Basic {basic}"}
        )
        seen["cookie"] = client.get("/cookies", headers={"Cookie": f"session={s['cookie']}; theme=dark"})
        seen["query"] = client.get(f"/anything/q?access_token={s['query_token']}&page=2")
        seen["form"] = client.post("/post", data={"user": "alice", "password": s["form_password"]})
        seen["json"] = client.post(
            "/anything/token", json={"client_id": "c1", "client_secret": s["json_secret"]}
        )
        seen["gzip"] = client.get("/gzip")
        seen["bytes"] = client.get("/bytes/300?seed=3")
        seen["head"] = client.head("/bytes/300?seed=3")
        seen["uuid1"] = client.get("/uuid")
        seen["uuid2"] = client.get("/uuid")
        seen["status"] = client.get("/status/418")
        # Last: the client keeps the cookie, and every later echo would carry it.
        seen["set-cookie"] = client.get(f"/cookies/set?session={s['cookie']}", follow_redirects=False)
    return seen


def test_record_then_replay_with_the_upstream_stopped(
    httpbin_factory: Callable[[], tuple[Upstream, subprocess.Popen[bytes]]],
    front: Callable[..., FrontThread],
    tmp_path: Path,
) -> None:
    upstream, process = httpbin_factory()
    har = tmp_path / "traffic.har"
    proxy = front(upstream=upstream.url, record=str(har))
    recorded = _record(proxy)
    proxy.stop()
    stop(process)

    text = har.read_text(encoding="utf-8")
    for name, secret in SECRETS.items():
        assert secret not in text, name
    assert base64.b64encode(f"alice:{SECRETS['basic_password']}".encode()).decode() not in text
    assert "REDACTED" in text
    entries = read_har(har).entries
    assert len(entries) == 14 and not read_har(har).recovered

    replay = front(har=str(har))
    with httpx.Client(base_url=replay.url) as client:
        for name in ("gzip", "bytes", "status", "set-cookie"):
            again = client.get(recorded[name].request.url.raw_path.decode(), follow_redirects=False)
            assert again.status_code == recorded[name].status_code, name
            assert again.content == recorded[name].content, name
        assert client.get("/bytes/300?seed=3").headers["content-type"] == "application/octet-stream"
        head = client.head("/bytes/300?seed=3")
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "300"
        # Recorded in order, then the last one again.
        uuids = [client.get("/uuid").json()["uuid"] for _ in range(3)]
        first, second = recorded["uuid1"].json()["uuid"], recorded["uuid2"].json()["uuid"]
        assert uuids == [first, second, second] and first != second
        # A redacted query value matches any value (the recording hid the secret).
        assert client.get("/anything/q?page=2&access_token=anything-else").status_code == 200
        # Unrecorded: 404, naming the closest recorded requests.
        missing = client.get("/uuids")
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["code"] == "not_found" and "GET /uuid" in error["message"]
        assert {"method": "GET", "path": "/uuid"} in error["details"]
        # The replay journals like the fake: the 404 is there.
        assert replay.admin.requests(path="/uuids")[0]["status"] == 404


def test_match_exact_compares_bodies(tmp_path: Path, front: Callable[..., FrontThread]) -> None:
    har = tmp_path / "bodies.har"
    writer = HarWriter(har)
    for n, body in enumerate(({"a": 1, "b": [1, 2]}, {"a": 2})):
        writer.append(_entry("POST", "/things", json.dumps(body), 201, json.dumps({"n": n})))
    writer.close()
    exact = front(har=str(har), match="exact")
    answer = raw_request(
        exact.port, "POST", "/things", [("Content-Type", "application/json")], b'{"b":[1,2],"a":1}'
    )
    assert answer.status == 201 and json.loads(answer.body) == {"n": 0}
    answer = raw_request(exact.port, "POST", "/things", [("Content-Type", "application/json")], b'{"a":2}')
    assert json.loads(answer.body) == {"n": 1}
    assert (
        raw_request(exact.port, "POST", "/things", [("Content-Type", "application/json")], b'{"a":3}').status
        == 404
    )
    by_path = front(har=str(har), match="path")
    answers = [raw_request(by_path.port, "POST", "/things", [], b"anything") for _ in range(3)]
    assert [json.loads(a.body)["n"] for a in answers] == [0, 1, 1]


def _entry(method: str, path: str, body: str, status: int, answer: str) -> dict[str, object]:
    return {
        "startedDateTime": "2026-01-01T00:00:00.000Z",
        "time": 1,
        "request": {
            "method": method,
            "url": f"http://upstream{path}",
            "httpVersion": "HTTP/1.1",
            "headers": [],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": len(body),
            "postData": {"mimeType": "application/json", "text": body},
        },
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "cookies": [],
            "content": {"size": len(answer), "mimeType": "application/json", "text": answer},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(answer),
        },
        "cache": {},
        "timings": {"send": 0, "wait": 1, "receive": 0},
    }


def test_a_devtools_export_replays(front: Callable[..., FrontThread]) -> None:
    replay = front(har=str(DATA / "devtools.har"))
    first = raw_request(replay.port, "GET", "/v1/items?page=1")
    assert first.status == 200 and json.loads(first.body)["items"][0]["id"] == "it_1"
    # Stored decoded, as devtools stores it: sent without the encoding, with its own length.
    assert first.header(b"content-encoding") is None
    assert first.header(b"content-length") == str(len(first.body)).encode()
    assert not any(name.startswith(b":") for name in first.names())
    assert first.header(b"set-cookie") == b"session=abc123; Path=/; HttpOnly; Secure"
    assert json.loads(raw_request(replay.port, "GET", "/v1/items?page=2").body)["items"][0]["id"] == "it_3"
    logo = raw_request(replay.port, "GET", "/img/logo.png")
    assert logo.body.startswith(b"\x89PNG") and logo.header(b"content-type") == b"image/png"
    created = raw_request(
        replay.port, "POST", "/v1/items", [("Content-Type", "application/json")], b'{"name":"new"}'
    )
    assert created.status == 201 and created.header(b"location") == b"/v1/items/it_9"
    assert raw_request(replay.port, "DELETE", "/v1/items/it_9").status == 204
    assert raw_request(replay.port, "GET", "/v1/items/it_404").status == 404
    # The blocked request (status 0) has nothing to replay.
    assert json.loads(raw_request(replay.port, "GET", "/collect?id=1").body)["error"]["code"] == "not_found"


def test_admin_reload_reads_the_file_again(tmp_path: Path, front: Callable[..., FrontThread]) -> None:
    har = tmp_path / "live.har"
    writer = HarWriter(har)
    writer.append(_entry("GET", "/a", "", 200, '{"v":1}'))
    replay = front(har=str(har))
    assert raw_request(replay.port, "GET", "/b").status == 404
    writer.append(_entry("GET", "/b", "", 200, '{"v":2}'))
    with httpx.Client(base_url=replay.url) as client:
        info = client.post("/__admin/replay/reload").json()
        assert info["entries"] == 2
        assert client.get("/b").json() == {"v": 2}
        assert client.get("/__admin/replay").json()["requests"] == ["GET /a", "GET /b"]
        har.write_text("not a HAR")
        refused = client.post("/__admin/replay/reload")
        assert refused.status_code == 422 and "not a HAR" in refused.json()["error"]["message"]
        assert client.get("/b").json() == {"v": 2}  # the old entries stay
    writer.close()


def test_a_cut_recording_keeps_every_whole_entry(tmp_path: Path) -> None:
    har = tmp_path / "cut.har"
    writer = HarWriter(har)
    for n in range(5):
        writer.append(_entry("GET", f"/n/{n}", "", 200, json.dumps({"n": n})))
    writer.close()
    whole = har.read_bytes()
    last_start = whole.rindex(b"\n{")
    # A kill during the last write: the file ends anywhere inside it.
    for cut in range(last_start, len(whole) - 1, 97):
        har.write_bytes(whole[:cut])
        log = read_har(har)
        assert [e["request"]["url"] for e in log.entries] == [f"http://upstream/n/{n}" for n in range(4)]
        assert log.recovered
    # Recording again to a cut file carries on after its whole entries.
    writer = HarWriter(har)
    writer.append(_entry("GET", "/n/new", "", 200, "{}"))
    writer.close()
    assert len(json.loads(har.read_text())["log"]["entries"]) == 5


def test_kill_9_while_recording_leaves_a_parseable_file(httpbin: Upstream, tmp_path: Path) -> None:
    har = tmp_path / "killed.har"
    port = _free()
    proc = run_cli("proxy", "--upstream", httpbin.url, "--port", str(port), "--record", str(har))
    try:
        wait_for_port(port, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(20):
                assert client.get(f"/anything/{n}").status_code == 200
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    entries = json.loads(har.read_text())["log"]["entries"]
    assert [e["request"]["url"].rsplit("/", 1)[1] for e in entries] == [str(n) for n in range(20)]


def _free() -> int:
    from .conftest import free_port

    return free_port()
