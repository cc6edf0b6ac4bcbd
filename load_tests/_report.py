"""``report.html``: one self-contained page per run, the plots embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._summary import KindRow, _columns, findings_lines

__all__ = ["write_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}.pass{color:#2a7a2a}.fail{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f4f4f4;padding:0 3px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


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
    parts.append(f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1><ul>")
    for key in ("scenario", "description", "preset", "duration", "users_per_kind", "workers", "host", "seed"):
        if meta.get(key) is not None:
            parts.append(f"<li><b>{_e(key.replace('_', ' '))}</b>: {_e(meta[key])}</li>")
    parts.append("</ul><h2>Per client</h2><table>")
    columns = _columns(rows)
    parts.append("<tr><th></th>" + "".join(f"<th>{_e(v)}</th>" for v in columns[0][1]) + "</tr>")
    for name, values in columns[1:]:
        parts.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>")
    parts.append("</table>")
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
    if verdict is not None:
        ok = bool(verdict.get("ok"))
        parts.append(
            f"<h2>Thresholds: <span class='{'pass' if ok else 'fail'}'>{'PASS' if ok else 'FAIL'}</span></h2>"
        )
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
    if files:
        parts.append("<h2>Files</h2><ul>")
        parts += [f"<li><a href='{_e(f)}'>{_e(f)}</a></li>" for f in files]
        parts.append("</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
