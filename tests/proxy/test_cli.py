"""``mock-server proxy`` and ``mock-server replay`` flags: a bad one is one line naming it, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mock_server._cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["proxy", "--upstream", "ftp://example.com"], "upstream: must be an http:// or https:// URL"),
        (["proxy", "--upstream", "http://127.0.0.1:1?x=1"], "upstream: must not have user info, a query"),
        (["proxy", "--upstream", "http://127.0.0.1:1", "--rate-limit", "0:5"], "--rate-limit: must be"),
        (["proxy", "--upstream", "http://127.0.0.1:1", "--rate-limit", "ten"], "--rate-limit: must be"),
        (["proxy", "--upstream", "http://127.0.0.1:1", "--timeout", "0"], "--timeout: must be positive"),
        (["proxy", "--upstream", "http://127.0.0.1:1", "--port", "70000"], "--port: must be 0..65535"),
        (["proxy", "--upstream", "http://127.0.0.1:1", "--preset", "nope"], "nope"),
        (["replay", "/nonexistent/traffic.har"], "/nonexistent/traffic.har: cannot read"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_file_that_is_not_a_har(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.har"
    bad.write_text("these are notes")
    assert main(["replay", str(bad)]) == 2
    assert "not a HAR file" in capsys.readouterr().err
    # --record refuses to overwrite a file that is not a HAR.
    assert main(["proxy", "--upstream", "http://127.0.0.1:1", "--record", str(bad)]) == 2
    assert "record:" in capsys.readouterr().err and bad.read_text() == "these are notes"


def test_a_bad_when_in_a_rule_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: a\n    fault: {type: reset}\n    when: later\n")
    assert main(["proxy", "--upstream", "http://127.0.0.1:1", "--faults", str(rules)]) == 2
    assert "rules[0].when: must be one of before, after, got 'later'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--session-ttl", "0", "--session-ttl: must be positive"),
        ("--journal-max-bytes", "0", "--journal-max-bytes: must be positive"),
        ("--header-timeout", "-1", "--header-timeout: must be positive"),
        ("--journal-size", "0", "--journal-size: must be positive"),
    ],
)
def test_serve_proxy_and_replay_share_their_serving_flags_and_errors(
    flag: str, value: str, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The journal, session and header-timeout flags of `serve` exist in `proxy` and `replay`
    too, with the same check and the same one-line error (one definition, in `_flags`)."""
    har = tmp_path / "t.har"
    har.write_text('{"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": []}}')
    for command in (["serve"], ["proxy", "--upstream", "http://127.0.0.1:1"], ["replay", str(har)]):
        assert main([*command, flag, value]) == 2, command
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1 and "Traceback" not in err, (command, err)


def test_the_proxy_takes_the_serving_settings_into_its_config() -> None:
    from mock_server._cli import _parser
    from mock_server._proxy._cli import config_from_args

    args = _parser().parse_args(
        ["proxy", "--upstream", "http://127.0.0.1:1", "--session-ttl", "5", "--header-timeout", "2"]
    )
    config = config_from_args(args)
    assert config.session_ttl == 5 and config.header_timeout == 2
