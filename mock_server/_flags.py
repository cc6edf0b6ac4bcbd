"""The flags every serving command shares (``serve``, ``proxy``, ``replay``): one definition, one check.

Each command adds its own flags beside these. :func:`serving_settings` checks the shared ones
and returns them under the field names :class:`~mock_server.ServerConfig` and the proxy's
``FrontConfig`` both use, so a flag means the same thing, with the same error, in every command.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from ._tenants import RateLimit
from .exceptions import ConfigError


def add_serving_flags(parser: argparse.ArgumentParser) -> None:
    """Where to listen, the fault rules, the admin API, the journal and the HTTP stack."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: a free one)")
    parser.add_argument("--faults", metavar="FILE", help="fault rules (YAML or JSON)")
    parser.add_argument("--preset", help="named fault rules: flaky, outage, rate-limited, slow, chaos")
    parser.add_argument("--seed", type=int, help="seed for fault decisions (overrides the file's)")
    parser.add_argument("--admin-token", help="require X-Admin-Token on /__admin (and allow non-loopback)")
    parser.add_argument("--allow-fault-header", action="store_true", help="honour X-Mock-Fault on requests")
    parser.add_argument("--journal-size", type=int, default=10_000, help="requests kept in the journal")
    parser.add_argument(
        "--journal-max-bytes",
        type=int,
        default=256 * 1024 * 1024,
        metavar="N",
        help="memory the journal may hold; past it the oldest entries go",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds an idle X-Mock-Session keeps its fault counters",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log each request (secrets in the query hidden)"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a request's headers may take to arrive; slower connections are closed",
    )
    parser.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="HTTP parser: httptools (in C) or h11 (pure Python); auto: httptools when installed",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop or the standard library's asyncio; auto: uvloop when installed",
    )


def serving_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The shared flags, checked; raises ConfigError naming the first bad one."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: must be 0..65535, got {args.port}")
    if args.journal_size < 1:
        raise ConfigError(f"--journal-size: must be positive, got {args.journal_size}")
    if args.journal_max_bytes < 1:
        raise ConfigError(f"--journal-max-bytes: must be positive, got {args.journal_max_bytes}")
    if not args.session_ttl > 0:
        raise ConfigError(f"--session-ttl: must be positive, got {args.session_ttl}")
    if not args.header_timeout > 0:
        raise ConfigError(f"--header-timeout: must be positive, got {args.header_timeout}")
    for flag, choice, fallback in (("--http", args.http, "h11"), ("--loop", args.loop, "asyncio")):
        if choice not in ("auto", fallback) and importlib.util.find_spec(choice) is None:
            raise ConfigError(f"{flag}: {choice} is not installed (pip install {choice}); or use {fallback}")
    return {
        "host": args.host,
        "port": args.port,
        "faults": args.faults,
        "preset": args.preset,
        "seed": args.seed,
        "admin_token": args.admin_token,
        "allow_fault_header": args.allow_fault_header,
        "journal_size": args.journal_size,
        "journal_max_bytes": args.journal_max_bytes,
        "session_ttl": args.session_ttl,
        "access_log": args.access_log,
        "header_timeout": args.header_timeout,
        "http": args.http,
        "loop": args.loop,
    }


def rate(text: str, flag: str, *, also: str = "") -> RateLimit:
    """``PER_MINUTE[:BURST]`` (BURST defaults to PER_MINUTE) for ``flag``; ``also`` names the
    other forms the flag takes, for the error."""
    per_minute_text, _, burst_text = text.partition(":")
    try:
        per_minute = int(per_minute_text)
        burst = int(burst_text) if burst_text else per_minute
    except ValueError:
        per_minute = burst = 0
    if per_minute < 1 or burst < 1 or len(text) > 20:
        raise ConfigError(f"{flag}: must be PER_MINUTE[:BURST]{also}, got {text[:40]!r}")
    return RateLimit(per_minute=per_minute, burst=burst)
