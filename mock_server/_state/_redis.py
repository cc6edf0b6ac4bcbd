"""The API's state on Redis, shared by every process and machine pointed at it.

Keys (all under ``mock:``): ``p:{tenant}:{name}`` a profile (a small header of version,
timestamps and validators, then its JSON body), ``pn:{tenant}`` the sorted set of a tenant's
profile names (pages with ``ZRANGEBYLEX``), ``i:{tenant}:{sha256(key)}`` an idempotency record
(an empty value while its first request runs), ``tok:{sha256(token)}`` an OAuth token, ``rl:...``
a rate-limit bucket, ``use:{tenant}`` the usage counters.

Every operation is one Lua script, which also takes the request's rate-limit token when the
request's :class:`Ticket` is still pending: a profile read is one round trip, and a refused
request changes nothing. Buckets refill on Redis's clock (``TIME``), so they are exact across
processes and machines: never more than burst + rate × t. Usage counters are batched in
memory and written every half second and on shutdown.

Redis unreachable mid-run: the request is a 503 ``state_unavailable``; redis-py reconnects by
itself once Redis is back. Nothing acknowledged is lost: a write is acknowledged only once
Redis has it (its own persistence settings decide what survives a Redis restart).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from .._auth import Authenticator
from .._errors import ApiError
from .._prelude import CURRENT, Prelude
from .._ratelimit import RateLimiter, Verdict
from .._store import IdempotencyRecord, Profile
from .._traffic import Traffic
from .._untrusted import session_id
from ._base import (
    PENDING,
    ApiState,
    CopyStale,
    Keep,
    KeptBefore,
    Refused,
    Ticket,
    replayed_signature,
    state_unavailable,
)
from ._connect import shown
from ._embedded import check_if_match, not_found
from ._pipe import CommandPipe

PREFIX = "mock:"
# How long a claim on an idempotency key outlives a process killed while holding it.
_CLAIM_MS = 30_000
_POLL = 0.01
# Profiles kept decoded (the hot reads repeat); past this many the map starts again.
_DECODED = 1024

_BUCKET = """
local function bucket()
  local key = ARGV[1]
  if key == '' then return 1, '' end
  local burst = tonumber(ARGV[2])
  local rate = tonumber(ARGV[3])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local b = redis.call('HMGET', key, 't', 'u')
  local tokens = burst
  if b[1] then
    tokens = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate)
  end
  local allowed = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  end
  local shown = string.format('%.17g', tokens)
  redis.call('HSET', key, 't', shown, 'u', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
  return allowed, shown
end
-- A signed request's signature, remembered for every process: seen already, it is a replay.
local sig = ARGV[#ARGV - 1]
if sig ~= '' and not redis.call('SET', sig, 1, 'NX', 'EX', ARGV[#ARGV]) then return {-1, ''} end
local allowed, tokens = bucket()
if allowed == 0 then return {0, tokens} end
"""

_OPS = {
    "take": "return {1, tokens}",
    "get": "return {1, tokens, redis.call('GET', ARGV[4])}",
    "page": """
local names = redis.call('ZRANGEBYLEX', ARGV[4], ARGV[5], '+', 'LIMIT', 0, tonumber(ARGV[6]))
local values = {}
for i, name in ipairs(names) do values[i] = redis.call('GET', ARGV[7] .. name) end
return {1, tokens, names, values}
""",
    "create": """
if redis.call('EXISTS', ARGV[4]) == 1 then return {1, tokens, 0} end
redis.call('SET', ARGV[4], ARGV[7])
redis.call('ZADD', ARGV[5], 0, ARGV[6])
return {1, tokens, 1}
""",
    # A keyed create: the key's answer (or '' while held) if it has one, else the create and,
    # when it happened, its answer kept under the key: 2 and the answer, 0 taken, 1 done.
    "create_kept": """
local kept = redis.call('GET', ARGV[8])
if kept then return {1, tokens, 2, kept} end
if redis.call('EXISTS', ARGV[4]) == 1 then return {1, tokens, 0} end
redis.call('SET', ARGV[4], ARGV[7])
redis.call('ZADD', ARGV[5], 0, ARGV[6])
redis.call('SET', ARGV[8], ARGV[9], 'EX', ARGV[10])
return {1, tokens, 1}
""",
    # Compare-and-set on the version: 1 done, 0 gone, -1 and the current value: the version was
    # another (the process's copy was stale, or another wrote meanwhile).
    "replace": """
local current = redis.call('GET', ARGV[4])
if not current then return {1, tokens, 0} end
if string.match(current, '^(%d+)\\n') ~= ARGV[5] then return {1, tokens, -1, current} end
redis.call('SET', ARGV[4], ARGV[6])
return {1, tokens, 1}
""",
    "delete": """
local current = redis.call('GET', ARGV[4])
if not current then return {1, tokens, 0} end
if string.match(current, '^(%d+)\\n') ~= ARGV[5] then return {1, tokens, -1, current} end
redis.call('DEL', ARGV[4])
redis.call('ZREM', ARGV[6], ARGV[7])
return {1, tokens, 1}
""",
    "claim": """
local current = redis.call('GET', ARGV[4])
if current then return {1, tokens, current} end
redis.call('SET', ARGV[4], '', 'PX', ARGV[5])
return {1, tokens, false}
""",
    "usage": "return {1, tokens, redis.call('HGETALL', ARGV[4])}",
    # Keep a record unless the key has one or is held: false (kept), '' (held) or the record.
    "keep": """
local current = redis.call('GET', ARGV[4])
if current then return {1, tokens, current} end
if ARGV[7] ~= '' then
  -- The answer was made from a copy of this profile: kept only if it is still that version.
  local made = redis.call('GET', ARGV[7])
  if not made or string.match(made, '^(%d+)\\n') ~= ARGV[8] then return {1, tokens, false, made or ''} end
end
redis.call('SET', ARGV[4], ARGV[5], 'EX', ARGV[6])
return {1, tokens, false}
""",
    "release": """
if redis.call('GET', ARGV[4]) == '' then redis.call('DEL', ARGV[4]) end
return {1, tokens}
""",
}


# A request's fault arrival and its first operation, in one script (see mock_server._prelude):
# ARGV is the arrival's argument count, the arrival's arguments, then the operation's. The
# operation runs only when the arrival counted the request and no rule fired that must come
# before it (fired 1; 2 lets the API act at once). Replies {arrival's reply, 1, operation's
# reply} or {arrival's reply, 0}.
_WITH_ARRIVAL = """
local function arrive(ARGV)
@ARRIVE@
end
local function op(ARGV)
@OP@
end
local n = tonumber(ARGV[1])
local a, o = {}, {}
for i = 2, n + 1 do a[i - 1] = ARGV[i] end
for i = n + 2, #ARGV do o[i - n - 1] = ARGV[i] end
local r = arrive(a)
if r[1] ~= 'ok' then return {r, 0} end
for i = 4, #r, 2 do
  if r[i] == 1 then return {r, 0} end
end
return {r, 1, op(o)}
"""
# A plain command, for carrying an arrival with it.
_COMMAND = "return redis.call(unpack(ARGV))"


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


_SCRIPTS = {op: _Script(_BUCKET + text) for op, text in _OPS.items()}
_CMD = _Script(_COMMAND)
_NO_TICKET = ("", "", "")
_NO_SIGNATURE = ("", 0)


def _encode_profile(p: Profile) -> bytes:
    head = f"{p.version}\n{p.created_at!r}\n{p.updated_at!r}\n{p.etag}\n{p.last_modified}\n"
    return head.encode("latin-1") + p.body


def _decode_profile(tenant: str, name: str, raw: bytes) -> Profile:
    version, created, updated, etag, modified, body = raw.split(b"\n", 5)
    data = json.loads(body)
    return Profile(
        tenant,
        name,
        tuple(data["hrv_vector"]),
        data["metadata"],
        int(version),
        float(created),
        float(updated),
        body,
        etag.decode("latin-1"),
        modified.decode("latin-1"),
    )


def _encode_record(r: IdempotencyRecord) -> bytes:
    head = json.dumps([r.fingerprint, r.status, r.headers, r.created_at], separators=(",", ":"))
    return head.encode() + b"\n" + r.body


def _decode_record(raw: bytes) -> IdempotencyRecord:
    head, _, body = raw.partition(b"\n")
    fingerprint, status, headers, created_at = json.loads(head)
    return IdempotencyRecord(fingerprint, status, headers, body, created_at)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _session_key(session: str | None) -> str:
    """A bucket key's session part: the session as every per-session structure bounds it
    (so a reset names the same one), digested."""
    bounded = session_id(session)
    return "-" if bounded is None else _digest(bounded)[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RedisState(ApiState):
    """Profiles, idempotency records, tokens, buckets and usage counters on one Redis."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        auth: Authenticator,
        limiter: RateLimiter,
        traffic: Traffic,
        idempotency_ttl: float,
        token_ttl: int,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.wall = wall
        self._where = shown(url)
        self.auth = auth
        self.limiter = limiter
        self.traffic = traffic
        self._idempotency_ttl = max(1, int(idempotency_ttl))
        self._token_ttl = token_ttl
        self._redis: aioredis.Redis | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._pipe: CommandPipe | None = None
        self._decoded: dict[tuple[str, str, bytes], Profile] = {}
        # The latest version of each profile this process has read or written (bounded).
        self._latest: dict[tuple[str, str], Profile] = {}
        # Operations with a fault arrival before them, by operation and arrival script.
        self._with_arrivals: dict[tuple[str, str], _Script] = {}

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "RedisState.open() was not awaited"
        return self._redis

    async def open(self) -> None:
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            # One retry on a fresh connection: a pooled one may have died with a Redis restart.
            retry=Retry(NoBackoff(), 1),
        )
        try:
            for script in _SCRIPTS.values():
                await self.redis.script_load(script.text)
        except (RedisError, OSError) as exc:
            raise RuntimeError(f"--state {self._where}: cannot reach Redis there: {exc}") from None
        self._pipe = CommandPipe(self.redis.connection_pool)
        self._flusher = asyncio.create_task(self._flush_forever())

    async def cursor_key(self, proposed: bytes) -> bytes:
        # The first fake on this Redis sets it; every later one (any process, any machine) reads
        # it, so a cursor from one is good on every other.
        try:
            await self.redis.set(f"{PREFIX}cursor_key", proposed, nx=True)
            key = await self.redis.get(f"{PREFIX}cursor_key")
        except (RedisError, OSError) as exc:
            raise RuntimeError(f"--state {self._where}: cannot reach Redis there: {exc}") from None
        return (key if isinstance(key, bytes) else key.encode()) if key else proposed

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
        try:
            await self.flush()
        except ApiError:
            pass  # Redis gone at shutdown: nothing more can be done for the counters
        if self._pipe is not None:
            await self._pipe.close()
        if self._redis is not None:
            await self._redis.aclose()

    # -- plumbing ------------------------------------------------------------------------
    async def _run(self, op: str, ticket: Ticket | None, *args: str | bytes | int | float) -> Any:
        """Run ``op``'s script, taking the ticket's token first if it is still pending (and the
        request's fault arrival before that, if it has not been counted yet)."""
        pending = ticket is not None and ticket.verdict is None
        head: tuple[str | int | float, ...] = _NO_TICKET
        tail: tuple[str | int, ...] = _NO_SIGNATURE
        if pending:
            assert ticket is not None
            limit = ticket.limit
            session = _session_key(ticket.session)
            head = (f"{PREFIX}rl:{session}:{ticket.credential}", limit.burst, repr(limit.per_minute / 60.0))
            if ticket.signature is not None:
                tail = (f"{PREFIX}sig:{_digest(ticket.signature)}", ticket.signature_ttl)
        script = _SCRIPTS[op]
        argv = (*head, *args, *tail)
        prelude = CURRENT.get()
        result: Any = None
        done = False
        if prelude is not None:
            done, result = await self._with_arrival(prelude, script, argv)
        if not done:
            try:
                result = await self._eval(script, argv)
            except (RedisError, OSError) as exc:
                raise state_unavailable(self._where) from exc
        if pending:
            assert ticket is not None
            if result[0] == -1:
                ticket.replayed = True
                raise replayed_signature()
            verdict = self.limiter.verdict(result[0] == 1, float(result[1]), ticket.limit)
            ticket.verdict = verdict
            if not verdict.allowed:
                raise Refused(verdict)
        return result

    async def _eval(self, script: _Script, argv: tuple[Any, ...]) -> Any:
        pipe = self._pipe
        assert pipe is not None, "RedisState.open() was not awaited"
        try:
            return await pipe.call("EVALSHA", script.sha, 0, *argv)
        except NoScriptError:  # Redis restarted, or its script cache was flushed
            await pipe.call("SCRIPT", "LOAD", script.text)
            return await pipe.call("EVALSHA", script.sha, 0, *argv)

    async def _with_arrival(
        self, prelude: Prelude, script: _Script, argv: tuple[Any, ...]
    ) -> tuple[bool, Any]:
        """Run ``script`` with the request's fault arrival, if it is still to be sent: whether it
        ran, and its reply. Raises ``Preempted`` (nothing ran) when a fault rule fired."""
        arrival = prelude.take()
        if arrival is None:
            await prelude.wait()
            return False, None
        key = (script.sha, prelude.script)
        both = self._with_arrivals.get(key)
        try:
            if both is None:
                text = _WITH_ARRIVAL.replace("@ARRIVE@", prelude.script).replace("@OP@", script.text)
                both = self._with_arrivals[key] = _Script(text)
                pipe = self._pipe
                assert pipe is not None, "RedisState.open() was not awaited"
                # Its first use: loaded in the same write as the call (still one round trip).
                loaded = pipe.call("SCRIPT", "LOAD", both.text)
                try:
                    reply = await self._eval(both, (len(arrival), *arrival, *argv))
                finally:
                    await asyncio.wait([loaded])  # its outcome is the call's: never raised apart
            else:
                reply = await self._eval(both, (len(arrival), *arrival, *argv))
        except (RedisError, OSError) as exc:
            prelude.lost()
            raise state_unavailable(self._where) from exc
        if await prelude.settle(reply[0], reply[1] == 1):
            return True, reply[2]
        return False, None

    async def settle(self) -> None:
        prelude = CURRENT.get()
        if prelude is not None:
            await prelude.wait()

    async def _cmd(self, *args: Any) -> Any:
        """One plain command on the request path's connection; a 503 if Redis is away."""
        pipe = self._pipe
        assert pipe is not None, "RedisState.open() was not awaited"
        prelude = CURRENT.get()
        if prelude is not None:
            done, result = await self._with_arrival(prelude, _CMD, args)
            if done:
                return result
        try:
            return await pipe.call(*args)
        except (RedisError, OSError) as exc:
            raise state_unavailable(self._where) from exc

    # -- rate limits ---------------------------------------------------------------------
    async def admit(self, ticket: Ticket) -> Verdict:
        try:
            await self._run("take", ticket)
        except Refused as refused:
            return refused.verdict
        assert ticket.verdict is not None
        return ticket.verdict

    async def reset_limits(self, session: str | None) -> None:
        match = f"{PREFIX}rl:{'*' if session is None else _session_key(session)}:*"
        try:
            batch: list[Any] = []
            async for key in self.redis.scan_iter(match=match, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self.redis.delete(*batch)
                    batch = []
            if batch:
                await self.redis.delete(*batch)
        except (RedisError, OSError) as exc:
            raise state_unavailable(self._where) from exc

    # -- profiles ------------------------------------------------------------------------
    async def get_profile(self, tenant: str, name: str, ticket: Ticket | None) -> Profile | None:
        result = await self._run("get", ticket, f"{PREFIX}p:{tenant}:{name}")
        raw = result[2]
        if raw is None:
            return None
        # The stored bytes name one version of one profile: decoded once, then reused.
        key = (tenant, name, raw)
        profile = self._decoded.get(key)
        if profile is None:
            if len(self._decoded) >= _DECODED:
                self._decoded.clear()
            profile = self._decoded[key] = _decode_profile(tenant, name, raw)
        if self._latest.get((tenant, name)) is not profile:
            self._seen(profile)
        return profile

    async def page(
        self, tenant: str, after: str | None, limit: int, ticket: Ticket | None
    ) -> tuple[list[Profile], bool]:
        start = "-" if after is None else f"({after}"
        result = await self._run(
            "page", ticket, f"{PREFIX}pn:{tenant}", start, limit + 1, f"{PREFIX}p:{tenant}:"
        )
        names, values = result[2], result[3]
        profiles = [
            _decode_profile(tenant, n.decode(), v)
            for n, v in zip(names[:limit], values[:limit], strict=True)
            if v is not None
        ]
        return profiles, len(names) > limit

    async def create_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any],
        ticket: Ticket | None,
        keep: Keep | None = None,
    ) -> Profile:
        now = self.wall()
        profile = Profile(tenant, name, tuple(hrv), metadata, 1, now, now).sealed()
        args = (f"{PREFIX}p:{tenant}:{name}", f"{PREFIX}pn:{tenant}", name, _encode_profile(profile))
        if keep is None:
            result = await self._run("create", ticket, *args)
        else:
            record = _encode_record(keep.record_of(profile))
            kept_at = self._idem_key(tenant, keep.key)
            result = await self._run("create_kept", ticket, *args, kept_at, record, self._idempotency_ttl)
            if result[2] == 2:
                raise KeptBefore(_decode_record(result[3]) if result[3] else None)
        if result[2] == 0:
            raise ApiError(409, f"profile {name!r} already exists")
        return self._seen(profile)

    def _seen(self, profile: Profile) -> Profile:
        """Remember ``profile`` as the latest version this process has seen of it."""
        latest = self._latest
        if len(latest) >= _DECODED:
            latest.clear()
        latest[(profile.tenant, profile.name)] = profile
        return profile

    def copy_of(self, tenant: str, name: str) -> Profile | None:
        return self._latest.get((tenant, name))

    def _copy(self, tenant: str, name: str, if_match: str | None) -> Profile | None:
        """This process's copy of a profile, to write over in one round trip (a compare-and-set
        on its version); None when there is none, or when it fails ``If-Match`` (it may be
        stale: only the stored one can refuse the write)."""
        current = self._latest.get((tenant, name))
        if current is not None:
            try:
                check_if_match(if_match, current)
            except ApiError:
                return None
        return current

    async def update_profile(
        self,
        tenant: str,
        name: str,
        hrv: Sequence[float],
        metadata: dict[str, Any] | None,
        if_match: str | None,
        ticket: Ticket | None,
    ) -> Profile:
        # Over this process's copy when it has one: one round trip if the copy is current. The
        # script answers a stale copy with the stored value, which is checked and written over.
        key = f"{PREFIX}p:{tenant}:{name}"
        current = self._copy(tenant, name, if_match)
        while True:
            if current is None:
                current = await self.get_profile(tenant, name, ticket)
                if current is None:
                    raise not_found(name)
                check_if_match(if_match, current)
            profile = Profile(
                tenant,
                name,
                tuple(hrv),
                current.metadata if metadata is None else metadata,
                current.version + 1,
                current.created_at,
                max(self.wall(), current.updated_at),
            ).sealed()
            result = await self._run("replace", ticket, key, str(current.version), _encode_profile(profile))
            if result[2] == 1:
                return self._seen(profile)
            if result[2] == 0:
                self._latest.pop((tenant, name), None)
                raise not_found(name)
            current = self._seen(_decode_profile(tenant, name, result[3]))
            check_if_match(if_match, current)

    async def delete_profile(
        self, tenant: str, name: str, if_match: str | None, ticket: Ticket | None
    ) -> None:
        key = f"{PREFIX}p:{tenant}:{name}"
        current = self._copy(tenant, name, if_match)
        while True:
            if current is None:
                current = await self.get_profile(tenant, name, ticket)
                if current is None:
                    raise not_found(name)
                check_if_match(if_match, current)
            result = await self._run(
                "delete", ticket, key, str(current.version), f"{PREFIX}pn:{tenant}", name
            )
            if result[2] != -1:
                self._latest.pop((tenant, name), None)
                if result[2] == 0:
                    raise not_found(name)
                return
            current = self._seen(_decode_profile(tenant, name, result[3]))
            check_if_match(if_match, current)

    # -- idempotency ---------------------------------------------------------------------
    def _idem_key(self, tenant: str, key: str) -> str:
        return f"{PREFIX}i:{tenant}:{_digest(key)}"

    async def claim_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | object | None:
        result = await self._run("claim", ticket, self._idem_key(tenant, key), _CLAIM_MS)
        raw = result[2]
        if raw is None:
            return None
        if raw == b"":
            return PENDING
        return _decode_record(raw)

    async def keep_idempotency(
        self,
        tenant: str,
        key: str,
        record: IdempotencyRecord,
        ticket: Ticket | None,
        made_from: Profile | None = None,
    ) -> IdempotencyRecord | object | None:
        check: tuple[str, str] = ("", "")
        if made_from is not None:
            check = (f"{PREFIX}p:{made_from.tenant}:{made_from.name}", str(made_from.version))
        result = await self._run(
            "keep", ticket, self._idem_key(tenant, key), _encode_record(record), self._idempotency_ttl, *check
        )
        if len(result) > 3:
            assert made_from is not None
            # Stale: the stored version (or none) is this process's copy from now on.
            if result[3]:
                self._seen(_decode_profile(made_from.tenant, made_from.name, result[3]))
            else:
                self._latest.pop((made_from.tenant, made_from.name), None)
            raise CopyStale()
        raw = result[2]
        if raw is None:
            return None
        return PENDING if raw == b"" else _decode_record(raw)

    async def find_idempotency(
        self, tenant: str, key: str, ticket: Ticket | None
    ) -> IdempotencyRecord | None:
        raw = (await self._run("get", ticket, self._idem_key(tenant, key)))[2]
        return None if not raw else _decode_record(raw)

    async def wait_idempotency(self, tenant: str, key: str) -> None:
        await asyncio.sleep(_POLL)

    async def put_idempotency(self, tenant: str, key: str, record: IdempotencyRecord) -> None:
        await self._cmd(
            "SET", self._idem_key(tenant, key), _encode_record(record), "EX", self._idempotency_ttl
        )

    async def release_idempotency(self, tenant: str, key: str) -> None:
        await self._run("release", None, self._idem_key(tenant, key))

    # -- OAuth tokens --------------------------------------------------------------------
    async def issue_token(self, client_id: str, secret: str) -> tuple[str, int] | None:
        issued = self.auth.issue_token(client_id, secret)
        if issued is None:
            return None
        token, ttl = issued
        known = self.auth.issued(token)
        assert known is not None
        value = f"{known.tenant.name}\n{known.client_id}\n{known.expires_at!r}"
        await self._cmd("SET", f"{PREFIX}tok:{_digest(token)}", value, "EX", ttl)
        return issued

    async def resolve_token(self, token: str) -> None:
        if len(token) > 512:
            return
        raw = await self._cmd("GET", f"{PREFIX}tok:{_digest(token)}")
        if raw is None:
            return
        tenant, client_id, expires_at = _text(raw).split("\n")
        self.auth.learn_token(token, tenant, client_id, float(expires_at))

    # -- analytics -----------------------------------------------------------------------
    def record(self, tenant: str, endpoint: str, status: int, started: float, duration: float) -> None:
        self.traffic.record(tenant, endpoint, status, started, duration)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.flush()
            except ApiError:
                pass  # Redis away: the counters wait in memory for the next flush

    async def flush(self) -> None:
        rows = self.traffic.take_pending()
        if not rows:
            return
        pipe = self._pipe
        assert pipe is not None, "RedisState.open() was not awaited"
        try:
            # One write for them all: the calls of one tick go out together.
            await asyncio.gather(
                *(
                    pipe.call("HINCRBY", f"{PREFIX}use:{tenant}", f"{day}\n{endpoint}\n{status}", count)
                    for tenant, day, endpoint, status, count in rows
                )
            )
        except (RedisError, OSError) as exc:
            for tenant, day, endpoint, status, count in rows:
                self.traffic.pending[(tenant, day, endpoint, status)] += count
            raise state_unavailable(self._where) from exc

    async def usage(
        self, tenant: str, first_day: str, last_day: str, ticket: Ticket | None
    ) -> list[tuple[str, str, int, int]]:
        stored = (await self._run("usage", ticket, f"{PREFIX}use:{tenant}"))[2]
        # RESP2 answers a flat list of field, value; RESP3 a map.
        pairs = stored.items() if isinstance(stored, dict) else zip(stored[::2], stored[1::2], strict=True)
        rows: list[tuple[str, str, int, int]] = []
        for field, count in pairs:
            day, endpoint, status = _text(field).split("\n")
            if first_day <= day <= last_day:
                rows.append((day, endpoint, int(status), int(count)))
        return rows + self.traffic.pending_for(tenant, first_day, last_day)

    def performance(self, tenant: str, timeframe: str) -> dict[str, Any]:
        return self.traffic.performance(tenant, timeframe)
