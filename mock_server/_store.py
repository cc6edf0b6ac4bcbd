"""Durable state: profiles, idempotency records and usage counters in SQLite.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction is in the
WAL before the call returns, which survives the process being killed (``kill -9``);
only an OS crash could lose the last commits. Every statement runs on one dedicated
thread, so the event loop never waits on disk and the connection is never shared
between threads. Reads of profiles are served from a write-through mirror kept on the
loop: the hot path (GET of a profile) touches no lock, no thread and no disk.

Because of that mirror, one database file serves one fake at a time: a second fake on the
same file would never see the first one's writes. A :class:`Store` holds an exclusive lock
(``flock``) on ``<db>.lock`` beside the file from construction until :meth:`Store.close`;
the operating system drops it when the process ends, ``kill -9`` included.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import IO, Any, TypeVar

from .exceptions import ConfigError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    tenant TEXT NOT NULL, name TEXT NOT NULL, hrv TEXT NOT NULL, metadata TEXT NOT NULL,
    version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    headers TEXT NOT NULL, body BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL, day TEXT NOT NULL, endpoint TEXT NOT NULL, status INTEGER NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (tenant, day, endpoint, status)
);
"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Profile:
    """One stored profile, with its serialised body and validators computed once per write."""

    tenant: str
    name: str
    hrv_vector: tuple[float, ...]
    metadata: dict[str, Any]
    version: int
    created_at: float
    updated_at: float
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "profile_name": self.name,
            "hrv_vector": list(self.hrv_vector),
            "metadata": self.metadata,
            "version": self.version,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    def sealed(self) -> Profile:
        """This profile with its body, ETag and Last-Modified filled in."""
        body = json.dumps(self.as_json(), separators=(",", ":")).encode()
        digest = hashlib.sha256(body).hexdigest()[:16]
        return replace(
            self,
            body=body,
            etag=f'"{self.version}-{digest}"',
            last_modified=formatdate(self.updated_at, usegmt=True),
        )


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first response to a keyed POST, replayed for repeats with the same body."""

    fingerprint: str
    status: int
    headers: dict[str, str]
    body: bytes
    created_at: float


def _lock_db(path: str) -> IO[str] | None:
    """Take the exclusive lock of the database at ``path`` (None for an in-memory one).

    Raises ConfigError naming the file and the process holding it when another fake has it.
    The lock lives as long as the returned file stays open.
    """
    if path in (":memory:", ""):
        return None
    db = Path(path).resolve()  # one lock whatever path (relative, symlink) names the file
    lock_path = db.with_name(db.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--db {path}: cannot create its lock file {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        by = f" (pid {holder})" if holder.isdigit() else ""
        raise ConfigError(
            f"--db {path}: already in use by another mock-server{by}, which holds {lock_path};"
            " stop it, or give this one another --db (or :memory:)"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


class Store:
    """SQLite-backed state with an in-memory mirror of profiles for reads.

    Construction takes the database's lock (ConfigError if another fake holds it);
    :meth:`close` releases it.
    """

    def __init__(self, path: str, *, wall: Callable[[], float] = time.time) -> None:
        self._lock = _lock_db(path)
        self._path = path
        self._wall = wall
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mock-server-sqlite")
        self._conn: sqlite3.Connection | None = None
        self.write_lock = asyncio.Lock()
        # (tenant, name) -> Profile, and each tenant's names in sorted order for pagination.
        self.profiles: dict[tuple[str, str], Profile] = {}
        self.names: dict[str, list[str]] = {}

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        rows = await self._run(self._open_sync)
        for row in rows:
            self._mirror_put(row)

    async def close(self) -> None:
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def _open_sync(self) -> list[Profile]:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        self._conn = conn
        rows = conn.execute(
            "SELECT tenant, name, hrv, metadata, version, created_at, updated_at FROM profiles"
        ).fetchall()
        return [
            Profile(t, n, tuple(json.loads(h)), json.loads(m), v, c, u).sealed()
            for t, n, h, m, v, c, u in rows
        ]

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "Store.open() was not awaited"
        return self._conn

    # -- profiles ------------------------------------------------------------------------
    def get(self, tenant: str, name: str) -> Profile | None:
        return self.profiles.get((tenant, name))

    def page(self, tenant: str, after: str | None, limit: int) -> tuple[list[Profile], bool]:
        """Up to ``limit`` profiles after ``after`` in name order, and whether more exist."""
        names = self.names.get(tenant, [])
        start = 0 if after is None else bisect.bisect_right(names, after)
        chosen = names[start : start + limit]
        return [self.profiles[(tenant, n)] for n in chosen], start + limit < len(names)

    async def create(self, tenant: str, name: str, hrv: Sequence[float], metadata: dict[str, Any]) -> Profile:
        """Insert a profile; the caller holds ``write_lock`` and checked it is absent."""
        now = self._wall()
        profile = Profile(tenant, name, tuple(hrv), metadata, 1, now, now).sealed()
        await self._run(self._write_profile_sync, profile, True)
        self._mirror_put(profile)
        return profile

    async def update(self, current: Profile, hrv: Sequence[float], metadata: dict[str, Any]) -> Profile:
        """Replace a profile's content; the caller holds ``write_lock``."""
        profile = replace(
            current,
            hrv_vector=tuple(hrv),
            metadata=metadata,
            version=current.version + 1,
            updated_at=max(self._wall(), current.updated_at),
        ).sealed()
        await self._run(self._write_profile_sync, profile, False)
        self._mirror_put(profile)
        return profile

    async def delete(self, profile: Profile) -> None:
        """Remove a profile; the caller holds ``write_lock``."""
        await self._run(self._delete_sync, profile.tenant, profile.name)
        del self.profiles[(profile.tenant, profile.name)]
        names = self.names[profile.tenant]
        del names[bisect.bisect_left(names, profile.name)]

    def _write_profile_sync(self, p: Profile, insert: bool) -> None:
        verb = "INSERT" if insert else "REPLACE"
        self.conn.execute(
            f"{verb} INTO profiles (tenant, name, hrv, metadata, version, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                p.tenant,
                p.name,
                json.dumps(p.hrv_vector),
                json.dumps(p.metadata),
                p.version,
                p.created_at,
                p.updated_at,
            ),
        )

    def _delete_sync(self, tenant: str, name: str) -> None:
        self.conn.execute("DELETE FROM profiles WHERE tenant = ? AND name = ?", (tenant, name))

    def _mirror_put(self, profile: Profile) -> None:
        key = (profile.tenant, profile.name)
        if key not in self.profiles:
            bisect.insort(self.names.setdefault(profile.tenant, []), profile.name)
        self.profiles[key] = profile

    # -- idempotency ---------------------------------------------------------------------
    async def idempotency_get(self, tenant: str, key: str, ttl: float) -> IdempotencyRecord | None:
        return await self._run(self._idem_get_sync, tenant, key, self._wall() - ttl)

    async def idempotency_put(self, tenant: str, key: str, record: IdempotencyRecord) -> None:
        await self._run(self._idem_put_sync, tenant, key, record)

    def _idem_get_sync(self, tenant: str, key: str, oldest: float) -> IdempotencyRecord | None:
        row = self.conn.execute(
            "SELECT fingerprint, status, headers, body, created_at FROM idempotency"
            " WHERE tenant = ? AND key = ? AND created_at >= ?",
            (tenant, key, oldest),
        ).fetchone()
        if row is None:
            return None
        return IdempotencyRecord(row[0], row[1], json.loads(row[2]), bytes(row[3]), row[4])

    def _idem_put_sync(self, tenant: str, key: str, r: IdempotencyRecord) -> None:
        self.conn.execute(
            "REPLACE INTO idempotency (tenant, key, fingerprint, status, headers, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant, key, r.fingerprint, r.status, json.dumps(r.headers), r.body, r.created_at),
        )

    async def idempotency_purge(self, ttl: float) -> None:
        await self._run(self._purge_sync, self._wall() - ttl)

    def _purge_sync(self, oldest: float) -> None:
        self.conn.execute("DELETE FROM idempotency WHERE created_at < ?", (oldest,))

    # -- usage counters ------------------------------------------------------------------
    async def add_usage(self, rows: Iterable[tuple[str, str, str, int, int]]) -> None:
        await self._run(self._usage_sync, list(rows))

    def _usage_sync(self, rows: list[tuple[str, str, str, int, int]]) -> None:
        self.conn.executemany(
            "INSERT INTO usage (tenant, day, endpoint, status, count) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, day, endpoint, status) DO UPDATE SET count = count + excluded.count",
            rows,
        )

    async def usage(self, tenant: str, first_day: str, last_day: str) -> list[tuple[str, str, int, int]]:
        """Stored (day, endpoint, status, count) rows for one tenant, days inclusive."""
        return await self._run(self._usage_read_sync, tenant, first_day, last_day)

    def _usage_read_sync(self, tenant: str, first: str, last: str) -> list[tuple[str, str, int, int]]:
        return self.conn.execute(
            "SELECT day, endpoint, status, count FROM usage WHERE tenant = ? AND day BETWEEN ? AND ?",
            (tenant, first, last),
        ).fetchall()
