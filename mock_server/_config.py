"""The fake's settings: one immutable value built from flags or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._tenants import DEFAULT_TENANTS, RateLimit, Tenant

DEFAULT_DB = Path(".mock_server") / "state.db"


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything that shapes one running fake.

    ``db`` is a path or ``":memory:"``. ``faults`` is a rule file and ``preset`` a named
    rule set (both may be given; the file's rules come first). ``seed`` overrides the
    fault file's seed. Durations are seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = str(DEFAULT_DB)
    tenants: tuple[Tenant, ...] = DEFAULT_TENANTS
    faults: str | None = None
    preset: str | None = None
    seed: int | None = None
    admin_token: str | None = field(default=None, repr=False)
    allow_fault_header: bool = False
    journal_size: int = 10_000
    cache_max_age: int = 30
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    token_ttl: int = 3600
    signature_window: int = 300
    idempotency_ttl: int = 24 * 3600
    max_body_bytes: int = 1024 * 1024
    #: The journal's memory budget: past it the oldest entries go, whatever ``journal_size`` says.
    journal_max_bytes: int = 256 * 1024 * 1024
    #: An ``X-Mock-Session`` idle this long is forgotten: its fault counters start again.
    session_ttl: float = 600.0
    #: Failed authentications per client address before it must wait (429); None: unlimited.
    auth_failure_limit: RateLimit | None = RateLimit(per_minute=60, burst=100)
    #: The key that signs page cursors; None: a random one per server, or with a shared ``state``
    #: the one kept there (the first fake's), so every fake on it accepts every other's cursors.
    cursor_key: bytes | None = field(default=None, repr=False)
    access_log: bool = False
    #: Request line and headers, in bytes, per request (nginx: 4 buffers of 8 KiB); over: 431.
    max_header_bytes: int = 32 * 1024
    #: The request line and each header line, in bytes; over: 414 (request line) or 431.
    max_header_line_bytes: int = 8 * 1024
    #: Seconds a request's headers may take to arrive whole (nginx client_header_timeout).
    header_timeout: float = 60.0
    #: Origins allowed to call the API from a browser: comma-separated, or ``*``; None: no CORS.
    cors: str | None = None
    #: The HTTP parser: ``httptools`` (in C), ``h11`` (pure Python), or ``auto``: httptools when
    #: installed. Faults and connection limits behave the same on both.
    http: Literal["auto", "httptools", "h11"] = "auto"
    #: The event loop: ``uvloop``, ``asyncio`` (the standard library's), or ``auto``: uvloop when
    #: installed.
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    #: Shared state: ``redis://HOST:PORT/DB``, ``rediss://...`` or ``unix:///PATH?db=N``; profiles,
    #: idempotency records, OAuth tokens, buckets and usage counters live there, so several
    #: processes or machines act as one fake. None: the embedded state (``db``).
    state: str | None = field(default=None, repr=False)
    #: Processes serving the one port. More than one needs a shared ``state`` (without one, the
    #: CLI starts a private redis-server).
    workers: int = 1
