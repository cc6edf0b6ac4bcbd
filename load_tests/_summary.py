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

__all__ = ["KindRow", "build_rows", "markdown", "terminal_table"]


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
    facts = [
        ("scenario", meta.get("scenario")),
        ("description", meta.get("description")),
        ("preset", meta.get("preset") or "none"),
        ("duration", f"{meta.get('duration')} s"),
        ("users per client kind", meta.get("users_per_kind")),
        ("processes / workers", meta.get("workers") or 1),
        ("host", meta.get("host")),
        ("seed", meta.get("seed")),
    ]
    lines += [f"- **{k}**: {v}" for k, v in facts if v is not None]
    lines += ["", "## Per client", ""]
    columns = _columns(rows)
    lines += _md_table(["", *columns[0][1]], [[name, *values] for name, values in columns[1:]])
    errors = [(r.kind, name, n) for r in rows for name, n in r.errors.items()]
    if errors:
        lines += ["", "## Failed calls, by final error", ""]
        lines += _md_table(["client", "error", "calls"], [[k, e, str(n)] for k, e, n in errors])
    findings = findings_lines(rows)
    if findings:
        lines += ["", "## Compliance findings (`/__admin/compliance`)", ""]
        lines += [f"- {f}" for f in findings]
    if verdict is not None:
        lines += ["", f"## Thresholds: {'PASS' if verdict.get('ok') else 'FAIL'}", ""]
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
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"
