"""The engine: every decision of one logical call, and no I/O.

:meth:`Engine.call` is a generator, like tenacity's ``iter()`` and httpx's ``auth_flow``: it
yields what it needs done, a :class:`~client._http.Send` (one attempt) or a
:class:`~client._http.Sleep` (a backoff, a Retry-After, a rate-limit slot, a wait for another
caller's token), and is sent back what happened (a :class:`~client._http.Received`, the error
the attempt ended in, or ``None`` after a sleep). It returns a :class:`~client._http.Final`, or
raises the error the call ends in. A driver is the loop around it (``_transport`` for requests,
``_httpx`` for httpx sync and async): send, sleep or await, read, map its library's errors.

Order per call: cache (a fresh hit returns here) -> auth -> per attempt: breaker -> rate limiter
-> send with timeouts clipped to the deadline -> classify -> retry decision and sleep -> cache
(store, refresh, invalidate) or stale-if-error. One ``X-Request-ID`` per logical call; an
``Idempotency-Key`` when the retry policy opts in (``RetryPolicy.idempotency_methods`` or
``idempotency_hosts``); the body is built once, so every attempt sends the same bytes.

A driver that stops iterating (a cancelled task: ``close()`` raises ``GeneratorExit`` at the
yield) gets the half-open permit it held back to the breaker, and a limiter token it reserved
but did not use back to the bucket. Everything shared (breakers, buckets, the cache, the
budget, the metrics) is guarded by short locks and never held across a yield, so one engine
serves threads and tasks alike.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from typing import Any

from ._auth import Auth, AuthFlow, OAuth2ClientCredentials
from ._auth import Auth as _BaseAuth
from ._breaker import BreakerRegistry, BreakerState
from ._clock import sleep as _real_sleep
from ._errors import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    HttpError,
    RateLimited,
    RetriesExhausted,
    TransportError,
    error_for_status,
)
from ._http import MEMO_URL_CHARS, CallInfo, Final, Received, Request, Send, Sleep, host_key
from ._httpcache import Action, HttpCache, Lookup, credential_digest
from ._limiter import LimiterRegistry
from ._metrics import Metrics
from ._policies import Policies
from ._redaction import redact_url
from ._retry import BudgetTracker, RetryState, parse_retry_after
from ._timeouts import Deadline

__all__ = ["Engine", "Flow", "Reply", "drive", "new_request_id"]

logger = logging.getLogger("client")

#: What a driver sends back into the flow: the answer, the error the attempt ended in, or
#: ``None`` after a :class:`Sleep`.
Reply = Received | ApiError | None
Flow = Generator[Send | Sleep, Reply, Final]


def _on_error_served(error: ApiError) -> bool:
    """Failures a stale entry may stand in for (stale-if-error, RFC 5861 section 4)."""
    return isinstance(error, TransportError | CircuitOpen | DeadlineExceeded | RetriesExhausted) or (
        isinstance(error, HttpError) and error.status >= 500
    )


_PLAIN_FLOW = _BaseAuth.flow

# Request ids need to be unique, not secret (an Idempotency-Key stays a uuid4): a random
# version-4 prefix per process, drawn from the OS (and again in a forked child), then a counter,
# as the fake numbers its own. Unique within the process by the counter, across processes by 74
# random bits; and no random draw, UUID object or system call on every call.
_prefix = ""
_counter = itertools.count()


def _new_prefix() -> None:
    global _prefix, _counter
    h = os.urandom(10).hex()
    _prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"
    _counter = itertools.count()


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    """A version-4-shaped UUID as text, for ``X-Request-ID``: unique, not secret."""
    return f"{_prefix}{next(_counter):012x}"


#: URLs whose host's breaker and bucket an engine remembers.
_PER_URL_LIMIT = 4096

#: The response fields a cache stores or validates with, besides Cache-Control.
_VALIDATING = frozenset({"etag", "last-modified", "expires"})


def _nothing_to_cache(lk: Lookup, status: int, headers: Mapping[str, str]) -> bool:
    """Whether the cache's answer to this response is certainly "a miss, nothing stored": a
    plain GET/HEAD miss (no stored variant matched) answered without any caching or validating
    field, or with only ``Cache-Control: no-store`` (RFC 9111 section 3 then allows no storing,
    and there is no stored response to refresh, supersede or serve stale)."""
    if not (
        lk.action is Action.MISS
        and lk.entry is None
        and lk.method in ("GET", "HEAD")
        and 200 <= status < 300
        and not lk.background
    ):
        return False
    get = headers.get  # a driver hands over a mapping with a cheap get (no scan, no KeyError)
    names = getattr(headers, "lower_names", None)
    if names is not None:  # its lower-case names at once: one set operation, not three look-ups
        if not names().isdisjoint(_VALIDATING):
            return False
    elif get("ETag") is not None or get("Last-Modified") is not None or get("Expires") is not None:
        return False
    directives = get("Cache-Control")
    if directives is None:
        return True
    directives = str(directives).lower()
    return "no-store" in directives and "must-understand" not in directives


# Where ``Engine._attempts`` begins: a first attempt, or one a driver's straight path admitted
# (waiting for the limiter) or settled.
_FRESH, _WAIT, _DECIDE = 0, 1, 2


class _Call:
    """One logical call between its steps: what ``Engine._begin`` settled, and what each attempt
    changes (its breaker ticket, its place in flight, when it went out)."""

    __slots__ = (
        "admitted",
        "auth",
        "background",
        "breaker",
        "bucket",
        "deadline",
        "lk",
        "nothing_for",
        "plain_auth",
        "reauthenticated",
        "request",
        "request_id",
        "sent_wall",
        "started",
        "state",
        "ticket",
        "timeout",
        "waited",
    )

    admitted: bool
    auth: Auth | None
    background: bool
    breaker: Any
    bucket: Any
    deadline: Deadline
    lk: Lookup | None
    nothing_for: Any
    plain_auth: bool
    reauthenticated: bool
    request: Request
    request_id: str | None
    sent_wall: float
    started: float
    state: RetryState
    ticket: Any
    timeout: tuple[float, float] | float | None
    waited: float


class Engine:
    """The runtime of a :class:`Policies`: shared state, and the algorithm of one call."""

    def __init__(
        self, policies: Policies, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        self.policies = policies
        self.auth = auth
        self.metrics = metrics or Metrics(read_timeout=policies.timeouts.read)
        self.clock = policies.timeouts.clock
        retry = policies.retry
        self.retry = retry
        if policies.cache is not None:
            self.wall = policies.cache.wall_clock
        elif retry is not None:
            self.wall = retry.wall_clock
        else:
            self.wall = time.time
        self.rng = (retry.rng if retry is not None and retry.rng is not None else None) or random.Random()
        self.budget = (
            BudgetTracker(retry.budget, retry.clock)
            if retry is not None and retry.budget is not None
            else None
        )
        self.breakers = (
            BreakerRegistry(policies.breaker, extra_listeners=(self.metrics.breaker_listener,))
            if policies.breaker is not None
            else None
        )
        self.limiters = LimiterRegistry(policies.limiter) if policies.limiter is not None else None
        self.cache = HttpCache(policies.cache) if policies.cache is not None else None
        # A call's URL -> its host's (breaker, bucket): most calls repeat a URL, so the host key
        # and the two registries are looked up once per URL, not once per call (bounded).
        self._per_url: dict[str, tuple[Any, Any]] = {}
        # Set by a driver that runs background work (an executor, a task): a stale entry within
        # its stale-while-revalidate window is then served at once and revalidated behind it.
        self.background = False

    def sleeper(self, action: Sleep) -> Any:
        """The injected sleep a :class:`Sleep` should use: the limiter's for a rate-limit wait,
        the retry policy's otherwise (``_clock.sleep``, real time, when none is configured)."""
        limiter = self.policies.limiter
        if action.reason == "rate limit" and limiter is not None:
            return limiter.sleep
        if self.retry is not None:
            return self.retry.sleep
        return limiter.sleep if limiter is not None else _real_sleep

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def credential(auth: Any, headers: Mapping[str, str]) -> str:
        """A digest naming the credential a request carries (its auth object and headers)."""
        identity = getattr(auth, "identity", None)
        if identity is None and auth is not None:
            identity = (
                credential_digest(*auth) if isinstance(auth, tuple) else f"{type(auth).__name__}@{id(auth)}"
            )
        authz = headers.get("Authorization")
        api_key = headers.get("X-API-Key")
        if authz is None and api_key is None:
            return identity or ""
        return credential_digest(identity, authz, api_key)

    def lookup(self, request: Request, auth: Any = None) -> Lookup | None:
        """The cache's verdict on ``request`` (``None`` without a cache)."""
        if self.cache is None:
            return None
        return self.cache.lookup(
            request.method, request.url, request.headers, credential=self.credential(auth, request.headers)
        )

    def served_hit(self, lookup: Lookup, request_id: str | None = None) -> Final | None:
        """A :class:`Final` for a lookup the cache answers (a fresh hit), else ``None``.

        A stale entry offered under ``stale-while-revalidate`` (``lookup.background``, set by the
        cache on one lookup per entry at a time) is served at once when the driver runs
        background work (``self.background``); the :class:`Final` then carries the lookup in
        ``revalidate``, for the driver to hand to ``call(..., revalidate=)`` off the caller's
        path (RFC 5861 section 3). A driver without background work revalidates in the
        foreground instead (RFC 5861 allows a cache not to serve stale).
        """
        served = lookup.response
        if served is None:
            return None
        if lookup.background:
            if not self.background:
                return None
            # A call answered without an attempt: counted as stale served, not as a fresh hit.
            self.metrics.record_call(
                latency=0.0, attempts=0, status=served.status, error=None, counter="cache_stale_served"
            )
            info = CallInfo(0, request_id, served.cache_status, 0.0, 0.0)
            return Final(info, served=served, revalidate=lookup)
        self.metrics.record_hit()
        return Final(CallInfo(0, request_id, served.cache_status, 0.0, 0.0), served=served)

    # -- the call ------------------------------------------------------------------------------
    def body_wanted(self, action: Send, status: int, headers: Mapping[str, str]) -> int | None:
        """How much of an attempt's body the engine needs before it decides, asked by a driver
        that can stream once the head is in: ``None``, all of it (a token, a 401 that may be
        re-authenticated, a status the retry policy retries: the error may quote it); ``0``,
        none (a final answer the cache will not store: the caller may stream it); ``n``, up to
        ``n`` bytes (a response the cache may store: a longer body is never stored, §3 of RFC
        9111 and ``max_entry_bytes``, so the driver streams it and hands over no body)."""
        if action.attempt == 0 or status == 401:
            return None
        retry = self.retry
        if retry is not None and status in retry.statuses:
            return None
        lk = action.lookup
        cache = self.cache
        if cache is None or lk is None:
            return 0
        if _nothing_to_cache(lk, status, headers):
            c = action.call
            if isinstance(c, _Call):
                c.nothing_for = headers  # ``_finish`` knows the answer for these headers
            return 0
        return max(1, cache.policy.max_entry_bytes)

    def body_failed(self, url: str, error: ApiError) -> None:
        """A body the caller streamed broke after its call had ended on a good head: count it as
        the failure a buffered read would have been (metrics, and the host's breaker while it is
        closed; a half-open breaker's probes were settled by the head)."""
        self.metrics.record_body_error(type(error).__name__)
        breakers = self.breakers
        if breakers is None or not isinstance(error, TransportError | DeadlineExceeded):
            return
        breaker = breakers.get(host_key(url))
        if breaker.state is not BreakerState.CLOSED or not breaker.policy.is_failure(None):
            return
        try:
            ticket = breaker.acquire()  # closed: the shared ticket, no permit taken
        except CircuitOpen:
            return
        breaker.record(ticket, failure=True)

    def call(
        self,
        request: Request,
        *,
        auth: Auth | None = None,
        timeout: tuple[float, float] | float | None = None,
        lookup: Lookup | None = None,
        cache_auth: Any = None,
        revalidate: Lookup | None = None,
        _background: bool = False,
    ) -> Flow:
        """One logical call; see the module docstring. ``timeout`` (the caller's, per attempt)
        replaces the policy's connect and read timeouts; ``lookup`` is a cache verdict the
        driver already asked for (its fast path); ``cache_auth`` names the credential for the
        cache key when the driver applies auth itself.

        ``revalidate`` (a ``Final.revalidate``) makes this the background revalidation of a
        stale entry served under stale-while-revalidate: one attempt through the same breaker,
        limiter and deadline, never retried and never counted as a call (metrics, retry
        budget); its answer goes to the cache. However it ends (an error, a cancel), the cache
        is told, so the entry may be revalidated again later or age out."""
        if revalidate is not None and not _background:
            return (yield from self._revalidate(request, auth, timeout, revalidate))
        lk = revalidate if _background else lookup
        c = self._begin(request, auth, timeout, lk, cache_auth, _background)
        if isinstance(c, Final):
            return c
        return (yield from self._attempts(c))

    # -- the straight path: the same steps as ``call``, without a generator ----------------------
    def start(
        self,
        request: Request,
        *,
        auth: Auth | None = None,
        timeout: tuple[float, float] | float | None = None,
        lookup: Lookup | None = None,
        cache_auth: Any = None,
    ) -> Final | Send | Flow:
        """Begin a call as :meth:`call` does, for a driver's straight path (most calls are one
        attempt, admitted at once, answered well). Returns a :class:`Final` (a cache hit); or
        the first attempt's :class:`Send`, admitted: the driver sends it and hands the reply
        (or the error) to :meth:`settle`, or to :meth:`abandon` if it stops before; or else a
        flow, to drive as :meth:`call`'s, that goes on from where this stopped (an auth that
        sends requests of its own, a wait for the limiter, a refusal). Every step is the one
        :meth:`call` takes (``_begin``, ``_admit``, ``_send``, ``_outcome``, ``_finish``)."""
        c = self._begin(request, auth, timeout, lookup, cache_auth, False)
        if isinstance(c, Final):
            return c
        if c.auth is not None and not c.plain_auth:
            return self._attempts(c)
        c.state.attempt = 1
        try:
            wait = self._admit(c)
        except ApiError as exc:
            return self._attempts(c, _DECIDE, (exc, None))
        if wait > 0:
            return self._attempts(c, _WAIT, wait)
        try:
            return self._send(c, first=True)
        except ApiError as exc:
            self._unadmit(c)
            return self._attempts(c, _DECIDE, (exc, None))

    def settle(self, action: Send, reply: Reply) -> Final | Flow:
        """What follows the straight path's attempt (``action``, from :meth:`start`): the
        :class:`Final` of a call its answer ends well (neither retried nor re-authenticated),
        else a flow going on from that answer, as :meth:`call`'s would."""
        c = action.call
        assert isinstance(c, _Call), "settle() takes the Send that start() returned"
        error, received = self._outcome(c, reply)
        if received is not None and received.status != 401:
            retry = self.retry
            if retry is None or received.status not in retry.statuses:
                return self._finish(c, received)
        return self._attempts(c, _DECIDE, (error, received))

    def abandon(self, action: Send) -> None:
        """The driver stopped before the straight path's attempt had a reply (cancelled,
        interrupted): its half-open permit and limiter slot come back, as a closed flow's do."""
        c = action.call
        if isinstance(c, _Call):
            self._unadmit(c)

    # -- the steps -------------------------------------------------------------------------------
    def _begin(
        self,
        request: Request,
        auth: Auth | None,
        timeout: tuple[float, float] | float | None,
        lk: Lookup | None,
        cache_auth: Any,
        background: bool,
    ) -> _Call | Final:
        """Before the first attempt: the cache (a fresh hit ends the call here), the request id,
        the idempotency key, the deadline, and a credential that sends nothing of its own."""
        started = self.clock()
        auth = auth if auth is not None else self.auth
        method = request.method
        url = request.url
        headers = request.headers
        retry = self.retry
        id_header = retry.request_id_header if retry is not None else None
        request_id = headers.get(id_header) if id_header else None
        cache = self.cache
        if cache is not None and lk is None:
            # The mapping itself: the cache takes the pairs of one that has them as they are.
            lk = cache.lookup(method, url, headers, credential=self.credential(cache_auth or auth, headers))
        if lk is not None and not background:
            if lk.response is not None:
                hit = self.served_hit(lk, request_id)
                if hit is not None:
                    return hit
            if lk.request_headers is not getattr(lk, "caller_headers", None):
                # Validators the cache adds (the common miss sends the caller's headers as is).
                for name, value in lk.request_headers:
                    if name not in headers:
                        headers[name] = value
        if retry is not None:
            if id_header and request_id is None:
                request_id = headers[id_header] = new_request_id()
            if retry.wants_key(method, url) and retry.idempotency_header not in headers:
                headers[retry.idempotency_header] = str(uuid.uuid4())
        c = _Call()
        c.request = request
        c.auth = auth
        c.timeout = timeout
        c.lk = lk
        c.nothing_for = None
        c.started = started
        c.background = background
        c.request_id = request_id
        c.deadline = self.policies.timeouts.deadline(started)
        c.state = RetryState(
            method,
            url,
            retryable_method=(method in retry.methods or retry.idempotency_header in headers)
            if retry is not None
            else False,
            replayable=request.replayable,
        )
        guards = self._per_url.get(url)
        if guards is None:
            guards = self._guards(url)
        c.breaker, c.bucket = guards
        c.ticket = None
        c.admitted = False
        c.waited = 0.0
        c.sent_wall = 0.0
        c.reauthenticated = False
        # An auth whose flow is the base one sends nothing of its own: applied directly, without
        # the two generators a flow costs (most credentials: a key, a token, a signature).
        c.plain_auth = auth is not None and getattr(type(auth), "flow", None) is _PLAIN_FLOW
        if c.plain_auth:
            auth.apply(request)  # type: ignore[union-attr]
        return c

    def _guards(self, url: str) -> tuple[Any, Any]:
        """The breaker and the limiter bucket of ``url``'s host (``None`` without the policy)."""
        host = host_key(url)
        guards = (
            self.breakers.get(host) if self.breakers is not None else None,
            self.limiters.get(host) if self.limiters is not None else None,
        )
        if len(self._per_url) < _PER_URL_LIMIT and len(url) <= MEMO_URL_CHARS:
            self._per_url[url] = guards
        return guards

    def _admit(self, c: _Call) -> float:
        """An attempt's admission: the host's breaker (``CircuitOpen``: nothing is held), then a
        limiter token (waiting for its slot, then out a server's pause or for answers while as
        many are in flight as remain): 0 when the attempt may go now, else the seconds to wait
        before asking the bucket again. A refusal raises with what was taken given back."""
        breaker = c.breaker
        c.ticket = breaker.acquire() if breaker is not None else None
        c.admitted = False
        bucket = c.bucket
        if bucket is None:
            return 0.0
        try:
            wait: float = bucket.take(c.deadline)
        except BaseException:
            # Refused (or interrupted) before anything was sent: no outcome to record.
            self._unadmit(c)
            raise
        c.admitted = wait <= 0
        return wait

    def _unadmit(self, c: _Call) -> None:
        """An admitted attempt that sent nothing, or whose driver stopped: its half-open permit
        and its place among the requests in flight come back."""
        breaker, ticket = c.breaker, c.ticket
        c.ticket = None
        if breaker is not None and ticket is not None:
            breaker.release(ticket)
        if c.admitted and c.bucket is not None:
            c.bucket.done()
        c.admitted = False

    def _send(self, c: _Call, *, first: bool = False) -> Send:
        """The admitted attempt, its timeouts clipped to the deadline (which may have run out);
        ``first``: the straight path's first attempt, admitted at once, as its deadline began."""
        connect: float | None
        read: float | None
        if c.timeout is not None:
            connect, read = self._attempt_timeouts(c.deadline, c.timeout)
        elif first:
            connect, read = self.policies.timeouts.first_attempt  # all of ``total`` is left
        else:
            connect, read = self.policies.timeouts.for_attempt(c.deadline)
        c.sent_wall = self.wall()
        return Send(c.request, connect, read, c.deadline, c.state.attempt, c.lk, c)

    def _outcome(self, c: _Call, reply: Reply) -> tuple[ApiError | None, Received | None]:
        """Account for an attempt's reply (the budget, the limiter, the breaker, the metrics):
        ``(None, received)`` for an answer, ``(error, None)`` for a failed attempt."""
        state, breaker, ticket, bucket, request = c.state, c.breaker, c.ticket, c.bucket, c.request
        c.ticket = None
        if state.attempt == 1 and self.budget is not None and not c.background:
            # Counted when its first answer (or error) comes, not when it starts: a call that
            # queued longer than the budget's window (behind the limiter or for a pooled
            # connection, a thousand tasks at once) still brings its share of retries to the
            # decision its answer calls for.
            self.budget.record_request()
        admitted = c.admitted
        c.admitted = False
        if isinstance(reply, Received):
            status = reply.status
            if bucket is not None:
                # First: the request leaves the flight whatever a breaker listener does below.
                bucket.observe(status, reply.headers, done=admitted)
            if breaker is not None and ticket is not None:
                breaker.record(ticket, failure=breaker.policy.is_failure(status))
            if status == 429:
                self.metrics.record_status(429)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s %s -> %d", request.method, redact_url(request.url), status)
            return None, reply
        if admitted and bucket is not None:
            bucket.done()
        error = reply if isinstance(reply, ApiError) else TransportError("no reply")
        seen = getattr(error, "received", None)
        if bucket is not None and isinstance(seen, Received):
            # The head arrived and the body broke: its rate-limit headers still speak for the
            # server (a truncated "Remaining: 0" is still a 0).
            bucket.observe(seen.status, seen.headers)
        if breaker is not None and ticket is not None:
            if isinstance(error, TransportError | DeadlineExceeded):
                breaker.record(ticket, failure=breaker.policy.is_failure(None))
            else:
                breaker.release(ticket)
        deadline = c.deadline
        if isinstance(error, TransportError) and deadline.expires_at is not None:
            if deadline.remaining() <= 0:
                late = DeadlineExceeded(f"the total deadline ran out during attempt {state.attempt}: {error}")
                late.__cause__ = error
                error = late
        return error, None

    def _attempts(self, c: _Call, entry: int = _FRESH, pending: Any = None) -> Flow:
        """The attempts of a begun call, from the first (``_FRESH``), or from where a driver's
        straight path left its first one: admitted but waiting ``pending`` seconds for the
        limiter (``_WAIT``), or settled as ``pending`` = ``(error, received)`` (``_DECIDE``)."""
        request = c.request
        method = request.method
        url = request.url
        auth = c.auth
        plain_auth = c.plain_auth
        retry = self.retry
        state = c.state
        deadline = c.deadline
        bucket = c.bucket
        lk = c.lk
        background = c.background
        if entry == _FRESH and auth is not None and not plain_auth:
            yield from self._auth(auth, auth.flow(request), deadline)
        while True:
            if entry == _FRESH:
                state.attempt += 1
            error: ApiError | None = None
            received: Received | None = None
            if state.attempt > 1 and auth is not None:
                if plain_auth:
                    auth.reapply(request)
                else:
                    yield from self._auth(auth, auth.flow(request, again=True), deadline)
            if entry == _DECIDE:
                error, received = pending
            else:
                try:
                    wait = pending if entry == _WAIT else self._admit(c)
                except ApiError as exc:
                    error = exc
                else:
                    try:
                        if wait > 0:
                            assert bucket is not None
                            this_wait = 0.0
                            try:
                                while wait > 0:
                                    yield Sleep(wait, "rate limit")
                                    this_wait += wait
                                    wait = bucket.admit(deadline)
                                c.admitted = True
                            except BaseException:
                                # Cancelled, or the server's pause crosses the deadline: the
                                # token was never used.
                                bucket.cancel()
                                raise
                            c.waited += this_wait
                            self.metrics.record_wait(this_wait)
                        reply = yield self._send(c)
                    except ApiError as exc:
                        # Nothing was sent (the limiter or the deadline refused): no outcome.
                        self._unadmit(c)
                        error = exc
                    except BaseException:
                        # Cancelled (GeneratorExit) or interrupted: the permit must come back.
                        self._unadmit(c)
                        raise
                    else:
                        error, received = self._outcome(c, reply)
            entry = _FRESH
            if received is not None:
                status = received.status
                if (
                    status == 401
                    and auth is not None
                    and not c.reauthenticated
                    and auth.on_unauthorized(request)
                ):
                    c.reauthenticated = True
                    self.metrics.incr("auth_refreshes")
                    continue  # the next attempt reapplies the credential, fetching a fresh token
                if retry is None or status not in retry.statuses:
                    return self._finish(c, received)
                error = error_for_status(
                    status,
                    received.headers,
                    received.body,
                    response=received.native,
                    retry_after=parse_retry_after(
                        received.headers.get("Retry-After"), now=retry.wall_clock()
                    ),
                )
            assert error is not None
            if background:
                # A background revalidation is one attempt: its failure leaves the stale entry.
                raise error
            if (
                retry is None
                or isinstance(error, CircuitOpen | DeadlineExceeded)
                or (isinstance(error, RateLimited) and error.status == 0)
            ):
                return self._fail(error, received, lk, c.started, state, c.request_id, c.waited)
            try:
                delay = retry.next_sleep(state, error, deadline=deadline, rng=self.rng, budget=self.budget)
            except ApiError as final:
                if isinstance(final, RetriesExhausted) and "budget" in final.message:
                    self.metrics.incr("budget_refusals")
                return self._fail(final, None, lk, c.started, state, c.request_id, c.waited)
            if delay is None:
                return self._fail(error, received, lk, c.started, state, c.request_id, c.waited)
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "retrying %s %s in %.3f s after attempt %d: %s",
                    method,
                    redact_url(url),
                    delay,
                    state.attempt,
                    type(error).__name__,
                )
            if delay > 0:
                yield Sleep(delay, "backoff")
            state.idle_for += delay

    def _revalidate(
        self, request: Request, auth: Auth | None, timeout: tuple[float, float] | float | None, lk: Lookup
    ) -> Flow:
        cache = self.cache
        assert cache is not None
        headers = request.headers
        for name, value in lk.request_headers:
            if name not in headers:
                headers[name] = value
        done = False
        try:
            final = yield from self.call(request, auth=auth, timeout=timeout, revalidate=lk, _background=True)
            done = True
            return final
        finally:
            if not done:
                # Failed or cancelled: the entry stays stale and ages out; a later lookup may
                # start another revalidation (RFC 5861 section 3).
                cache.on_error(lk, self.wall())

    def _attempt_timeouts(
        self, deadline: Deadline, timeout: tuple[float, float] | float | None
    ) -> tuple[float | None, float | None]:
        if timeout is None:
            return self.policies.timeouts.for_attempt(deadline)
        left = deadline.remaining()
        if left <= 0:
            raise DeadlineExceeded("the total deadline ran out before the next attempt")
        if isinstance(timeout, tuple):
            return (min(timeout[0], left), min(timeout[1], left))
        return (min(timeout, left), min(timeout, left))

    def _auth(self, auth: Auth, flow: AuthFlow, deadline: Deadline) -> Generator[Send | Sleep, Reply, None]:
        """Drive an auth flow: its own requests (a token) are sent plainly, without policies."""
        reply: Received | None = None
        while True:
            try:
                wanted = flow.send(reply)  # type: ignore[arg-type]
            except StopIteration:
                return
            if wanted.method == "WAIT":
                step = getattr(auth, "WAIT_STEP", OAuth2ClientCredentials.WAIT_STEP)
                yield Sleep(step, "token")
                reply = None
                continue
            timeouts = getattr(auth, "timeout", None) or getattr(
                getattr(auth, "inner", None), "timeout", None
            )
            connect, read = timeouts if isinstance(timeouts, tuple) else (3.05, 10.0)
            left = deadline.remaining()
            answer = yield Send(wanted, min(connect, left), min(read, left), deadline, 0)
            if not isinstance(answer, Received):
                error = (
                    answer
                    if isinstance(answer, ApiError)
                    else TransportError("no reply to the token request")
                )
                flow.throw(error)
                raise error  # the flow re-raises it; this line only satisfies the type checker
            reply = answer

    def _finish(self, c: _Call, received: Received) -> Final:
        """End a call on an answer that needs no retry: the cache's part, the metrics."""
        request, lk, state, request_id = c.request, c.lk, c.state, c.request_id
        cache_status: str | None = None
        status = received.status
        served = None
        headers = received.headers
        if (
            self.cache is not None
            and lk is not None
            and (c.nothing_for is headers or _nothing_to_cache(lk, status, headers))
        ):
            # The common miss: nothing stored matched, and the answer carries nothing a cache
            # could keep or validate; what the cache would conclude is known without asking it.
            cache_status = "miss"
        elif self.cache is not None and lk is not None:
            outcome = self.cache.on_response(
                lk,
                status,
                received.headers,
                received.body,
                request_headers=request.headers,
                request_time=c.sent_wall,
                response_time=self.wall(),
            )
            cache_status = outcome.cache_status
            served = outcome.response
            if cache_status == "revalidated":
                self.metrics.incr("cache_revalidations")
            elif cache_status == "stale":
                self.metrics.incr("cache_stale_served")
        if c.background:
            # Not a caller's call: its Final goes back to the driver, which only closes it.
            return Final(
                CallInfo(state.attempt, request_id, cache_status, c.waited, state.idle_for),
                received=received,
                served=served,
            )
        self.metrics.record_call(
            latency=self.clock() - c.started,
            attempts=state.attempt,
            status=served.status if served is not None else status,
            error=None,
            counter="cache_misses" if cache_status == "miss" else None,
        )
        info = CallInfo(state.attempt, request_id, cache_status, c.waited, state.idle_for)
        if served is not None:
            return Final(info, received=received, served=served)
        return Final(info, received=received)

    def _fail(
        self,
        error: ApiError,
        received: Received | None,
        lk: Lookup | None,
        started: float,
        state: RetryState,
        request_id: str | None,
        waited: float,
    ) -> Final:
        """End a call that did not succeed: stale-if-error, a returned response, or a raise."""
        if self.cache is not None and lk is not None and _on_error_served(error):
            stale = self.cache.on_error(lk, self.wall())
            if stale is not None:
                self.metrics.incr("cache_stale_served")
                self.metrics.record_call(
                    latency=self.clock() - started, attempts=state.attempt, status=stale.status, error=None
                )
                return Final(
                    CallInfo(state.attempt, request_id, "stale", waited, state.idle_for),
                    received=received,
                    served=stale,
                )
        if isinstance(error, CircuitOpen):
            self.metrics.incr("breaker_rejections")
        if received is not None and isinstance(error, HttpError) and error.response is received.native:
            # Not retryable (or not any more, by configuration): hand the response back, as
            # requests and httpx do.
            self.metrics.record_call(
                latency=self.clock() - started, attempts=state.attempt, status=received.status, error=None
            )
            return Final(CallInfo(state.attempt, request_id, None, waited, state.idle_for), received=received)
        self.metrics.record_call(
            latency=self.clock() - started,
            attempts=state.attempt,
            status=getattr(error, "status", None) or None,
            error=type(error).__name__,
        )
        raise error


def drive(
    flow: Flow,
    send: Callable[[Send], Received],
    sleep: Callable[[Sleep], object],
    discard: Callable[[Any], object] | None = None,
    answered: Reply = None,
) -> Final:
    """Run ``flow`` to its end with blocking I/O: the loop of every synchronous driver.

    ``send`` performs one :class:`Send` (raising an :class:`ApiError` for a failed attempt),
    ``sleep`` blocks for a :class:`Sleep`, ``discard`` closes a native response the flow moved past (a retried
    error, say); ``answered`` is a reply the flow starts from (``Engine.settle``'s), discarded
    likewise once the flow moves past it. However the loop ends, the flow is closed, so what it
    holds is given back.
    """
    reply: Reply = None
    last = answered
    try:
        while True:
            action = flow.send(reply)
            if discard is not None and isinstance(last, Received) and last.native is not None:
                discard(last.native)
            if isinstance(action, Sleep):
                sleep(action)
                reply = None
            else:
                try:
                    reply = send(action)
                except ApiError as exc:
                    reply = exc
            last = reply
    except StopIteration as stop:
        result: Final = stop.value
        return result
    finally:
        flow.close()
