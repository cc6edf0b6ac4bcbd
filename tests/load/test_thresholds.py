"""k6-style thresholds: parsing, merging per scenario, judging samples."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import yaml

from load_tests import _thresholds
from load_tests._samples import Samples
from load_tests._thresholds import ThresholdError, evaluate, parse_expression, rules_for

from .conftest import call


@pytest.mark.parametrize(
    ("text", "aggregate", "quantile", "op", "limit"),
    [
        pytest.param("rate<0.05", "rate", None, "<", 0.05, id="rate"),
        pytest.param("p(95) < 500", "p", 95.0, "<", 500.0, id="percentile-spaces"),
        pytest.param("p(99.9)<=2e3", "p", 99.9, "<=", 2000.0, id="fractional-percentile"),
        pytest.param("count>=1", "count", None, ">=", 1.0, id="count"),
    ],
)
def test_parse_expression(text, aggregate, quantile, op, limit):
    """``AGG OP NUMBER`` as k6 writes it."""
    e = parse_expression(text)
    assert (e.aggregate, e.quantile, e.op, e.limit) == (aggregate, quantile, op, limit)


@pytest.mark.parametrize(
    ("metric", "text"),
    [
        pytest.param("fail_ratio", "rate<<1", id="bad-operator"),
        pytest.param("fail_ratio", "p(95)<1", id="percentile-of-a-ratio"),
        pytest.param("latency_ms", "rate<1", id="rate-of-a-distribution"),
        pytest.param("latency_ms", "p(101)<1", id="percentile-over-100"),
    ],
)
def test_bad_expressions_name_the_metric(metric, text):
    """A malformed or misapplied expression is refused with the metric's name."""
    with pytest.raises(ThresholdError, match=metric):
        parse_expression(text, metric=metric)


def test_packaged_config_is_valid():
    """The shipped thresholds.yaml parses, and has an entry for every scenario."""
    from load_tests._scenarios import SCENARIOS

    data = _thresholds.load()
    assert set(SCENARIOS) <= set(data["scenarios"])
    for name in SCENARIOS:
        rules_for(data, name)


def test_scenario_overrides_defaults():
    """A scenario's list replaces the default's for that metric; null drops it."""
    data = {
        "defaults": {"thresholds": {"fail_ratio": ["rate<0.05"], "latency_ms": ["p(95)<100"]}},
        "scenarios": {
            "outage": {"judge": ["naive"], "thresholds": {"fail_ratio": ["rate<0.6"], "latency_ms": None}}
        },
    }
    judge, rules = rules_for(data, "outage")
    assert judge == ["naive"]
    assert [e.text for e in rules["fail_ratio"]] == ["rate<0.6"]
    assert "latency_ms" not in rules


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"defaults": {"thresholds": {"latency": ["p(95)<1"]}}}, id="unknown-metric"),
        pytest.param({"defaults": {"judge": "resilient"}}, id="judge-not-a-list"),
        pytest.param({"default": {}}, id="unknown-top-key"),
        pytest.param({"scenarios": {"x": {"thresholds": {"fail_ratio": "rate<"}}}}, id="bad-expression"),
    ],
)
def test_check_refuses_malformed_configs(data):
    """Config mistakes are caught before a run is judged."""
    with pytest.raises(ThresholdError):
        _thresholds.check(data)


def test_load_reads_yaml(tmp_path):
    """A file is read and checked."""
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"thresholds": {"calls": ["count>0"]}}}))
    assert _thresholds.load(path)["defaults"]["thresholds"]["calls"] == ["count>0"]


def _flaky_run(make_samples: Callable[..., Samples]) -> Samples:
    resilient = [(s, 20.0, None, call(1 if s % 3 else 2, attempt_5xx=0 if s % 3 else 1)) for s in range(10)]
    naive = [(s, 10.0, "HTTP 503" if s % 3 == 0 else None, call(1)) for s in range(10)]
    return make_samples({"resilient": resilient, "naive": naive})


def test_run_meeting_thresholds_passes_despite_failures_elsewhere(make_samples):
    """Only judged kinds count: the naive baseline's injected 5xx do not fail the run."""
    samples = _flaky_run(make_samples)
    data = {
        "defaults": {
            "judge": ["resilient"],
            "thresholds": {
                "fail_ratio": ["rate<0.01"],
                "latency_ms": ["p(95)<50", "avg<30"],
                "attempts_per_call": ["avg<1.5", "max<=2"],
                "success_gain_over_naive": ["value>0.2"],
            },
        }
    }
    verdict = evaluate(data, "steady", samples)
    assert verdict.ok, verdict.results
    assert verdict.exit_code == 0
    gain = next(r for r in verdict.results if r.metric == "success_gain_over_naive")
    assert gain.observed == pytest.approx(0.4)


def test_run_missing_a_threshold_fails(make_samples):
    """One expression that does not hold fails the run, with the observed value reported."""
    samples = _flaky_run(make_samples)
    data = {"defaults": {"judge": ["naive"], "thresholds": {"fail_ratio": ["rate<0.1"]}}}
    verdict = evaluate(data, "steady", samples)
    assert not verdict.ok and verdict.exit_code == 1
    assert verdict.results[0].observed == pytest.approx(0.4)
    assert verdict.to_dict()["results"][0]["ok"] is False


def test_judged_kind_without_calls_fails(make_samples):
    """No data is no pass."""
    samples = make_samples({"naive": [(0, 1.0, None, call())]})
    verdict = evaluate({"defaults": {"thresholds": {"fail_ratio": ["rate<1"]}}}, "steady", samples)
    assert not verdict.ok


def test_tail_fail_ratio_sees_recovery(make_samples):
    """Failures early in the run do not count in the final quarter."""
    rows = [(s, 5.0, "CircuitOpen" if s < 5 else None, call(0 if s < 5 else 1)) for s in range(20)]
    samples = make_samples({"resilient": rows}, duration=20)
    data = {"defaults": {"thresholds": {"fail_ratio": ["rate>0.2"], "tail_fail_ratio": ["rate==0"]}}}
    verdict = evaluate(data, "outage", samples)
    assert verdict.ok, verdict.results


def test_nan_never_holds():
    """An observation without data fails whatever the operator."""
    assert not parse_expression("rate<1").holds(math.nan)
    assert not parse_expression("rate!=1").holds(math.nan)
