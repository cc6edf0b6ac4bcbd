"""``mock-server proxy`` and ``mock-server replay``: their flags, and running them in the foreground."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from .._flags import add_serving_flags, rate, serving_settings
from .._tenants import RateLimit
from ..exceptions import ConfigError
from ._app import Built, FrontConfig, ProxyConfig, ReplayConfig, build_proxy, build_replay, uvicorn_config

COMMANDS = ("proxy", "replay")


def _common(parser: argparse.ArgumentParser) -> None:
    add_serving_flags(parser)
    parser.add_argument(
        "--rate-limit",
        metavar="PER_MINUTE[:BURST]",
        help="the fake's token bucket per credential (API key, bearer token, Basic user; else the"
        " client address): BURST at once, then PER_MINUTE; over it, 429 with Retry-After",
    )


def add_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``proxy`` and ``replay`` to the CLI's subcommands ``sub``."""
    proxy = sub.add_parser(
        "proxy",
        help="forward to a real service, with faults, journal and admin API",
        description="A reverse proxy to --upstream with the fake's fault rules, sessions, journal,"
        " admin API, compliance grading and metrics.",
        formatter_class=formatter,
    )
    proxy.add_argument("--upstream", required=True, metavar="URL", help="the service to forward to")
    _common(proxy)
    proxy.add_argument(
        "--record", metavar="FILE.har", help="record every exchange as HAR 1.2 (appended as each completes)"
    )
    proxy.add_argument(
        "--record-body-limit",
        type=int,
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="bodies over this are not kept in the recording",
    )
    proxy.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds the upstream may take to answer (then 504)",
    )
    proxy.add_argument(
        "--preserve-host",
        action="store_true",
        help="send the client's Host header up (default: the upstream's)",
    )
    replay = sub.add_parser(
        "replay",
        help="answer from a HAR recording, with faults, journal and admin API",
        description="Serve the responses recorded in a HAR file (from `proxy --record` or a browser's"
        " devtools) with the fake's fault rules, journal and admin API.",
        formatter_class=formatter,
    )
    replay.add_argument("har", metavar="FILE.har", help="the recording")
    _common(replay)
    replay.add_argument(
        "--match",
        choices=("exact", "path"),
        default="path",
        help="path: method, path and query must match; exact: the body too",
    )


def rate_limit(text: str | None) -> RateLimit | None:
    """``--rate-limit PER_MINUTE[:BURST]`` (BURST defaults to PER_MINUTE)."""
    return None if text is None else rate(text, "--rate-limit", also=" with positive integers")


def config_from_args(args: argparse.Namespace) -> ProxyConfig | ReplayConfig:
    common: dict[str, Any] = serving_settings(args)
    common["rate_limit"] = rate_limit(args.rate_limit)
    if args.command == "proxy":
        if not args.timeout > 0:
            raise ConfigError(f"--timeout: must be positive, got {args.timeout}")
        if args.record_body_limit < 0:
            raise ConfigError(f"--record-body-limit: must be 0 or more, got {args.record_body_limit}")
        return ProxyConfig(
            upstream=args.upstream,
            record=args.record,
            record_body_limit=args.record_body_limit,
            timeout=args.timeout,
            preserve_host=args.preserve_host,
            **common,
        )
    return ReplayConfig(har=args.har, match=args.match, **common)


def banner(config: FrontConfig, built: Built, url: str) -> str:
    if isinstance(config, ProxyConfig):
        lines = [f"Proxy to {config.upstream} listening on {url}"]
        if config.record:
            lines.append(f"  recording to {config.record} (HAR 1.2; credentials redacted)")
    else:
        assert isinstance(config, ReplayConfig) and built.replay is not None
        recovered = " (recovered from a cut file)" if built.replay.recovered else ""
        lines = [
            f"Replay of {config.har}: {len(built.replay.entries)} recorded responses{recovered},"
            f" listening on {url}",
            f"  matching on method, path, query{' and body' if config.match == 'exact' else ''}",
            f"  reload: POST {url}/__admin/replay/reload",
        ]
    if config.faults or config.preset:
        lines.append(f"  faults: {' '.join(f for f in (config.faults, config.preset) if f)}")
    if config.rate_limit is not None:
        limit = config.rate_limit
        lines.append(f"  rate limit: {limit.per_minute}/min, burst {limit.burst}, per credential")
    lines.append(f"  admin: {url}/__admin/requests")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``proxy`` or ``replay`` in the foreground until Ctrl-C."""
    from .._cli import url_of
    from .._faults import FaultConfigError
    from .._server import Server, listen_socket, raise_fd_limit

    name = f"mock-server {args.command}"
    try:
        config = config_from_args(args)
        built = build_proxy(config) if isinstance(config, ProxyConfig) else build_replay(config)
        uconfig = uvicorn_config(built, config)
    except (ConfigError, FaultConfigError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    try:
        sock = listen_socket(config.host, config.port)
    except OSError as exc:
        where = f"[{config.host}]" if ":" in config.host else config.host
        print(
            f"{name}: cannot listen on {where}:{config.port}: {(exc.strerror or str(exc)).lower()}",
            file=sys.stderr,
        )
        return 1
    config = replace(config, port=sock.getsockname()[1])
    raise_fd_limit()
    url = url_of(config.host, config.port)
    server = Server(uconfig, on_started=lambda: print(banner(config, built, url), flush=True), freeze_gc=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if built.recorder is not None:
            built.recorder.close()
    return 0 if server.started else 1
