"""``python -m load_tests scenarios``: an aligned table naming every scenario."""

from __future__ import annotations

import re
from pathlib import Path

from load_tests import _scenarios
from load_tests._cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_scenarios_table_is_aligned(capsys, monkeypatch):
    """Every row starts its columns at the header's offsets, wrapped lines included, within the
    terminal's width."""
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["scenarios"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    header, rule, *body = lines
    assert header.split() == ["scenario", "preset", "clients", "description"]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert [m.start() for m in re.finditer(r"-+", rule)] == starts
    names = []
    for line in body:
        assert len(line) <= 100, line
        if line[0] != " ":
            names.append(line.split()[0])
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            assert all(cells) and all(line[s - 1] == " " for s in starts[1:]), line
        else:  # a wrapped description: it continues in the description column
            assert line[: starts[-1]].strip() == "" and line[starts[-1]] != " ", line
    assert names == list(_scenarios.SCENARIOS)


def test_readme_names_every_scenario():
    """The README's load-test section names each scenario the CLI lists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in _scenarios.SCENARIOS:
        assert f"`{name}`" in readme, name
