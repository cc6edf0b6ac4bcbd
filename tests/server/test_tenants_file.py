"""The tenants file: unknown keys are refused by name and place, syntax errors give the line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mock_server._tenants import load_tenants, parse_tenants
from mock_server.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"name": "t", "api_keys": ["k"]}


@pytest.mark.parametrize(
    ("data", "where", "key"),
    [
        ({"tenants": [{"name": "t", "apikeys": ["k"]}]}, "tenants[0].apikeys", "api_keys"),
        ({"tenants": [GOOD], "tennants": []}, "tennants", "tenants"),
        (
            {"tenants": [GOOD, {"name": "u", "api_keys": ["j"], "rate_limit": {"per_min": 5}}]},
            "tenants[1].rate_limit.per_min",
            "per_minute",
        ),
    ],
)
def test_unknown_keys_are_refused_by_place(data, where, key) -> None:
    """A misspelt key would otherwise be ignored and every request would get 401."""
    with pytest.raises(ConfigError) as info:
        parse_tenants(data)
    message = str(info.value)
    assert message.startswith(f"{where}: unknown key; expected one of ")
    assert key in message


def test_every_documented_key_is_accepted() -> None:
    """The README's example (the built-in default's first tenant) parses."""
    (tenant,) = parse_tenants(
        {
            "tenants": [
                {
                    "name": "demo",
                    "api_keys": ["demo-key"],
                    "basic": {"demo": "demo-pass"},
                    "oauth_clients": {"demo-client": "demo-secret"},
                    "signing_secret": "demo-signing-secret",
                    "require_signature": False,
                    "rate_limit": {"per_minute": 600, "burst": 100},
                }
            ]
        }
    )
    assert tenant.api_keys == ("demo-key",) and tenant.rate_limit.burst == 100


@pytest.mark.parametrize(
    ("name", "text", "position"),
    [
        ("bad.yaml", "tenants:\n  - name: demo\n    api_keys: [demo-key\n", "line 4, column 1"),
        ("bad.yaml", "tenants:\n  - name: demo\n   api_keys: x: y\n", "line 3"),
        ("bad.json", '{"tenants": [\n  {"name": "demo",}\n]}', "line 2, column 19"),
    ],
)
def test_syntax_errors_give_line_and_column(tmp_path, name, text, position) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_tenants(path)
    message = str(info.value)
    assert str(path) in message and position in message
    assert "\n" not in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"tenants: [\xff]\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_tenants(path)


def test_field_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tenants:\n  - name: t\n    apikeys: [k]\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: tenants\[0\]\.apikeys: unknown key"):
        load_tenants(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tenants:\n  - name: t\n    apikeys: [k]\n", "tenants[0].apikeys: unknown key"),
        ("tenants:\n  - name: t\n    api_keys: [k\n", "line 4"),
    ],
)
def test_serve_with_a_bad_tenants_file_prints_one_line_and_exits_2(tmp_path, text, needle) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mock_server",
            "serve",
            "--port",
            "0",
            "--db",
            ":memory:",
            "--tenants",
            str(bad),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and str(bad) in lines[0]
