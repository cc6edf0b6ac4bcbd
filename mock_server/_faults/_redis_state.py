"""The fault state on Redis: several processes (or machines) acting as one fake.

:class:`RedisFaultState` has the interface of :class:`~._state.FaultState`; the fault layer uses
it when given one (``FaultLayer(app, state=RedisFaultState(client, ...))``, or
``FaultLayer(app, redis=client_or_url, ...)``, which builds it from the layer's own arguments).
What lives in Redis, under ``prefix`` (default ``mock:f:``):

``v``, ``epoch``, ``rules``
    The rules (JSON, with the seed, each rule's generation and the wall time it was added) and
    their version. Every change goes through a compare-and-set on ``v``; each process keeps a
    compiled copy and the arrival script refuses to count with a stale one. A change is announced
    on ``ev`` and answered only once every subscribed process has loaded it, so a rule changed
    through any process applies to the very next request, whichever process it reaches.
``c:{epoch}:{session}``, ``t:{epoch}``, ``z:{epoch}``
    Per-rule per-session counters (a hash per session, expiring after ``session_ttl`` idle), their
    totals over every session, and the sessions by last use (at most ``max_sessions``). A rule's
    counters are keyed by its id and generation, so replacing a rule starts them again; replacing
    every rule (or a reset) starts a new epoch.
``slot``, ``j``
    The journal: a capped stream of records (arrivals, completions, clears) that every process
    merges into its copy (:mod:`._mirror`). Each process numbers its requests itself (arrival
    time and its slot, see :meth:`RedisFaultState._local_seq`).
``m``, ``procs``
    Prometheus counters summed over processes (a hash), and each process's gauges.
``ev``
    A pub/sub channel: rule changes (each process reloads, then acknowledges) and resets (each
    releases its held requests).

On the request path, a request that no enabled rule of this process's copy matches makes no
round trip (the copy is current: see ``v``; a process that lost its subscription checks the
version on every request until it has subscribed and reloaded). Any other makes one: the arrival
script, which checks the rules' version and counts the request for every rule that matched it
here (stopping, as the one-process engine does, after the first terminal fault that fires). The
probability draws stay the pure counter-keyed BLAKE2b draws of ``_random``: the process sends
the outcomes for the next few counter values (a window around the value it last saw), and the
script asks again, writing nothing, when the real value falls outside it. So the same seed and
the same sequence of requests give the same schedule with one process or several. Arrivals that
meet in one turn of the event loop share a pipeline (one write and one read for all of them).
Journal records and metrics are written in batches a few milliseconds apart (one stream entry
per batch) and on close; a process's own requests are in its journal at once, the others' within
milliseconds.

Redis unreachable: a request a rule matches is a 503 ``state_unavailable`` (the layer answers
it; one that no rule matches goes on to the API, which answers 503 if it needs the state), and
an admin call too; records not yet written stay queued, and everything resumes when Redis is back. If
Redis came back empty, the first process to notice stores its copy of the rules again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from .._errors import ApiError
from .._prelude import Preempted, Prelude
from .._untrusted import session_id
from ._after import ALTERING
from ._engine import HEADER_RULE, Decision, HeaderSource
from ._errors import FaultConfigError
from ._journal import Journal
from ._metrics import Metrics
from ._mirror import MirrorJournal
from ._model import Fault, Rule, RuleSet
from ._parse import parse_rule
from ._random import draws
from ._state import FaultState, OnReset, RuleExists, StateUnavailable

T = TypeVar("T")
#: Refills the shared rate-limit buckets (every one, or a session's) for an admin reset.
SharedReset = Callable[[str | None], Awaitable[None]]

#: How far ahead of the last counter value it saw a process sends probability outcomes, beyond
#: one per request of its own already on the way for the same rule and session.
_WINDOW = 2
#: Journal numbers: 10 µs steps since 2026-01-01 UTC, times this many process slots (under 2**53,
#: which JavaScript numbers hold exactly, until the 2070s).
_SEQ_EPOCH = 1_767_225_600.0
_SLOTS = 64
#: How long a rule change waits for every other process to load it.
_ANNOUNCE_S = 2.0
_MAX_OUTCOMES = 100_000
_MAX_ATTEMPTS = 8

# ARGV: prefix, version, epoch, session tag ('-' none, else 's' + session), now_ms, ttl_ms,
# max_sessions, mode ('r' rules, 'h' X-Mock-Fault), candidate count, then 7 per candidate: rule
# key, after, every_nth (0: none), times (-1: none), plan, window base (-1: no probability), window.
# plan: 'l' (latency), 't' (a fault in the API's place) or 'a' (a fault the API acts before: see
# _step), or 's' then one of '-', 'l', 't', 'a' per sequence step. Returns {'stale', version} |
# {'miss', candidate, matched} | {'ok', 0, n1, fired1, n2, ...}, fired 0 (no), 1 (yes) or 2 (yes,
# and the API may act at once) (the 'h' mode: {'ok', 0, n}).
_ARRIVE = """
local p = ARGV[1]
local v = redis.call('GET', p .. 'v')
if v ~= ARGV[2] then return {'stale', v or ''} end
local epoch = ARGV[3]
local session = ARGV[4]
local anon = session == '-'
local skey = p .. 'c:' .. epoch .. ':' .. session
local function touch()
  if anon then return end
  redis.call('PEXPIRE', skey, ARGV[6])
  local zk = p .. 'z:' .. epoch
  redis.call('ZADD', zk, ARGV[5], session)
  local extra = redis.call('ZCARD', zk) - tonumber(ARGV[7])
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', zk, 0, extra - 1)) do
      redis.call('DEL', p .. 'c:' .. epoch .. ':' .. old)
    end
    redis.call('ZREMRANGEBYRANK', zk, 0, extra - 1)
  end
end
if ARGV[8] == 'h' then
  local n = redis.call('HINCRBY', skey, 'h', 1)
  touch()
  return {'ok', 0, n}
end
local out = {'ok', 0}
local walked = {}
local i = 10
for c = 1, tonumber(ARGV[9]) do
  local rk, after, every, times = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local plan, base, window = ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6]
  i = i + 7
  local got = redis.call('HMGET', skey, 'm' .. rk, 'f' .. rk)
  local m = tonumber(got[1] or '0')
  local f = tonumber(got[2] or '0')
  local n = m + 1
  local k = n - after
  local ch = '-'
  if k > 0 then
    if string.sub(plan, 1, 1) == 's' then
      if k + 1 <= string.len(plan) then ch = string.sub(plan, k + 1, k + 1) end
    elseif every == 0 or k % every == 0 then
      ch = plan
    end
  end
  if ch ~= '-' and base >= 0 then
    local j = n - base
    if j < 1 or j > string.len(window) then return {'miss', c, m} end
    if string.sub(window, j, j) ~= '1' then ch = '-' end
  end
  if ch ~= '-' and times >= 0 and f >= times then ch = '-' end
  walked[#walked + 1] = {rk, ch ~= '-'}
  out[#out + 1] = n
  if ch == '-' then out[#out + 1] = 0 elseif ch == 'a' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  if ch == 't' or ch == 'a' then break end
end
local tkey = p .. 't:' .. epoch
for _, w in ipairs(walked) do
  redis.call('HINCRBY', skey, 'm' .. w[1], 1)
  redis.call('HINCRBY', tkey, 'm' .. w[1], 1)
  if w[2] then
    redis.call('HINCRBY', skey, 'f' .. w[1], 1)
    redis.call('HINCRBY', tkey, 'f' .. w[1], 1)
  end
end
if #walked > 0 then touch() end
return out
"""

# ARGV: prefix, rules JSON, epoch, first version. Stores the rules unless some are
# stored already (a first start, or Redis came back empty); returns {version, rules JSON}. The
# first version is random: a process that saw the rules before Redis lost them must not take
# the new ones for those it has.
_INIT = """
local p = ARGV[1]
if not redis.call('GET', p .. 'v') then
  redis.call('SET', p .. 'rules', ARGV[2])
  redis.call('SET', p .. 'epoch', ARGV[3])
  redis.call('SET', p .. 'v', ARGV[4])
end
return {redis.call('GET', p .. 'v'), redis.call('GET', p .. 'rules')}
"""

# ARGV: prefix, expected version, rules JSON, old epoch, new epoch, then totals fields to drop.
# Returns the new version, or 0 when the version moved on (the caller reloads and tries again).
_SET_RULES = """
local p = ARGV[1]
if (redis.call('GET', p .. 'v') or '') ~= ARGV[2] then return 0 end
redis.call('SET', p .. 'rules', ARGV[3])
local old, new = ARGV[4], ARGV[5]
if old ~= new then
  local zk = p .. 'z:' .. old
  for _, s in ipairs(redis.call('ZRANGE', zk, 0, -1)) do
    redis.call('DEL', p .. 'c:' .. old .. ':' .. s)
  end
  redis.call('DEL', zk, p .. 't:' .. old, p .. 'c:' .. old .. ':-')
  redis.call('SET', p .. 'epoch', new)
else
  for i = 6, #ARGV do redis.call('HDEL', p .. 't:' .. old, ARGV[i]) end
end
return redis.call('INCR', p .. 'v')
"""

# ARGV: prefix, epoch, session tag. One session's counters start again; totals lose them.
_RESET_SESSION = """
local p, epoch, session = ARGV[1], ARGV[2], ARGV[3]
local skey = p .. 'c:' .. epoch .. ':' .. session
local tkey = p .. 't:' .. epoch
local h = redis.call('HGETALL', skey)
for i = 1, #h, 2 do
  if h[i] ~= 'h' then redis.call('HINCRBY', tkey, h[i], -tonumber(h[i + 1])) end
end
redis.call('DEL', skey)
if session ~= '-' then redis.call('ZREM', p .. 'z:' .. epoch, session) end
return 1
"""

# ARGV: prefix, origin, stream cap, session JSON (null: all), mark. Adds a clear record marked
# with the sequence number of the clear's own time (a clear of everything trims the stream to it).
_CLEAR = """
local p = ARGV[1]
local mark = ARGV[5]
local record = '["x",' .. ARGV[4] .. ',' .. mark .. ']'
local id = redis.call('XADD', p .. 'j', 'MAXLEN', '~', ARGV[3], '*', 'o', ARGV[2], 'r', record)
if ARGV[4] == 'null' then redis.call('XTRIM', p .. 'j', 'MINID', id) end
return mark
"""

_SCRIPTS = {
    "arrive": _ARRIVE,
    "init": _INIT,
    "set_rules": _SET_RULES,
    "reset_session": _RESET_SESSION,
    "clear": _CLEAR,
}


class _NoRule(Exception):
    """A change to a rule that is not there: nothing is written."""


def _plan(rule: Rule) -> str:
    if rule.sequence is not None:
        return "s" + "".join("-" if f is None else _step(rule, f) for f in rule.sequence)
    return "l" if rule.fault is None else _step(rule, rule.fault)


def _step(rule: Rule, fault: Fault) -> str:
    """How the arrival script sees ``fault``: ``l`` a delay (it comes before the API), ``t`` a
    fault that answers in the API's place, ``a`` one that lets the API act at once, alone among
    the rules that fired (its rule says ``when: after``, or it alters the API's answer and has no
    delay of its own): the operation carried with the arrival may run then (``_after``)."""
    if not fault.terminal:
        return "l"
    if fault.type in ALTERING:
        return "a" if fault.latency is None else "t"
    return "a" if rule.when == "after" else "t"


def _fault_at(rule: Rule, n: int) -> Fault | None:
    """The fault a rule that fired gives its ``n``-th request (the counter-keyed part only)."""
    if rule.sequence is not None:
        k = n - rule.after
        return rule.sequence[k - 1] if 0 < k <= len(rule.sequence) else None
    return rule.fault


def _id_text(sid: tuple[int, int]) -> str:
    return f"{sid[0]}-{sid[1]}"


def _tag(session: str | None) -> str:
    """How Redis keys name a session: ``-`` for requests without one."""
    return "-" if session is None else "s" + session


def _stream_id(raw: Any) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _Outcomes:
    """What a process knows of one rule's counter in one session: the last value it saw, its own
    requests on their way, and the probability outcomes of the values from there (each drawn
    once: ``bits[i]`` is for the value ``start + 1 + i``)."""

    __slots__ = ("seen", "flying", "start", "bits", "seed")

    def __init__(self) -> None:
        self.seen = 0
        self.flying = 0
        self.start = 0
        self.bits = ""
        self.seed: int | None = None

    def window(self, seed: int, rule: Rule, session: str | None, width: int) -> str:
        """Whether the draw lets the rule fire, for the ``width`` values after ``seen``."""
        base = self.seen
        if seed != self.seed or not self.start <= base <= self.start + len(self.bits):
            self.seed, self.start, self.bits = seed, base, ""
        elif base > self.start:
            self.bits = self.bits[base - self.start :]
            self.start = base
        missing = width - len(self.bits)
        if missing > 0:
            first = self.start + len(self.bits) + 1
            p = rule.probability
            self.bits += "".join(
                "1" if draws(seed, rule.id, session, n, "p")[0] < p else "0"
                for n in range(first, first + missing)
            )
        return self.bits[:width]


def _acts(result: Any) -> bool:
    """Whether an arrival script's reply lets the API act at once: the one rule that fired says
    so (fired 2, see :func:`_step`)."""
    if result[0] != b"ok":
        return False
    fired = [int(f) for f in result[3::2] if int(f)]
    return bool(fired) and all(f == 2 for f in fired)


class _Attempt:
    """One try at counting an arriving request: the arrival script's arguments, built from
    this process's copy of the rules. Building it reserves probability outcomes for the request
    (see :class:`_Outcomes`); :meth:`landed` gives them back once the reply is in."""

    __slots__ = (
        "state",
        "request",
        "number",
        "sess",
        "args",
        "candidates",
        "flying",
        "header_fault",
        "session",
    )

    def __init__(
        self,
        state: RedisFaultState,
        method: str,
        path: str,
        tenant: str | None,
        session: str | None,
        headers: HeaderSource,
        header_fault: Fault | None,
        number: int = 0,
    ) -> None:
        if number >= _MAX_ATTEMPTS:
            raise StateUnavailable(
                state.where, "kept moving the fault counters under this process; retry shortly"
            )
        self.state = state
        self.request = (method, path, tenant, session, headers)
        self.header_fault = header_fault
        self.session = session
        self.number = number
        self.sess = sess = _tag(session)
        args: list[str | int | float] = [
            state._version,
            state._epoch,
            sess,
            int(state.wall() * 1000),
            max(1, int(state.session_ttl * 1000)),
            state.max_sessions,
        ]
        candidates: list[tuple[Rule, str]] = []
        flying: list[_Outcomes] = []
        if header_fault is not None:
            args += ["h", 0]
        else:
            gens = state._gens
            for rule in state.engine.matching(method, path, tenant, session, headers):
                candidates.append((rule, f"{rule.id}#{gens.get(rule.id, 0)}"))
            args += ["r", len(candidates)]
            for rule, key in candidates:
                args += [key, rule.after, rule.every_nth or 0, -1 if rule.times is None else rule.times]
                args.append(_plan(rule))
                if rule.probability < 1.0:
                    outcomes = state._outcomes_of(key, sess)
                    # Requests of this process on their way for the same counter may take the
                    # next values first: the window reaches past them.
                    width = (_WINDOW + outcomes.flying) << number
                    args += [outcomes.seen, outcomes.window(state.seed, rule, session, width)]
                    outcomes.flying += 1
                    flying.append(outcomes)
                else:
                    args += [-1, ""]
        self.args = args
        self.candidates = candidates
        self.flying = flying

    def landed(self) -> None:
        for outcomes in self.flying:
            outcomes.flying -= 1
        self.flying = []

    def next(self) -> _Attempt:
        method, path, tenant, session, headers = self.request
        return _Attempt(
            self.state, method, path, tenant, session, headers, self.header_fault, self.number + 1
        )


class _Arrival(Prelude):
    """A request's arrival, carried by the API's first round trip (see :mod:`mock_server._prelude`).

    Settled once: with a decision (:class:`Preempted` carries it when a rule fired), or as
    unavailable when Redis could not count it, which preempts the API too (``Preempted`` with
    no decision and the reason in ``unavailable``): a request a rule may match is a 503
    ``state_unavailable`` then, as it is without the prelude. Only when the round trip that
    carried it with an operation was lost (:meth:`lost`) does the request go on: the API
    answers its own 503 for that operation.
    """

    __slots__ = ("_attempt", "_decided", "_sent", "_done", "_decision", "_unavailable", "_blocks")

    script = _ARRIVE

    def __init__(self, attempt: _Attempt, decided: Callable[[Decision | None], None]) -> None:
        self._attempt = attempt
        self._decided = decided
        self._sent = False
        self._done: asyncio.Future[None] | None = None
        self._decision: Decision | None = None
        self._unavailable: str | None = None
        # Whether the decision stops the API (a fault in its place, or a delay before it).
        self._blocks = False

    def take(self) -> list[str | int | float] | None:
        if self._sent:
            return None
        self._sent = True
        return [self._attempt.state.prefix, *self._attempt.args]

    async def settle(self, reply: Any, ran: bool) -> bool:
        attempt = self._attempt
        attempt.landed()
        state = attempt.state
        try:
            counted, decided = await state._conclude(attempt, reply)
            if not counted:
                decided, ran = await state._count(attempt.next()), False
        except StateUnavailable as exc:
            self._finish(None, str(exc))
        self._finish(decided, blocks=not ran and not _acts(reply))
        return ran

    def lost(self) -> None:
        self._attempt.landed()
        self._finish(None)

    async def wait(self) -> None:
        if not self._sent:
            self._sent = True
            try:
                decided, acts = await self._attempt.state._count_acts(self._attempt)
            except StateUnavailable as exc:
                self._finish(None, str(exc))
            self._finish(decided, blocks=not acts)
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        if not self._done.done():
            await asyncio.shield(self._done)
        self._raise()

    def _finish(
        self, decision: Decision | None, unavailable: str | None = None, *, blocks: bool = True
    ) -> None:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        if not self._done.done():
            self._decision, self._unavailable = decision, unavailable
            self._blocks = decision is not None and blocks
            self._done.set_result(None)
            self._decided(decision)
        self._raise()

    def _raise(self) -> None:
        if self._blocks or self._unavailable is not None:
            raise Preempted(self._decision, self._unavailable)


class RedisFaultState(FaultState):
    """The fault state shared through Redis by every process pointed at the same ``prefix``.

    ``redis`` is a ``redis.asyncio.Redis`` client or a ``redis://``, ``rediss://`` or ``unix://``
    URL (then the state owns the client it makes and closes it). The other arguments are
    :class:`FaultState`'s, but ``on_reset`` runs only in the process that got the reset (the
    others release their held requests); ``on_reset_shared``, when given, replaces it and is
    awaited before the reset answers (the shared rate-limit buckets, refilled once).
    ``max_sessions`` bounds the sessions with counters, ``flush_s`` is how
    long journal records and metrics gather before they are written. :meth:`start` (called by the
    layer at lifespan start-up, or on the first request) connects and loads; :meth:`close` writes
    what is queued.
    """

    shared = True

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str = "mock:f:",
        rules: RuleSet | None = None,
        seed: int | None = None,
        journal_size: int = 10_000,
        journal_max_bytes: int = 256 * 1024 * 1024,
        session_ttl: float = 600.0,
        max_sessions: int = 100_000,
        on_reset: OnReset | None = None,
        on_reset_shared: SharedReset | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        flush_s: float = 0.005,
    ) -> None:
        self.wall = wall
        self._clock = clock
        self._reset_shared = on_reset_shared
        super().__init__(
            rules=rules,
            seed=seed,
            journal_size=journal_size,
            journal_max_bytes=journal_max_bytes,
            session_ttl=session_ttl,
            on_reset=on_reset,
            clock=clock,
        )
        if isinstance(redis, str):
            self._url: str | None = redis
            self._client: aioredis.Redis | None = None
            self.where = _shown(redis)
        else:
            self._url = None
            self._client = redis
            self.where = "the given Redis client"
        self.prefix = prefix
        self.origin = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions
        self.flush_s = flush_s
        # Records the stream keeps (about: it is trimmed by entries, each a batch of records).
        self._stream_cap = 2 * journal_size + 1000
        self._batch = 1.0
        self._version = ""
        # Whether this process may have missed a rule change (not subscribed, or a change
        # announced and not loaded yet): then every request checks the version in Redis.
        self._stale = True
        self._subscribed = False
        #: How long a rule change waits for every other process to load it.
        self.announce_s = _ANNOUNCE_S
        self._slot = 0
        self._seq_last = 0
        self._epoch = 0
        self._entries: list[tuple[Rule, int, float]] = []
        self._gens: dict[str, int] = {}
        self._outcomes: dict[tuple[str, str], _Outcomes] = {}
        self._last_id = (0, 0)
        self._shas: dict[str, str] = {}
        self._started = False
        self._closing = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[None]] = set()
        # Arrival script calls on their way to Redis.
        self._out = 0
        self._pubsub: Any = None
        self._wake = asyncio.Event()
        self._replies = itertools.count(1)
        self._arrivals: list[tuple[list[str | int | float], asyncio.Future[Any]]] = []
        assert isinstance(self.journal, MirrorJournal)
        self.mirror: MirrorJournal = self.journal
        self.mirror.wake = self._wake.set

    def _new_journal(self, size: int, max_bytes: int) -> Journal:
        return MirrorJournal(size, max_bytes=max_bytes, clock=self._clock, wall=self.wall)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            assert self._url is not None
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                # One retry on a fresh connection: a pooled one may have died with a Redis restart.
                retry=Retry(NoBackoff(), 1),
            )
        return self._client

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except (RedisError, OSError) as exc:
            raise StateUnavailable(self.where) from exc

    async def _script(self, name: str, *args: str | int | float) -> Any:
        try:
            try:
                return await self._evalsha(name, args)
            except RedisConnectionError:
                # A pooled connection to a Redis that restarted fails once, when read: the
                # command never reached the new server. Once more, on a fresh connection.
                return await self._evalsha(name, args)
        except (RedisError, OSError) as exc:
            raise StateUnavailable(self.where) from exc

    async def _evalsha(self, name: str, args: tuple[str | int | float, ...]) -> Any:
        client = self.client
        sha = self._shas.get(name)
        if sha is None:
            sha = self._shas[name] = await client.script_load(_SCRIPTS[name])
        try:
            return await client.evalsha(sha, 0, self.prefix, *args)
        except NoScriptError:  # Redis restarted, or its script cache was flushed
            self._shas[name] = sha = await client.script_load(_SCRIPTS[name])
            return await client.evalsha(sha, 0, self.prefix, *args)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            # Subscribed before the rules are loaded: no change announced in between is missed.
            self._pubsub = self.client.pubsub()
            await self._call(self._pubsub.subscribe(self.prefix + "ev"))
            self._slot = (int(await self._call(self.client.incr(self.prefix + "slot"))) - 1) % _SLOTS
            await self._init_rules()
            await self._load_journal()
            self._stale, self._subscribed = False, True
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._flush_forever()),
                loop.create_task(self._tail_forever()),
                loop.create_task(self._listen_forever()),
            ]
            # Should the listener ever end, announced changes go unheard: check every request.
            self._tasks[-1].add_done_callback(self._deaf)
            self._started = True

    def _deaf(self, task: asyncio.Task[None]) -> None:
        self._stale, self._subscribed = True, False

    async def close(self) -> None:
        """Stop the background tasks and write what is queued (if Redis is there)."""
        tasks, self._tasks = self._tasks, []
        # redis-py may turn a cancellation into a connection error: the loops check the flag too.
        self._closing = True
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._closing = False
        if self._started:
            try:
                await self.flush()
            except StateUnavailable:
                pass
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
            self._pubsub = None
        self._started = False
        if self._url is not None and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- rules ----------------------------------------------------------------------------------

    def _rules_json(self, entries: Iterable[tuple[Rule, int, float]], seed: int, epoch: int) -> str:
        return json.dumps(
            {"seed": seed, "epoch": epoch, "rules": [[r.to_dict(), gen, added] for r, gen, added in entries]},
            separators=(",", ":"),
        )

    def _adopt(self, version: Any, raw: Any) -> None:
        try:
            data = json.loads(raw)
            entries = [(parse_rule(d), int(gen), float(added)) for d, gen, added in data["rules"]]
            seed, epoch = int(data["seed"]), int(data["epoch"])
        except (ValueError, TypeError, KeyError, FaultConfigError) as exc:
            # Another program (or another version of the fake) under the same prefix.
            why = f"holds rules that are not this fake's at {self.prefix}rules ({exc})"
            raise StateUnavailable(self.where, why) from None
        now, wall = self._clock(), self.wall()
        self.engine.load((rule, now - max(0.0, wall - added)) for rule, _, added in entries)
        self.engine.seed = seed
        self._entries = entries
        self._gens = {r.id: gen for r, gen, _ in entries}
        self._epoch = epoch
        self._version = version.decode() if isinstance(version, bytes) else str(version)

    async def _init_rules(self) -> None:
        """Store this process's rules unless some are stored, then adopt what is stored."""
        if self._version:
            # Redis came back empty: what this process last saw is the best copy there is.
            entries, seed, epoch = self._entries, self.seed, self._epoch + 1
        else:
            wall = self.wall()
            entries = [(r, 0, wall) for r in self.initial_rules.rules]
            seed, epoch = self.seed, 1
        first = int.from_bytes(os.urandom(5), "big") + 1
        version, raw = await self._script("init", self._rules_json(entries, seed, epoch), epoch, first)
        self._adopt(version, raw)

    async def _load_rules(self) -> None:
        version, raw = await self._call(self.client.mget(self.prefix + "v", self.prefix + "rules"))
        if version is None or raw is None:
            await self._init_rules()
        else:
            self._adopt(version, raw)

    async def _change(
        self,
        change: Callable[
            [list[tuple[Rule, int, float]], int], tuple[list[tuple[Rule, int, float]], int, bool]
        ],
    ) -> None:
        """Apply ``change`` (current entries and seed → new entries, seed, whether a new epoch)
        with a compare-and-set, reloading and trying again when another process got there first."""
        for _ in range(50):
            await self._load_rules()
            entries, seed, new_epoch = change(list(self._entries), self.seed)
            epoch = self._epoch + 1 if new_epoch else self._epoch
            kept = {(r.id, gen) for r, gen, _ in entries}
            dropped = [
                f"{x}{r.id}#{gen}" for r, gen, _ in self._entries if (r.id, gen) not in kept for x in "mf"
            ]
            version = await self._script(
                "set_rules",
                self._version,
                self._rules_json(entries, seed, epoch),
                self._epoch,
                epoch,
                *dropped,
            )
            if version:
                self._adopt(version, self._rules_json(entries, seed, epoch))
                await self._announce()
                return
        raise StateUnavailable(self.where, "kept changing the rules under this process; retry shortly")

    async def _announce(self) -> None:
        """Tell every other process the rules changed, and wait until each has loaded them: a
        process sends a request that no rule of its copy matches to no one (no round trip), so
        the change must be there before the admin call answers. A process that does not answer
        within the timeout (stopped?) checks the version on every request from the moment it
        reads the message, or finds its subscription lost."""
        await self._broadcast({"op": "rules", "version": self._version}, timeout=self.announce_s)

    def _next_gen(self) -> int:
        return int(self._version or 0) + 1

    async def sync(self) -> None:
        await self.start()
        await self._load_rules()
        await self._catch_up()

    async def stats(self) -> dict[str, dict[str, int]]:
        await self.start()
        totals: Any = await self._call(self.client.hgetall(f"{self.prefix}t:{self._epoch}"))
        got = {k.decode(): int(v) for k, v in totals.items()}
        return {
            r.id: {"matched": got.get(f"m{r.id}#{gen}", 0), "fired": got.get(f"f{r.id}#{gen}", 0)}
            for r, gen, _ in self._entries
        }

    async def add_rules(self, rules: Iterable[Rule]) -> None:
        new = list(rules)
        await self.start()

        def change(entries: list[tuple[Rule, int, float]], seed: int) -> tuple[Any, int, bool]:
            taken = {r.id for r, _, _ in entries}
            for rule in new:
                if rule.id in taken:
                    raise RuleExists(rule.id)
                taken.add(rule.id)
            wall, gen = self.wall(), self._next_gen()
            return entries + [(r, gen, wall) for r in new], seed, False

        await self._change(change)

    async def put_rule(self, rule: Rule) -> bool:
        await self.start()
        existed = False

        def change(entries: list[tuple[Rule, int, float]], seed: int) -> tuple[Any, int, bool]:
            nonlocal existed
            fresh = (rule, self._next_gen(), self.wall())
            existed = any(r.id == rule.id for r, _, _ in entries)
            if existed:
                return [fresh if r.id == rule.id else (r, g, a) for r, g, a in entries], seed, False
            return entries + [fresh], seed, False

        await self._change(change)
        return existed

    async def delete_rule(self, rule_id: str) -> bool:
        await self.start()
        existed = False

        def change(entries: list[tuple[Rule, int, float]], seed: int) -> tuple[Any, int, bool]:
            nonlocal existed
            existed = any(r.id == rule_id for r, _, _ in entries)
            return [e for e in entries if e[0].id != rule_id], seed, False

        await self._change(change)
        return existed

    async def set_enabled(self, rule_id: str, enabled: bool) -> Rule | None:
        await self.start()
        found: Rule | None = None

        def change(entries: list[tuple[Rule, int, float]], seed: int) -> tuple[Any, int, bool]:
            nonlocal found
            found = None
            if not any(r.id == rule_id for r, _, _ in entries):
                raise _NoRule
            out = []
            for rule, gen, added in entries:
                if rule.id == rule_id:
                    # The same generation and origin: its counters (keyed by id and generation)
                    # and its window carry on; the new version makes every process reload.
                    rule = found = replace(rule, enabled=enabled)
                out.append((rule, gen, added))
            return out, seed, False

        try:
            await self._change(change)
        except _NoRule:
            return None
        return found

    async def replace_rules(self, rules: Iterable[Rule], seed: int | None = None) -> None:
        new = list(rules)
        await self.start()

        def change(entries: list[tuple[Rule, int, float]], current: int) -> tuple[Any, int, bool]:
            wall, gen = self.wall(), self._next_gen()
            return [(r, gen, wall) for r in new], current if seed is None else seed, True

        await self._change(change)

    async def reset_rules(self) -> None:
        await self.replace_rules(self.initial_rules.rules)

    # -- the request path -----------------------------------------------------------------------

    async def arrive(
        self,
        method: str,
        path: str,
        tenant: str | None,
        session: str | None,
        headers: HeaderSource,
        header_fault: Fault | None = None,
    ) -> tuple[Decision | None, int]:
        """Count an arriving request in Redis: its decision and its journal sequence number.

        One round trip, unless this process's rules were stale (it reloads them) or a probability
        window missed (it sends the right one). Raises :class:`StateUnavailable`.
        """
        if not self._started:
            await self.start()
        # Numbered as it arrives, whatever the round trip below takes.
        seq = self._local_seq()
        if (
            header_fault is None
            and not self._stale
            and not self.engine.matching(method, path, tenant, session, headers)
        ):
            # No rule can match it: nothing to count, and this process's rules are the current
            # ones (a change answers only once every process loaded it: _announce). No round trip.
            return None, seq
        return await self._count(_Attempt(self, method, path, tenant, session, headers, header_fault)), seq

    async def defer(
        self,
        method: str,
        path: str,
        tenant: str | None,
        session: str | None,
        headers: HeaderSource,
        decided: Callable[[Decision | None], None],
    ) -> tuple[Prelude | None, int]:
        """The request's arrival as a :class:`~mock_server._prelude.Prelude`, for the API's first
        round trip to carry (see :mod:`mock_server._prelude`), and its journal sequence number.
        The prelude is None when no rule can match the request (nothing to count, no round
        trip: ``decided`` is not called). Otherwise ``decided`` gets the decision once it is
        known, before anything waiting on the prelude resumes."""
        if not self._started:
            await self.start()
        seq = self._local_seq()
        if not self._stale and not self.engine.matching(method, path, tenant, session, headers):
            return None, seq
        return _Arrival(_Attempt(self, method, path, tenant, session, headers, None), decided), seq

    async def _count(self, attempt: _Attempt) -> Decision | None:
        """Send ``attempt`` (and the next ones it takes) alone; the decision."""
        return (await self._count_acts(attempt))[0]

    async def _count_acts(self, attempt: _Attempt) -> tuple[Decision | None, bool]:
        """:meth:`_count`, and whether the decision lets the API act at once (see :func:`_step`)."""
        while True:
            try:
                result = await self._arrive_call(attempt.args)
            finally:
                attempt.landed()
            counted, decided = await self._conclude(attempt, result)
            if counted:
                return decided, _acts(result)
            attempt = attempt.next()

    async def _conclude(self, attempt: _Attempt, result: Any) -> tuple[bool, Decision | None]:
        """Whether an arrival script's ``result`` counted the request, and its decision. Not
        counted: the attempt must be sent again (the rules were stale, or a probability window
        missed)."""
        tag = result[0]
        if tag == b"stale":
            await self._load_rules()
            return False, None
        if tag == b"miss":
            rule, key = attempt.candidates[int(result[1]) - 1]
            self._outcomes_of(key, attempt.sess).seen = int(result[2])
            return False, None
        if self._subscribed:
            # The version matched just now, and later changes will be announced to this process.
            self._stale = False
        header_fault = attempt.header_fault
        session = attempt.session
        if header_fault is not None:
            n = int(result[2])
            delay = self.engine.sample(header_fault, HEADER_RULE, session, n) if header_fault.latency else 0.0
            return True, Decision(
                header_fault if header_fault.terminal else None, HEADER_RULE, delay, (HEADER_RULE,)
            )
        return True, self._decision(attempt.candidates, result[2:], session, attempt.sess)

    async def _arrive_call(self, args: list[str | int | float]) -> Any:
        """The arrival script's answer for ``args``. Requests arriving in the same turn of the
        event loop share one pipeline: one write and one read for all of them, each still one
        round trip. With none other on its way, it goes at once."""
        if not self._out and not self._arrivals:
            self._out += 1
            try:
                return await self._script("arrive", *args)
            finally:
                self._out -= 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._arrivals.append((args, fut))
        if len(self._arrivals) == 1:
            asyncio.get_running_loop().call_soon(self._send_arrivals)
        return await fut

    def _send_arrivals(self) -> None:
        batch, self._arrivals = self._arrivals, []
        task = asyncio.get_running_loop().create_task(self._run_arrivals(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run_arrivals(self, batch: list[tuple[list[str | int | float], asyncio.Future[Any]]]) -> None:
        self._out += 1
        try:
            await self._run_batch(batch)
        finally:
            self._out -= 1

    async def _run_batch(self, batch: list[tuple[list[str | int | float], asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            args, fut = batch[0]
            try:
                result = await self._script("arrive", *args)
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(
                        exc if isinstance(exc, StateUnavailable) else StateUnavailable(self.where)
                    )
                if not isinstance(exc, Exception):
                    raise
                return
            if not fut.done():
                fut.set_result(result)
            return
        results: list[Any]
        try:
            sha = self._shas.get("arrive")
            if sha is None:
                sha = self._shas["arrive"] = await self.client.script_load(_ARRIVE)
            pipe = self.client.pipeline(transaction=False)
            for args, _ in batch:
                pipe.evalsha(sha, 0, self.prefix, *args)
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError):
            # The connection died (Redis restarted?): each request once more on its own.
            results = [None] * len(batch)
        for (args, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if result is None or isinstance(result, Exception):
                try:
                    # NoScriptError (Redis restarted) or a lost connection: once more alone.
                    result = await self._script("arrive", *args)
                except StateUnavailable as exc:
                    fut.set_exception(exc)
                    continue
            fut.set_result(result)

    async def next_seq(self) -> int:
        return self._local_seq()

    def _local_seq(self) -> int:
        """A journal sequence number, without a round trip: the wall time in 10 µs steps, times
        :data:`_SLOTS`, plus this process's slot; strictly increasing in this process. Processes
        on one machine (or on machines with synchronised clocks) so number requests in the order
        they arrived, and never give the same number twice (up to :data:`_SLOTS` processes)."""
        now = int((self.wall() - _SEQ_EPOCH) * 100_000) * _SLOTS + self._slot
        seq = self._seq_last = max(self._seq_last + _SLOTS, now)
        return seq

    def _outcomes_of(self, key: str, sess: str) -> _Outcomes:
        found = self._outcomes.get((key, sess))
        if found is None:
            if len(self._outcomes) >= _MAX_OUTCOMES:
                self._outcomes.clear()
            found = self._outcomes[(key, sess)] = _Outcomes()
        return found

    def _decision(
        self, candidates: list[tuple[Rule, str]], counts: list[Any], session: str | None, sess: str
    ) -> Decision | None:
        delay = 0.0
        fired: list[str] = []
        for i in range(0, len(counts), 2):
            rule, key = candidates[i // 2]
            n = int(counts[i])
            if rule.probability < 1.0:
                outcomes = self._outcomes_of(key, sess)
                outcomes.seen = max(outcomes.seen, n)
            if not int(counts[i + 1]):
                continue
            fired.append(rule.id)
            fault = _fault_at(rule, n)
            assert fault is not None
            if fault.latency is not None:
                delay += self.engine.sample(fault, rule.id, session, n)
            if fault.terminal:
                return Decision(fault, rule.id, delay, tuple(fired))
        if not fired:
            return None
        return Decision(None, None, delay, tuple(fired))

    # -- journal --------------------------------------------------------------------------------

    async def _load_journal(self) -> None:
        records: Any = await self._call(self.client.xrevrange(self.prefix + "j", count=self._stream_cap))
        self._apply(reversed(records), own=True)

    def _apply(self, records: Iterable[tuple[Any, dict[Any, Any]]], *, own: bool = False) -> None:
        """Merge stream records past the last one merged; this process's own are skipped unless
        ``own`` (at start-up, when this process's copy is empty)."""
        mirror, origin = self.mirror, self.origin.encode()
        for raw_id, fields in records:
            sid = _stream_id(raw_id)
            if sid <= self._last_id:
                continue
            self._last_id = sid
            if own or fields.get(b"o") != origin:
                batch = fields.get(b"b")
                if batch is not None:
                    mirror.apply_batch(batch)
                record = fields.get(b"r")
                if record is not None:
                    mirror.apply(record)

    async def _catch_up(self) -> None:
        """Merge every record the stream holds now (an admin read then sees all written so far)."""
        last = _id_text(self._last_id)
        records: Any = await self._call(self.client.xrange(self.prefix + "j", min="(" + last, max="+"))
        self._apply(records)

    async def _tail_forever(self) -> None:
        client, key = self.client, self.prefix + "j"
        while not self._closing:
            try:
                found: Any = await client.xread({key: _id_text(self._last_id)}, count=1000, block=500)
            except (RedisError, OSError):
                await asyncio.sleep(0.1)
                continue
            for _, records in found or ():
                self._apply(records)

    async def clear_journal(self, session: str | None = None) -> int:
        await self.start()
        if session is not None:
            session = session_id(session)
        mark = self._local_seq()
        await self._script("clear", self.origin, self._stream_cap, json.dumps(session), mark)
        return self.mirror.clear_upto(mark, session)

    # -- writing what is queued -----------------------------------------------------------------

    async def flush(self) -> None:
        """Write queued journal records and metrics in one pipeline; on failure they stay queued."""
        mirror = self.mirror
        records, mirror.outbox = mirror.outbox, []
        counts = self.metrics.drain()
        pipe = self.client.pipeline(transaction=False)
        if records:
            # One stream entry per batch: every process reads every entry back, so per-record
            # entries would cost each of them a parse per request.
            self._batch = 0.9 * self._batch + 0.1 * len(records)
            maxlen = int(self._stream_cap / max(1.0, self._batch)) + 10
            batch = "[" + ",".join(records) + "]"
            pipe.xadd(self.prefix + "j", {"o": self.origin, "b": batch}, maxlen=maxlen, approximate=True)
        for field, value in counts.items():
            pipe.hincrbyfloat(self.prefix + "m", field, value)
        pipe.hset(self.prefix + "procs", self.origin, f"{len(self.held)} {self.in_flight} {self.wall()}")
        try:
            await pipe.execute()
        except BaseException as exc:
            # Cancelled (closing) or Redis gone: keep them for the next flush.
            mirror.outbox[:0] = records
            self.metrics.add(counts)
            if isinstance(exc, RedisError | OSError):
                raise StateUnavailable(self.where) from exc
            raise

    async def _flush_forever(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            # Let records gather: one pipeline per flush_s, however many requests.
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except StateUnavailable:
                await asyncio.sleep(0.1)
                if self.mirror.outbox:
                    self._wake.set()

    # -- reset and held requests ----------------------------------------------------------------

    async def reset(self, session: str | None = None) -> dict[str, Any]:
        await self.start()
        if session is None:
            await self.reset_rules()
        else:
            session = session_id(session)
            await self._script("reset_session", self._epoch, _tag(session))
        dropped = await self.clear_journal(session)
        released = self.held.release(session, all_sessions=session is None)
        if self._reset_shared is not None:
            # The shared buckets, once, before the answer: a deletion by every process (some
            # landing after requests already used the fresh buckets) would admit more than burst.
            try:
                await self._reset_shared(session)
            except ApiError as exc:
                raise StateUnavailable(self.where) from exc
        else:
            self._on_reset(session)
        released += await self._broadcast({"op": "reset", "session": session})
        return {"session": session, "journal_entries_dropped": dropped, "held_requests_cancelled": released}

    async def _broadcast(self, message: dict[str, Any], timeout: float = 1.0) -> int:
        """Tell every other process; the sum of what they report (held requests released)."""
        reply = f"{self.prefix}ack:{self.origin}:{next(self._replies)}"
        body = json.dumps({**message, "origin": self.origin, "reply": reply})
        receivers = await self._call(self.client.publish(self.prefix + "ev", body))
        # Every subscriber acknowledges, this process too: whether or not it is still subscribed
        # itself, the count is exact.
        listeners = int(receivers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        acks, released = 0, 0
        while listeners > 0:
            got = await self._call(self.client.hmget(reply, "acks", "released"))
            acks, released = int(got[0] or 0), int(got[1] or 0)
            if acks >= listeners or loop.time() >= deadline:
                break
            await asyncio.sleep(0.001)
        await self._call(self.client.delete(reply))
        return released

    async def _resubscribe(self) -> None:
        old, self._pubsub = self._pubsub, self.client.pubsub()
        try:
            await old.aclose()
        except (RedisError, OSError):
            pass
        try:
            await self._pubsub.subscribe(self.prefix + "ev")
            # Changes announced while unsubscribed were missed: load the rules as they are now.
            await self._load_rules()
        except (RedisError, OSError, StateUnavailable):
            return  # still gone: the next get_message fails and this runs again
        self._stale, self._subscribed = False, True

    async def _listen_forever(self) -> None:
        while not self._closing:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError, RuntimeError):
                # The subscription died with its connection (Redis restarted), or a resubscription
                # failed (RuntimeError: not subscribed): subscribe anew. Changes may be missed
                # meanwhile: every request checks the version until the rules are loaded again.
                self._stale, self._subscribed = True, False
                await asyncio.sleep(0.1)
                await self._resubscribe()
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                data = json.loads(message["data"])
                op = data.get("op")
                if op not in ("reset", "rules"):
                    continue
                released = 0
                if data.get("origin") == self.origin:
                    pass  # done here already: only the acknowledgement
                elif op == "rules":
                    if data.get("version") != self._version:
                        # From now on each request checks the version, until the rules are loaded.
                        self._stale = True
                        try:
                            await self._load_rules()
                        except StateUnavailable:
                            continue  # no ack: the changing process stops waiting at its timeout
                        self._stale = False
                else:
                    session = data.get("session")
                    # Not on_reset: the process that got the admin call refilled the shared buckets.
                    released = self.held.release(session, all_sessions=session is None)
                pipe = self.client.pipeline(transaction=False)
                pipe.hincrby(data["reply"], "released", released)
                pipe.hincrby(data["reply"], "acks", 1)
                pipe.expire(data["reply"], 10)
                await pipe.execute()
            except (ValueError, TypeError, KeyError, RedisError, OSError):
                continue

    # -- metrics --------------------------------------------------------------------------------

    async def render_metrics(self) -> str:
        await self.sync()
        await self.flush()
        raw: Any = await self._call(self.client.hgetall(self.prefix + "m"))
        procs: Any = await self._call(self.client.hgetall(self.prefix + "procs"))
        total = Metrics()
        total.add({k.decode(): float(v) for k, v in raw.items()})
        held, in_flight, now = len(self.held), self.in_flight, self.wall()
        for name, value in procs.items():
            if name.decode() == self.origin:
                continue
            try:
                h, f, seen = value.decode().split()
            except ValueError:
                continue
            if now - float(seen) < 5.0:
                held, in_flight = held + int(h), in_flight + int(f)
        return total.render(
            rules=len(self.engine.rules), journal=len(self.mirror), held=held, in_flight=in_flight
        )


def _shown(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else ""
        )
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable URL>"
