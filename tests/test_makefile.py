"""The Makefile and the lock file: pinned installs that announce themselves, and a full clean.

``make`` runs in a temporary copy (``-n`` only prints what it would run), so nothing here
touches the checkout's own .venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _copy(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _make(cwd: Path, *args: str) -> str:
    env = {**os.environ, "MAKEFLAGS": ""}
    done = subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _age(path: Path, seconds_ago: float) -> None:
    path.touch()
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_a_newer_lock_file_reinstalls_from_it(tmp_path):
    """The install stamp depends on requirements.lock as well as pyproject.toml, and installs
    with it as constraints."""
    work = _copy(tmp_path)
    (work / ".venv").mkdir()
    _age(work / "pyproject.toml", 30)
    _age(work / ".venv" / ".installed", 20)
    _age(work / "requirements.lock", 30)
    assert "pip install" not in _make(work, "-n", ".venv/.installed")
    _age(work / "requirements.lock", 10)  # newer than the stamp
    plan = _make(work, "-n", ".venv/.installed")
    assert "pip install -c requirements.lock -e '.[dev]'" in plan


def test_the_install_says_what_it_does_and_is_not_silent(tmp_path):
    """A first install takes about a minute: it says so, and pip's own lines show progress."""
    work = _copy(tmp_path)
    plan = _make(work, "-n", ".venv/.installed")
    assert "about a minute" in plan
    (install,) = [line for line in plan.splitlines() if "-e '.[dev]'" in line]
    assert "--quiet" not in install and " -q" not in install


def test_clean_removes_every_generated_file(tmp_path):
    """`make clean` leaves no cache, report, state or build metadata behind."""
    work = _copy(tmp_path)
    made = [
        ".venv/bin",
        ".hypothesis/examples",
        ".mypy_cache/3.11",
        ".ruff_cache/0.6",
        ".pytest_cache/v",
        "resonance_harness.egg-info",
        "reports",
        ".mock_server",
        "load_reports/demo",
        "bench/results",
        "client/__pycache__",
    ]
    for name in made:
        (work / name).mkdir(parents=True)
    (work / "client" / "keep.py").write_text("")
    _make(work, "clean")
    left = [name for name in made if (work / name).exists()]
    assert left == []
    assert (work / "client" / "keep.py").exists() and (work / "requirements.lock").exists()


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"not an exact pin: {line}"
        pins[canonicalize_name(name)] = version
    return pins


def _tree(top: str, extras: set[str]) -> set[str]:
    """The names of every distribution ``top[extras]`` needs here, transitively."""
    seen: set[str] = set()
    todo = [(top, frozenset(extras))]
    env = default_environment()
    while todo:
        name, wanted = todo.pop()
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": extra}) for extra in (wanted or {""})
            ):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_lock_pins_the_whole_tree_and_the_venv_matches_it():
    """Every distribution the project needs (dev extra included) is pinned to one version, and
    the installed one is that version: .venv was installed from the lock. A failure here after
    editing pyproject.toml means: run `make lock`."""
    pins = _lock()
    tree = _tree("resonance-harness", {"dev"})
    assert {"pytest", "schemathesis", "locust", "starlette"} <= tree
    missing = sorted(tree - set(pins))
    assert missing == [], f"not in requirements.lock (run `make lock`): {missing}"
    drift = {
        name: (metadata.version(name), pins[name]) for name in tree if metadata.version(name) != pins[name]
    }
    assert drift == {}, f"installed != locked (run `make` to reinstall): {drift}"


def test_pyproject_keeps_ranges_not_pins():
    """People installing the project as a library get ranges; only the lock pins."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    deps = re.findall(r'^\s*"([A-Za-z][^"]*)",?$', text, re.M)
    assert deps and not [d for d in deps if "==" in d]
