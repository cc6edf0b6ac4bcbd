"""Rule validation, rule files, presets and the X-Mock-Fault header."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mock_server._faults import (
    PRESETS,
    Fault,
    FaultConfigError,
    Latency,
    RetryAfter,
    RuleSet,
    load_rules,
    parse_fault_header,
    parse_rule,
    parse_rules,
    preset,
)
from mock_server.exceptions import ConfigError

CONTRACT_EXAMPLE = """
seed: 42
rules:
  - id: flaky-generate
    match: {method: POST, path: "/hr_generate*", tenant: demo, headers: {X-Canary: "1"}}
    probability: 0.2
    fault: {type: status, status: 503, retry_after: 2}
  - id: slow-profiles
    match: {path: "/profiles*"}
    fault: {type: latency, lognormal: {median_ms: 80, sigma: 0.5}}
  - id: first-two-fail
    match: {path: "/health"}
    sequence: [{type: status, status: 500}, {type: status, status: 500}, ok]
  - id: every-fifth-throttled
    match: {path: "/profiles*"}
    every_nth: 5
    fault: {type: status, status: 429, retry_after: {seconds: 2, format: http-date}}
  - id: outage
    window: {start_s: 30, duration_s: 20}
    fault: {type: reset}
  - id: slow-and-failing
    fault: {type: status, status: 502, latency: {fixed_ms: 100}}
"""


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"rules": list(rules)}


def test_contract_example_parses(tmp_path):
    """The contract's example file loads, every field in place."""
    path = tmp_path / "faults.yaml"
    path.write_text(CONTRACT_EXAMPLE)
    rules = load_rules(path)
    assert rules.seed == 42
    assert [r.id for r in rules.rules] == [
        "flaky-generate",
        "slow-profiles",
        "first-two-fail",
        "every-fifth-throttled",
        "outage",
        "slow-and-failing",
    ]
    flaky = rules.rules[0]
    assert flaky.match.methods == frozenset({"POST"})
    assert flaky.match.headers == (("x-canary", "1"),)
    assert flaky.probability == 0.2
    assert flaky.fault == Fault("status", status=503, retry_after=RetryAfter(2))
    assert rules.rules[1].fault == Fault("latency", latency=Latency("lognormal", 80, 0.5))
    assert rules.rules[2].sequence is not None and rules.rules[2].sequence[2] is None
    assert rules.rules[3].fault is not None and rules.rules[3].fault.retry_after == RetryAfter(
        2, http_date=True
    )
    assert rules.rules[4].window is not None and rules.rules[4].window.duration_s == 20
    assert rules.rules[5].fault == Fault("status", status=502, latency=Latency("fixed", 100))


def test_json_file_loads_like_yaml(tmp_path):
    """A JSON rule file gives the same rule set as its YAML twin."""
    yaml_path = tmp_path / "f.yaml"
    yaml_path.write_text(CONTRACT_EXAMPLE)
    json_path = tmp_path / "f.json"
    json_path.write_text(json.dumps(load_rules(yaml_path).to_dict()))
    assert load_rules(json_path) == load_rules(yaml_path)


def test_round_trip_through_to_dict():
    """``to_dict`` gives back the contract's format: parsing it again is the identity."""
    rules = PRESETS["chaos"] + PRESETS["outage"]
    assert parse_rules(rules.to_dict()) == rules


@pytest.mark.parametrize(
    ("rule", "where", "words"),
    [
        pytest.param(
            {"fault": {"type": "status", "status": 200}}, "rules[0].fault.status", "400..599", id="status"
        ),
        pytest.param({"fault": {"type": "status"}}, "rules[0].fault.status", "required", id="status-missing"),
        pytest.param({"fault": {"type": "boom"}}, "rules[0].fault.type", "one of", id="type"),
        pytest.param({"fault": {}}, "rules[0].fault.type", "required", id="type-missing"),
        pytest.param(
            {"probability": 1.5, "fault": {"type": "reset"}}, "rules[0].probability", "0..1", id="prob"
        ),
        pytest.param(
            {"probabilty": 0.5, "fault": {"type": "reset"}}, "rules[0].probabilty", "unknown", id="typo"
        ),
        pytest.param({"times": 0, "fault": {"type": "reset"}}, "rules[0].times", ">= 1", id="times"),
        pytest.param({"after": -1, "fault": {"type": "reset"}}, "rules[0].after", ">= 0", id="after"),
        pytest.param(
            {"every_nth": 0, "fault": {"type": "reset"}}, "rules[0].every_nth", ">= 1", id="every-nth"
        ),
        pytest.param(
            {"every_nth": 2, "sequence": ["ok"]}, "rules[0].every_nth", "sequence", id="nth-and-seq"
        ),
        pytest.param({}, "rules[0].fault", "exactly one of fault, sequence", id="no-fault"),
        pytest.param({"sequence": []}, "rules[0].sequence", "non-empty", id="empty-seq"),
        pytest.param(
            {"sequence": ["ok", {"type": "x"}]}, "rules[0].sequence[1].type", "one of", id="seq-item"
        ),
        pytest.param(
            {"fault": {"type": "latency", "fixed_ms": -5}},
            "rules[0].fault.fixed_ms",
            "0..3600000",
            id="neg-latency",
        ),
        pytest.param(
            {"fault": {"type": "latency", "uniform": {"min_ms": 9, "max_ms": 3}}},
            "rules[0].fault.uniform.max_ms",
            ">= min_ms",
            id="uniform-order",
        ),
        pytest.param(
            {"fault": {"type": "latency", "normal": {"mean_ms": 9}}},
            "rules[0].fault.normal.sd_ms",
            "required",
            id="normal-sd",
        ),
        pytest.param({"fault": {"type": "latency"}}, "rules[0].fault", "exactly one of", id="latency-empty"),
        pytest.param(
            {"fault": {"type": "status", "status": 503, "latency": {"fixed_ms": "x"}}},
            "rules[0].fault.latency.fixed_ms",
            "number",
            id="sub-latency",
        ),
        pytest.param(
            {"fault": {"type": "status", "status": 429, "retry_after": {"seconds": 2, "format": "rfc"}}},
            "rules[0].fault.retry_after.format",
            "http-date",
            id="retry-format",
        ),
        pytest.param(
            {"fault": {"type": "status", "status": 429, "retry_after": 1.5}},
            "rules[0].fault.retry_after",
            "integer",
            id="retry-int",
        ),
        pytest.param(
            {"fault": {"type": "truncate", "fraction": 1}}, "rules[0].fault.fraction", "0..", id="fraction"
        ),
        pytest.param({"fault": {"type": "timeout", "hang_s": 0}}, "rules[0].fault.hang_s", "0..", id="hang"),
        pytest.param(
            {"fault": {"type": "reset", "status": 500}}, "rules[0].fault.status", "unknown", id="extra"
        ),
        pytest.param({"fault": {"type": "slow_body"}}, "rules[0].fault", "bytes_per_s", id="slow-body"),
        pytest.param(
            {"window": {"start_s": 1}, "fault": {"type": "reset"}},
            "rules[0].window.duration_s",
            "required",
            id="win",
        ),
        pytest.param(
            {"match": {"method": "FETCH"}, "fault": {"type": "reset"}},
            "rules[0].match.method",
            "HTTP",
            id="method",
        ),
        pytest.param(
            {"match": {"path": "/__admin/*"}, "fault": {"type": "reset"}},
            "rules[0].match.path",
            "admin",
            id="admin",
        ),
        pytest.param(
            {"match": {"headers": {"X-A": True}}, "fault": {"type": "reset"}},
            "rules[0].match.headers.X-A",
            "string",
            id="header-value",
        ),
        pytest.param({"id": "bad id!", "fault": {"type": "reset"}}, "rules[0].id", "A-Z", id="id"),
        pytest.param({"match": [], "fault": {"type": "reset"}}, "rules[0].match", "object", id="match-type"),
    ],
)
def test_bad_field_is_named(rule, where, words):
    """Every invalid field is rejected with an error that names it."""
    with pytest.raises(FaultConfigError) as info:
        parse_rules(_rules(rule))
    message = str(info.value)
    assert message.startswith(f"{where}: "), message
    assert words in message
    assert info.value.details[0]["loc"][:2] == ["rules", 0]


def test_error_names_the_rule_index():
    """The index of the bad rule is in the message: ``rules[2]...``."""
    good = {"fault": {"type": "reset"}}
    with pytest.raises(FaultConfigError, match=r"^rules\[2\]\.fault\.status: must be 400\.\.599"):
        parse_rules(_rules(good, good, {"fault": {"type": "status", "status": 600}}))


def test_duplicate_ids_rejected():
    """Two rules may not share an id."""
    with pytest.raises(FaultConfigError, match=r"rules\[1\]\.id: duplicate id 'x'"):
        parse_rules(_rules({"id": "x", "fault": {"type": "reset"}}, {"id": "x", "fault": {"type": "close"}}))


def test_default_ids_and_top_level_fields():
    """Rules without ids get ``rule-N``; unknown top-level keys and bad seeds are named."""
    rules = parse_rules(_rules({"fault": {"type": "reset"}}, {"fault": {"type": "close"}}))
    assert [r.id for r in rules.rules] == ["rule-1", "rule-2"]
    with pytest.raises(FaultConfigError, match="^seed: must be an integer"):
        parse_rules({"seed": "x", "rules": []})
    with pytest.raises(FaultConfigError, match="^rulez: unknown field"):
        parse_rules({"rulez": []})


def test_fault_config_error_is_a_config_error():
    """The CLI's ConfigError handling covers fault files too."""
    assert issubclass(FaultConfigError, ConfigError)


def test_bad_files_name_the_file(tmp_path):
    """A missing or unparsable file is an error naming the file."""
    with pytest.raises(FaultConfigError, match="nope.yaml"):
        load_rules(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(FaultConfigError, match="broken.yaml: not valid YAML"):
        load_rules(broken)
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"fault": {"type": "status", "status": 99}}]}')
    with pytest.raises(FaultConfigError, match=r"bad.json: rules\[0\]\.fault\.status"):
        load_rules(bad)


def test_empty_file_is_no_rules(tmp_path):
    """An empty rule file is an empty rule set."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_rules(path) == RuleSet()


def test_match_normalises():
    """Methods are upper-cased, header names lower-cased, and ``*`` paths match anything."""
    rule = parse_rule(
        {
            "id": "a",
            "match": {"method": ["get", "post"], "path": "*", "headers": {"X-Canary": 1}},
            "fault": {"type": "reset"},
        }
    )
    assert rule.match.methods == frozenset({"GET", "POST"})
    assert rule.match.path is None
    assert rule.match.headers == (("x-canary", "1"),)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    """Every preset is a valid rule set whose ids carry its name."""
    rules = preset(name)
    assert len(rules) > 0
    assert all(r.id.startswith(name) for r in rules.rules)


def test_unknown_preset_lists_the_names():
    """An unknown preset name is an error listing the known ones."""
    with pytest.raises(FaultConfigError, match="flaky, outage, rate-limited, slow, chaos"):
        preset("nope")


def test_presets_stack_with_a_file():
    """A preset can be added to a file's rules; the file's seed wins."""
    combined = parse_rules({"seed": 7, "rules": [{"id": "mine", "fault": {"type": "reset"}}]}) + preset(
        "flaky"
    )
    assert combined.seed == 7
    assert combined.rules[0].id == "mine"
    assert len(combined) == 1 + len(preset("flaky"))


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        pytest.param(
            "status=503;retry_after=1", Fault("status", status=503, retry_after=RetryAfter(1)), id="503"
        ),
        pytest.param(
            "status=429; retry_after_date=2",
            Fault("status", status=429, retry_after=RetryAfter(2, http_date=True)),
            id="http-date",
        ),
        pytest.param("latency=200", Fault("latency", latency=Latency("fixed", 200)), id="latency"),
        pytest.param("latency=50..150", Fault("latency", latency=Latency("uniform", 50, 150)), id="uniform"),
        pytest.param(
            "status=502;latency=100",
            Fault("status", status=502, latency=Latency("fixed", 100)),
            id="combined",
        ),
        pytest.param("reset", Fault("reset"), id="reset"),
        pytest.param("close", Fault("close"), id="close"),
        pytest.param("timeout=2", Fault("timeout", hang_s=2), id="timeout"),
        pytest.param("timeout", Fault("timeout"), id="timeout-forever"),
        pytest.param("truncate=0.5", Fault("truncate", fraction=0.5), id="truncate"),
        pytest.param("truncate", Fault("truncate", fraction=0.5), id="truncate-default"),
        pytest.param("malformed_json", Fault("malformed_json"), id="malformed"),
        pytest.param(
            "wrong-content-type=text/plain", Fault("wrong_content_type", content_type="text/plain"), id="ct"
        ),
        pytest.param("slow_body=100", Fault("slow_body", bytes_per_s=100), id="slow"),
        pytest.param(
            "slow_body;chunk_delay_ms=20;chunk_bytes=4",
            Fault("slow_body", chunk_delay_ms=20, chunk_bytes=4),
            id="slow-chunks",
        ),
    ],
)
def test_fault_header_parses(header, fault):
    """The X-Mock-Fault forms of the contract give the same faults as rules."""
    assert parse_fault_header(header) == fault


@pytest.mark.parametrize(
    ("header", "words"),
    [
        pytest.param("bogus", "unknown item 'bogus'", id="unknown"),
        pytest.param("status=abc", "X-Mock-Fault.status: must be a number", id="nan"),
        pytest.param("status=200", "X-Mock-Fault.status: must be 400..599", id="range"),
        pytest.param("reset;close", "one fault at a time", id="two"),
        pytest.param("retry_after=1", "names no fault", id="no-fault"),
        pytest.param("reset=1", "X-Mock-Fault.reset: takes no value", id="value"),
        pytest.param("status=503;retry_after", "X-Mock-Fault.retry_after: needs a value", id="empty"),
        pytest.param("status=503;status=500", "given twice", id="twice"),
        pytest.param("latency=-1", "X-Mock-Fault.fixed_ms: must be 0..3600000", id="neg"),
        pytest.param("reset;retry_after=1", "X-Mock-Fault.retry_after: unknown field", id="misplaced"),
    ],
)
def test_bad_fault_header_names_the_problem(header, words):
    """A bad X-Mock-Fault value is an error saying what is wrong with it."""
    with pytest.raises(FaultConfigError) as info:
        parse_fault_header(header)
    assert words in str(info.value)
