"""The rule field ``when``: validated like every other field, and round-tripped."""

from __future__ import annotations

import pytest

from mock_server._faults import FaultConfigError, parse_rule, parse_rules


def test_when_defaults_to_before_and_is_not_echoed() -> None:
    rule = parse_rule({"id": "a", "fault": {"type": "reset"}})
    assert rule.when == "before"
    assert "when" not in rule.to_dict()


def test_when_after_round_trips() -> None:
    rule = parse_rule({"id": "a", "fault": {"type": "status", "status": 503}, "when": "after"})
    assert rule.when == "after"
    assert rule.to_dict()["when"] == "after"
    assert parse_rule(rule.to_dict()) == rule


@pytest.mark.parametrize("bad", ["later", "", None, ["after"], 1, "AFTER"])
def test_a_bad_when_is_an_error_naming_the_field(bad: object) -> None:
    with pytest.raises(FaultConfigError) as caught:
        parse_rules({"rules": [{"id": "a", "fault": {"type": "reset"}, "when": bad}]})
    assert str(caught.value).startswith("rules[0].when: must be one of before, after")
