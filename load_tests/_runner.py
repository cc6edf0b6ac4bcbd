"""One load run end to end: the fake, locust headless in a child process, then the reports.

Locust runs as its own command (``python -m locust``), never inside this process: its gevent
monkey-patching must not leak into the caller (pytest, the bench), and its own runners give
``--processes`` and ``--master``/``--worker`` for free. Its quitting listener (``_hooks``) sets
the exit code from the thresholds; this module only starts, waits and reports.

Ctrl-C: locust and the fake run in process groups of their own, so the terminal's SIGINT
reaches only this process, which passes one SIGINT on to locust (it stops its users and writes
what it gathered), reads the fake's journal for the partial run, then stops the fake. The
reports of such a run say it was interrupted and judge no threshold, and the exit code is
130 (128 + SIGINT), as for any program stopped by Ctrl-C.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _scenarios
from ._fake import Fake, free_port, server_facts
from ._samples import Samples
from ._summary import KindRow, build_rows, findings_lines, markdown, notes, terminal_table, thresholds_heading

__all__ = [
    "EXIT_INTERRUPTED",
    "LOCUSTFILE",
    "RunOptions",
    "RunResult",
    "locust_command",
    "run",
    "worker_command",
]

#: The exit code of an interrupted run: 128 + SIGINT, as shells report a Ctrl-C.
EXIT_INTERRUPTED = 128 + signal.SIGINT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
_CLASSES = {"resilient": "ResilientUser", "naive": "NaiveUser"}


@dataclass
class RunOptions:
    """Everything ``python -m load_tests run`` takes."""

    scenario: str
    duration: float = 30.0
    users: int = 4
    out: Path = Path("load_reports/run")
    host: str | None = None
    processes: int = 0
    master: bool = False
    expect_workers: int = 1
    master_port: int = 0
    thresholds: Path | None = None
    seed: int = 1
    kinds: tuple[str, ...] | None = None
    api_key: str = "demo-key"
    tenant: str = "demo"
    progress: float = 5.0
    title: str | None = None
    quiet: bool = False
    extra_locust_args: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """What a run produced."""

    exit_code: int
    out: Path
    samples: Samples | None
    verdict: dict[str, Any] | None
    rows: list[KindRow]
    server: dict[str, Any]
    interrupted: bool = False


def _say(opts: RunOptions, text: str) -> None:
    if not opts.quiet:
        print(text, flush=True)


def locust_command(opts: RunOptions, host: str, run_id: str, *, fake: bool, master_port: int) -> list[str]:
    """The ``python -m locust`` command line of a run (master or local side)."""
    scenario = _scenarios.get(opts.scenario)
    kinds = opts.kinds or scenario.kinds
    out = opts.out
    processes = opts.processes if opts.processes > 0 else (opts.expect_workers if opts.master else 1)
    limiter = (scenario.limiter_rate / processes) if scenario.limiter_rate else 0.0
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host]
    cmd += ["--only-summary", "--csv", str(out / "locust"), "--csv-full-history"]
    # locust appends ".json" to --json-file
    cmd += ["--html", str(out / "locust.html"), "--json-file", str(out / "locust")]
    cmd += ["--logfile", str(out / "locust.log"), "--loglevel", "INFO"]
    if opts.processes > 0:
        cmd += ["--processes", str(opts.processes)]
        cmd += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
        cmd += ["--master-port", str(master_port)]
    elif opts.master:
        cmd += ["--master", "--expect-workers", str(opts.expect_workers), "--expect-workers-max-wait", "60"]
        cmd += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
    cmd += ["--lt-scenario", scenario.name, "--lt-duration", f"{opts.duration:g}"]
    cmd += ["--lt-users", str(opts.users), "--lt-out", str(out), "--lt-run-id", run_id]
    cmd += ["--lt-api-key", opts.api_key, "--lt-tenant", opts.tenant]
    cmd += ["--lt-limiter-rate", f"{limiter:g}", "--lt-progress", f"{0 if opts.quiet else opts.progress:g}"]
    if opts.thresholds is not None:
        cmd += ["--lt-thresholds", str(opts.thresholds)]
    if fake:
        cmd.append("--lt-fake")
    cmd += opts.extra_locust_args
    cmd += [_CLASSES[k] for k in kinds]
    return cmd


def worker_command(*, master_host: str, master_port: int, processes: int = 0) -> list[str]:
    """The ``python -m locust --worker`` command that joins a master."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--loglevel", "WARNING"]
    cmd += ["--master-host", master_host, "--master-port", str(master_port)]
    if processes > 0:
        cmd += ["--processes", str(processes)]
    return cmd


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, bool]:
    """Locust's exit code, and whether the operator interrupted the run (Ctrl-C)."""
    deadline = time.monotonic() + timeout
    interrupted = False
    while True:
        try:
            return proc.wait(timeout=max(0.1, deadline - time.monotonic())), interrupted
        except KeyboardInterrupt:
            # Locust has its own process group, so this SIGINT reached only us: pass it on once
            # (locust stops its users and writes its reports); a second Ctrl-C kills it.
            if interrupted:
                proc.kill()
            else:
                proc.send_signal(signal.SIGINT)
            interrupted = True
            deadline = time.monotonic() + 30
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=15), interrupted
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait(), interrupted


def run(opts: RunOptions) -> RunResult:
    """Start the fake (unless ``opts.host``), run locust, write the reports; see the module doc."""
    scenario = _scenarios.get(opts.scenario)
    kinds = opts.kinds or scenario.kinds
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("samples.json", "thresholds.json", "locust.json"):
        (out / stale).unlink(missing_ok=True)
    run_id = f"lt{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    fake: Fake | None = None
    try:
        if opts.host:
            host = opts.host.rstrip("/")
        else:
            # No preset at start: the locust process seeds the hot profiles first, then installs
            # the preset's rules through the admin API (see _hooks._on_test_start).
            fake = Fake(preset=None, seed=opts.seed, quota=scenario.server_quota, log_path=out / "fake.log")
            host = fake.start()
        master_port = opts.master_port or (free_port() if opts.processes or opts.master else 0)
        cmd = locust_command(opts, host, run_id, fake=fake is not None, master_port=master_port)
        (out / "command.txt").write_text(" ".join(cmd) + "\n", encoding="utf-8")
        _say(
            opts,
            f"load_tests: scenario {scenario.name} ({', '.join(kinds)}), {opts.users} user(s) per kind, "
            f"{opts.duration:g} s against {host}"
            + (f" (fake, preset {scenario.preset or 'none'}, seed {opts.seed})" if fake else ""),
        )
        if fake is not None:
            # The fake's live dashboard: requests, injected faults and the clients' grade as they happen.
            _say(opts, f"load_tests: watch it live at {host}/__admin/ui (open while the run lasts)")
        if opts.master:
            _say(
                opts,
                f"load_tests: master on 127.0.0.1:{master_port}, waiting for {opts.expect_workers} "
                f"worker(s): python -m load_tests worker --master-port {master_port}",
            )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env, process_group=0)  # see the module doc on Ctrl-C
        code, interrupted = _wait(proc, opts.duration + 120)
        samples: Samples | None = None
        verdict: dict[str, Any] | None = None
        if (out / "samples.json").exists():
            samples = Samples.from_dict(json.loads((out / "samples.json").read_text(encoding="utf-8")))
        if (out / "thresholds.json").exists():
            verdict = json.loads((out / "thresholds.json").read_text(encoding="utf-8"))
        server: dict[str, Any] = {}
        if samples is not None:
            # {} from a host without our admin API (a real upstream).
            server = server_facts(host, [f"{run_id}-{k}" for k in kinds])
    finally:
        if fake is not None:
            fake.stop()
    if samples is None:
        if interrupted:
            _say(opts, "load_tests: interrupted before locust gathered anything; no report written")
            return RunResult(EXIT_INTERRUPTED, out, None, None, [], {}, interrupted=True)
        _say(
            opts, f"load_tests: locust exited with code {code} and left no samples; see {out / 'locust.log'}"
        )
        _tail_log(out / "locust.log")
        return RunResult(code if code else 2, out, None, None, [], {})
    samples.meta.update(
        {
            "interrupted": interrupted,
            "description": scenario.description,
            "preset": scenario.preset,
            "seed": opts.seed if fake is not None else None,
            "fault_windows": scenario.outage_windows(opts.duration) if fake is not None else [],
        }
    )
    rows = build_rows(samples, server)
    report(opts, samples, verdict, rows, server)
    if interrupted:
        # A partial run proves nothing either way: no threshold verdict, and a non-zero exit.
        return RunResult(EXIT_INTERRUPTED, out, samples, verdict, rows, server, interrupted=True)
    if code not in (0, 1):
        _tail_log(out / "locust.log")
    return RunResult(code, out, samples, verdict, rows, server)


def _tail_log(path: Path, lines: int = 30) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        print("\n".join(["--- locust.log (tail) ---", *text]), file=sys.stderr)


def report(
    opts: RunOptions,
    samples: Samples,
    verdict: dict[str, Any] | None,
    rows: list[KindRow],
    server: dict[str, Any],
) -> None:
    """Write the plots, ``summary.md``, ``report.html`` and ``server.json``; print the summary."""
    from ._plots import render_all  # matplotlib is slow to import; only here
    from ._report import write_html

    out = opts.out
    title = opts.title or f"Load test: {samples.meta.get('scenario')}"
    plots = render_all(samples, out)
    (out / "server.json").write_text(json.dumps(server, indent=2), encoding="utf-8")
    files = sorted(
        p.name
        for p in out.iterdir()
        if p.suffix in (".csv", ".json", ".html", ".log", ".txt", ".png", ".md") and p.name != "report.html"
    )
    files = sorted(set(files) | {"summary.md"})
    meta = samples.meta
    (out / "summary.md").write_text(
        markdown(title=title, meta=meta, rows=rows, verdict=verdict, plots=plots, files=files),
        encoding="utf-8",
    )
    write_html(
        out / "report.html", title=title, meta=meta, rows=rows, verdict=verdict, plots=plots, files=files
    )
    if opts.quiet:
        return
    print()
    print(terminal_table(rows))
    for line in notes(rows):
        print(f"  {line}")
    findings = findings_lines(rows)
    if findings:
        print("\ncompliance findings (/__admin/compliance):")
        for line in findings:
            print(f"  {line}")
    heading = thresholds_heading(meta, verdict)
    if heading is not None and meta.get("interrupted"):
        print(f"\nthresholds: {heading}")
    elif heading is not None and verdict is not None:
        print(f"\nthresholds: {heading}")
        for r in verdict.get("results") or []:
            observed = "n/a" if r["observed"] is None or math.isnan(r["observed"]) else f"{r['observed']:.4g}"
            mark = "pass" if r["ok"] else "FAIL"
            print(f"  {mark}  {r['kind']:<10} {r['metric']:<24} {r['expression']:<14} {observed}")
    print(f"\nreport: {out / 'report.html'}  (summary.md, locust.html, locust_*.csv, locust.json, *.png)")
