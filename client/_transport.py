"""The ``requests`` driver: the engine's loop with ``requests`` doing the sending.

Every decision is the engine's (``_engine``); this module only prepares, sends, reads and
sleeps, and maps ``requests``/``urllib3`` errors onto the client's tree. Two ways in:

- :class:`ResilientSession`, a ``requests.Session`` whose ``request()`` runs the policies; it
  answers a fresh cache hit before ``requests`` even prepares the request.
- :class:`ResilientAdapter`, an ``HTTPAdapter`` to mount on an existing session.

The total deadline covers the body: unless the caller streams (``stream=True``, the body is then
the caller's to read), the body is read here a chunk at a time, each read waiting at most
min(read timeout, time left), so a body that trickles in cannot hold a call past its deadline.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, KeysView, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from ._auth import Auth, OAuth2ClientCredentials
from ._engine import Engine, Reply, drive
from ._errors import ApiError, DeadlineExceeded
from ._exceptions import map_exception, public
from ._http import MEMO_URL_CHARS, CallInfo, Final, Received, Request, Send, Served, Sleep, host_key
from ._metrics import Metrics
from ._policies import Policies
from ._redaction import redact_url

__all__ = [
    "CachedResponse",
    "CallInfo",
    "Policies",
    "ResilientAdapter",
    "ResilientSession",
    "call_info",
    "host_key",
]

_LOWER_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
_CHUNK = 64 * 1024
_ZERO = timedelta(0)
_MEMO_LIMIT = 4096
_INF = float("inf")
# Threads a session keeps for background revalidations (stale-while-revalidate).
BACKGROUND_WORKERS = 2

logger = logging.getLogger("client")


class CachedResponse(requests.Response):
    """A response served by the cache; ``cache_status`` is ``hit``, ``revalidated`` or ``stale``."""

    from_cache = True
    cache_status: str


def call_info(response: Any) -> CallInfo | None:
    """The :class:`CallInfo` the resilient layer attached to ``response`` (a ``requests`` or an
    ``httpx`` response), if any."""
    info = getattr(response, "__dict__", {}).get("resilience")
    if info is None:
        extensions = getattr(response, "extensions", None)
        info = extensions.get("resilience") if isinstance(extensions, dict) else None
    return info if isinstance(info, CallInfo) else None


class _Fast(MutableMapping[str, str]):
    """A ``requests`` ``CaseInsensitiveDict`` as the engine reads it: look-ups go straight to its
    store (its own ``get`` and ``in`` raise and catch a ``KeyError`` for every missing name, a
    dozen times a call); writes go through it, so the caller's object is the one changed."""

    __slots__ = ("_cid", "_store")

    def __init__(self, cid: CaseInsensitiveDict[str]) -> None:
        self._cid = cid
        self._store: dict[str, tuple[str, str]] = cid._store  # type: ignore[attr-defined]

    def get(self, name: str, default: Any = None) -> Any:
        item = self._store.get(name.lower())
        return default if item is None else item[1]

    def __getitem__(self, name: str) -> str:
        return self._store[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._cid[name] = value

    def __delitem__(self, name: str) -> None:
        del self._cid[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def lower_names(self) -> KeysView[str]:
        """The field names, lower-case (what the engine tests at once)."""
        return self._store.keys()

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` pairs, as the cache takes them (values made text; most are)."""
        pairs = tuple(self._store.values())
        for _, value in pairs:
            if type(value) is not str:  # a value given as bytes or a number: convert them all
                return tuple((name, v if type(v) is str else str(v)) for name, v in pairs)
        return pairs


def _fast(headers: Any) -> Any:
    """``headers`` with cheap look-ups when it is a ``CaseInsensitiveDict`` (else as it is)."""
    return _Fast(headers) if type(headers) is CaseInsensitiveDict else headers


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r


def _native(served: Served, request: requests.PreparedRequest | None, url: str) -> CachedResponse:
    """A caller-owned ``requests`` response for what the cache served (the body bytes are
    shared, immutably; the headers are the caller's to change)."""
    r = CachedResponse.__new__(CachedResponse)
    h: CaseInsensitiveDict[str] = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    h._store = {name.lower(): (name, value) for name, value in served.headers}  # type: ignore[attr-defined]
    r.__dict__.update(
        _content=served.body,
        _content_consumed=True,
        _next=None,
        status_code=served.status,
        headers=h,
        raw=None,
        url=url,
        encoding=requests.utils.get_encoding_from_headers(h),
        history=[],
        reason=served.reason,
        cookies=requests.cookies.RequestsCookieJar(),
        elapsed=_ZERO,
        request=request,
        cache_status=served.cache_status,
    )
    return r


def _socket(raw: Any) -> socket.socket | None:
    connection = getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def read_body(response: requests.Response, action: Send) -> bytes:
    """The whole body of ``response``, each read bounded by min(read timeout, time left)."""
    if response._content_consumed or response.__dict__.get("_content") is not False:  # type: ignore[attr-defined]
        return response.content or b""
    raw = response.raw
    if raw is None or not hasattr(raw, "read1"):
        return response.content or b""
    deadline = action.deadline
    sock = _socket(raw) if deadline.expires_at is not None else None
    # The socket already waits at most the attempt's read timeout (clipped to the time left
    # when it was sent); it is shortened (a system call each time) only once the deadline is
    # nearer than that, and put back after.
    before = current = sock.gettimeout() if sock is not None else None
    chunks = []
    # A body neither compressed nor chunked ends when its Content-Length is in (urllib3 has then
    # closed the wire and freed the connection): no last read for an empty chunk, as
    # ``requests`` makes none. A compressed body is read to the empty chunk, which flushes the
    # decoder.
    fields = response.headers
    store = fields._store if type(fields) is CaseInsensitiveDict else None  # type: ignore[attr-defined]
    whole = type(getattr(raw, "length_remaining", None)) is int and (
        "content-encoding" not in store if store is not None else "content-encoding" not in fields
    )
    try:
        while True:
            if deadline.expires_at is not None:
                left = deadline.remaining()
                if left <= 0:
                    raise DeadlineExceeded(
                        f"the total deadline ran out while reading the body of attempt {action.attempt}"
                    )
                if sock is not None:
                    want = min(action.read, left) if action.read else left
                    if current is None or want < current:
                        sock.settimeout(want)
                        current = want
            chunk = raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            if whole and raw.length_remaining == 0:
                break
    except BaseException:
        response.close()
        raise
    finally:
        if sock is not None and current != before:
            try:
                sock.settimeout(before)
            except OSError:
                pass
    content = b"".join(chunks)
    response._content = content
    response._content_consumed = True  # type: ignore[attr-defined]
    return content


_READ_TIMEOUTS = (urllib3.exceptions.ReadTimeoutError, TimeoutError)


def bound_stream(response: requests.Response, action: Send) -> None:
    """Keep the deadline over a body the caller streams (``stream=True``): each read of
    ``response.raw`` (``read``, ``read1``, ``read_chunked``, and so ``iter_content``,
    ``iter_lines`` and ``content``) waits at most min(read timeout, time left), and a read once the
    deadline has passed raises :class:`DeadlineExceeded`, as an unstreamed call's body does."""
    deadline = action.deadline
    raw = response.raw
    if deadline.expires_at is None or raw is None or not hasattr(raw, "read"):
        return
    sock = _socket(raw)
    attempt = action.attempt
    read_timeout = action.read

    def late(cause: BaseException | None = None) -> DeadlineExceeded:
        error = DeadlineExceeded(
            f"the total deadline ran out while the caller read the streamed body of attempt {attempt}"
        )
        error.__cause__ = cause
        return error

    def tighten() -> float | None:
        """Check the deadline; shorten the socket's timeout when the deadline is nearer
        (returning the timeout to put back), else ``None``."""
        left = deadline.remaining()
        if left <= 0:
            raise late()
        if sock is None:
            return None
        want = min(read_timeout, left) if read_timeout else left
        before = sock.gettimeout()
        if before is not None and want >= before:
            return None
        try:
            sock.settimeout(want)
        except OSError:
            return None
        return before if before is not None else -1.0

    def restore(before: float | None) -> None:
        if before is not None and sock is not None:
            try:
                sock.settimeout(None if before < 0 else before)
            except OSError:
                pass

    def bounded(method: Any) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            before = tighten()
            try:
                return method(*args, **kwargs)
            except _READ_TIMEOUTS as exc:
                if deadline.remaining() <= 0:
                    raise late(exc) from exc
                raise
            finally:
                restore(before)

        return read

    def bounded_chunks(method: Any) -> Any:
        def read_chunked(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            chunks = method(*args, **kwargs)
            while True:
                before = tighten()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                except _READ_TIMEOUTS as exc:
                    if deadline.remaining() <= 0:
                        raise late(exc) from exc
                    raise
                finally:
                    restore(before)
                yield chunk

        return read_chunked

    def stepwise(read1: Any, whole: Any) -> Any:
        # ``read(amt)`` loops over the socket until it has ``amt`` bytes: a body dripped in
        # never times one receive out. Built from ``read1`` (one receive each), the deadline is
        # checked, and the socket's timeout shortened, before every receive.
        def read(
            amt: int | None = None, decode_content: bool | None = None, cache_content: bool = False
        ) -> bytes:
            if cache_content:
                return bytes(whole(amt, decode_content, cache_content))
            parts = []
            got = 0
            while amt is None or got < amt:
                chunk = read1(_CHUNK if amt is None else amt - got, decode_content=decode_content)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            return b"".join(parts)

        return read

    # Instance attributes shadow the methods: urllib3's own stream() and requests' iter_content
    # call them through ``self``, so every way of reading the body goes through the bound.
    if hasattr(raw, "read1"):
        raw.read1 = bounded(raw.read1)  # type: ignore[method-assign]
        raw.read = stepwise(raw.read1, bounded(raw.read))  # type: ignore[method-assign]
    else:
        raw.read = bounded(raw.read)  # type: ignore[method-assign]
    if hasattr(raw, "read_chunked"):
        raw.read_chunked = bounded_chunks(raw.read_chunked)  # type: ignore[method-assign]


def _replayable(body: Any) -> bool:
    return body is None or isinstance(body, bytes | str)


def _request_of(prep: requests.PreparedRequest) -> Request:
    body = prep.body
    data = body.encode("utf-8") if isinstance(body, str) else body if isinstance(body, bytes) else None
    method, url = prep.method or "GET", prep.url or ""
    return Request(method, url, _fast(prep.headers), data, replayable=_replayable(body))


class _Driver:
    """What both ``requests`` entry points share: the engine and the loop around it."""

    engine: Engine

    def _run(
        self,
        prep: requests.PreparedRequest,
        send_native: Any,
        *,
        auth: Auth | None,
        timeout: Any,
        stream: bool,
        lookup: Any = None,
        cache_auth: Any = None,
        revalidate: Any = None,
    ) -> requests.Response:
        engine = self.engine
        request = _request_of(prep)

        def send(action: Send) -> Received:
            if action.attempt == 0:
                return self._send_token(action, send_native)
            if prep.url != action.request.url:
                prep.url = action.request.url
            try:
                response: requests.Response = send_native(prep, _wire_timeout(action, timeout))
            except ApiError:
                raise
            except _LOWER_ERRORS as exc:
                raise map_exception(exc, method=prep.method or "", url=prep.url or "") from exc
            try:
                if stream:
                    body = None
                    bound_stream(response, action)
                else:
                    body = read_body(response, action)
            except (ApiError, *_LOWER_ERRORS) as exc:
                error = (
                    exc
                    if isinstance(exc, ApiError)
                    else map_exception(exc, method=prep.method or "", url=prep.url or "")
                )
                # The head did arrive: the engine still reads its rate-limit headers.
                error.received = Received(response.status_code, _fast(response.headers), None, response)  # type: ignore[attr-defined]
                if error is exc:
                    raise
                raise error from exc
            return Received(response.status_code, _fast(response.headers), body, response)

        try:
            if revalidate is not None:
                flow = engine.call(request, auth=auth, timeout=_timeout(timeout), revalidate=revalidate)
                final = drive(flow, send, self._sleep, _close)
            else:
                # The engine's straight path: most calls are one attempt, admitted at once and
                # answered well, and need no generator; any other turn goes on as a flow.
                first = engine.start(
                    request, auth=auth, timeout=_timeout(timeout), lookup=lookup, cache_auth=cache_auth
                )
                answered: Reply = None
                if isinstance(first, Send):
                    try:
                        answered = send(first)
                    except ApiError as exc:
                        answered = exc
                    except BaseException:
                        engine.abandon(first)
                        raise
                    first = engine.settle(first, answered)
                if isinstance(first, Final):
                    final = first
                else:
                    final = drive(first, send, self._sleep, _close, answered)
        except ApiError as exc:
            public(exc)
            raise
        if final.revalidate is not None:
            # Served from the cache before anything touched ``prep``: the background request
            # sends a copy of it.
            self._background(prep.copy(), send_native, auth, timeout, final.revalidate)
        return self._response(final, prep)

    def _background(
        self, prep: requests.PreparedRequest, send_native: Any, auth: Auth | None, timeout: Any, lk: Any
    ) -> None:
        """Revalidate a stale entry off the caller's path (stale-while-revalidate)."""
        runner = getattr(self, "_runner", None)
        cache = self.engine.cache
        assert cache is not None

        def revalidate() -> None:
            try:
                response = self._run(
                    prep, send_native, auth=auth, timeout=timeout, stream=False, revalidate=lk
                )
                response.close()
            except Exception as exc:  # the stale entry stays and ages out; no caller to tell
                _close(getattr(exc, "response", None))
                logger.debug("background revalidation of %s failed: %s", redact_url(prep.url or ""), exc)

        try:
            if runner is None:
                raise RuntimeError("no background executor")
            runner.submit(revalidate)
        except RuntimeError:  # closed: nobody will revalidate, so a later lookup may
            cache.on_error(lk)

    def _send_token(self, action: Send, send_native: Any) -> Received:
        wanted = action.request
        try:
            session = getattr(self.engine.auth, "session", None) or _token_session(self.engine.auth)
            if session is not None:
                response = session.post(
                    wanted.url,
                    data=(wanted.body or b"").decode(),
                    headers=dict(wanted.headers),
                    timeout=(action.connect, action.read),
                )
            else:
                prep = requests.Request(
                    "POST", wanted.url, data=wanted.body, headers=dict(wanted.headers)
                ).prepare()
                response = send_native(prep, (action.connect, action.read))
                read_body(response, action)
        except ApiError:
            raise
        except _LOWER_ERRORS as exc:
            raise map_exception(exc, method="POST", url=wanted.url) from exc
        return Received(response.status_code, _fast(response.headers), response.content, response)

    def _response(self, final: Final, prep: requests.PreparedRequest) -> requests.Response:
        if final.served is not None:
            if final.received is not None:
                final.received.native.close()
            response = _native(final.served, prep, prep.url or "")
        else:
            assert final.received is not None
            response = final.received.native
        response.__dict__["resilience"] = final.info
        return response

    def _sleep(self, action: Sleep) -> None:
        self.engine.sleeper(action)(action.seconds)


def _token_session(auth: Any) -> Any:
    inner = getattr(auth, "inner", None)
    if isinstance(inner, OAuth2ClientCredentials):
        return inner.session
    return None


def _close(native: Any) -> None:
    close = getattr(native, "close", None)
    if close is not None:
        close()


def _wire_timeout(action: Send, given: Any) -> tuple[float | None, float | None] | float | None:
    """The timeout ``requests`` gets for one attempt: a single number when the caller gave one."""
    connect, read = action.connect, action.read
    if connect == read and isinstance(given, int | float) and not isinstance(given, bool):
        return None if read == _INF else read
    return (None if connect == _INF else connect, None if read == _INF else read)


def _timeout(value: Any) -> tuple[float, float] | float | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        connect, read = value
        return (
            float(connect) if connect is not None else float("inf"),
            float(read) if read is not None else float("inf"),
        )
    return float(value)


class _MergedHeaders(Mapping[str, str]):
    """The call's headers over the session's, as ``requests`` will merge them (read-only)."""

    __slots__ = ("_call", "_session")

    def __init__(self, call: Mapping[str, Any] | None, session: Mapping[str, Any]) -> None:
        self._call = call
        self._session = session

    def __getitem__(self, name: str) -> str:
        call = self._call
        if call is not None and name in call:
            value = call[name]
            if value is None:
                raise KeyError(name)
            return str(value)
        value = self._session[name]
        if value is None:
            raise KeyError(name)
        return str(value)

    def get(self, name: str, default: Any = None) -> Any:  # the hot path: no exceptions
        call = self._call
        if call is not None and name in call:
            value = call[name]
            return default if value is None else str(value)
        session = self._session
        if type(session) is CaseInsensitiveDict:
            item = session._store.get(name.lower())  # type: ignore[attr-defined]
            value = None if item is None else item[1]
        else:
            value = session.get(name)
        return default if value is None else str(value)

    def __contains__(self, name: object) -> bool:
        return self.get(name) is not None if isinstance(name, str) else False

    def __iter__(self) -> Iterator[str]:
        merged = CaseInsensitiveDict(self._session)
        if self._call is not None:
            merged.update(self._call)
        return (k for k, v in merged.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The merged headers as the cache takes them (name, value) -- cheap when the call adds
        none, the common case."""
        store = getattr(self._session, "_store", None)
        session: tuple[tuple[str, str], ...] | None = None
        if type(self._session) is CaseInsensitiveDict and isinstance(store, dict):
            # Its store is an OrderedDict of (name, value) pairs: taken whole when every value is
            # already text (the common case), with no per-name look-up.
            session = tuple(store.values())
            for _, value in session:
                if type(value) is not str:
                    session = None
                    break
        if session is None:
            session = tuple((k, str(v)) for k, v in self._session.items() if v is not None)
        call = self._call
        if not call:
            return session
        names = {k.lower() for k in call}
        kept = tuple(p for p in session if p[0].lower() not in names)
        return kept + tuple((k, str(v)) for k, v in call.items() if v is not None)


class ResilientSession(_Driver, requests.Session):
    """A ``requests.Session`` whose every request runs through :class:`Policies`.

    Drop it in wherever code takes a session. Errors are the client's (see ``_exceptions``),
    each also an instance of the matching ``requests`` exception. A response with an error
    status is returned, as ``requests`` does, unless retrying it ran out of attempts or time.
    """

    def __init__(
        self, policies: Policies | None = None, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        requests.Session.__init__(self)
        self.policies = policies or Policies()
        self.engine = Engine(self.policies, auth=auth, metrics=metrics)
        self._urls: dict[tuple[str, Any], str] = {}
        adapter = HTTPAdapter(
            pool_connections=self.policies.pool_connections,
            pool_maxsize=self.policies.pool_maxsize,
            max_retries=0,
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        # Background revalidations (stale-while-revalidate): a small pool the session owns.
        # At most one runs per cache entry (the cache's rule), so the queue stays short.
        self._runner = ThreadPoolExecutor(max_workers=BACKGROUND_WORKERS, thread_name_prefix="swr")
        self.engine.background = True

    def close(self) -> None:
        """Stop background revalidations (waiting for one in flight), then close the pools."""
        runner = getattr(self, "_runner", None)  # absent on an unpickled session
        if runner is not None:
            runner.shutdown(wait=True, cancel_futures=True)
        requests.Session.close(self)

    @property
    def pipeline(self) -> Engine:
        """The engine (the name of earlier versions)."""
        return self.engine

    @property
    def metrics(self) -> Metrics:
        """The counters of every call made through this session."""
        return self.engine.metrics

    def request(  # type: ignore[override]
        self,
        method: str | bytes,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        engine = self.engine
        method = method.decode() if isinstance(method, bytes) else method.upper()
        call_auth: Auth | None = None
        if isinstance(auth, Auth):
            call_auth, auth = auth, _no_auth
        elif auth is None and isinstance(self.auth, Auth):
            call_auth, auth = self.auth, _no_auth
        elif auth is None and engine.auth is not None:
            call_auth, auth = engine.auth, _no_auth
        lookup = None
        view: _MergedHeaders | None = None
        memo_key: tuple[str, Any] | None = None
        cache = engine.cache
        if (
            cache is not None
            and method in cache.policy.methods
            and data is None
            and json is None
            and files is None
            and isinstance(url, str)
            and not self.params
        ):
            memo_key = _memo_key(url, params)
            if memo_key is not None:
                view = _MergedHeaders(headers, self.headers)
                prepared_url = self._urls.get(memo_key)
                if prepared_url is not None:
                    lookup = cache.lookup(
                        method,
                        prepared_url,
                        view,
                        credential=engine.credential(call_auth or auth, view),
                    )
                    # A stale answer to revalidate takes the full path below (it needs a
                    # prepared request to send in the background); the lookup is reused.
                    final = (
                        None
                        if lookup.response is None or (lookup.background and engine.background)
                        else engine.served_hit(lookup, view.get("X-Request-ID"))
                    )
                    if final is not None and final.served is not None:
                        response = _native(final.served, None, prepared_url)
                        response.__dict__["resilience"] = final.info
                        return response
        req = requests.Request(
            method=method,
            url=url,
            headers=headers,
            files=files,
            data=data or {},
            json=json,
            params=params or {},
            auth=auth,
            cookies=cookies,
            hooks=hooks,
        )
        prep = self.prepare_request(req)
        if memo_key is not None and view is not None and lookup is None and prep.url and cache is not None:
            if len(self._urls) < _MEMO_LIMIT and len(prep.url) <= MEMO_URL_CHARS:
                self._urls[memo_key] = prep.url
            lookup = cache.lookup(
                method, prep.url, view, credential=engine.credential(call_auth or auth, view)
            )
        settings: dict[str, Any] = dict(
            self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)
        )
        streaming = bool(settings.pop("stream"))

        def send(p: requests.PreparedRequest, t: Any) -> requests.Response:
            return requests.Session.send(
                self, p, timeout=t, allow_redirects=allow_redirects, stream=True, **settings
            )

        return self._run(
            prep,
            send,
            auth=call_auth,
            timeout=timeout,
            stream=streaming,
            lookup=lookup,
            cache_auth=call_auth or (auth if auth is not _no_auth else None),
        )


def _memo_key(url: str, params: Any) -> tuple[str, Any] | None:
    if not params:
        return (url, None)
    if not isinstance(params, Mapping):
        return None
    items = []
    for k, v in params.items():
        if not isinstance(k, str) or not isinstance(v, str | int | float) or isinstance(v, bool):
            return None
        items.append((k, v))
    return (url, tuple(items))


class ResilientAdapter(_Driver, HTTPAdapter):
    """An ``HTTPAdapter`` running :class:`Policies`; mount it on any existing session.

    Each redirect hop is its own call here (the session follows redirects above the adapter).
    """

    def __init__(
        self, policies: Policies | None = None, *, auth: Auth | None = None, metrics: Metrics | None = None
    ) -> None:
        self.policies = policies or Policies()
        self.engine = Engine(self.policies, auth=auth, metrics=metrics)
        HTTPAdapter.__init__(
            self,
            pool_connections=self.policies.pool_connections,
            pool_maxsize=self.policies.pool_maxsize,
            max_retries=0,
        )

    @property
    def pipeline(self) -> Engine:
        """The engine (the name of earlier versions)."""
        return self.engine

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        def send(p: requests.PreparedRequest, t: Any) -> requests.Response:
            return HTTPAdapter.send(
                self, p, stream=True, timeout=t, verify=verify, cert=cert, proxies=proxies
            )

        return self._run(request, send, auth=None, timeout=timeout, stream=stream)
