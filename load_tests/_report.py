"""``report.html``: one self-contained page per run, the plots embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._summary import (
    PLOT_CAPTIONS,
    KindRow,
    _columns,
    findings_lines,
    next_steps,
    notes,
    run_facts,
    thresholds_heading,
)

__all__ = ["write_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}.pass{color:#2a7a2a}.fail{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.5em 0 0}code{background:#f4f4f4;padding:0 3px}
.caption{color:#555;margin:0 0 1.5em}.notes{color:#444}
.interrupted{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _inline(text: str) -> str:
    """Escaped text with markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def write_html(
    path: Path,
    *,
    title: str,
    meta: Mapping[str, Any],
    rows: Sequence[KindRow],
    verdict: Mapping[str, Any] | None,
    plots: Sequence[str],
    files: Sequence[str],
) -> None:
    """Write the page; ``plots`` are PNG names inside ``path``'s folder."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"]
    parts.append(f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>")
    heading = thresholds_heading(meta, verdict)
    if meta.get("interrupted") and heading is not None:
        parts.append(f"<p class='interrupted'><b>Partial run.</b> Thresholds {_e(heading)}.</p>")
    parts.append("<ul>")
    for key, value in run_facts(meta):
        parts.append(f"<li><b>{_e(key)}</b>: {_e(value)}</li>")
    parts.append("</ul><h2>Per client</h2><table>")
    columns = _columns(rows)
    parts.append("<tr><th></th>" + "".join(f"<th>{_e(v)}</th>" for v in columns[0][1]) + "</tr>")
    for name, values in columns[1:]:
        parts.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>")
    parts.append("</table><ul class='notes'>")
    parts += [f"<li>{_inline(n)}</li>" for n in notes(rows)]
    parts.append("</ul>")
    errors = [(r.kind, name, n) for r in rows for name, n in r.errors.items()]
    if errors:
        parts.append(
            "<h2>Failed calls, by final error</h2><table><tr><th>client</th><th>error</th><th>calls</th></tr>"
        )
        parts += [f"<tr><td>{_e(k)}</td><td>{_e(e)}</td><td>{n}</td></tr>" for k, e, n in errors]
        parts.append("</table>")
    findings = findings_lines(rows)
    if findings:
        parts.append("<h2>Compliance findings (<code>/__admin/compliance</code>)</h2><ul>")
        parts += [f"<li>{_e(f)}</li>" for f in findings]
        parts.append("</ul>")
    if heading is not None and meta.get("interrupted"):
        parts.append(f"<h2>Thresholds: {_e(heading)}</h2>")
    elif heading is not None and verdict is not None:
        ok = bool(verdict.get("ok"))
        parts.append(f"<h2>Thresholds: <span class='{'pass' if ok else 'fail'}'>{heading}</span></h2>")
        if verdict.get("error"):
            parts.append(f"<p>Could not judge: {_e(verdict['error'])}</p>")
        results = verdict.get("results") or []
        if results:
            parts.append(
                "<table><tr><th></th><th>client</th><th>metric</th><th>threshold</th><th>observed</th></tr>"
            )
            for r in results:
                observed = "n/a" if r["observed"] is None else f"{r['observed']:.4g}"
                cls = "pass" if r["ok"] else "fail"
                parts.append(
                    f"<tr><td class='{cls}'>{'pass' if r['ok'] else 'FAIL'}</td><td>{_e(r['kind'])}</td>"
                    f"<td>{_e(r['metric'])}</td><td><code>{_e(r['expression'])}</code></td><td>{observed}</td></tr>"
                )
            parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    for name in plots:
        data = base64.b64encode((path.parent / name).read_bytes()).decode("ascii")
        parts.append(f"<div><img alt='{_e(name)}' src='data:image/png;base64,{data}'></div>")
        if name in PLOT_CAPTIONS:
            parts.append(f"<p class='caption'>{_e(PLOT_CAPTIONS[name])}</p>")
    if files:
        parts.append("<h2>Files</h2><ul>")
        parts += [f"<li><a href='{_e(f)}'>{_e(f)}</a></li>" for f in files]
        parts.append("</ul>")
    parts.append("<h2>What to look at next</h2><ul>")
    parts += [f"<li>{_inline(step)}</li>" for step in next_steps(rows, meta)]
    parts.append("</ul></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
