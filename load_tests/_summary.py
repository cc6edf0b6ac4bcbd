"""The summary of a run, per client kind: as rows, a terminal table and markdown.

Figures come from the per-call samples (client side) and, when the host is our fake, from its
admin API (requests that reached the server, compliance findings). No locust import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._samples import Samples

__all__ = [
    "PLOT_CAPTIONS",
    "KindRow",
    "build_rows",
    "markdown",
    "next_steps",
    "notes",
    "run_facts",
    "terminal_table",
    "thresholds_heading",
]

#: One line under each figure: what is drawn, and how to read it.
PLOT_CAPTIONS = {
    "throughput.png": "Logical calls finished per second (solid) and HTTP requests sent per second "
    "(dotted): dotted above solid is retries, dotted below solid is calls the cache answered. "
    "Grey spans are scripted fault windows.",
    "latency.png": "p50 (solid), p95 (dashed) and p99 (dotted) of whole calls, retries and waits "
    "included, over a 5 s rolling window, on a log scale: calls answered in under 1 ms (cache "
    "hits) are drawn at the 1 ms floor.",
    "failures.png": "Calls that failed in the end (solid) and 429 responses received (dashed), per "
    "second: a client that follows the rate-limit headers keeps both near zero.",
    "breaker.png": "The worst circuit-breaker state a call ended in, each second (line), and the "
    "share of calls the open breaker refused without sending anything (bars).",
}


@dataclass(frozen=True)
class KindRow:
    """One client kind's line of the summary."""

    kind: str
    calls: int
    rps: float
    success: float
    p50: float
    p95: float
    p99: float
    attempts_per_call: float
    cache_hit: float
    throttled: int
    breaker_opens: int
    sent: int
    server_requests: int | None = None
    compliance_verdict: str | None = None
    compliance_score: float | None = None
    findings: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def build_rows(samples: Samples, server: Mapping[str, Any] | None = None) -> list[KindRow]:
    """A row per client kind; ``server`` maps ``"<run_id>-<kind>"`` sessions to admin facts."""
    run_id = samples.meta.get("run_id", "run")
    rows = []
    for kind in samples.kinds():
        m = samples.metrics(kind)
        facts = (server or {}).get(f"{run_id}-{kind}") or {}
        compliance = facts.get("compliance") or {}
        findings = {
            f"{f['kind']} ({f['severity']})": int(f.get("count", 0)) for f in compliance.get("findings", [])
        }
        rows.append(
            KindRow(
                kind=kind,
                calls=m.calls,
                rps=m.rps,
                success=m.success_ratio,
                p50=m.latency_ms(0.50),
                p95=m.latency_ms(0.95),
                p99=m.latency_ms(0.99),
                attempts_per_call=m.attempts_per_call,
                cache_hit=m.cache_hit_ratio,
                throttled=m.window.throttled,
                breaker_opens=m.window.breaker_opens,
                sent=m.window.attempts,
                server_requests=facts.get("requests"),
                compliance_verdict=compliance.get("verdict"),
                compliance_score=compliance.get("score"),
                findings=findings,
                errors=dict(sorted(m.window.errors.items(), key=lambda kv: -kv[1])),
            )
        )
    return rows


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"


def _ms(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0f} ms"


def _num(x: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def _columns(rows: Sequence[KindRow]) -> list[tuple[str, list[str]]]:
    def compliance(r: KindRow) -> str:
        if r.compliance_verdict is None:
            return "n/a"
        n = sum(r.findings.values())
        return f"{r.compliance_verdict} ({r.compliance_score:g}%, {n} flagged)"

    return [
        ("client", [r.kind for r in rows]),
        ("calls", [str(r.calls) for r in rows]),
        ("calls/s", [_num(r.rps, 1) for r in rows]),
        ("success", [_pct(r.success) for r in rows]),
        ("p50", [_ms(r.p50) for r in rows]),
        ("p95", [_ms(r.p95) for r in rows]),
        ("p99", [_ms(r.p99) for r in rows]),
        ("attempts/call", [_num(r.attempts_per_call) for r in rows]),
        ("cache hits", [_pct(r.cache_hit) for r in rows]),
        ("429s seen", [str(r.throttled) for r in rows]),
        ("breaker opens", [str(r.breaker_opens) for r in rows]),
        ("sent (client)", [str(r.sent) for r in rows]),
        ("reached server", ["n/a" if r.server_requests is None else str(r.server_requests) for r in rows]),
        ("compliance", [compliance(r) for r in rows]),
    ]


def terminal_table(rows: Sequence[KindRow]) -> str:
    """The summary as an aligned text table, one column per client kind."""
    columns = _columns(rows)
    width = max(len(name) for name, _ in columns)
    cell = max([len(v) for _, values in columns for v in values] + [10])
    lines = []
    for name, values in columns:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{cell}}" for v in values))
        if name == "client":
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def findings_lines(rows: Sequence[KindRow]) -> list[str]:
    """Compliance findings, one line each, per kind."""
    lines = []
    for r in rows:
        if r.compliance_verdict is None:
            continue
        if not r.findings:
            lines.append(f"{r.kind}: no findings")
        for name, count in r.findings.items():
            lines.append(f"{r.kind}: {name}: {count} request(s)")
    return lines


def _elapsed(meta: Mapping[str, Any]) -> float | None:
    started, stopped = meta.get("started_at"), meta.get("stopped_at")
    if isinstance(started, int | float) and isinstance(stopped, int | float):
        return float(stopped) - float(started)
    return None


def _seconds(value: Any) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else str(value)


def run_facts(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's facts as ``(label, text)``, the same in summary.md and report.html."""
    duration = meta.get("duration")
    elapsed = _elapsed(meta)
    if meta.get("interrupted"):
        ran = f"after {elapsed:.1f} s" if elapsed is not None else "early"
        duration_text = f"{_seconds(duration)} planned; INTERRUPTED {ran} (partial run)"
    else:
        duration_text = _seconds(duration) if duration is not None else ""
    workers = int(meta.get("workers") or 0)
    # "workers" counts the locust worker processes whose samples were merged; none means the
    # local runner generated the load itself, in one process.
    load = f"{workers} locust worker processes" if workers else "1 process (locust's local runner)"
    facts = [
        ("scenario", meta.get("scenario")),
        ("description", meta.get("description")),
        ("fault preset", meta.get("preset") or "none"),
        ("duration", duration_text or None),
        ("users per client kind", meta.get("users_per_kind")),
        ("load generated by", load),
        ("host", meta.get("host")),
        ("seed", meta.get("seed")),
    ]
    return [(k, str(v)) for k, v in facts if v is not None]


def notes(rows: Sequence[KindRow]) -> list[str]:
    """One line each on the figures that are easy to misread."""
    out = []
    cached = [r for r in rows if r.cache_hit > 0 and not math.isnan(r.cache_hit)]
    why = ", ".join(f"{r.kind}: {_pct(r.cache_hit)} cache hits" for r in cached)
    out.append(
        "attempts/call: HTTP requests sent per logical call, retries included; a call the cache "
        "answered sends nothing, so it can be below 1" + (f" ({why})." if why else ".")
    )
    if any(r.server_requests is not None for r in rows):
        more = [
            f"{r.kind} +{r.server_requests - r.sent}"
            for r in rows
            if r.server_requests is not None and r.server_requests > r.sent
        ]
        out.append(
            "reached server: the fake's journal count for the client's session. It can exceed "
            "'sent (client)' by the requests of calls still in flight when the run stopped (one "
            "held by a timeout fault, a retry's earlier attempts): the server saw them, but the "
            "calls never finished, so the client never counted them"
            + (f": {', '.join(more)}." if more else ".")
        )
    else:
        out.append("reached server: n/a, the host has no admin API (not the fake) to count them.")
    return out


def thresholds_heading(meta: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str | None:
    """``PASS``, ``FAIL``, a "not judged" sentence for an interrupted run, or None."""
    if meta.get("interrupted"):
        elapsed = _elapsed(meta)
        ran = f" after {elapsed:.1f} s of {_seconds(meta.get('duration'))}" if elapsed is not None else ""
        return f"not judged: the run was interrupted{ran}, and a partial run proves nothing"
    if verdict is None:
        return None
    return "PASS" if verdict.get("ok") else "FAIL"


def next_steps(rows: Sequence[KindRow], meta: Mapping[str, Any]) -> list[str]:
    """What to look at next, from this run's figures; markdown inline code in backticks."""
    steps = []
    if meta.get("interrupted"):
        steps.append("This run was interrupted: run it to the end before drawing conclusions.")
    for r in rows:
        if r.findings:
            name, count = max(r.findings.items(), key=lambda kv: kv[1])
            steps.append(
                f"{r.kind} was flagged by the fake ({name}: {count} requests): `server.json` has "
                "its compliance report, naming every flagged request by seq, request id and path."
            )
    for r in rows:
        if r.kind != "naive" and r.errors:
            error, count = next(iter(r.errors.items()))
            steps.append(
                f"What {r.kind} still failed on, mostly {error} ({count} calls): the table of failed "
                "calls above, and `locust_failures.csv`."
            )
    for r in rows:
        if r.kind != "naive" and not math.isnan(r.p99) and r.p99 > 5 * max(r.p50, 1.0):
            steps.append(
                f"{r.kind}'s p99 ({_ms(r.p99)}) against a p50 of {_ms(r.p50)}: the slow calls are "
                "waits for Retry-After and rate-limit resets, which line up with the 429s in failures.png; "
                "`RetryPolicy(retry_after_cap=...)` and `Timeouts(total=...)` trade success for latency."
            )
    steps.append("`locust.html`: locust's own report, with counts and latency per endpoint.")
    steps.append(
        "Another `--seed` or a longer `--duration`, to check the result is not one fault schedule's "
        "luck; other scenarios with `python -m load_tests scenarios` (`outage` shows the breaker "
        "open and close)."
    )
    return steps


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return out


def markdown(
    *,
    title: str,
    meta: Mapping[str, Any],
    rows: Sequence[KindRow],
    verdict: Mapping[str, Any] | None,
    plots: Sequence[str] = (),
    files: Sequence[str] = (),
) -> str:
    """The run's ``summary.md``."""
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in run_facts(meta)]
    lines += ["", "## Per client", ""]
    columns = _columns(rows)
    lines += _md_table(["", *columns[0][1]], [[name, *values] for name, values in columns[1:]])
    lines += [""] + [f"- {n}" for n in notes(rows)]
    errors = [(r.kind, name, n) for r in rows for name, n in r.errors.items()]
    if errors:
        lines += ["", "## Failed calls, by final error", ""]
        lines += _md_table(["client", "error", "calls"], [[k, e, str(n)] for k, e, n in errors])
    findings = findings_lines(rows)
    if findings:
        lines += ["", "## Compliance findings (`/__admin/compliance`)", ""]
        lines += [f"- {f}" for f in findings]
    heading = thresholds_heading(meta, verdict)
    if heading is not None and verdict is not None and meta.get("interrupted"):
        lines += ["", f"## Thresholds: {heading}"]
    elif heading is not None and verdict is not None:
        lines += ["", f"## Thresholds: {heading}", ""]
        if verdict.get("error"):
            lines.append(f"Could not judge: {verdict['error']}")
        results = verdict.get("results") or []
        if results:
            lines += _md_table(
                ["", "client", "metric", "threshold", "observed"],
                [
                    [
                        "pass" if r["ok"] else "**FAIL**",
                        r["kind"],
                        r["metric"],
                        f"`{r['expression']}`",
                        "n/a" if r["observed"] is None else f"{r['observed']:.4g}",
                    ]
                    for r in results
                ],
            )
    if plots:
        lines += ["", "## Plots"]
        for p in plots:
            lines += ["", f"![{p}]({p})", ""]
            if p in PLOT_CAPTIONS:
                lines.append(f"*{PLOT_CAPTIONS[p]}*")
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- `{f}`" for f in files]
    lines += ["", "## What to look at next", ""]
    lines += [f"- {step}" for step in next_steps(rows, meta)]
    return "\n".join(lines) + "\n"
