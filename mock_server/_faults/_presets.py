"""Named rule sets for ``--preset``; rule ids carry the preset's name, so a preset stacks with a
rule file. Probabilities are per request, drawn with the server's seed (default 0).

``flaky``
    A service that mostly works: 10% ``503`` (``Retry-After: 1``), 5% ``500``, 2% connection
    resets, on every endpoint.
``outage``
    Two outages, timed from start-up: from 5 s to 20 s every request gets ``503`` with
    ``Retry-After: 5``; from 60 s to 70 s every connection is reset.
``rate-limited``
    Every 4th request gets ``429`` with ``Retry-After: 1`` and the rate-limit headers
    (``X-RateLimit-Remaining: 0``).
``slow``
    Log-normal latency (median 200 ms, sigma 0.6) on every request, plus a 2 s tail on 2% of
    them, and 5% of ``GET`` bodies trickled at 2 KiB/s.
``chaos``
    Everything at once, for the demo: log-normal latency (median 30 ms, sigma 0.8) on every
    request, then 5% ``429`` (``Retry-After: 1``), 5% ``503`` (``Retry-After: 2``), 3% ``500``,
    2% ``502``, 2% resets, 1% closes, 1% truncated bodies, 1% malformed JSON (``GET``) and 1%
    timeouts held 3 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import FaultConfigError
from ._model import RuleSet
from ._parse import parse_rules

_DEFINITIONS: Mapping[str, list[dict[str, Any]]] = {
    "flaky": [
        {
            "id": "flaky-503",
            "probability": 0.10,
            "fault": {"type": "status", "status": 503, "retry_after": 1},
        },
        {"id": "flaky-500", "probability": 0.05, "fault": {"type": "status", "status": 500}},
        {"id": "flaky-reset", "probability": 0.02, "fault": {"type": "reset"}},
    ],
    "outage": [
        {
            "id": "outage-503",
            "window": {"start_s": 5, "duration_s": 15},
            "fault": {"type": "status", "status": 503, "retry_after": 5},
        },
        {"id": "outage-reset", "window": {"start_s": 60, "duration_s": 10}, "fault": {"type": "reset"}},
    ],
    "rate-limited": [
        {
            "id": "rate-limited-429",
            "every_nth": 4,
            "fault": {"type": "status", "status": 429, "retry_after": 1},
        },
    ],
    "slow": [
        {"id": "slow-latency", "fault": {"type": "latency", "lognormal": {"median_ms": 200, "sigma": 0.6}}},
        {"id": "slow-tail", "probability": 0.02, "fault": {"type": "latency", "fixed_ms": 2000}},
        {
            "id": "slow-body",
            "match": {"method": "GET"},
            "probability": 0.05,
            "fault": {"type": "slow_body", "bytes_per_s": 2048},
        },
    ],
    "chaos": [
        {"id": "chaos-latency", "fault": {"type": "latency", "lognormal": {"median_ms": 30, "sigma": 0.8}}},
        {
            "id": "chaos-429",
            "probability": 0.05,
            "fault": {"type": "status", "status": 429, "retry_after": 1},
        },
        {
            "id": "chaos-503",
            "probability": 0.05,
            "fault": {"type": "status", "status": 503, "retry_after": 2},
        },
        {"id": "chaos-500", "probability": 0.03, "fault": {"type": "status", "status": 500}},
        {"id": "chaos-502", "probability": 0.02, "fault": {"type": "status", "status": 502}},
        {"id": "chaos-reset", "probability": 0.02, "fault": {"type": "reset"}},
        {"id": "chaos-close", "probability": 0.01, "fault": {"type": "close"}},
        {"id": "chaos-truncate", "probability": 0.01, "fault": {"type": "truncate", "fraction": 0.5}},
        {
            "id": "chaos-malformed",
            "match": {"method": "GET"},
            "probability": 0.01,
            "fault": {"type": "malformed_json"},
        },
        {"id": "chaos-timeout", "probability": 0.01, "fault": {"type": "timeout", "hang_s": 3}},
    ],
}

#: Every preset, by name.
PRESETS: Mapping[str, RuleSet] = {name: parse_rules({"rules": rules}) for name, rules in _DEFINITIONS.items()}


def preset(name: str) -> RuleSet:
    """The named rule set; an unknown name raises :class:`FaultConfigError` listing the names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise FaultConfigError(("preset",), f"unknown preset {name!r}; one of {', '.join(PRESETS)}") from None
