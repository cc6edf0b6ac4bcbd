"""The mutation run: a scratch copy of the code, each mutant applied in turn, probed, and tested.

For every mutant: its patch is applied to the scratch copy (its ``old`` text must occur exactly
once, or the run stops and names the stale mutant); its probe runs on the pristine and on the
mutated copy and must print something different (else the mutant is "not shown" and does not
count); then ``contract_tests`` runs on the mutated copy with the ``ci`` profile, stopping at the
first failure (``-x``). The copy is put back before the next mutant.

The scratch copy is imported instead of the checkout through ``PYTHONPATH`` (checked before the
run), and never writes bytecode, so a mutant's source is always what runs. Before any mutant,
the suite runs once on the pristine copy: if it fails there, no result would mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from ._catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[1]
#: What the suite needs from the checkout: the code under test, the suite, its configuration.
COPIED = ("client", "mock_server", "contract_tests", "mutants", "pyproject.toml", "schemathesis.toml")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")


class RunError(Exception):
    """The run cannot give meaningful results (a stale mutant, a failing pristine suite...)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one mutant."""

    mutant: Mutant
    #: "killed", "survived", "timeout" (killed: the suite hung), "not shown" (equivalent), or
    #: "shown" (with --probe-only: the probe saw a difference; the suite did not run).
    result: str
    killed_by: str
    seconds: float
    shown_by: str

    @property
    def counts_as_killed(self) -> bool:
        return self.result in ("killed", "timeout")


# -- the scratch copy ---------------------------------------------------------------------------
def build_scratch(ref: str | None) -> Path:
    """A fresh directory holding the files the suite needs: from the working tree, or from git
    revision ``ref`` (useful while the working tree holds unfinished edits)."""
    scratch = Path(tempfile.mkdtemp(prefix="mutants-"))
    if ref is None:
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, scratch / name, ignore=_IGNORED)
            elif source.exists():
                shutil.copy2(source, scratch / name)
    else:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref, *COPIED], cwd=ROOT, capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise RunError(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(scratch, filter="data")
    return scratch


def environment(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["CI"] = "true"
    env["HYPOTHESIS_PROFILE"] = "ci"
    env["NO_COLOR"] = "1"
    return env


def check_imports(scratch: Path) -> None:
    """The packages must come from the scratch copy, not from the checkout's editable install."""
    code = "import client, mock_server, contract_tests; print(client.__file__, mock_server.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=scratch, env=environment(scratch), capture_output=True, text=True
    )
    paths = done.stdout.split()
    if done.returncode != 0 or len(paths) != 2 or not all(Path(p).is_relative_to(scratch) for p in paths):
        raise RunError(
            f"the scratch copy is not what gets imported: {done.stdout.strip()} {done.stderr.strip()}"
        )


def apply(scratch: Path, mutant: Mutant) -> str:
    """Apply ``mutant``; return the file's original text, to put back afterwards."""
    path = scratch / mutant.file
    if not path.is_file():
        raise RunError(f"mutant {mutant.id}: no file {mutant.file}")
    text = path.read_text()
    found = text.count(mutant.old)
    if found != 1:
        raise RunError(
            f"mutant {mutant.id} is stale: its old text occurs {found} times in {mutant.file} "
            "(it must occur exactly once); update it in mutants/_catalogue.py"
        )
    path.write_text(text.replace(mutant.old, mutant.new))
    return text


def stale(scratch: Path, mutants: Sequence[Mutant]) -> list[str]:
    """Every mutant whose patch does not apply to the scratch copy, with why."""
    problems = []
    for mutant in mutants:
        path = scratch / mutant.file
        found = path.read_text().count(mutant.old) if path.is_file() else -1
        if found != 1:
            where = "file missing" if found < 0 else f"old text found {found} times"
            problems.append(f"{mutant.id} ({mutant.file}: {where})")
    return problems


# -- probes and the suite -----------------------------------------------------------------------
def probe(scratch: Path, name: str, timeout: float) -> dict[str, object]:
    """The observations of probe ``name`` on the scratch copy as it is now."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mutants._probes", name],
            cwd=scratch,
            env=environment(scratch),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"probe": "timed out"}
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"probe": f"exited {done.returncode}: {last[0]}"}
    parsed = json.loads(done.stdout)
    return parsed if isinstance(parsed, dict) else {"probe": parsed}


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    return [
        f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


@dataclass(frozen=True, slots=True)
class SuiteRun:
    passed: bool
    first_failure: str
    seconds: float
    timed_out: bool


def _first_failure(junit: Path, output: str) -> str:
    try:
        tree = ET.parse(junit)
    except (OSError, ET.ParseError):
        tree = None
    if tree is not None:
        for case in tree.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                module = (case.get("classname") or "").split(".")
                file = next(
                    (part for part in module if part.startswith("test_")), module[-1] if module else ""
                )
                rest = [part for part in module[module.index(file) + 1 :]] if file in module else []
                return "::".join([f"{file}.py", *rest, case.get("name") or "?"])
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ", 1)[0].removeprefix("contract_tests/")
    return "(no test named: see the output with --keep)"


def run_suite(scratch: Path, tests: str, timeout: float) -> SuiteRun:
    junit = scratch / "junit.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *shlex.split(tests), "-x", "-q", "--junitxml", str(junit)]
    started = time.monotonic()
    # A process group of its own, so a hung run is stopped with everything it started (st, servers).
    process = subprocess.Popen(
        command,
        cwd=scratch,
        env=environment(scratch),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return SuiteRun(False, f"(timed out after {timeout:.0f} s)", time.monotonic() - started, True)
    seconds = time.monotonic() - started
    (scratch / "last-run.txt").write_text(output)
    if process.returncode == 0:
        return SuiteRun(True, "", seconds, False)
    if process.returncode != 1:
        # 2: interrupted (a collection error), 3: internal error, 4: usage, 5: nothing collected.
        # None of them is a test catching the bug.
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise RunError(f"pytest exited {process.returncode}, not a test failure:\n{tail}")
    return SuiteRun(False, _first_failure(junit, output), seconds, False)


# -- the report -----------------------------------------------------------------------------------
_KILLED = {"killed": "yes", "timeout": "yes (hung)", "survived": "NO", "not shown": "not shown", "shown": "-"}


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutant", "description", "killed", "by", "time")]
    for o in outcomes:
        by = o.shown_by if o.result == "shown" else o.killed_by
        rows.append((o.mutant.id, o.mutant.description, _KILLED[o.result], by, f"{o.seconds:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(outcomes: Sequence[Outcome]) -> str:
    lines = ["| mutant | description | shown by | killed | by | time |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        killed = "**no**" if o.result == "survived" else _KILLED[o.result]
        by = f"`{o.killed_by}`" if o.killed_by else ""
        shown = o.shown_by.replace("|", "\\|")
        lines.append(
            f"| `{o.mutant.id}` | {o.mutant.description} | {shown} | {killed} | {by} | {o.seconds:.1f} s |"
        )
    return "\n".join(lines) + "\n"


def summary(outcomes: Sequence[Outcome]) -> str:
    if all(o.result in ("shown", "not shown") for o in outcomes):
        shown = sum(o.result == "shown" for o in outcomes)
        return f"{shown} of {len(outcomes)} mutants shown to change behaviour (the suite was not run)."
    counted = [o for o in outcomes if o.result != "not shown"]
    killed = sum(o.counts_as_killed for o in counted)
    share = 100.0 * killed / len(counted) if counted else 0.0
    text = f"{killed} of {len(counted)} mutants killed by contract_tests ({share:.0f}%)"
    if len(counted) != len(outcomes):
        text += f"; {len(outcomes) - len(counted)} not shown to change behaviour (not counted)"
    return text + f"; {sum(o.seconds for o in outcomes):.0f} s of suite runs."


# -- the command --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mutants",
        description="Plant each catalogued bug in a scratch copy and check that contract_tests fails.",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="ID[,ID...]", help="run these mutants only"
    )
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument(
        "--check", action="store_true", help="only check that every mutant still applies to the working tree"
    )
    parser.add_argument(
        "--probe-only", action="store_true", help="only show that each mutant changes behaviour"
    )
    parser.add_argument(
        "--ref", metavar="REV", help="test git revision REV's code instead of the working tree (e.g. HEAD)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the check that the suite passes without mutants"
    )
    parser.add_argument(
        "--tests", default="contract_tests", help="what pytest runs (default: contract_tests)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before a suite run counts as hung (default 900)"
    )
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE as Markdown")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    return parser


def _select(only: Sequence[str]) -> list[Mutant]:
    if not only:
        return list(MUTANTS)
    wanted = [i.strip() for chunk in only for i in chunk.split(",") if i.strip()]
    known = {m.id: m for m in MUTANTS}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise RunError(f"unknown mutant(s): {', '.join(unknown)}; --list shows the catalogue")
    return [known[i] for i in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:36} {m.file:32} {m.description}")
        print(f"{len(MUTANTS)} mutants")
        return 0
    scratch: Path | None = None
    try:
        mutants = _select(args.only)
        if args.check:
            problems = stale(ROOT, mutants)
            for problem in problems:
                print(f"stale: {problem}", file=sys.stderr)
            print(f"{len(mutants) - len(problems)} of {len(mutants)} mutants apply")
            return 2 if problems else 0
        scratch = build_scratch(args.ref)
        print(f"scratch copy: {scratch}" if args.keep else "scratch copy made", flush=True)
        check_imports(scratch)
        problems = stale(scratch, mutants)
        if problems:
            raise RunError("stale mutants (their patch no longer applies):\n  " + "\n  ".join(problems))
        pristine = {name: probe(scratch, name, 120) for name in sorted({m.probe for m in mutants})}
        if not args.probe_only and not args.no_baseline:
            print(f"baseline: {args.tests} without mutants...", flush=True)
            baseline = run_suite(scratch, args.tests, args.timeout)
            if not baseline.passed:
                raise RunError(
                    f"{args.tests} fails without any mutant ({baseline.first_failure}): fix that first"
                )
            print(f"baseline: passed in {baseline.seconds:.1f} s", flush=True)
        outcomes = [_one(scratch, m, i, len(mutants), pristine, args) for i, m in enumerate(mutants, 1)]
    except RunError as exc:
        print(f"mutants: {exc}", file=sys.stderr)
        return 2
    finally:
        if scratch is not None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(table(outcomes))
    print()
    print(summary(outcomes))
    if args.markdown:
        Path(args.markdown).write_text(markdown(outcomes) + "\n" + summary(outcomes) + "\n")
    if any(o.result == "not shown" for o in outcomes):
        return 2
    return 0 if all(o.counts_as_killed for o in outcomes) or args.probe_only else 1


def _one(
    scratch: Path, mutant: Mutant, index: int, total: int, pristine: dict[str, dict[str, object]], args: Any
) -> Outcome:
    print(f"[{index}/{total}] {mutant.id}: {mutant.description}", flush=True)
    original = apply(scratch, mutant)
    try:
        changed = differences(pristine[mutant.probe], probe(scratch, mutant.probe, 120))
        if not changed:
            print("    not shown: the probe sees no difference (equivalent, or the probe misses it)")
            return Outcome(mutant, "not shown", "", 0.0, "")
        print(f"    shown by {changed[0]}", flush=True)
        if args.probe_only:
            return Outcome(mutant, "shown", "", 0.0, changed[0])
        run = run_suite(scratch, args.tests, args.timeout)
    finally:
        (scratch / mutant.file).write_text(original)
    if run.passed:
        result = "survived"
    else:
        result = "timeout" if run.timed_out else "killed"
    print(
        f"    {result} {('by ' + run.first_failure) if not run.passed else ''} in {run.seconds:.1f} s",
        flush=True,
    )
    return Outcome(mutant, result, run.first_failure, run.seconds, changed[0])
