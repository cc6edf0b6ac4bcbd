"""Assembling and serving a proxy or a replay: the app in the fault layer, under uvicorn.

Both are served the way the fake is (``_server``: uvicorn on the fake's HTTP protocols, so resets
and truncation reach the socket), with one difference: uvicorn adds no ``Server`` or ``Date``
header of its own to a proxied answer, which carries the upstream's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from .._app import start_rules
from .._config import ServerConfig
from .._faults import FaultLayer
from .._ids import new_request_id
from .._server import BackgroundServer, _uvicorn
from .._tenants import RateLimit
from ..exceptions import ConfigError
from ._forward import Forwarder, error_response
from ._har import DEFAULT_BODY_LIMIT, HarError, HarRecorder
from ._limit import CredentialLimit
from ._replay import MATCH_MODES, Replay


@dataclass(frozen=True, kw_only=True)
class FrontConfig:
    """What a proxy and a replay share: where they listen, their faults, admin API and limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    faults: str | None = None
    preset: str | None = None
    seed: int | None = None
    admin_token: str | None = field(default=None, repr=False)
    allow_fault_header: bool = False
    #: ``PER_MINUTE[:BURST]`` per credential in front of the upstream; None: no limit.
    rate_limit: RateLimit | None = None
    journal_size: int = 10_000
    journal_max_bytes: int = 256 * 1024 * 1024
    session_ttl: float = 600.0
    max_body_bytes: int = 1024 * 1024
    access_log: bool = False
    header_timeout: float = 60.0
    http: Literal["auto", "httptools", "h11"] = "auto"
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            host=self.host,
            port=self.port,
            access_log=self.access_log,
            header_timeout=self.header_timeout,
            http=self.http,
            loop=self.loop,
        )


@dataclass(frozen=True, kw_only=True)
class ProxyConfig(FrontConfig):
    """A proxy in front of ``upstream``. ``timeout``: seconds the upstream may take to answer
    (then 504); ``record``: a HAR file to record to; ``preserve_host``: send the client's
    ``Host`` up instead of the upstream's."""

    upstream: str
    timeout: float = 30.0
    connect_timeout: float = 5.0
    preserve_host: bool = False
    record: str | None = None
    record_body_limit: int = DEFAULT_BODY_LIMIT


@dataclass(frozen=True, kw_only=True)
class ReplayConfig(FrontConfig):
    """A replay of the HAR file ``har``; ``match``: ``path`` (method, path, query) or ``exact``
    (the body too)."""

    har: str
    match: Literal["exact", "path"] = "path"


def _layer(app: ASGIApp, config: FrontConfig, limiter: CredentialLimit | None) -> FaultLayer:
    return FaultLayer(
        app,
        rules=start_rules(faults=config.faults, preset_name=config.preset),
        seed=config.seed,
        allow_fault_header=config.allow_fault_header,
        admin_token=config.admin_token,
        journal_size=config.journal_size,
        journal_max_bytes=config.journal_max_bytes,
        session_ttl=config.session_ttl,
        max_body_bytes=config.max_body_bytes,
        on_reset=limiter.limiter.reset if limiter is not None else None,
        rate_limit=config.rate_limit.per_minute if config.rate_limit is not None else 600,
        # /docs belongs to the upstream (or the recording): the layer must not answer it.
        docs=False,
    )


def _check(config: FrontConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port: must be 0..65535, got {config.port}")
    for name in ("journal_size", "journal_max_bytes", "max_body_bytes"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}: must be positive, got {getattr(config, name)}")


@dataclass
class Built:
    """A built proxy or replay: the app to serve, and its parts."""

    app: ASGIApp
    layer: FaultLayer
    forwarder: Forwarder | None = None
    recorder: HarRecorder | None = None
    replay: Replay | None = None


def build_proxy(config: ProxyConfig) -> Built:
    """The proxy's ASGI app; raises ConfigError naming a bad setting."""
    _check(config)
    for name in ("timeout", "connect_timeout"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name}: must be positive, got {getattr(config, name)}")
    if config.record_body_limit < 0:
        raise ConfigError(f"record_body_limit: must be 0 or more, got {config.record_body_limit}")
    recorder = None
    if config.record:
        try:
            recorder = HarRecorder(config.record, body_limit=config.record_body_limit)
        except HarError as exc:
            raise ConfigError(f"record: {exc}") from None
    try:
        forwarder = Forwarder(
            config.upstream,
            preserve_host=config.preserve_host,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            tap=recorder,
        )
    except ValueError as exc:
        if recorder is not None:
            recorder.close()
        raise ConfigError(str(exc)) from None
    inner: ASGIApp = forwarder
    limiter = CredentialLimit(forwarder, config.rate_limit) if config.rate_limit is not None else None
    if limiter is not None:
        inner = limiter
    layer = _layer(inner, config, limiter)
    return Built(app=layer, layer=layer, forwarder=forwarder, recorder=recorder)


def build_replay(config: ReplayConfig) -> Built:
    """The replay's ASGI app; raises ConfigError naming a bad setting or file."""
    _check(config)
    if config.match not in MATCH_MODES:
        raise ConfigError(f"match: must be one of {', '.join(MATCH_MODES)}, got {config.match!r}")
    try:
        replay = Replay(config.har, match=config.match)
    except HarError as exc:
        raise ConfigError(str(exc)) from None
    inner: ASGIApp = replay
    limiter = CredentialLimit(replay, config.rate_limit) if config.rate_limit is not None else None
    if limiter is not None:
        inner = limiter
    layer = _layer(inner, config, limiter)
    return Built(app=ReplayAdmin(layer, replay), layer=layer, replay=replay)


class ReplayAdmin:
    """``/__admin/replay`` (what is loaded) and ``POST /__admin/replay/reload`` (read the file
    again), in front of the fault layer, under the same access rules as the rest of /__admin:
    a caller the layer would refuse is handed to the layer, which refuses it."""

    def __init__(self, layer: FaultLayer, replay: Replay) -> None:
        self.layer = layer
        self.replay = replay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in ("/__admin/replay", "/__admin/replay/reload") or self.layer._admin_refusal(scope):
            await self.layer(scope, receive, send)
            return
        method = scope["method"]
        rid = new_request_id()
        if path == "/__admin/replay" and method == "GET":
            await _json(send, 200, self._info())
        elif path == "/__admin/replay/reload" and method == "POST":
            try:
                result = self.replay.reload()
            except HarError as exc:
                await _error(send, 422, "validation_error", f"the file was not reloaded: {exc}", rid)
                return
            await _json(send, 200, result)
        else:
            allowed = "GET" if path == "/__admin/replay" else "POST"
            await _error(send, 405, "method_not_allowed", f"{path} answers {allowed} only", rid)

    def _info(self) -> dict[str, Any]:
        replay = self.replay
        return {
            "file": str(replay.path),
            "match": replay.match,
            "entries": len(replay.entries),
            "recovered": replay.recovered,
            "requests": sorted({e.label for e in replay.entries})[:1000],
        }


async def _json(send: Send, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Send, status: int, code: str, message: str, rid: str) -> None:
    headers, body = error_response(status, code, message, rid)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def uvicorn_config(built: Built, config: FrontConfig) -> uvicorn.Config:
    uconfig = _uvicorn(built.app, config.server_config())
    if built.forwarder is not None:
        # The upstream's Server and Date pass through; uvicorn's own would repeat them.
        uconfig.server_header = False
        uconfig.date_header = False
    return uconfig


class FrontThread(BackgroundServer):
    """A proxy or replay on a free loopback port, served by uvicorn in a background thread (for
    tests and the pytest fixtures). Use as a context manager, or :meth:`start` and :meth:`stop`."""

    def __init__(self, config: ProxyConfig | ReplayConfig) -> None:
        self.config = config
        self.built = (
            build_proxy(self.config) if isinstance(self.config, ProxyConfig) else build_replay(self.config)
        )
        super().__init__(
            uvicorn_config(self.built, self.config),
            host=config.host,
            port=config.port,
            admin_token=config.admin_token,
            what="proxy" if isinstance(config, ProxyConfig) else "replay",
        )

    @property
    def layer(self) -> FaultLayer:
        return self.built.layer

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.built.recorder is not None:
            self.built.recorder.close()
