"""Acknowledged writes survive a restart and a kill -9 of the real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.socket, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    def __init__(self, db: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_server", "serve", "--port", str(self.port), "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"server did not start: {self.proc.communicate()[0]}")

    def stop(self, sig: int) -> str:
        os.kill(self.proc.pid, sig)
        out, _ = self.proc.communicate(timeout=20)
        return out


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state.db"


H = {"X-API-Key": "demo-key"}


def test_writes_survive_kill_9(db: Path) -> None:
    """Profiles and idempotency records answered 2xx are there after SIGKILL and a restart."""
    server = Process(db)
    banner = ""
    try:
        for i in range(20):
            body = {"tenant": "demo", "profile_name": f"p{i}", "hrv_vector": [i / 20] * 8}
            assert requests.post(server.url + "/profiles", json=body, headers=H, timeout=5).status_code == 201
        upd = requests.put(
            server.url + "/profiles/demo/p3", json={"hrv_vector": [0.9] * 8}, headers=H, timeout=5
        )
        assert upd.status_code == 200
        assert requests.delete(server.url + "/profiles/demo/p4", headers=H, timeout=5).status_code == 204
        keyed = {"tenant": "demo", "profile_name": "keyed", "hrv_vector": [0.1] * 8}
        first = requests.post(
            server.url + "/profiles", json=keyed, headers={**H, "Idempotency-Key": "k"}, timeout=5
        )
        assert first.status_code == 201
    finally:
        banner = server.stop(signal.SIGKILL)
    assert f"listening on {server.url}" in banner and "X-API-Key: demo-key" in banner

    again = Process(db)
    try:
        items = requests.get(again.url + "/profiles?limit=100", headers=H, timeout=5).json()["items"]
        names = {p["profile_name"] for p in items}
        assert names == {f"p{i}" for i in range(20)} - {"p4"} | {"keyed"}
        p3 = requests.get(again.url + "/profiles/demo/p3", headers=H, timeout=5).json()
        assert p3["version"] == 2 and p3["hrv_vector"] == [0.9] * 8
        replay = requests.post(
            again.url + "/profiles", json=keyed, headers={**H, "Idempotency-Key": "k"}, timeout=5
        )
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    finally:
        again.stop(signal.SIGTERM)


def test_usage_survives_a_graceful_restart(db: Path) -> None:
    """Usage counters are flushed on shutdown and reported after a restart."""
    server = Process(db)
    try:
        for _ in range(3):
            requests.get(server.url + "/profiles", headers=H, timeout=5)
    finally:
        server.stop(signal.SIGTERM)
    again = Process(db)
    try:
        usage = requests.get(again.url + "/analytics/usage?date_range=today", headers=H, timeout=5).json()
        assert usage["by_endpoint"]["GET /profiles"] == 3
    finally:
        again.stop(signal.SIGTERM)


def test_cli_rejects_bad_flags(tmp_path: Path) -> None:
    """A bad tenants file stops the CLI with a message naming the field, not a traceback."""
    bad = tmp_path / "tenants.yaml"
    bad.write_text("tenants:\n  - name: 'a b'\n")
    result = subprocess.run(
        [sys.executable, "-m", "mock_server", "serve", "--tenants", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "tenants[0].name" in result.stderr and "Traceback" not in result.stderr


def test_banner_never_shows_credentials_from_a_tenants_file() -> None:
    """The start banner shows the published demo credentials, and none from a tenants file."""
    from mock_server import DEFAULT_TENANTS, ServerConfig
    from mock_server._cli import banner
    from mock_server._tenants import parse_tenants

    shown = banner(ServerConfig(tenants=DEFAULT_TENANTS), "http://127.0.0.1:1")
    assert "demo-key" in shown and "demo-signing-secret" in shown
    custom = parse_tenants(
        {
            "tenants": [
                {
                    "name": "corp",
                    "api_keys": ["s3cret-key"],
                    "basic": {"u": "pw-9"},
                    "signing_secret": "sig-77",
                }
            ]
        }
    )
    hidden = banner(ServerConfig(tenants=custom), "http://127.0.0.1:1")
    assert "corp" in hidden
    assert not any(secret in hidden for secret in ("s3cret-key", "pw-9", "sig-77"))
