"""``python -m load_tests``: ``run`` a scenario, the ``demo``, a distributed ``worker``, ``scenarios``."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import _scenarios

if TYPE_CHECKING:
    from ._runner import RunResult

__all__ = ["main"]


_PROGRESS_HELP = "seconds between progress lines (default 5)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load_tests", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario headless and write its reports")
    run.add_argument("--scenario", required=True, choices=list(_scenarios.SCENARIOS))
    run.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    run.add_argument("--users", type=int, default=4, help="users per client kind (default 4)")
    run.add_argument("--out", type=Path, help="report folder (default load_reports/SCENARIO)")
    run.add_argument("--host", help="target this URL instead of starting the fake")
    run.add_argument("--processes", type=int, default=0, help="locust --processes: N local workers")
    run.add_argument("--master", action="store_true", help="run as a master; start workers with `worker`")
    run.add_argument("--expect-workers", type=int, default=1, help="workers the master waits for")
    run.add_argument("--master-port", type=int, default=0, help="the master's port (default: a free one)")
    run.add_argument("--thresholds", type=Path, help="thresholds YAML (default: load_tests/thresholds.yaml)")
    run.add_argument("--seed", type=int, default=1, help="the fake's fault seed (default 1)")
    run.add_argument(
        "--clients", help="comma list of client kinds: resilient, naive (default: the scenario's)"
    )
    run.add_argument("--api-key", default=os.environ.get("RESONANCE_API_KEY", "demo-key"))
    run.add_argument("--tenant", default="demo")
    run.add_argument("--quiet", action="store_true", help="no progress lines, no summary")
    run.add_argument("--progress", type=float, default=5.0, help=_PROGRESS_HELP)

    demo = sub.add_parser("demo", help="the naive and the resilient client side by side under chaos")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    demo.add_argument("--users", type=int, default=8, help="users per client (default 8)")
    demo.add_argument("--out", type=Path, default=Path("load_reports/demo"))
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--processes", type=int, default=0)
    demo.add_argument("--progress", type=float, default=5.0, help=_PROGRESS_HELP)

    worker = sub.add_parser("worker", help="a locust worker joining a `run --master`")
    worker.add_argument("--master-host", default="127.0.0.1")
    worker.add_argument("--master-port", type=int, default=5557)
    worker.add_argument("--processes", type=int, default=0, help="fork N worker processes")

    sub.add_parser("scenarios", help="list the scenarios")
    return parser


def scenarios_table(width: int) -> str:
    """Every scenario as a table whose description column wraps within ``width`` characters."""
    header = ("scenario", "preset", "clients", "description")
    rows = [
        (s.name, s.preset or "none", ",".join(s.kinds), s.description) for s in _scenarios.SCENARIOS.values()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    indent = sum(widths) + 2 * len(widths)
    wrap = max(30, width - indent - 1)

    def line(cells: Sequence[str], description: str) -> str:
        return "".join(f"{c:<{w}}  " for c, w in zip(cells, widths, strict=True)) + description

    out = [line(header[:3], header[3]), line(["-" * w for w in widths], "-" * len(header[3]))]
    for *cells, description in rows:
        first, *more = textwrap.wrap(description, wrap, break_on_hyphens=False)
        out.append(line(cells, first))
        out += [" " * indent + m for m in more]
    return "\n".join(out)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop locust and the fake, report the partial run."""


_TERMINATED: list[int] = []  # SIGTERM seen during this run: the exit code says which signal


def _on_sigterm(signum: int, frame: object) -> None:
    _TERMINATED.append(signum)
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "scenarios":
        print(scenarios_table(shutil.get_terminal_size((100, 24)).columns))
        return 0
    if args.command in ("run", "demo"):
        if args.progress <= 0:
            print("load_tests: --progress must be > 0", file=sys.stderr)
            return 2
        # locust and the fake run in process groups of their own (see _runner): a SIGTERM to
        # this process must still stop them, through the same path as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return _run_or_demo(args)
        except KeyboardInterrupt as exc:
            # Before locust started or after it ended (starting the fake, writing the reports).
            print("\nload_tests: interrupted; no complete report", file=sys.stderr)
            return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
        finally:
            signal.signal(signal.SIGTERM, previous)
    from ._runner import worker_command

    cmd = worker_command(master_host=args.master_host, master_port=args.master_port, processes=args.processes)
    os.execv(cmd[0], cmd)  # noqa: S606 -- becomes the locust worker


def _finish(result: RunResult, *, quiet: bool = False) -> int:
    """The exit code; for an interrupted run, 128 + the signal, said on the last line."""
    if not result.interrupted:
        return result.exit_code
    code = 128 + signal.SIGTERM if _TERMINATED else result.exit_code
    if not quiet:
        meta = result.samples.meta if result.samples is not None else {}
        started, stopped, duration = meta.get("started_at"), meta.get("stopped_at"), meta.get("duration", 0)
        ran = ""
        if isinstance(started, int | float) and isinstance(stopped, int | float):
            ran = f" after {stopped - started:.1f} s of {duration:g} s"
        print(
            f"\nload_tests: INTERRUPTED{ran}: the figures above cover a partial run, no threshold "
            f"was judged (exit {code})"
        )
    return code


def _run_or_demo(args: argparse.Namespace) -> int:
    from ._runner import RunOptions, run

    if args.command == "demo":
        opts = RunOptions(
            scenario="chaos",
            duration=args.duration,
            users=args.users,
            out=args.out,
            seed=args.seed,
            processes=args.processes,
            kinds=("naive", "resilient"),
            title="Demo: a naive and a resilient client against the fake's chaos preset",
            progress=args.progress,
        )
        result = run(opts)
        rows = {r.kind: r for r in result.rows}
        if "naive" in rows and "resilient" in rows and not result.interrupted:
            naive, resilient = rows["naive"], rows["resilient"]
            better = resilient.success > naive.success
            print(
                f"\nresilient client: {100 * resilient.success:.2f}% of calls succeeded, naive: "
                f"{100 * naive.success:.2f}% -> the resilient client {'wins' if better else 'DOES NOT win'}"
            )
        return _finish(result)
    if args.users < 1 or args.duration <= 0:
        print("load_tests: --users must be >= 1 and --duration > 0", file=sys.stderr)
        return 2
    kinds = tuple(k.strip() for k in args.clients.split(",")) if args.clients else None
    if kinds and any(k not in ("resilient", "naive") for k in kinds):
        print("load_tests: --clients takes resilient and/or naive", file=sys.stderr)
        return 2
    opts = RunOptions(
        scenario=args.scenario,
        duration=args.duration,
        users=args.users,
        out=args.out or Path("load_reports") / args.scenario,
        host=args.host,
        processes=args.processes,
        master=args.master,
        expect_workers=args.expect_workers,
        master_port=args.master_port,
        thresholds=args.thresholds,
        seed=args.seed,
        kinds=kinds,
        api_key=args.api_key,
        tenant=args.tenant,
        quiet=args.quiet,
        progress=args.progress,
    )
    return _finish(run(opts), quiet=args.quiet)
