"""Every example in README.md runs as written, in order, as a newcomer would run them.

The README's code blocks are taken in order and each is, by its kind:

- ``sh``: each command (``\\``-continued lines joined) is run by bash in the working folder. A
  command ending in ``&`` is started in the background, as a shell would, and the test waits for
  its port to answer before going on; it stays up for the later examples and is stopped at the
  end. Every other command must exit 0, and what a ``curl`` prints must be JSON without an
  ``"error"`` (``curl -s`` exits 0 on a 409, so its body is the check).
- ``python``: a block with ``def test_`` is written to a file and run with pytest (the
  ``mock_server`` fixture comes from the installed plugin); any other is run as a script. Both
  with .venv's python, and must exit 0.
- ``yaml``: a file the README names in its first comment (``# faults.yaml — ... --faults
  faults.yaml``) is written and loaded by the loader of that flag, as ``serve`` would.

Everything runs in a fresh temporary folder (no ``.mock_server/`` state from before) holding only
a link to the project's ``.venv``. The one mechanical change: the examples use port 8000, which a
developer's own fake may hold, so every ``8000`` in a block is replaced with a free port.

A block that must not run here (``make test`` itself, minutes-long runs, a synopsis) is preceded by
``<!-- readme-test: skip: REASON -->``; it shows up as a skipped test with that reason. A block of
any other kind, or without a runnable language, fails: a new example is either run or skipped on
purpose, never ignored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mock_server._faults import load_rules
from mock_server._tenants import load_tenants

pytestmark = pytest.mark.socket

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = ROOT / ".venv"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(?P<reason>.*?)\s*-->")
LOADERS = {"--faults": load_rules, "--tenants": load_tenants}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.lang or 'indented'}"


def blocks(markdown: str) -> list[Block]:
    """Fenced blocks, and indented ones outside lists; each with the skip marker before it."""
    lines = markdown.splitlines()
    out: list[Block] = []
    i = 0
    last_nonblank = ""
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(```+|~~~+)\s*([\w+-]*)", line)
        marker = SKIP.fullmatch(last_nonblank.strip())
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            body = "\n".join(lines[i + 1 : end]) + "\n"
            out.append(Block(i + 1, fence.group(2).lower(), body, marker.group("reason") if marker else None))
            last_nonblank, i = lines[end] if end < len(lines) else "", end + 1
            continue
        starts_indented = (
            line.startswith("    ")
            and line.strip()
            and (i == 0 or not lines[i - 1].strip())
            and not re.match(r"^\s*([-*+]|\d+\.)\s", last_nonblank)  # a list item's continuation
            and not last_nonblank.startswith(("    ", "  "))
        )
        if starts_indented:
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = "\n".join(x[4:] for x in lines[i:end]).strip("\n") + "\n"
            out.append(Block(i + 1, "", body, marker.group("reason") if marker else None))
            last_nonblank, i = lines[end - 1], end
            continue
        if line.strip():
            last_nonblank = line
        i += 1
    return out


BLOCKS = blocks(README.read_text(encoding="utf-8"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Session:
    """The newcomer's shell: one folder, the background jobs it started, the port for 8000."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.jobs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "COV_CORE_SOURCE"):
            self.env.pop(name, None)

    def text(self, block: Block) -> str:
        return block.text.replace("8000", str(self.port))

    def run(self, argv: list[str], what: str, timeout: float = 60) -> str:
        done = subprocess.run(
            argv, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (
            f"{what} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        return done.stdout

    def background(self, command: str, what: str) -> None:
        job = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.jobs.append(job)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert job.poll() is None, f"{what} exited {job.returncode}: {job.stderr.read().decode()}"  # type: ignore[union-attr]
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{what}: nothing listened on port {self.port} within 20 s")

    def stop(self) -> None:
        for job in self.jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGINT)  # as Ctrl-C (or `kill -INT %1`) would
                try:
                    job.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(job.pid, signal.SIGKILL)
                    job.wait()
            if job.stderr is not None:
                job.stderr.close()


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if not (VENV / "bin" / "python").exists():
        pytest.skip("no .venv: run `make test`, which creates it")
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".venv").symlink_to(VENV)
    session = Session(folder)
    yield session
    session.stop()


def _commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [c.strip() for c in joined.splitlines() if c.strip() and not c.lstrip().startswith("#")]


def _run_sh(shell: Session, block: Block) -> None:
    for command in _commands(shell.text(block)):
        what = f"README line {block.line}: {command[:80]}"
        if command.endswith("&"):
            shell.background(command[:-1].strip(), what)
            continue
        out = shell.run(["bash", "-e", "-o", "pipefail", "-c", command], what)
        if command.startswith("curl"):
            body = json.loads(out)
            assert not (isinstance(body, dict) and "error" in body), f"{what}: answered {out}"


def _run_python(shell: Session, block: Block) -> None:
    text = shell.text(block)
    name = f"readme_line{block.line}"
    python = str(shell.folder / ".venv" / "bin" / "python")
    if re.search(r"^def test_", text, re.M):
        path = shell.folder / f"test_{name}.py"
        path.write_text(text, encoding="utf-8")
        # -p no:cacheprovider: leave nothing in the folder; the plugin comes from the install.
        out = shell.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name], f"README line {block.line}"
        )
        assert re.search(r"\b\d+ passed\b", out) and " failed" not in out, out
    else:
        path = shell.folder / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        shell.run([python, path.name], f"README line {block.line}")


def _run_yaml(shell: Session, block: Block) -> None:
    first = block.text.splitlines()[0]
    named = re.match(r"#\s*(\S+\.ya?ml)\b.*?(--\w+)\s+\1", first)
    assert named and named.group(2) in LOADERS, (
        f"README line {block.line}: a YAML block must open with "
        "'# FILE.yaml — ... --faults|--tenants FILE.yaml'"
    )
    path = shell.folder / named.group(1)
    path.write_text(block.text, encoding="utf-8")
    LOADERS[named.group(2)](path)


RUNNERS = {"sh": _run_sh, "python": _run_python, "yaml": _run_yaml}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_example(shell: Session, block: Block) -> None:
    """One README block, in the README's order, sharing the folder and background jobs."""
    if block.skip is not None:
        pytest.skip(f"README line {block.line}, marked: {block.skip}")
    assert block.lang in RUNNERS, (
        f"README line {block.line}: a {block.lang or 'indented'} block is neither run "
        f"(```{'/```'.join(RUNNERS)}) nor marked <!-- readme-test: skip: REASON -->"
    )
    RUNNERS[block.lang](shell, block)


def test_the_extraction_finds_the_examples() -> None:
    """The walk covers the examples a newcomer follows first; the skips all give a reason."""
    langs = [b.lang for b in BLOCKS if b.skip is None]
    assert langs.count("sh") >= 1 and langs.count("python") >= 3 and langs.count("yaml") >= 2
    started = [
        b for b in BLOCKS if b.lang == "sh" and b.skip is None and re.search(r"serve .*&$", b.text, re.M)
    ]
    assert started, "the first shell example starts the fake in the background"
    assert all(b.skip for b in BLOCKS if b.skip is not None)


def test_the_parser_reads_markers_and_indented_blocks() -> None:
    text = (
        "intro\n\n<!-- readme-test: skip: too slow -->\n```sh\nmake demo\n```\n\n"
        "para\n\n    indented\n    code\n\n- item\n\n    list continuation\n\n```python\nprint(1)\n```\n"
    )
    found = blocks(text)
    assert [(b.lang, b.skip, b.text) for b in found] == [
        ("sh", "too slow", "make demo\n"),
        ("", None, "indented\ncode\n"),
        ("python", None, "print(1)\n"),
    ]


def test_a_broken_example_fails(tmp_path: Path) -> None:
    """The runners fail on a failing command, an error body, a failing script or a bad YAML file."""
    session = Session(tmp_path)
    (tmp_path / ".venv").symlink_to(VENV)
    cases = [
        Block(1, "sh", "false\n", None),
        Block(2, "sh", "curl -s -o /dev/stdout file:///dev/null && echo '{\"error\": {}}'\n", None),
        Block(3, "python", "raise SystemExit(3)\n", None),
        Block(
            4, "yaml", "# faults.yaml — serve --faults faults.yaml\nrules: [{fault: {type: nope}}]\n", None
        ),
    ]
    for block in cases:
        with pytest.raises((AssertionError, ValueError)):
            RUNNERS[block.lang](session, block)
