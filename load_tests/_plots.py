"""PNG plots of a run from its per-second samples (matplotlib, no display needed).

Four figures, one line per client kind: calls (and attempts) per second; latency p50/p95/p99
per second; failed calls and server 429s per second; the circuit breaker's state per second
with the calls it rejected. Scripted fault windows are shaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from ._samples import BREAKER_LEVEL, Samples, Window, percentile  # noqa: E402

__all__ = ["LATENCY_FLOOR_MS", "render_all"]

#: The latency plot's floor: a log axis has no 0, and a cache hit takes well under 1 ms, so
#: percentiles below it are drawn at it (the caption says so) rather than dropped.
LATENCY_FLOOR_MS = 1.0


def _floored(ms: float) -> float:
    """``ms`` raised to the floor; NaN (a second without calls) stays a gap in the line."""
    return ms if math.isnan(ms) else max(LATENCY_FLOOR_MS, ms)


def _ms_label(value: float, _pos: object = None) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


_COLORS = {"resilient": "#1f77b4", "naive": "#d62728"}


def _color(kind: str) -> str:
    return _COLORS.get(kind, "#2ca02c")


def _xs(samples: Samples, kind: str) -> tuple[list[float], list[Window]]:
    started = samples.meta.get("started_at")
    stopped = samples.meta.get("stopped_at")
    span = samples.span()
    if span is None:
        return [], []
    start = int(started) if isinstance(started, int | float) else span[0]
    end = int(stopped) if isinstance(stopped, int | float) else span[1]
    series = samples.series(kind, start, max(start, end))
    return [float(s - start) for s, _ in series], [w for _, w in series]


def _rolling(ws: Sequence[Window], width: int) -> list[dict[int, int]]:
    """Each second's latency histogram merged with its neighbours' (a centred window)."""
    out = []
    half = width // 2
    for i in range(len(ws)):
        merged: dict[int, int] = {}
        for w in ws[max(0, i - half) : i + half + 1]:
            for k, v in w.latency.items():
                merged[k] = merged.get(k, 0) + v
        out.append(merged)
    return out


def _shade(ax: Axes, windows: Sequence[Sequence[float]]) -> None:
    for i, (a, b) in enumerate(windows):
        ax.axvspan(a, b, color="#999999", alpha=0.15, label="scripted fault" if i == 0 else None)


def _finish(fig, ax: Axes, title: str, ylabel: str, path: Path, also: Axes | None = None) -> None:
    ax.set_title(title)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if also is not None:
        more = also.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render_all(samples: Samples, out: Path) -> list[str]:
    """Write the PNGs into ``out``; returns their file names."""
    out.mkdir(parents=True, exist_ok=True)
    windows = samples.meta.get("fault_windows") or []
    kinds = samples.kinds()
    names = []

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for kind in kinds:
        xs, ws = _xs(samples, kind)
        ax.plot(xs, [w.calls for w in ws], color=_color(kind), label=f"{kind}: calls/s")
        ax.plot(xs, [w.attempts for w in ws], color=_color(kind), ls=":", label=f"{kind}: requests sent/s")
    _shade(ax, windows)
    _finish(fig, ax, "Throughput", "per second", out / "throughput.png")
    names.append("throughput.png")

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for kind in kinds:
        xs, ws = _xs(samples, kind)
        rolled = _rolling(ws, 5)
        for q, style in ((0.50, "-"), (0.95, "--"), (0.99, ":")):
            ys = [_floored(percentile(h, q)) for h in rolled]
            ax.plot(xs, ys, color=_color(kind), ls=style, label=f"{kind} p{int(q * 100)}")
    _shade(ax, windows)
    ax.set_yscale("log")
    ax.set_ylim(bottom=LATENCY_FLOOR_MS * 0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(_ms_label))
    title = "Latency of whole calls, retries and waits included (5 s rolling; floor 1 ms)"
    _finish(fig, ax, title, "latency (log scale)", out / "latency.png")
    names.append("latency.png")

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for kind in kinds:
        xs, ws = _xs(samples, kind)
        ax.plot(xs, [w.failures for w in ws], color=_color(kind), label=f"{kind}: failed calls/s")
        ax.plot(xs, [w.throttled for w in ws], color=_color(kind), ls="--", label=f"{kind}: 429s/s")
    _shade(ax, windows)
    _finish(fig, ax, "Failures", "per second", out / "failures.png")
    names.append("failures.png")

    fig, ax = plt.subplots(figsize=(9, 3.0))
    share = ax.twinx()
    plotted = False
    for kind in kinds:
        xs, ws = _xs(samples, kind)
        levels = [BREAKER_LEVEL.get(w.worst_breaker(), -1) for w in ws]
        if all(level < 0 for level in levels):
            continue
        plotted = True
        ys = [math.nan if level < 0 else level for level in levels]
        ax.step(xs, ys, where="post", color=_color(kind), label=f"{kind}: worst breaker state")
        share.bar(
            xs,
            [w.breaker_rejections / w.calls if w.calls else 0.0 for w in ws],
            width=0.9,
            align="edge",
            color=_color(kind),
            alpha=0.25,
            label=f"{kind}: calls rejected by the open breaker",
        )
    if not plotted:
        ax.text(0.5, 0.5, "no circuit breaker in this run", ha="center", va="center", transform=ax.transAxes)
    _shade(ax, windows)
    ax.set_yticks([0, 1, 2], ["closed", "half-open", "open"])
    ax.set_ylim(-0.2, 2.3)
    share.set_ylim(0, 1.15)
    share.set_ylabel("share of calls rejected")
    title = "Circuit breaker (per second: the worst state a call ended in)"
    _finish(fig, ax, title, "state", out / "breaker.png", also=share)
    names.append("breaker.png")
    return names
