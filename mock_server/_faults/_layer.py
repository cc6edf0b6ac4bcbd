"""The fault layer: the outermost ASGI app, in front of the fake API.

Every HTTP request passes here first. ``/__admin/...`` is served here and never reaches the API.
Any other request gets its request id (the client's ``X-Request-ID`` if sane, else a new one,
left in ``scope["state"]["request_id"]`` for the API), a journal entry, and a decision made
synchronously on arrival, so decisions follow arrival order whatever happens later. Then the
injectors (``_injectors``) delay it, answer it with a fault, break its connection, or hand it to
the API and perhaps alter what comes back.

What the layer and the admin API share (rules, counters, journal, metrics, held requests) is
owned by a :class:`FaultState`; the layer only reads it on the request path.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._ids import new_request_id
from .._prelude import CURRENT, Preempted
from .._ratelimit import FailureLimiter
from .._untrusted import bounded, bounded_or_none, session_id
from . import _after, _inject
from ._admin import build_admin
from ._engine import Decision, Engine
from ._errors import FaultConfigError
from ._injectors import Injectors
from ._journal import FIELD_CHARS, Entry, Journal, redact_query
from ._metrics import Metrics
from ._model import RuleSet
from ._parse import parse_fault_header
from ._state import FaultState, OnReset, StateUnavailable

TenantOf = Callable[[Mapping[str, str]], str | None]
# The request headers the layer itself reads, picked out in one pass over the raw list.
_WANTED = frozenset(
    (b"x-request-id", b"x-mock-session", b"x-mock-fault", b"idempotency-key", b"x-api-key", b"authorization")
)


class _LazyHeaders:
    """All request headers, decoded only if a rule asks for one (most rules never do)."""

    __slots__ = ("_headers", "_scope")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._headers: Headers | None = None

    def get(self, name: str, default: str | None = None, /) -> str | None:
        if self._headers is None:
            self._headers = Headers(scope=self._scope)
        return self._headers.get(name, default)


_LOOPBACK_NAMES = frozenset({"localhost", "testclient"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _no_tenant(headers: Mapping[str, str]) -> str | None:
    return None


def _always(path: str) -> bool:
    return True


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a scope's client address) is this machine."""
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _sane_request_id(value: str | None) -> bool:
    return value is not None and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


class FaultLayer:
    """Wraps the fake API with fault rules, the request journal and the admin API.

    ``rules`` are the start-up rules (``POST /__admin/reset`` comes back to them); ``seed``
    overrides theirs (default 0). ``X-Mock-Fault`` is honoured only with
    ``allow_fault_header``. ``/__admin`` answers loopback clients only, unless ``admin_token``
    is set: then every admin call needs ``X-Admin-Token`` and may come from anywhere.
    ``tenant_of`` names the tenant a request's credentials belong to (without verifying them);
    ``on_reset`` is called with the session (None: all) when an admin reset should refill
    the API's rate-limit buckets. ``rate_limit`` is the limit an injected 429 advertises.
    ``journal_max_bytes`` bounds the journal's memory; ``session_ttl`` is how long an idle
    ``X-Mock-Session`` keeps its counters; ``max_body_bytes`` bounds admin request bodies.
    ``auth_failures``, when given, counts wrong ``X-Admin-Token`` values per client address
    (with the API's failed logins) and makes a throttled address wait.

    ``state``, when given, is the fault state to use instead of one built from ``rules``,
    ``seed``, ``journal_size``, ``journal_max_bytes``, ``session_ttl`` and ``on_reset`` (which
    are then ignored). ``redis`` (a ``redis.asyncio.Redis`` client, or a ``redis://``,
    ``rediss://`` or ``unix://`` URL) puts the fault state on Redis under ``redis_prefix``,
    shared with every process pointed at the same place (see ``_redis_state``), and
    ``on_reset_shared`` (an async ``on_reset``) refills shared buckets once per reset; the layer then
    starts it at lifespan start-up (or on the first request) and writes what it queued at
    lifespan shutdown. Without either, the state lives in this process and the request path
    never awaits it.

    ``docs`` serves ``/docs`` (Swagger UI) from the layer; a proxy passes False, so an
    upstream's own ``/docs`` passes through like any other path.

    ``defer_arrival`` (with a shared state) says that ``app`` carries a request's fault arrival in
    its first round trip to the same store (see :mod:`mock_server._prelude`): the fake's API does;
    a proxy's upstream cannot, since it acts before anything could be counted. A function of the
    path says it for some paths only: those whose requests make a round trip of their own (for
    the others, the arrival alone is that one round trip, without the prelude's cost).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: RuleSet | None = None,
        seed: int | None = None,
        allow_fault_header: bool = False,
        admin_token: str | None = None,
        journal_size: int = 10_000,
        journal_max_bytes: int = 256 * 1024 * 1024,
        session_ttl: float = 600.0,
        max_body_bytes: int = 1024 * 1024,
        auth_failures: FailureLimiter | None = None,
        tenant_of: TenantOf | None = None,
        on_reset: OnReset | None = None,
        rate_limit: int = 600,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        state: FaultState | None = None,
        redis: Any = None,
        redis_prefix: str = "mock:f:",
        on_reset_shared: Callable[[str | None], Awaitable[None]] | None = None,
        docs: bool = True,
        defer_arrival: bool | Callable[[str], bool] = False,
    ) -> None:
        self.app = app
        if state is None and redis is not None:
            # Imported here: the embedded fake needs no Redis client.
            from ._redis_state import RedisFaultState

            state = RedisFaultState(
                redis,
                prefix=redis_prefix,
                rules=rules,
                seed=seed,
                journal_size=journal_size,
                journal_max_bytes=journal_max_bytes,
                session_ttl=session_ttl,
                on_reset=on_reset,
                on_reset_shared=on_reset_shared,
                clock=clock,
                wall=wall,
            )
        if state is None:
            state = FaultState(
                rules=rules,
                seed=seed,
                journal_size=journal_size,
                journal_max_bytes=journal_max_bytes,
                session_ttl=session_ttl,
                on_reset=on_reset,
                clock=clock,
            )
        self.state = state
        self._shared = state if state.shared else None
        self._defer: Callable[[str], bool] | None = (
            defer_arrival if callable(defer_arrival) else (_always if defer_arrival else None)
        )
        # The request path reads these on every request: plain attributes, not properties.
        self.engine: Engine = state.engine
        self.journal: Journal = state.journal
        self.metrics: Metrics = state.metrics
        self.allow_fault_header = allow_fault_header
        self.rate_limit = rate_limit
        self.clock = clock
        self.wall = wall
        self.max_body_bytes = max_body_bytes
        self._auth_failures = auth_failures
        self._admin_token = admin_token.encode() if admin_token is not None else None
        self._tenant_of = tenant_of or _no_tenant
        self.injectors = Injectors(app, state.held, wall=wall, rate_limit=rate_limit, clock=clock)
        self._admin = build_admin(state, max_body_bytes=max_body_bytes)
        # /docs (Swagger UI) and the dashboard's static files; imported here, the package imports this one.
        from .._ui import PUBLIC_PATHS, DocsApp

        self._docs = DocsApp() if docs else None
        self._public_admin = PUBLIC_PATHS

    def __repr__(self) -> str:
        return f"FaultLayer(rules={len(self.engine.rules)}, seed={self.seed})"

    @property
    def seed(self) -> int:
        return self.state.seed

    @property
    def initial_rules(self) -> RuleSet:
        return self.state.initial_rules

    @property
    def in_flight(self) -> int:
        return self.state.in_flight

    @property
    def held(self) -> int:
        return len(self.state.held)

    # -- ASGI entry -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._shared is not None:
                receive = self._lifespan(receive)
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/__admin") and (len(path) == 8 or path[8] == "/"):
            await self._serve_admin(scope, receive, send)
            return
        if self._docs is not None and path.startswith("/docs") and (len(path) == 5 or path[5] == "/"):
            # Interactive docs: like /__admin, neither journaled nor faulted.
            await self._docs(scope, receive, send)
            return

        # Both times before any round trip to a shared state: the grader compares this arrival
        # with other requests' completions, which must not look later than they were.
        started = self.clock()
        arrived_at = self.wall()
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key in _WANTED:
                headers[key.decode("latin-1")] = value.decode("latin-1")
        client_rid = headers.get("x-request-id")
        client_given = _sane_request_id(client_rid)
        rid: str = client_rid if client_given else new_request_id()  # type: ignore[assignment]
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid
        # Bounded: the session keys counters and journal entries a client can make by the million.
        session = session_id(headers.get("x-mock-session"))
        tenant = self._tenant_of(headers)
        method: str = scope["method"]

        bad_header: FaultConfigError | None = None
        decision: Decision | None = None
        header_fault = headers.get("x-mock-fault") if self.allow_fault_header else None
        shared = self._shared
        if shared is not None and header_fault is None and self._defer is not None and self._defer(path):
            await self._serve_deferred(
                scope, receive, send, shared, rid, client_given, session, tenant, started, arrived_at, headers
            )
            return
        if shared is not None:
            # Counted in the shared store: one round trip (see _redis_state).
            try:
                try:
                    fault = parse_fault_header(header_fault) if header_fault is not None else None
                except FaultConfigError as exc:
                    bad_header = exc
                    seq = await shared.next_seq()
                else:
                    decision, seq = await shared.arrive(
                        method, path, tenant, session, _LazyHeaders(scope), fault
                    )
            except StateUnavailable as exc:
                await _inject.send_response(send, *_inject.unavailable(str(exc), rid))
                return
        else:
            if header_fault is not None:
                try:
                    decision = self.engine.decide_header(parse_fault_header(header_fault), session)
                except FaultConfigError as exc:
                    bad_header = exc
            else:
                decision = self.engine.decide(method, path, tenant, session, _LazyHeaders(scope))
            seq = self.journal.next_seq()

        entry = _entry(scope, seq, rid, client_given, tenant, session, headers, arrived_at, started)
        _note_decision(entry, decision)
        self.journal.record(entry)
        if method in _BODY_METHODS:
            receive = _digesting(receive, entry)
        fault_state = self.state
        fault_state.in_flight += 1
        try:
            if bad_header is not None:
                await self._answer_bad_header(bad_header, entry, send)
            elif decision is None:
                await self.app(scope, receive, self.injectors.observing(entry, send))
            else:
                # In the order the deciding rules' ``when`` says (``_after.py``).
                await _after.inject(self.injectors, self.engine.get, decision, entry, scope, receive, send)
        finally:
            fault_state.in_flight -= 1
            self._finish(entry, scope)

    async def _serve_deferred(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        shared: FaultState,
        rid: str,
        client_given: bool,
        session: str | None,
        tenant: str | None,
        started: float,
        arrived_at: float,
        headers: dict[str, str],
    ) -> None:
        """The request path when the app carries the arrival (``defer_arrival``, see
        :mod:`mock_server._prelude`): a request a rule may match is counted in the API's first
        round trip, and journaled once it has been."""
        method: str = scope["method"]
        entry: Entry | None = None
        chosen: Decision | None = None

        def decided(decision: Decision | None) -> None:
            nonlocal chosen
            assert entry is not None
            chosen = decision
            _note_decision(entry, decision)
            self.journal.record(entry)

        try:
            prelude, seq = await shared.defer(
                method, scope["path"], tenant, session, _LazyHeaders(scope), decided
            )
        except StateUnavailable as exc:
            await _inject.send_response(send, *_inject.unavailable(str(exc), rid))
            return
        entry = _entry(scope, seq, rid, client_given, tenant, session, headers, arrived_at, started)
        if method in _BODY_METHODS:
            receive = _digesting(receive, entry)
        fault_state = self.state
        fault_state.in_flight += 1
        try:
            if prelude is None:
                self.journal.record(entry)
                await self.app(scope, receive, self.injectors.observing(entry, send))
                return
            replay = _Replay(receive)
            observed = self.injectors.observing(entry, send)
            # The API's answer, kept when a fault fired that it acts before (see _after): the
            # fault is carried out around it once the API is done.
            kept: list[Message] | None = None

            async def settling(message: Message) -> None:
                nonlocal kept
                if kept is not None:
                    kept.append(message)
                    return
                if message["type"] == "http.response.start":
                    # An API that made no round trip answers only once the arrival is counted.
                    await prelude.wait()
                    if chosen is not None:
                        kept = [message]
                        return
                await observed(message)

            token = CURRENT.set(prelude)
            try:
                await self.app(scope, replay.receive, settling)
                if kept is not None and chosen is not None:
                    CURRENT.set(None)
                    injectors = self.injectors.over(_answering(kept))
                    await _after.inject(
                        injectors, self.engine.get, chosen, entry, scope, replay.again(), send
                    )
            except Preempted as exc:
                # Nothing of the API's operation happened: the decision is carried out as if it had
                # been made before the app ran (which, for a delay, runs it again afterwards).
                CURRENT.set(None)
                if exc.decision is None:
                    status, raw_headers, body = _inject.unavailable(str(exc), rid)
                    entry.status, entry.outcome = status, "response"
                    await _inject.send_response(send, status, raw_headers, body)
                else:
                    await _after.inject(
                        self.injectors, self.engine.get, exc.decision, entry, scope, replay.again(), send
                    )
            finally:
                CURRENT.reset(token)
                # A request that ended before anything counted it (its client left mid-body, say)
                # is counted still: the schedule must not depend on how requests end.
                try:
                    await prelude.wait()
                except (Preempted, Exception):
                    pass
        finally:
            fault_state.in_flight -= 1
            self._finish(entry, scope)

    def _lifespan(self, receive: Receive) -> Receive:
        """``receive`` for the lifespan scope: the shared state starts before the app does and
        writes what it queued when the server stops."""
        state = self.state

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await state.start()
            elif message["type"] == "lifespan.shutdown":
                await state.close()
            return message

        return lifespan_receive

    def _finish(self, entry: Entry, scope: Scope) -> None:
        answered = entry.answered_mono
        entry.duration_s = (self.clock() if answered is None else answered) - entry.arrived_mono
        if entry.outcome is None:
            entry.outcome = "response" if entry.status is not None else "error"
        route = scope.get("route")
        self.metrics.observe(entry, self.metrics.route_label(getattr(route, "path", None), entry.path))
        self.journal.complete(entry)

    async def _answer_bad_header(self, exc: FaultConfigError, entry: Entry, send: Send) -> None:
        body = _inject.error_body(400, str(exc), entry.request_id)
        headers = [
            (b"content-type", _inject.JSON),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", entry.request_id.encode()),
        ]
        entry.status, entry.outcome = 400, "response"
        await _inject.send_response(send, 400, headers, body)

    # -- held requests and reset (kept on the layer for its callers; the state does the work) ---

    def cancel_held(self, session: str | None = None, *, all_sessions: bool = True) -> int:
        """Release requests held by delays and timeouts (every one, or one session's)."""
        return self.state.cancel_held(session, all_sessions=all_sessions)

    def reset(self, session: str | None = None) -> dict[str, Any]:
        """Reset this process's fault state (see :meth:`FaultState.reset`)."""
        return self.state.reset_local(session)

    # -- admin ----------------------------------------------------------------------------------

    async def _serve_admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._admin_refusal(scope)
        # The dashboard's static files hold no data, and a browser cannot send the token when it
        # opens the page: with a token they are public (the page then asks for the token).
        if refusal is not None and not (
            self._admin_token is not None and scope["path"] in self._public_admin
        ):
            status, message, extra = refusal
            body = _inject.error_body(status, message, new_request_id())
            headers = [(b"content-type", _inject.JSON), (b"content-length", str(len(body)).encode())]
            if status == 401:
                headers.append((b"www-authenticate", b'AdminToken realm="mock-server-admin"'))
            headers.extend(extra)
            await _inject.send_response(send, status, headers, body)
            return
        await self._admin(scope, receive, send)

    def _admin_refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        client = scope.get("client")
        host = client[0] if client else None
        if self._admin_token is not None:
            failures = self._auth_failures
            wait = failures.wait(host) if failures is not None else 0
            if wait:
                message = f"too many failed authentication attempts from this address; retry in {wait} s"
                return 429, message, [(b"retry-after", str(wait).encode())]
            given = Headers(scope=scope).get("x-admin-token")
            if given is None or not hmac.compare_digest(given.encode(), self._admin_token):
                if given is not None and failures is not None:
                    failures.failed(host)
                return 401, "the admin API needs a valid X-Admin-Token header", []
            return None
        if not is_loopback(host):
            message = "the admin API answers loopback clients only (start the server with --admin-token)"
            return 403, message, []
        return None


def _entry(
    scope: Scope,
    seq: int,
    rid: str,
    client_given: bool,
    tenant: str | None,
    session: str | None,
    headers: dict[str, str],
    arrived_at: float,
    started: float,
) -> Entry:
    query = scope.get("query_string", b"")
    return Entry(
        seq=seq,
        request_id=rid,
        client_request_id=client_given,
        method=bounded(scope["method"], FIELD_CHARS["method"]),
        path=bounded(scope["path"], FIELD_CHARS["path"]),
        query=bounded(redact_query(query.decode("latin-1")), FIELD_CHARS["query"]) if query else "",
        tenant=tenant,
        session=session,
        idempotency_key=bounded_or_none(headers.get("idempotency-key"), FIELD_CHARS["idempotency_key"]),
        arrived_at=arrived_at,
        arrived_mono=started,
        fault=None,
        rule=None,
        rules=(),
        injected_delay_s=0.0,
    )


def _note_decision(entry: Entry, decision: Decision | None) -> None:
    if decision is not None:
        entry.fault = decision.fault.type if decision.fault else "latency"
        entry.rule = decision.rule
        entry.rules = decision.rules
        entry.injected_delay_s = decision.delay_s


def _answering(messages: list[Message]) -> ASGIApp:
    """An app that answers with ``messages`` (an answer the API already gave)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    return app


class _Replay:
    """``receive`` for an app that may have to run again: what it read is kept (the API reads
    at most its body limit) and read again first by :meth:`again`."""

    __slots__ = ("_receive", "_read")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._read: list[Message] = []

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._read.append(message)
        return message

    def again(self) -> Receive:
        read = iter(self._read)
        inner = self._receive

        async def receive() -> Message:
            for message in read:
                return message
            return await inner()

        return receive


def _digesting(receive: Receive, entry: Entry) -> Receive:
    """``receive``, fingerprinting the request body into ``entry.body_digest`` as it is read."""
    digest = hashlib.blake2b(digest_size=16)

    async def digesting() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            digest.update(message.get("body", b""))
            if not message.get("more_body", False):
                entry.body_digest = digest.hexdigest()
        return message

    return digesting
