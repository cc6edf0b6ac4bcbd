"""Assembles one fake: the API app wrapped by the fault layer (rules, journal, admin API)."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp

from ._api import Api
from ._config import ServerConfig
from ._cors import Cors, parse_origins
from ._faults import FaultLayer, RuleSet, load_rules, preset


def start_rules(*, faults: str | None, preset_name: str | None) -> RuleSet:
    """The rules a fake (or a proxy, or a replay) starts with: the fault file's, then the preset's."""
    rules = RuleSet()
    if faults:
        rules = rules + load_rules(faults)
    if preset_name:
        rules = rules + preset(preset_name)
    return rules


def build(
    config: ServerConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> tuple[ASGIApp, Api]:
    """The ASGI app for ``config`` and the API behind it; raises ConfigError naming a bad field.

    The app is the fault layer in front of the API, behind the CORS middleware when
    ``config.cors`` is set (so preflights never reach the layer's journal or rate limits).
    """
    origins = parse_origins(config.cors) if config.cors is not None else None
    api = Api(config, clock=clock, wall=wall)
    layer = FaultLayer(
        api.app(),
        rules=start_rules(faults=config.faults, preset_name=config.preset),
        seed=config.seed,
        allow_fault_header=config.allow_fault_header,
        admin_token=config.admin_token,
        journal_size=config.journal_size,
        journal_max_bytes=config.journal_max_bytes,
        session_ttl=config.session_ttl,
        max_body_bytes=config.max_body_bytes,
        auth_failures=api.auth_failures,
        tenant_of=api.auth.tenant_of,
        on_reset=api.reset_limits,
        # An injected 429 advertises the limit the first tenant really has.
        rate_limit=config.tenants[0].rate_limit.per_minute,
        clock=clock,
        wall=wall,
        # With --state (or --workers), rules, counters, journal and metrics live in Redis too.
        redis=config.state,
        # Shared buckets are refilled once, by the process that got the reset, before it answers.
        on_reset_shared=api.reset_shared_limits,
        # The API's state sends a request's fault arrival with its first operation: one round trip.
        defer_arrival=api.stateful,
    )
    return (layer if origins is None else Cors(layer, origins)), api


def create_app(config: ServerConfig | None = None) -> ASGIApp:
    """The ASGI application of a fake configured by ``config`` (defaults if None)."""
    return build(config or ServerConfig())[0]
