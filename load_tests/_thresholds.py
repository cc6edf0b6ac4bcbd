"""Pass/fail thresholds in the k6 style, read from YAML, judged on the per-call samples.

A config names, per metric, expressions that must all hold, as k6 does
(``http_req_duration: ["p(95)<500"]``)::

    defaults:
      judge: [resilient]            # whose calls are judged; the naive user is the baseline
      thresholds:
        fail_ratio: ["rate<0.05"]
        latency_ms: ["p(95)<3000"]
        attempts_per_call: ["avg<2", "max<=6"]
    scenarios:
      outage:
        thresholds:
          fail_ratio: ["rate<0.6"]   # replaces the default list; null drops the metric
          tail_fail_ratio: ["rate<0.05"]

Metrics, each over one client kind's logical calls (one locust request event each):

- ``fail_ratio``, ``success_ratio``: failed (or succeeded) calls over calls;
- ``tail_fail_ratio``: ``fail_ratio`` over the final quarter of the run (recovery after an outage);
- ``latency_ms``: the whole call, retries and waits included (``p(N)``, ``avg``, ``med``, ``min``, ``max``);
- ``attempts_per_call``: requests sent per call, 0 for a cache hit (same aggregates);
- ``throttled_ratio``: attempts answered 429 over attempts sent;
- ``cache_hit_ratio``: calls answered by the cache (fresh, revalidated or stale) over calls;
- ``breaker_opens``: times a circuit breaker opened (``count``);
- ``calls``: logical calls (``count``); ``rps``: calls per second (``value``);
- ``success_gain_over_naive``: this kind's success ratio minus the naive kind's (``value``).

Scalar metrics accept ``rate``, ``value`` and ``count`` alike. An observation without data
(no calls) fails its threshold. No locust import: the quitting listener and the tests use it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from ._samples import KindMetrics, Samples, percentile

__all__ = [
    "DEFAULT_FILE",
    "METRICS",
    "Expression",
    "Result",
    "ThresholdError",
    "Verdict",
    "evaluate",
    "load",
    "parse_expression",
    "rules_for",
]

DEFAULT_FILE = Path(__file__).with_name("thresholds.yaml")

_EXPRESSION = re.compile(
    r"^\s*(?P<agg>rate|value|count|avg|min|max|med|p\(\s*(?P<q>\d+(?:\.\d+)?)\s*\))\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<limit>-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$"
)
_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_SCALAR_AGGS = frozenset({"rate", "value", "count"})
_HIST_AGGS = frozenset({"avg", "min", "max", "med", "p", "count"})

#: Every metric a threshold may name, and whether it is a distribution (``p(N)`` etc.).
METRICS: Mapping[str, bool] = {
    "fail_ratio": False,
    "success_ratio": False,
    "tail_fail_ratio": False,
    "latency_ms": True,
    "attempts_per_call": True,
    "throttled_ratio": False,
    "cache_hit_ratio": False,
    "breaker_opens": False,
    "calls": False,
    "rps": False,
    "success_gain_over_naive": False,
}

TAIL_FRACTION = 0.25


class ThresholdError(ValueError):
    """A thresholds file or expression is malformed; the message names where."""


@dataclass(frozen=True, slots=True)
class Expression:
    """One parsed ``AGG OP LIMIT``, e.g. ``p(95)<500``."""

    text: str
    aggregate: str
    quantile: float | None
    op: str
    limit: float

    def holds(self, observed: float) -> bool:
        return not math.isnan(observed) and _OPS[self.op](observed, self.limit)


@dataclass(frozen=True, slots=True)
class Result:
    """One expression judged for one client kind."""

    kind: str
    metric: str
    expression: str
    observed: float
    ok: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every result; ``ok`` when all hold (and there was at least one)."""

    scenario: str
    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "results": [
                {
                    "kind": r.kind,
                    "metric": r.metric,
                    "expression": r.expression,
                    "observed": None if math.isnan(r.observed) else r.observed,
                    "ok": r.ok,
                }
                for r in self.results
            ],
        }


def parse_expression(text: str, *, metric: str = "?") -> Expression:
    """Parse ``AGG OP LIMIT``; raises :class:`ThresholdError` naming the metric."""
    if not isinstance(text, str):
        raise ThresholdError(f"{metric}: expected a string like 'p(95)<500', got {text!r}")
    m = _EXPRESSION.match(text)
    if m is None:
        raise ThresholdError(
            f"{metric}: cannot read {text!r}; expected AGG OP NUMBER with AGG one of "
            "rate, value, count, avg, min, max, med, p(N)"
        )
    agg = m.group("agg")
    quantile = None
    if agg.startswith("p("):
        agg = "p"
        quantile = float(m.group("q"))
        if not 0 <= quantile <= 100:
            raise ThresholdError(f"{metric}: percentile {quantile} is outside 0..100")
    if metric in METRICS:
        allowed = _HIST_AGGS if METRICS[metric] else _SCALAR_AGGS
        if agg not in allowed:
            raise ThresholdError(
                f"{metric}: aggregate {agg!r} does not apply; use one of {', '.join(sorted(allowed))}"
            )
    return Expression(text.strip(), agg, quantile, m.group("op"), float(m.group("limit")))


def load(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check a thresholds file (the packaged default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThresholdError(f"thresholds file {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ThresholdError(f"thresholds file {str(path)!r} is not valid YAML: {exc}") from exc
    check(data)
    return cast(dict[str, Any], data)


def check(data: Any) -> None:
    """Raise :class:`ThresholdError` naming the first malformed part of a config."""
    if not isinstance(data, dict):
        raise ThresholdError("thresholds: expected a mapping with 'defaults' and/or 'scenarios'")
    unknown = set(data) - {"defaults", "scenarios"}
    if unknown:
        raise ThresholdError(f"thresholds: unknown key(s) {', '.join(sorted(unknown))}")
    _check_block(data.get("defaults") or {}, "defaults")
    scenarios = data.get("scenarios") or {}
    if not isinstance(scenarios, dict):
        raise ThresholdError("scenarios: expected a mapping of scenario name to settings")
    for name, block in scenarios.items():
        _check_block(block or {}, f"scenarios.{name}")


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise ThresholdError(f"{where}: expected a mapping with 'judge' and/or 'thresholds'")
    unknown = set(block) - {"judge", "thresholds"}
    if unknown:
        raise ThresholdError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    judge = block.get("judge")
    if judge is not None and (not isinstance(judge, list) or not all(isinstance(k, str) for k in judge)):
        raise ThresholdError(f"{where}.judge: expected a list of client kinds")
    thresholds = block.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ThresholdError(f"{where}.thresholds: expected a mapping of metric to expressions")
    for metric, exprs in thresholds.items():
        if metric not in METRICS:
            raise ThresholdError(
                f"{where}.thresholds: unknown metric {metric!r}; one of {', '.join(METRICS)}"
            )
        if exprs is None:
            continue
        if isinstance(exprs, str):
            exprs = [exprs]
        if not isinstance(exprs, list):
            raise ThresholdError(f"{where}.thresholds.{metric}: expected a list of expressions")
        for e in exprs:
            parse_expression(e, metric=f"{where}.thresholds.{metric}")


def rules_for(data: Mapping[str, Any], scenario: str) -> tuple[list[str], dict[str, list[Expression]]]:
    """The kinds to judge and the expressions per metric for ``scenario`` (defaults merged)."""
    defaults = data.get("defaults") or {}
    block = (data.get("scenarios") or {}).get(scenario) or {}
    judge = list(block.get("judge") or defaults.get("judge") or ["resilient"])
    merged: dict[str, Any] = dict(defaults.get("thresholds") or {})
    merged.update(block.get("thresholds") or {})
    rules: dict[str, list[Expression]] = {}
    for metric, exprs in merged.items():
        if exprs is None:
            continue
        if isinstance(exprs, str):
            exprs = [exprs]
        rules[metric] = [parse_expression(e, metric=metric) for e in exprs]
    return judge, rules


def observe(samples: Samples, kind: str, metric: str, expr: Expression) -> float:
    """The value ``expr`` compares for ``metric`` of ``kind``; NaN when there is no data."""
    m = samples.metrics(kind)
    if metric in ("latency_ms", "attempts_per_call"):
        hist = m.window.latency if metric == "latency_ms" else m.window.attempts_hist
        return _aggregate(hist, expr)
    if metric == "fail_ratio":
        return m.fail_ratio
    if metric == "success_ratio":
        return m.success_ratio
    if metric == "tail_fail_ratio":
        return _tail(samples, kind).fail_ratio
    if metric == "throttled_ratio":
        return m.throttled_ratio if m.calls else math.nan
    if metric == "cache_hit_ratio":
        return m.cache_hit_ratio
    if metric == "breaker_opens":
        return float(m.window.breaker_opens)
    if metric == "calls":
        return float(m.calls)
    if metric == "rps":
        return m.rps
    if metric == "success_gain_over_naive":
        naive = samples.metrics("naive")
        return m.success_ratio - naive.success_ratio
    raise ThresholdError(f"unknown metric {metric!r}")


def _aggregate(hist: Mapping[int, int], expr: Expression) -> float:
    total = sum(hist.values())
    if expr.aggregate == "count":
        return float(total)
    if total == 0:
        return math.nan
    if expr.aggregate == "avg":
        return sum(k * v for k, v in hist.items()) / total
    if expr.aggregate == "min":
        return float(min(hist))
    if expr.aggregate == "max":
        return float(max(hist))
    if expr.aggregate == "med":
        return percentile(hist, 0.5)
    assert expr.quantile is not None
    return percentile(hist, expr.quantile / 100)


def _tail(samples: Samples, kind: str) -> KindMetrics:
    started, stopped = samples.meta.get("started_at"), samples.meta.get("stopped_at")
    span = samples.span()
    if not isinstance(started, int | float) or not isinstance(stopped, int | float):
        if span is None:
            return samples.metrics(kind, since=0, until=0)
        started, stopped = span[0], span[1] + 1
    since = float(stopped) - TAIL_FRACTION * (float(stopped) - float(started))
    return samples.metrics(kind, since=math.floor(since), until=math.ceil(float(stopped)) + 1)


def evaluate(data: Mapping[str, Any], scenario: str, samples: Samples) -> Verdict:
    """Judge ``samples`` of a run of ``scenario`` against the config ``data``."""
    judge, rules = rules_for(data, scenario)
    present = set(samples.kinds())
    results: list[Result] = []
    for kind in judge:
        if kind not in present:
            results.append(Result(kind, "calls", "count>0", 0.0, False))
            continue
        for metric, exprs in rules.items():
            if metric == "success_gain_over_naive" and (kind == "naive" or "naive" not in present):
                continue
            for expr in exprs:
                observed = observe(samples, kind, metric, expr)
                results.append(Result(kind, metric, expr.text, observed, expr.holds(observed)))
    return Verdict(scenario, tuple(results))


def format_results(results: Sequence[Result]) -> list[str]:
    """One line per result, for the terminal and the summary."""
    lines = []
    for r in results:
        observed = "n/a" if math.isnan(r.observed) else f"{r.observed:.4g}"
        lines.append(
            f"{'PASS' if r.ok else 'FAIL'}  {r.kind:<10} {r.metric:<24} {r.expression:<14} {observed}"
        )
    return lines
