"""Scenario shapes and timed fault rules, as fractions of the run."""

from __future__ import annotations

import pytest

from load_tests import _scenarios


def test_spike_stages():
    """The spike runs a quarter of the users, all of them in the middle third, then a quarter."""
    spike = _scenarios.get("spike")
    assert [spike.users_at(t, 30, 8) for t in (0, 12, 25, 31)] == [2, 8, 2, None]


def test_users_never_drop_to_zero():
    """A small ``--users`` still runs at least one user per kind."""
    assert _scenarios.get("spike").users_at(0, 10, 1) == 1


def test_outage_rules_scale_with_duration():
    """The outage windows sit at the same fractions of a short and a long run."""
    outage = _scenarios.get("outage")
    short, long = outage.rules(20), outage.rules(200)
    assert short[0]["window"] == {"start_s": 3.0, "duration_s": 6.0}
    assert long[0]["window"] == {"start_s": 30.0, "duration_s": 60.0}
    assert short[1]["fault"] == {"type": "reset"}


def test_unknown_scenario_lists_the_names():
    """A typo names every scenario."""
    with pytest.raises(KeyError, match="steady"):
        _scenarios.get("stedy")
