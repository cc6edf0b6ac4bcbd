"""The package's public surface: a sorted, complete ``__all__``."""

from __future__ import annotations

import mock_server._faults as faults


def test_all_is_sorted_and_complete():
    """``__all__`` is sorted (constants, classes, functions) and names only what exists."""
    names = faults.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(faults, n) for n in names)
    public = {n for n in vars(faults) if not n.startswith(("_", "@"))}
    assert public == set(names)


def test_lead_interface_is_exported():
    """The names the API app integrates with are all there."""
    for name in (
        "FaultLayer",
        "RuleSet",
        "FaultConfigError",
        "load_rules",
        "parse_rules",
        "preset",
        "PRESETS",
        "UVICORN_HTTP",
    ):
        assert name in faults.__all__
