"""The scenarios: a load shape, the fake's faults, the server's quota and the task mix of each.

Pure data (no locust import): the runner reads it to start the fake, the locustfile to shape
the load. Stages are fractions of the run, so ``--duration 10`` and ``--duration 600`` run the
same story at different speeds. ``--users`` counts users *per client kind*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCENARIOS", "Scenario", "Stage", "TASKS", "get"]

#: The logical calls a user makes, by name; weights in each scenario pick among them.
TASKS = ("generate", "get_profile", "list_profiles", "write_profile")

_DEFAULT_MIX: Mapping[str, int] = {"generate": 3, "get_profile": 5, "list_profiles": 2, "write_profile": 1}


@dataclass(frozen=True, slots=True)
class Stage:
    """Until ``until`` (a fraction of the run), run ``users`` (a fraction of ``--users``)."""

    until: float
    users: float


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One load test: what the fake does, how many users, doing what, how fast.

    ``preset`` is the fake's ``--preset``; ``rules`` builds extra fault rules for a run of a
    given length (posted to ``/__admin/faults`` when the test starts, so their windows line up
    with the load); ``server_quota`` is the tenant's ``(per_minute, burst)`` on the fake (the
    default is generous, so only the scenarios about quotas meet the server's limiter);
    ``pacing`` is each user's logical calls per second (0: no wait); ``client_cache`` turns the
    resilient client's cache off when a scenario measures the client itself.
    """

    name: str
    description: str
    preset: str | None = None
    stages: tuple[Stage, ...] = (Stage(1.0, 1.0),)
    mix: Mapping[str, int] = field(default_factory=lambda: dict(_DEFAULT_MIX))
    pacing: float = 2.0
    kinds: tuple[str, ...] = ("resilient",)
    server_quota: tuple[int, int] = (60_000, 2_000)
    limiter_rate: float | None = None
    hot_profiles: int = 20
    client_cache: bool = True
    rules_spec: tuple[tuple[str, float, float, Mapping[str, Any]], ...] = ()

    def users_at(self, elapsed: float, duration: float, users: int) -> int | None:
        """Users (per kind) at ``elapsed`` seconds into a run of ``duration``; ``None`` when over."""
        if elapsed >= duration:
            return None
        fraction = elapsed / duration if duration > 0 else 1.0
        for stage in self.stages:
            if fraction < stage.until:
                return max(1, round(users * stage.users))
        return max(1, round(users * self.stages[-1].users))

    def rules(self, duration: float) -> list[dict[str, Any]]:
        """Fault rules whose windows are placed within a run of ``duration`` seconds."""
        out = []
        for rule_id, start, length, fault in self.rules_spec:
            out.append(
                {
                    "id": rule_id,
                    "window": {
                        "start_s": round(start * duration, 3),
                        "duration_s": round(max(0.5, length * duration), 3),
                    },
                    "fault": dict(fault),
                }
            )
        return out

    def outage_windows(self, duration: float) -> list[tuple[float, float]]:
        """``(start, end)`` seconds of each scripted fault window, for the plots."""
        return [
            (start * duration, start * duration + max(0.5, length * duration))
            for _, start, length, _ in self.rules_spec
        ]


SCENARIOS: Mapping[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="steady",
            description="Constant load on a flaky service (10% 503, 5% 500, 2% resets).",
            preset="flaky",
        ),
        Scenario(
            name="spike",
            description="A quarter of the users, then all of them for the middle third, then a quarter "
            "again; flaky service.",
            preset="flaky",
            stages=(Stage(0.33, 0.25), Stage(0.66, 1.0), Stage(1.0, 0.25)),
        ),
        Scenario(
            name="outage",
            description="Every request answers 503 (Retry-After 2) from 15% to 45% of the run, and every "
            "connection is reset from 55% to 63%: the breaker must open, and the success rate "
            "recover once the service is back.",
            rules_spec=(
                ("outage-503", 0.15, 0.30, {"type": "status", "status": 503, "retry_after": 2}),
                ("outage-reset", 0.55, 0.08, {"type": "reset"}),
            ),
        ),
        Scenario(
            name="rate-limit",
            description="The fake's own quota set to 5 requests a second (burst 10) while the users ask "
            "for twice that: the client's limiter must keep 429s near zero.",
            stages=(Stage(0.2, 0.5), Stage(1.0, 1.0)),
            server_quota=(300, 10),
            limiter_rate=4.5,
            pacing=2.0,
        ),
        Scenario(
            name="cache-heavy",
            description="Mostly reads of a few hot profiles on a slow service (log-normal latency, "
            "median 200 ms): the private cache must answer most of them.",
            preset="slow",
            mix={"generate": 1, "get_profile": 20, "list_profiles": 3, "write_profile": 1},
            hot_profiles=8,
        ),
        Scenario(
            name="chaos",
            description="The demo: every fault at once (latency, 429, 503, 500, 502, resets, closes, "
            "truncated and malformed bodies, hangs) and the fake's default quota of 10 requests "
            "a second per client, for a naive and a resilient client side by side.",
            preset="chaos",
            kinds=("naive", "resilient"),
            server_quota=(600, 100),
            limiter_rate=9.0,
            pacing=2.0,
        ),
        Scenario(
            name="bench",
            description="No faults, no quota to speak of, profile reads only with the client's cache "
            "off, as fast as the users can go: the resilient client's overhead against plain requests.",
            mix={"get_profile": 1},
            pacing=0.0,
            server_quota=(100_000_000, 10_000_000),
            client_cache=False,
        ),
        Scenario(
            name="bench-generate",
            description="As bench, with POST /hr_generate: the resilient client also sends an "
            "Idempotency-Key, which the fake stores, so the server does more work per call.",
            mix={"generate": 1},
            pacing=0.0,
            server_quota=(100_000_000, 10_000_000),
        ),
    )
}


def get(name: str) -> Scenario:
    """The named scenario; an unknown name raises ``KeyError`` listing the names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}") from None
