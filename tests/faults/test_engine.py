"""Decisions: the counter-based generator, rule counters, windows, probability, sessions."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from mock_server._faults import Engine, Latency, draws, parse_rules, preset

NO_HEADERS = Headers(raw=[])


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(*rules: dict[str, Any], seed: int = 0, clock: Clock | None = None) -> Engine:
    return Engine(parse_rules({"rules": list(rules)}), seed=seed, clock=clock or Clock())


def schedule(
    e: Engine, n: int, *, session: str | None = None, method: str = "GET", path: str = "/x"
) -> list[str]:
    """What ``n`` requests in a row get: the fault type, ``ok``, or ``latency``."""
    out = []
    for _ in range(n):
        d = e.decide(method, path, None, session, NO_HEADERS)
        out.append("ok" if d is None else (d.fault.type if d.fault else "latency"))
    return out


def test_generator_is_a_pure_function_of_its_key():
    """The same key gives the same draws; each part of the key changes them."""
    base = draws(1, "r", "s", 5, "p")
    assert draws(1, "r", "s", 5, "p") == base
    variants = [
        draws(2, "r", "s", 5, "p"),
        draws(1, "q", "s", 5, "p"),
        draws(1, "r", "t", 5, "p"),
        draws(1, "r", None, 5, "p"),
        draws(1, "r", "s", 6, "p"),
        draws(1, "r", "s", 5, "latency"),
    ]
    assert all(v != base for v in variants)
    assert all(0.0 <= u < 1.0 for v in variants for u in v)


def test_generator_ignores_the_global_random_module():
    """Reseeding or consuming the global ``random`` changes nothing."""
    before = [draws(3, "r", None, n, "p") for n in range(20)]
    random.seed(12345)
    random.random()
    assert [draws(3, "r", None, n, "p") for n in range(20)] == before


def test_generator_is_roughly_uniform():
    """Draws spread evenly over [0, 1): each decile within 4.5 sd of its expected count."""
    n = 20_000
    counts = [0] * 10
    for i in range(n):
        counts[int(draws(0, "u", None, i, "p")[0] * 10)] += 1
    sd = math.sqrt(n * 0.1 * 0.9)
    assert all(abs(c - n / 10) < 4.5 * sd for c in counts), counts


def test_sequence_then_ok_forever():
    """A sequence plays in order, ``ok`` included, then every request is ok."""
    e = engine(
        {
            "id": "s",
            "sequence": [
                {"type": "status", "status": 500},
                "ok",
                {"type": "reset"},
                {"type": "status", "status": 503},
            ],
        }
    )
    assert schedule(e, 7) == ["status", "ok", "reset", "status", "ok", "ok", "ok"]


def test_every_nth():
    """``every_nth: 3`` faults the 3rd, 6th, 9th... matching request."""
    e = engine({"id": "n", "every_nth": 3, "fault": {"type": "reset"}})
    assert schedule(e, 9) == ["ok", "ok", "reset"] * 3


def test_after_and_times():
    """``after`` skips the first matches; ``times`` stops after that many faults."""
    e = engine({"id": "a", "after": 2, "times": 3, "fault": {"type": "close"}})
    assert schedule(e, 8) == ["ok", "ok", "close", "close", "close", "ok", "ok", "ok"]


def test_after_shifts_every_nth_and_sequence():
    """``every_nth`` and the sequence position count from the end of ``after``."""
    nth = engine({"id": "a", "after": 1, "every_nth": 2, "fault": {"type": "close"}})
    assert schedule(nth, 6) == ["ok", "ok", "close", "ok", "close", "ok"]
    seq = engine({"id": "b", "after": 2, "sequence": [{"type": "reset"}]})
    assert schedule(seq, 4) == ["ok", "ok", "reset", "ok"]


def test_window_on_an_injected_clock():
    """A windowed rule fires only between start_s and start_s + duration_s after it was added."""
    clock = Clock()
    e = engine(
        {"id": "w", "window": {"start_s": 30, "duration_s": 20}, "fault": {"type": "reset"}}, clock=clock
    )
    seen = []
    for t in (0, 29.9, 30, 40, 49.9, 50, 80):
        clock.now = 1000.0 + t
        seen.append(schedule(e, 1)[0])
    assert seen == ["ok", "ok", "reset", "reset", "reset", "ok", "ok"]


def test_window_restarts_when_the_rule_is_replaced():
    """``put`` re-adds a rule: its window counts from the new time."""
    clock = Clock()
    e = engine(
        {"id": "w", "window": {"start_s": 0, "duration_s": 10}, "fault": {"type": "reset"}}, clock=clock
    )
    clock.now += 15
    assert schedule(e, 1) == ["ok"]
    rule = e.get("w")
    assert rule is not None
    e.put(rule)
    assert schedule(e, 1) == ["reset"]


def test_outage_preset_on_an_injected_clock():
    """The outage preset answers 503 from 5 s to 20 s and resets from 60 s to 70 s."""
    clock = Clock()
    e = Engine(preset("outage"), clock=clock)
    seen = {}
    for t in (1, 6, 19, 21, 61, 71):
        clock.now = 1000.0 + t
        seen[t] = schedule(e, 1)[0]
    assert seen == {1: "ok", 6: "status", 19: "status", 21: "ok", 61: "reset", 71: "ok"}


def test_match_method_path_tenant_headers():
    """Only requests matching every part of ``match`` advance the rule."""
    e = engine(
        {
            "id": "m",
            "match": {
                "method": "POST",
                "path": "/hr_generate*",
                "tenant": "demo",
                "headers": {"X-Canary": "1"},
            },
            "fault": {"type": "reset"},
        }
    )
    canary = Headers(headers={"x-canary": "1"})
    assert e.decide("POST", "/hr_generate/batch", "demo", None, canary) is not None
    assert e.decide("GET", "/hr_generate", "demo", None, canary) is None
    assert e.decide("POST", "/profiles", "demo", None, canary) is None
    assert e.decide("POST", "/hr_generate", "acme", None, canary) is None
    assert e.decide("POST", "/hr_generate", "demo", None, NO_HEADERS) is None
    assert e.decide("POST", "/hr_generate", "demo", None, Headers(headers={"X-CANARY": "1"})) is not None
    assert e.stats("m") == {"matched": 2, "fired": 2}


def test_latency_rules_stack_and_the_first_terminal_fault_wins():
    """Pure latency rules add up and let later rules fire; the first other fault decides."""
    e = engine(
        {"id": "l1", "fault": {"type": "latency", "fixed_ms": 10}},
        {"id": "l2", "fault": {"type": "latency", "fixed_ms": 5}},
        {"id": "boom", "fault": {"type": "status", "status": 502, "latency": {"fixed_ms": 100}}},
        {"id": "never", "fault": {"type": "reset"}},
    )
    d = e.decide("GET", "/x", None, None, NO_HEADERS)
    assert d is not None and d.fault is not None
    assert d.fault.status == 502 and d.rule == "boom"
    assert d.rules == ("l1", "l2", "boom")
    assert d.delay_s == pytest.approx(0.115)
    assert e.stats("never") == {"matched": 0, "fired": 0}


def test_sessions_have_their_own_counters():
    """Each X-Mock-Session sees the sequence from its start, whatever the others did."""
    e = engine(
        {"id": "s", "sequence": [{"type": "status", "status": 500}, {"type": "status", "status": 500}, "ok"]}
    )
    assert schedule(e, 1, session="a") == ["status"]
    assert schedule(e, 3, session="b") == ["status", "status", "ok"]
    assert schedule(e, 2, session="a") == ["status", "ok"]
    assert schedule(e, 1) == ["status"]
    e.reset_counters("b", all_sessions=False)
    assert schedule(e, 1, session="b") == ["status"]
    assert schedule(e, 1, session="a") == ["ok"]


def test_rules_scoped_to_a_session():
    """``match.session`` confines a rule to one session."""
    e = engine({"id": "mine", "match": {"session": "t1"}, "fault": {"type": "reset"}})
    assert schedule(e, 1, session="t1") == ["reset"]
    assert schedule(e, 1, session="t2") == ["ok"]


def binomial_bounds(n: int, p: float, z: float = 4.5) -> tuple[float, float]:
    """An acceptance interval for a Binomial(n, p) count (z standard deviations each side)."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


def test_probability_within_binomial_bounds():
    """With a fixed seed, a 20% rule fires a binomially plausible number of times in 5000."""
    n, p = 5000, 0.2
    e = engine({"id": "p", "probability": p, "fault": {"type": "status", "status": 503}}, seed=42)
    fired = schedule(e, n).count("status")
    lo, hi = binomial_bounds(n, p)
    assert lo <= fired <= hi, (fired, lo, hi)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), p=st.sampled_from([0.05, 0.3, 0.5, 0.9]), session=st.text(max_size=5))
def test_probability_within_binomial_bounds_for_any_seed(seed, p, session):
    """For any seed and session, the fire count stays within 4.5 sd of n * p."""
    n = 1500
    e = engine({"id": "p", "probability": p, "fault": {"type": "reset"}}, seed=seed)
    fired = schedule(e, n, session=session).count("reset")
    lo, hi = binomial_bounds(n, p)
    assert lo <= fired <= hi


def test_same_seed_same_schedule_whatever_the_interleaving():
    """Per-session schedules do not depend on how sessions' requests interleave."""
    rules = (
        {"id": "p", "probability": 0.3, "fault": {"type": "status", "status": 503}},
        {"id": "lat", "fault": {"type": "latency", "lognormal": {"median_ms": 20, "sigma": 1}}},
    )
    sessions = [f"s{i}" for i in range(10)]

    def run(order: list[str]) -> dict[str, list[tuple[str, float]]]:
        e = engine(*rules, seed=9)
        out: dict[str, list[tuple[str, float]]] = {s: [] for s in sessions}
        for s in order:
            d = e.decide("GET", "/x", None, s, NO_HEADERS)
            assert d is not None
            out[s].append((d.fault.type if d.fault else "ok", d.delay_s))
        return out

    sequential = [s for s in sessions for _ in range(30)]
    shuffled = sequential[:]
    random.Random(1).shuffle(shuffled)
    assert run(sequential) == run(shuffled)
    other = engine(*rules, seed=10)
    assert [other.decide("GET", "/x", None, "s0", NO_HEADERS) for _ in range(30)] != [
        engine(*rules, seed=9).decide("GET", "/x", None, "s0", NO_HEADERS) for _ in range(30)
    ]


@pytest.mark.parametrize(
    ("latency", "mean", "median"),
    [
        pytest.param(Latency("uniform", 10, 30), 20, 20, id="uniform"),
        pytest.param(Latency("normal", 50, 5), 50, 50, id="normal"),
        pytest.param(Latency("lognormal", 80, 0.5), 80 * math.exp(0.125), 80, id="lognormal"),
    ],
)
def test_latency_samples_follow_their_distribution(latency, mean, median):
    """Sample mean and median over 4000 keyed draws sit near the distribution's."""
    samples = sorted(latency.sample_ms(*draws(0, "l", None, i, "latency")) for i in range(4000))
    assert statistics_mean(samples) == pytest.approx(mean, rel=0.05)
    assert samples[len(samples) // 2] == pytest.approx(median, rel=0.05)
    assert min(samples) >= 0


def statistics_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_non_matching_requests_touch_no_counters():
    """Rules for other methods are not even consulted (the method index)."""
    e = engine(
        *(
            {"id": f"r{i}", "match": {"method": "POST", "path": f"/p{i}"}, "fault": {"type": "reset"}}
            for i in range(20)
        )
    )
    assert e.decide("GET", "/p1", None, None, NO_HEADERS) is None
    assert e._by_method["GET"] == ()
    assert all(e.stats(f"r{i}")["matched"] == 0 for i in range(20))


def test_path_prefilter_keeps_every_rule_reachable():
    """With many path rules, each still fires on its own paths and nothing else does."""
    e = engine(
        *({"id": f"r{i}", "match": {"path": f"/p{i}/*"}, "fault": {"type": "reset"}} for i in range(20))
    )
    for i in (0, 7, 19):
        d = e.decide("PATCH", f"/p{i}/x", None, None, NO_HEADERS)
        assert d is not None and d.rule == f"r{i}"
    assert e.decide("GET", "/p1", None, None, NO_HEADERS) is None
    assert e.decide("BREW", "/p3/x", None, None, NO_HEADERS) is not None
