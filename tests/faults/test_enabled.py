"""Disabling a rule: ``enabled: false`` keeps the rule in its place with its counters, but it
neither matches nor counts; ``PATCH /__admin/faults/{id}`` turns it off and on again.

The cross-process case (a disable through one process applies in every other at once) is in
test_redis_state.py, next to the other multi-process tests.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from mock_server._faults import Engine, FaultConfigError, FaultLayer, load_rules, parse_rule, parse_rules

from .test_redis_state import admin, api, call

NO_HEADERS = Headers(raw=[])
DOWN = {"id": "down", "match": {"path": "/x"}, "fault": {"type": "status", "status": 503}}
SLOW = {"id": "slow", "fault": {"type": "latency", "fixed_ms": 1}}


# -- the field ------------------------------------------------------------------------------------


def test_enabled_defaults_to_true_and_only_false_is_written_back() -> None:
    on = parse_rule(DOWN)
    off = parse_rule({**DOWN, "enabled": False})
    assert on.enabled and not off.enabled
    assert "enabled" not in on.to_dict()
    assert off.to_dict()["enabled"] is False
    assert parse_rule(off.to_dict()) == off
    assert parse_rule({**DOWN, "enabled": True}) == on


@pytest.mark.parametrize("bad", ["false", 0, 1, None, [], {}])
def test_a_non_boolean_enabled_is_an_error_naming_the_field(bad: Any) -> None:
    with pytest.raises(FaultConfigError) as exc:
        parse_rules({"rules": [SLOW, {**DOWN, "enabled": bad}]})
    assert str(exc.value).startswith("rules[1].enabled: must be true or false")
    assert exc.value.details[0]["loc"] == ["rules", 1, "enabled"]


def test_a_rule_file_may_disable_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("rules:\n  - id: down\n    enabled: false\n    fault: {type: status, status: 503}\n")
    assert load_rules(path).rules[0].enabled is False
    path.write_text("rules:\n  - id: down\n    enabled: 'no'\n    fault: {type: status, status: 503}\n")
    with pytest.raises(FaultConfigError, match=r"rules\[0\]\.enabled"):
        load_rules(path)


# -- the engine -----------------------------------------------------------------------------------


def test_the_engine_skips_a_disabled_rule_which_neither_matches_nor_counts() -> None:
    e = Engine(parse_rules({"rules": [SLOW, {**DOWN, "enabled": False}]}))
    d = e.decide("GET", "/x", None, None, NO_HEADERS)
    assert d is not None and d.fault is None and d.rules == ("slow",)
    assert e.stats("down") == {"matched": 0, "fired": 0}
    assert e.matching("GET", "/x", None, None, NO_HEADERS) == [e.get("slow")]
    assert [r.id for r in e.rules] == ["slow", "down"]


def test_disabling_in_the_engine_keeps_the_place_and_the_counters() -> None:
    e = Engine(parse_rules({"rules": [{**DOWN, "every_nth": 2}, SLOW]}))
    for _ in range(3):
        e.decide("GET", "/x", None, None, NO_HEADERS)
    assert e.stats("down") == {"matched": 3, "fired": 1}
    rule = e.set_enabled("down", False)
    assert rule is not None and not rule.enabled
    assert e.decide("GET", "/x", None, None, NO_HEADERS).rules == ("slow",)  # type: ignore[union-attr]
    assert e.stats("down") == {"matched": 3, "fired": 1}
    e.set_enabled("down", True)
    assert [r.id for r in e.rules] == ["down", "slow"]
    # The counter carries on from 3: the 4th match is an every-2nd one.
    d = e.decide("GET", "/x", None, None, NO_HEADERS)
    assert d is not None and d.rule == "down"
    assert e.stats("down") == {"matched": 4, "fired": 2}
    assert e.set_enabled("nope", False) is None


# -- the admin API --------------------------------------------------------------------------------


async def _faults(layer: FaultLayer) -> dict[str, Any]:
    status, _, body = await admin(layer, "GET", "/__admin/faults")
    assert status == 200
    return dict(json.loads(body))


def test_patch_disables_and_enables_in_place_keeping_the_counters() -> None:
    async def go() -> None:
        layer = FaultLayer(api, rules=parse_rules({"rules": [DOWN, SLOW]}))
        assert (await call(layer, "GET", "/x"))[0] == 503
        status, _, body = await admin(layer, "PATCH", "/__admin/faults/down", {"enabled": False})
        assert status == 200 and json.loads(body)["enabled"] is False
        assert (await call(layer, "GET", "/x"))[0] == 200
        listed = await _faults(layer)
        shown = [(r["id"], r.get("enabled", True)) for r in listed["rules"]]
        assert shown == [("down", False), ("slow", True)]
        assert listed["stats"]["down"] == {"matched": 1, "fired": 1}
        assert json.loads((await admin(layer, "GET", "/__admin/faults/down"))[2])["enabled"] is False
        status, _, body = await admin(layer, "PATCH", "/__admin/faults/down", {"enabled": True})
        assert status == 200 and "enabled" not in json.loads(body)
        assert (await call(layer, "GET", "/x"))[0] == 503
        listed = await _faults(layer)
        assert [r["id"] for r in listed["rules"]] == ["down", "slow"]
        assert listed["stats"]["down"] == {"matched": 2, "fired": 2}
        # A firing "down" ends the search before "slow"; only the request it skipped reached it.
        assert listed["stats"]["slow"] == {"matched": 1, "fired": 1}

    asyncio.run(go())


@pytest.mark.parametrize(
    ("payload", "loc", "status"),
    [
        ({"enabled": "false"}, ["enabled"], 422),
        ({"enabled": None}, ["enabled"], 422),
        ({"probability": 0.5}, ["probability"], 422),
        ({"enabled": False, "id": "other"}, ["id"], 422),
        ([False], [], 422),
    ],
)
def test_a_bad_patch_names_its_field_and_changes_nothing(payload: Any, loc: list[Any], status: int) -> None:
    async def go() -> None:
        layer = FaultLayer(api, rules=parse_rules({"rules": [DOWN]}))
        got, _, body = await admin(layer, "PATCH", "/__admin/faults/down", payload)
        assert got == status
        error = json.loads(body)["error"]
        assert error["details"][0]["loc"] == loc
        assert (await call(layer, "GET", "/x"))[0] == 503
        assert "enabled" not in (await _faults(layer))["rules"][0]

    asyncio.run(go())


def test_patching_a_missing_rule_is_a_404_and_an_empty_patch_changes_nothing() -> None:
    async def go() -> None:
        layer = FaultLayer(api, rules=parse_rules({"rules": [DOWN]}))
        assert (await admin(layer, "PATCH", "/__admin/faults/nope", {"enabled": False}))[0] == 404
        assert (await admin(layer, "PATCH", "/__admin/faults/nope", {}))[0] == 404
        status, _, body = await admin(layer, "PATCH", "/__admin/faults/down", {})
        assert status == 200 and json.loads(body) == DOWN
        assert (await admin(layer, "PATCH", "/__admin/faults/down", None))[0] == 400

    asyncio.run(go())


def test_a_reset_comes_back_to_the_start_rules_enabled_as_they_were() -> None:
    async def go() -> None:
        layer = FaultLayer(api, rules=parse_rules({"rules": [DOWN, {**SLOW, "enabled": False}]}))
        await admin(layer, "PATCH", "/__admin/faults/down", {"enabled": False})
        await admin(layer, "PATCH", "/__admin/faults/slow", {"enabled": True})
        assert (await call(layer, "GET", "/x"))[0] == 200
        assert (await admin(layer, "POST", "/__admin/reset"))[0] == 200
        rules = (await _faults(layer))["rules"]
        assert [(r["id"], r.get("enabled", True)) for r in rules] == [("down", True), ("slow", False)]
        assert (await call(layer, "GET", "/x"))[0] == 503
        await admin(layer, "PATCH", "/__admin/faults/down", {"enabled": False})
        assert (await admin(layer, "POST", "/__admin/faults/reset"))[0] == 200
        assert (await call(layer, "GET", "/x"))[0] == 503

    asyncio.run(go())


def test_a_bad_enabled_in_an_admin_body_is_a_422_naming_it_and_adds_nothing() -> None:
    async def go() -> None:
        layer = FaultLayer(api)
        body = {"rules": [SLOW, {**DOWN, "enabled": "off"}]}
        status, _, raw = await admin(layer, "POST", "/__admin/faults", body)
        assert status == 422
        error = json.loads(raw)["error"]
        assert error["message"].startswith("rules[1].enabled: must be true or false")
        assert error["details"][0]["loc"] == ["rules", 1, "enabled"]
        assert (await _faults(layer))["rules"] == []
        status, _, raw = await admin(layer, "POST", "/__admin/faults", {**DOWN, "enabled": False})
        assert status == 201 and json.loads(raw)["enabled"] is False
        assert (await call(layer, "GET", "/x"))[0] == 200

    asyncio.run(go())


def test_the_admin_client_disables_and_enables_a_rule_over_http() -> None:
    """`AdminClient.disable_fault`/`enable_fault`: the Python side of PATCH, on a real server."""
    import requests

    from mock_server import ServerConfig, ServerThread

    with ServerThread(ServerConfig(db=":memory:")) as server:
        admin = server.admin
        down = {"type": "status", "status": 503}
        admin.add_fault({"id": "down", "match": {"path": "/health"}, "fault": down})
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 503
        assert admin.disable_fault("down")["enabled"] is False
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        assert "enabled" not in admin.enable_fault("down")
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 503
        assert [r["id"] for r in admin.faults()] == ["down"]
