"""The locust side of a run: options, the scenario's shape, sample gathering, progress, verdict.

- ``--lt-*`` options (locust passes them from the master to its workers);
- :class:`ScenarioShape`, the ``LoadTestShape`` of every scenario (stages from ``_scenarios``);
- every process turns request events into per-second :class:`Samples`; workers ship theirs
  with each report to the master (``report_to_master`` / ``worker_report``);
- on the master (or the single local process): seeding the hot profiles and placing the
  scenario's timed fault rules when the test starts, a progress line every few seconds, and in
  the ``quitting`` listener the samples and the threshold verdict written to ``--lt-out`` and
  ``environment.process_exit_code`` set from the thresholds alone, so the faults a scenario
  injects on purpose never fail a run that met its thresholds.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import requests
from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from client import BreakerState, BreakerTransition
from mock_server._faults import preset

from . import _scenarios, _thresholds
from ._samples import Samples
from ._users import _Shared, seed_profiles

__all__ = ["STATE", "ScenarioShape"]


class _State:
    """This process's gathering state."""

    def __init__(self) -> None:
        self.samples = Samples()
        self.worker = False
        self.progress: Any = None
        self.started_at: float | None = None


STATE = _State()


def _add_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("load_tests", "Set by `python -m load_tests run`.")
    group.add_argument("--lt-scenario", default="steady", help="scenario name")
    group.add_argument("--lt-duration", type=float, default=30.0, help="run length, seconds")
    group.add_argument("--lt-users", type=int, default=4, help="users per client kind")
    group.add_argument("--lt-out", default="", help="directory for samples and the verdict")
    group.add_argument("--lt-thresholds", default="", help="thresholds YAML (default: the packaged one)")
    group.add_argument("--lt-run-id", default="run", help="prefix of each kind's X-Mock-Session")
    group.add_argument("--lt-api-key", default="demo-key", help="API key of the tenant")
    group.add_argument("--lt-tenant", default="demo", help="tenant whose profiles are used")
    group.add_argument("--lt-fake", action="store_true", help="the host is our fake: use /__admin")
    group.add_argument("--lt-limiter-rate", type=float, default=0.0, help="client limiter, req/s a process")
    group.add_argument("--lt-progress", type=float, default=5.0, help="seconds between progress lines")


def _options(environment: Environment) -> Any:
    return environment.parsed_options


class ScenarioShape(LoadTestShape):
    """The users of ``--lt-scenario`` over ``--lt-duration`` seconds, ``--lt-users`` per kind."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        opts = _options(self.runner.environment)
        scenario = _scenarios.get(opts.lt_scenario)
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        per_kind = scenario.users_at(elapsed, opts.lt_duration, opts.lt_users)
        if per_kind is None:
            return None
        total = per_kind * max(1, len(self.runner.environment.user_classes))
        return total, float(max(2, total * 2))


def _on_init(environment: Environment, **_: Any) -> None:
    STATE.worker = isinstance(environment.runner, WorkerRunner)
    # The runner passes the operator's Ctrl-C on as a SIGINT, which locust handles (it stops and
    # writes its reports); gevent would also print a bare "KeyboardInterrupt" and a timestamp,
    # which reads like a crash. It still reaches locust's main greenlet as before.
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)

    def on_transition(transition: BreakerTransition) -> None:
        if transition.new is BreakerState.OPEN:
            STATE.samples.add_breaker_open("resilient", time.time(), pending=STATE.worker)

    _Shared.breaker_listener = on_transition


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    context = context or {}
    kind = context.get("kind")
    if kind is None:
        return
    STATE.samples.add(kind, time.time(), response_time, context.get("error"), context, pending=STATE.worker)


def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["lt_samples"] = STATE.samples.drain()


def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    STATE.samples.merge(data.get("lt_samples", []), source=client_id)


def _on_test_start(environment: Environment, **_: Any) -> None:
    if STATE.worker:
        return
    opts = _options(environment)
    scenario = _scenarios.get(opts.lt_scenario)
    host = (environment.host or "").rstrip("/")
    seeded = seed_profiles(
        host,
        api_key=opts.lt_api_key,
        tenant=opts.lt_tenant,
        count=scenario.hot_profiles,
        session_id=f"{opts.lt_run_id}-seed",
    )
    if seeded < scenario.hot_profiles:
        print(f"load_tests: only {seeded}/{scenario.hot_profiles} hot profiles exist", file=sys.stderr)
    if opts.lt_fake:
        # The fake was started without the scenario's preset so that seeding did not have to
        # fight its faults; they go on now, timed from here like the scenario's own rules.
        preset_rules = [r.to_dict() for r in preset(scenario.preset).rules] if scenario.preset else []
        for rule in [*preset_rules, *scenario.rules(opts.lt_duration)]:
            response = requests.post(f"{host}/__admin/faults", json=rule, timeout=5)
            if response.status_code >= 300:
                print(f"load_tests: fault rule {rule['id']} refused: {response.text}", file=sys.stderr)
    if environment.shape_class is not None:
        environment.shape_class.reset_time()  # type: ignore[no-untyped-call]
    STATE.started_at = time.time()
    STATE.samples.meta.update(
        {
            "scenario": scenario.name,
            "run_id": opts.lt_run_id,
            "duration": opts.lt_duration,
            "users_per_kind": opts.lt_users,
            "kinds": sorted({getattr(c, "kind", c.__name__) for c in environment.user_classes}),
            "host": host,
            "started_at": STATE.started_at,
            "distributed": isinstance(environment.runner, MasterRunner),
        }
    )
    if opts.lt_progress > 0 and STATE.progress is None:
        STATE.progress = gevent.spawn(_progress, environment, float(opts.lt_progress))


def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not STATE.worker and "stopped_at" not in STATE.samples.meta:
        STATE.samples.meta["stopped_at"] = time.time()


def _progress(environment: Environment, every: float) -> None:
    while True:
        gevent.sleep(every)
        print(progress_line(environment), flush=True)


def progress_line(environment: Environment) -> str:
    """One line: elapsed time, users, and per kind the rate, success, p95 and breaker state."""
    samples = STATE.samples
    now = time.time()
    started = STATE.started_at or now
    runner = environment.runner
    users = runner.user_count if runner is not None else 0
    parts = [f"[{now - started:5.0f}s] users {users:3d}"]
    lag = 3 if STATE.samples.sources or isinstance(runner, MasterRunner) else 1
    for kind in samples.kinds():
        recent = samples.metrics(kind, since=int(now) - lag - 4, until=int(now) - lag + 1)
        total = samples.metrics(kind)
        ok = f"{100 * total.success_ratio:5.1f}%" if total.calls else "  n/a"
        p95 = recent.latency_ms(0.95)
        p95_txt = "   n/a" if math.isnan(p95) else f"{p95:5.0f}ms"
        state = recent.window.worst_breaker()
        breaker = f" breaker {state}" if state != "none" else ""
        parts.append(
            f"{kind} {recent.calls / 5:5.1f}/s ok {ok} p95 {p95_txt} att/call "
            f"{recent.attempts_per_call if recent.calls else 0:4.2f}{breaker}"
        )
    return " | ".join(parts)


def _on_quitting(environment: Environment, **_: Any) -> None:
    if STATE.worker:
        return
    if STATE.progress is not None:
        STATE.progress.kill(block=False)
        STATE.progress = None
    opts = _options(environment)
    samples = STATE.samples
    samples.meta.setdefault("stopped_at", time.time())
    samples.meta["workers"] = len(samples.sources)
    out = Path(opts.lt_out) if opts.lt_out else None
    code = 0
    try:
        config = _thresholds.load(opts.lt_thresholds or None)
        verdict = _thresholds.evaluate(config, opts.lt_scenario, samples)
        code = verdict.exit_code
        verdict_dict: dict[str, Any] = verdict.to_dict()
    except _thresholds.ThresholdError as exc:
        print(f"load_tests: {exc}", file=sys.stderr)
        code = 2
        verdict_dict = {"scenario": opts.lt_scenario, "ok": False, "error": str(exc), "results": []}
    runner = environment.runner
    if runner is not None and runner.exceptions:
        # Our own user code crashed: that is a bug, not a threshold result.
        verdict_dict["user_exceptions"] = [e["msg"] for e in runner.exceptions.values()][:10]
        code = max(code, 2)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples.json").write_text(json.dumps(samples.to_dict()), encoding="utf-8")
        (out / "thresholds.json").write_text(json.dumps(verdict_dict, indent=2), encoding="utf-8")
    environment.process_exit_code = code


# Registered at import: locust imports the locustfile (and so this module) in every process.
events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
events.report_to_master.add_listener(_on_report_to_master)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(_on_worker_report)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_test_stop)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]
