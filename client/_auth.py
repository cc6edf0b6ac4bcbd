"""Credentials: API key, bearer token, basic, OAuth2 client credentials, HMAC request signing.

Sans-IO: an auth object changes a request (headers, or the URL for a key in the query) and never
sends anything itself. What must change on every later attempt of a call is ``reapply`` (a
signature carries a timestamp and the server refuses replays; a token may have been refreshed);
``identity`` is a digest naming the credential, for cache keys, never the secret itself. Every
secret is registered for redaction.

The engine runs :meth:`Auth.flow` (as httpx runs ``auth_flow``): a generator that may yield a
request of its own (OAuth2's token request) for the driver to send, and gets the answer back.
Each object is also a plain callable taking a ``requests.PreparedRequest`` (so it works as
``auth=`` on a plain ``requests.Session``), and anything else with ``method``, ``url``,
``headers`` and ``body``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Generator
from typing import Any
from urllib.parse import urlencode

from ._clock import Clock, monotonic, wall
from ._errors import ApiError, RequestInvalid, ResponseInvalid, Unauthorized
from ._http import Received, Request
from ._httpcache import credential_digest
from ._redaction import register_secret

__all__ = ["ApiKeyAuth", "Auth", "AuthFlow", "BasicAuth", "BearerAuth", "HmacAuth", "OAuth2ClientCredentials"]

#: What :meth:`Auth.flow` yields (a request to send for the credential's sake) and is sent back.
AuthFlow = Generator[Request, Received, None]


def _sent_headers(sent: Any) -> Any:
    """The headers of the request that was sent: ``sent`` is that request, or a response
    carrying it as ``.request`` (as ``requests`` and ``httpx`` responses do)."""
    request = getattr(sent, "request", None)
    return getattr(request if request is not None else sent, "headers", None) or {}


class Auth:
    """Base class of the client's credentials."""

    identity: str = ""

    def __call__(self, r: Any) -> Any:
        self.apply(r)
        return r

    def apply(self, r: Any) -> None:
        """Add the credential to ``r``."""
        raise NotImplementedError

    def reapply(self, r: Any) -> None:
        """Refresh what must change between attempts of one call (after :meth:`apply`)."""

    def flow(self, r: Request, *, again: bool = False) -> AuthFlow:
        """Apply (``again``: reapply) the credential, first sending what it needs (a token)."""
        if again:
            self.reapply(r)
        else:
            self.apply(r)
        return
        yield  # a generator that sends nothing

    def on_unauthorized(self, sent: Any) -> bool:
        """React to a 401 (``sent``: the request sent, or the response carrying it); ``True``
        when fresh credentials make one immediate resend worthwhile."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identity={self.identity[:8]!r})"


def _add_query(r: Any, name: str, value: str) -> None:
    prepare_url = getattr(r, "prepare_url", None)
    if prepare_url is not None:  # a requests.PreparedRequest: let it encode as it always does
        prepare_url(r.url, {name: value})
        return
    url = str(r.url)
    base, hash_sign, fragment = url.partition("#")
    sep = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        sep = ""
    r.url = base + sep + urlencode({name: value}) + hash_sign + fragment


class ApiKeyAuth(Auth):
    """An API key in a header (``X-API-Key`` by default) or, with ``query_param``, in the query."""

    def __init__(self, key: str, *, header: str = "X-API-Key", query_param: str | None = None) -> None:
        if not key:
            raise ValueError("ApiKeyAuth needs a non-empty key")
        register_secret(key)
        self._key = key
        self.header = header
        self.query_param = query_param
        self.identity = credential_digest("api-key", key)

    def apply(self, r: Any) -> None:
        if self.query_param:
            _add_query(r, self.query_param, self._key)
        else:
            r.headers[self.header] = self._key


class BearerAuth(Auth):
    """``Authorization: Bearer <token>`` with a fixed token (or an API key the server takes so)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("BearerAuth needs a non-empty token")
        register_secret(token)
        self._value = f"Bearer {token}"
        self.identity = credential_digest("bearer", token)

    def apply(self, r: Any) -> None:
        r.headers["Authorization"] = self._value


class BasicAuth(Auth):
    """``Authorization: Basic ...`` from a user name and password."""

    def __init__(self, username: str, password: str) -> None:
        register_secret(password)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        register_secret(token)
        self._value = f"Basic {token}"
        self.identity = credential_digest("basic", username, password)

    def apply(self, r: Any) -> None:
        r.headers["Authorization"] = self._value


class OAuth2ClientCredentials(Auth):
    """OAuth2 client-credentials grant: fetches a bearer token, refreshes it before expiry.

    The token is fetched from ``token_url`` (default: ``/oauth/token`` on the request's origin),
    ``skew`` seconds (default 30, at most half the lifetime) before it expires a new one is
    fetched. Concurrent callers share one fetch: the others wait (a short sleep at a time) and no
    lock is held during the fetch itself. After a 401, the token is dropped and the call resent
    once. Inside a resilient driver the token request goes through that driver's transport (so
    the async client fetches it without blocking); :meth:`token` fetches it synchronously with
    ``session`` (a ``requests.Session``, created when needed).
    """

    #: How long a caller waits for another caller's fetch before fetching itself.
    WAIT_STEP = 0.01
    WAIT_STEPS = 1000

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        scope: str | None = None,
        skew: float = 30.0,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: Any = None,
        clock: Clock = monotonic,
    ) -> None:
        register_secret(client_secret)
        self.client_id = client_id
        self._secret = client_secret
        self.token_url = token_url
        self.scope = scope
        self.skew = skew
        self.timeout = timeout
        self.session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refreshing = False
        self.fetches = 0
        self.identity = credential_digest("oauth2", client_id, client_secret)

    # -- sans-IO -------------------------------------------------------------------------------
    def flow(self, r: Request, *, again: bool = False) -> AuthFlow:
        token = yield from self.token_flow(r.url)
        r.headers["Authorization"] = "Bearer " + token

    def token_flow(self, request_url: str | None = None) -> Generator[Request, Received, str]:
        """A valid access token, fetching one (yielding the token request) when there is none
        or it is about to expire. Yields ``Request(method="WAIT")`` to ask for a short pause
        while another caller fetches."""
        for _ in range(self.WAIT_STEPS):
            with self._lock:
                if self._token is not None and self._clock() < self._expires_at:
                    return self._token
                if not self._refreshing:
                    self._refreshing = True
                    break
            yield Request("WAIT", "")
        else:
            with self._lock:
                self._refreshing = True
        token: str | None = None
        lifetime = 0.0
        try:
            received = yield self.token_request(request_url)
            token, lifetime = self.accept_token(received)
        finally:
            with self._lock:
                if token is not None:
                    self._token = token
                    skew = min(self.skew, lifetime / 2)
                    self._expires_at = self._clock() + lifetime - skew
                self._refreshing = False
        return token

    def token_request(self, request_url: str | None = None) -> Request:
        """The form POST that asks for a token."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
        }
        if self.scope:
            form["scope"] = self.scope
        request = Request("POST", self._url(request_url), body=urlencode(form).encode())
        request.headers["Content-Type"] = "application/x-www-form-urlencoded"
        request.headers["Accept"] = "application/json"
        return request

    def accept_token(self, received: Received) -> tuple[str, float]:
        """The token and its lifetime from the token endpoint's answer (or the error it means)."""
        self.fetches += 1
        try:
            body: Any = json.loads(received.body or b"")
        except ValueError as exc:
            raise ResponseInvalid(f"token endpoint answered {received.status} with a non-JSON body") from exc
        if received.status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            code = error if isinstance(error, str) else "token_error"
            raise Unauthorized(
                f"token request refused ({received.status} {code}) for client {self.client_id!r}",
                status=received.status,
                body={"error": code},
                code=code,
                response=received.native,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in", 3600) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise ResponseInvalid("token endpoint answered without a usable access_token/expires_in")
        register_secret(token)
        return token, float(lifetime)

    # -- the requests convenience ---------------------------------------------------------------
    def apply(self, r: Any) -> None:
        r.headers["Authorization"] = "Bearer " + self.token(str(r.url))

    def reapply(self, r: Any) -> None:
        self.apply(r)

    def token(self, request_url: str | None = None) -> str:
        """A valid access token, fetched synchronously with ``session`` when needed."""
        import time

        flow = self.token_flow(request_url)
        reply: Received | None = None
        try:
            while True:
                wanted = flow.send(reply)  # type: ignore[arg-type]
                if wanted.method == "WAIT":
                    time.sleep(self.WAIT_STEP)
                    reply = None
                    continue
                reply = self._send_sync(wanted)
        except StopIteration as stop:
            return str(stop.value)

    def _send_sync(self, request: Request) -> Received:
        from ._exceptions import map_exception, public

        session = self.session
        if session is None:
            import requests  # the token fetch of the requests convenience; the engine never gets here

            session = self.session = requests.Session()
        try:
            response = session.post(
                request.url,
                data=(request.body or b"").decode(),
                headers=dict(request.headers),
                timeout=self.timeout,
            )
        except ApiError as exc:
            raise public(exc) from None
        except Exception as exc:
            raise map_exception(exc, method="POST", url=request.url) from exc
        return Received(response.status_code, response.headers, response.content, response)

    def on_unauthorized(self, sent: Any) -> bool:
        headers = _sent_headers(sent)
        value = headers.get("Authorization", "") if headers else ""
        with self._lock:
            if self._token is not None and value == f"Bearer {self._token}":
                self._token = None
        return True

    def _url(self, request_url: str | None) -> str:
        if self.token_url:
            return self.token_url
        if not request_url:
            raise RequestInvalid("OAuth2ClientCredentials needs token_url or a request URL to derive it from")
        scheme, _, rest = request_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}/oauth/token"


class HmacAuth(Auth):
    """HMAC-SHA256 request signing (``X-Timestamp`` and ``X-Signature``), re-done on every attempt.

    The signature covers ``METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nhex(SHA256(body))``. The server
    refuses a signature it has seen, so two identical requests within one second would collide:
    the signer remembers recent signatures and moves the timestamp a second ahead (the server
    accepts +-300 s) until the signature is new. ``inner`` is applied first (e.g. an API key).
    """

    _MEMORY = 4096
    _MAX_AHEAD = 120

    def __init__(self, secret: str, *, inner: Auth | None = None, wall_clock: Clock = wall) -> None:
        if not secret:
            raise ValueError("HmacAuth needs a non-empty secret")
        register_secret(secret)
        self._secret = secret.encode()
        self.inner = inner
        self._wall = wall_clock
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.identity = credential_digest("hmac", secret, inner.identity if inner else None)

    def on_unauthorized(self, sent: Any) -> bool:
        return self.inner.on_unauthorized(sent) if self.inner is not None else False

    def flow(self, r: Request, *, again: bool = False) -> AuthFlow:
        if self.inner is not None:
            yield from self.inner.flow(r, again=again)
        self.sign(r)

    def apply(self, r: Any) -> None:
        if self.inner is not None:
            self.inner.apply(r)
        self.sign(r)

    def reapply(self, r: Any) -> None:
        if self.inner is not None:
            self.inner.reapply(r)
        self.sign(r)

    def sign(self, r: Any) -> None:
        """Set ``X-Timestamp`` and a never-before-used ``X-Signature`` on ``r``."""
        body = r.body
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")  # as urllib3 2 encodes str bodies on the wire
        else:
            raise RequestInvalid("HmacAuth can only sign bytes or str bodies, not streams")
        digest = hashlib.sha256(raw).hexdigest()
        method = (r.method or "GET").upper()
        path = r.path_url
        now = int(self._wall())
        with self._lock:
            for ahead in range(self._MAX_AHEAD):
                timestamp = str(now + ahead)
                base = f"{method}\n{path}\n{timestamp}\n{digest}".encode()
                signature = "sha256=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
                if signature not in self._recent:
                    break
            self._recent[signature] = None
            if len(self._recent) > self._MEMORY:
                self._recent.popitem(last=False)
        r.headers["X-Timestamp"] = timestamp
        r.headers["X-Signature"] = signature
