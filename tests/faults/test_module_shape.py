"""The fault layer's shape: the admin API and the request path share a FaultState and neither
module imports the other (they used to import each other, one of them lazily)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mock_server._faults as faults

_PACKAGE = Path(faults.__file__).parent


def _imports(module: str) -> set[str]:
    """The ``_faults`` modules that ``module`` imports, anywhere in it (functions included)."""
    tree = ast.parse((_PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in _imports(current):
            if name not in seen and (_PACKAGE / f"{name}.py").exists():
                seen.add(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize(
    ("module", "must_not_reach"),
    [("_admin", "_layer"), ("_state", "_layer"), ("_state", "_admin"), ("_injectors", "_layer")],
)
def test_no_module_reaches_back(module: str, must_not_reach: str) -> None:
    assert must_not_reach not in _closure(module)


def test_no_import_cycle_among_fault_modules() -> None:
    for path in _PACKAGE.glob("_*.py"):
        name = path.stem
        if name == "__init__":
            continue
        assert name not in _closure(name), f"{name} imports itself through {sorted(_closure(name))}"


def test_each_module_imports_alone() -> None:
    for name in ("_state", "_admin", "_injectors", "_layer"):
        module = importlib.import_module(f"mock_server._faults.{name}")
        assert module.__name__.endswith(name)


def test_layer_and_admin_share_one_state() -> None:
    from starlette.responses import PlainTextResponse

    layer = faults.FaultLayer(PlainTextResponse("ok"))
    assert layer.engine is layer.state.engine
    assert layer.journal is layer.state.journal
    assert layer.injectors.held is layer.state.held


def test_the_fault_layer_depends_on_no_mode_built_on_it() -> None:
    """The proxy and replay are built on the fault layer, never the other way round (a rule's
    ``when: after`` used to live in the proxy package and be imported from there)."""
    for path in _PACKAGE.glob("_*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert not (node.module or "").startswith("_proxy"), f"{path.name} imports {node.module}"
