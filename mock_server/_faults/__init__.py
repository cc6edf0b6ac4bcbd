"""Fault injection for the fake: rules, presets, the fault layer and its admin API.

The lead app wraps its API with :class:`FaultLayer` (the outermost ASGI app) and serves it with
``uvicorn.Config(app, http=UVICORN_HTTP)`` so resets and truncation reach the real socket.
"""

from ._compliance import Thresholds, analyse
from ._engine import Decision, Engine
from ._errors import FaultConfigError
from ._h11 import FaultH11Protocol
from ._journal import Entry, Filter, Journal
from ._layer import FaultLayer
from ._model import Fault, Latency, Match, RetryAfter, Rule, RuleSet, Window
from ._parse import load_rules, parse_fault, parse_fault_header, parse_rule, parse_rules
from ._presets import PRESETS, preset
from ._protocols import UVICORN_HTTP
from ._random import draws

__all__ = [
    "PRESETS",
    "UVICORN_HTTP",
    "Decision",
    "Engine",
    "Entry",
    "Fault",
    "FaultConfigError",
    "FaultH11Protocol",
    "FaultLayer",
    "Filter",
    "Journal",
    "Latency",
    "Match",
    "RetryAfter",
    "Rule",
    "RuleSet",
    "Thresholds",
    "Window",
    "analyse",
    "draws",
    "load_rules",
    "parse_fault",
    "parse_fault_header",
    "parse_rule",
    "parse_rules",
    "preset",
]
