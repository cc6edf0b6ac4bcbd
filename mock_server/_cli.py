"""``python -m mock_server serve`` and the ``mock-server`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ._config import DEFAULT_DB, ServerConfig
from ._flags import add_serving_flags, rate, serving_settings
from ._state._connect import check_url, shown
from ._state._private import private_data_dir
from ._tenants import DEFAULT_TENANTS, RateLimit, load_tenants
from .exceptions import ConfigError


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (unset, or a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mock-server", description="A fault-injecting fake of ResonanceOS v6."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the fake on loopback", formatter_class=_Help)
    add_serving_flags(serve)
    serve.add_argument("--db", default=str(DEFAULT_DB), help="SQLite file, or :memory:")
    serve.add_argument("--tenants", metavar="FILE", help="tenants and credentials (YAML or JSON)")
    serve.add_argument("--cache-max-age", type=int, default=30, help="max-age of cacheable responses")
    serve.add_argument("--retry-after-format", choices=("seconds", "http-date"), default="seconds")
    serve.add_argument("--token-ttl", type=int, default=3600, help="lifetime of OAuth tokens, seconds")
    serve.add_argument(
        "--auth-failure-limit",
        default="60:100",
        metavar="PER_MINUTE[:BURST]",
        help="failed authentications per client address (BURST at once, then PER_MINUTE)"
        " before it gets 429 and Retry-After; off: no limit",
    )
    serve.add_argument(
        "--cors",
        metavar="ORIGINS",
        help="let browser pages on these origins call the API: comma-separated, or *",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the one port as one fake; more than one keeps the state in Redis"
        " (--state, or a private redis-server started when one is on PATH)",
    )
    serve.add_argument(
        "--state",
        metavar="URL",
        help="keep the state in Redis (or Valkey): redis://HOST:PORT/DB, rediss://..., unix:///PATH;"
        " fakes sharing one act as one fake (--db is then not used)",
    )
    from ._proxy._cli import add_commands

    add_commands(sub, _Help)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    shared = serving_settings(args)
    if args.token_ttl < 1:
        raise ConfigError(f"--token-ttl: must be positive, got {args.token_ttl}")
    if args.cache_max_age < 0:
        raise ConfigError(f"--cache-max-age: must be 0 or more, got {args.cache_max_age}")
    if args.workers < 1:
        raise ConfigError(f"--workers: must be 1 or more, got {args.workers}")
    return ServerConfig(
        **shared,
        db=args.db,
        tenants=load_tenants(args.tenants) if args.tenants else DEFAULT_TENANTS,
        cache_max_age=args.cache_max_age,
        retry_after_format=args.retry_after_format,
        token_ttl=args.token_ttl,
        auth_failure_limit=failure_limit(args.auth_failure_limit),
        cors=args.cors,
        workers=args.workers,
        state=check_url(args.state) if args.state is not None else None,
    )


def failure_limit(text: str) -> RateLimit | None:
    """``--auth-failure-limit``: ``PER_MINUTE[:BURST]`` (BURST defaults to PER_MINUTE), or
    ``off`` / ``0`` for no limit."""
    if text.strip().lower() in ("off", "0"):
        return None
    return rate(text, "--auth-failure-limit", also=" or off")


def banner(config: ServerConfig, url: str) -> str:
    """What the server prints on start: its URL and, for the built-in tenants only, their
    published demo credentials (credentials from a tenants file are secrets and never shown)."""
    lines = [f"ResonanceOS v6 fake listening on {url}"]
    if config.host in _ALL_INTERFACES:
        lines.append(
            f"  on all interfaces (--host {config.host}): from another machine, use this one's"
            f" address and port {config.port}"
        )
    lines.append(f"  OpenAPI: {url}/openapi.json (interactive: {url}/docs)")
    if config.tenants == DEFAULT_TENANTS:
        lines.append("  demo credentials:")
        for tenant in config.tenants:
            user, password = next(iter(tenant.basic.items()))
            client, secret = next(iter(tenant.oauth_clients.items()))
            lines.append(
                f"    {tenant.name}: X-API-Key: {tenant.api_keys[0]}, basic {user}:{password},"
                f" oauth {client}/{secret}, signing secret {tenant.signing_secret}"
            )
    else:
        lines.append(
            f"  tenants: {', '.join(t.name for t in config.tenants)} (credentials from the tenants file)"
        )
    if config.state is not None:
        lines.append(f"  state: {shown(config.state)}")
    elif config.workers > 1:
        where = "memory" if config.db in (":memory:", "") else f"{private_data_dir(config.db)}"
        lines.append(f"  state: a private redis-server ({where})")
    else:
        lines.append(f"  state: {config.db}")
    if config.workers > 1:
        lines.append(f"  workers: {config.workers} processes")
    if config.faults or config.preset:
        lines.append(f"  faults: {' '.join(f for f in (config.faults, config.preset) if f)}")
    if config.cors:
        lines.append(f"  CORS: {config.cors}")
    lines.append(f"  admin: {url}/__admin/requests")
    lines.append(f"  dashboard: {url}/__admin/ui")
    return "\n".join(lines)


def url_of(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address is not one to connect to."""
    host = _ALL_INTERFACES.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("proxy", "replay"):
            from ._proxy._cli import run

            return run(args)
        return _serve(args)
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        return 0


def _serve(args: argparse.Namespace) -> int:
    from ._server import Server, listen_socket, raise_fd_limit, uvicorn_config
    from ._state._connect import check_reachable

    try:
        config = config_from_args(args)
        if config.state is not None:
            check_reachable(config.state)
        # Workers build their own app; this one only checks the config (rules, tenants, CORS),
        # without taking the --db lock that the workers' private redis-server takes.
        uconfig = uvicorn_config(replace(config, db=":memory:") if config.workers > 1 else config)
    except ConfigError as exc:
        print(f"mock-server: {exc}", file=sys.stderr)
        return 2
    try:
        # Bound here, before anything is printed: the banner is only shown once bound, and a
        # taken port is one line, not uvicorn's log (port 0 is a free one, named in the banner).
        sock = listen_socket(config.host, config.port)
    except OSError as exc:
        where = f"[{config.host}]" if ":" in config.host else config.host
        reason = (exc.strerror or str(exc)).lower()
        print(f"mock-server: cannot listen on {where}:{config.port}: {reason}", file=sys.stderr)
        return 1
    config = replace(config, port=sock.getsockname()[1])
    raise_fd_limit()
    url = url_of(config.host, config.port)
    if config.workers > 1:
        return _serve_workers(config, sock, url)
    server = Server(uconfig, on_started=lambda: print(banner(config, url), flush=True), freeze_gc=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn stops gracefully on SIGINT, then raises it again for the default handler,
        # which is a traceback; Ctrl-C is how this server is meant to be stopped.
        pass
    return 0 if server.started else 1


def _serve_workers(config: ServerConfig, sock: Any, url: str) -> int:
    from ._workers import Workers

    workers = Workers(config, sock=sock)
    try:
        workers.start()
    except ConfigError as exc:
        print(f"mock-server: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"mock-server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return workers.supervise(on_started=lambda: print(banner(config, url), flush=True))


_ALL_INTERFACES = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
