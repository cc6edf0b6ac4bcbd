"""Credentials: API key, bearer token, basic, OAuth2 client credentials, HMAC request signing.

Each is a ``requests`` auth object (usable with a plain ``Session`` too) with two additions the
resilient layer relies on: ``reapply`` (what must change on every later attempt of a call: a
signature carries a timestamp and the server refuses replays; a token may have been refreshed)
and ``identity`` (a digest naming the credential, for
cache keys, never the secret itself). Every secret is registered for redaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections import OrderedDict
from typing import Any

import requests
from requests.auth import AuthBase

from ._cache import credential_digest
from ._clock import Clock, monotonic, wall
from ._exceptions import RequestInvalid, ResponseInvalid, Unauthorized, map_exception
from ._redaction import register_secret

__all__ = ["ApiKeyAuth", "Auth", "BasicAuth", "BearerAuth", "HmacAuth", "OAuth2ClientCredentials"]


class Auth(AuthBase):
    """Base class of the client's credentials."""

    identity: str = ""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        self.apply(r)
        return r

    def apply(self, r: requests.PreparedRequest) -> None:
        """Add the credential to ``r``."""
        raise NotImplementedError

    def reapply(self, r: requests.PreparedRequest) -> None:
        """Refresh what must change between attempts of one call (after :meth:`apply`)."""

    def on_unauthorized(self, response: requests.Response) -> bool:
        """React to a 401; ``True`` when fresh credentials make one immediate resend worthwhile."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identity={self.identity[:8]!r})"


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

    def apply(self, r: requests.PreparedRequest) -> None:
        if self.query_param:
            r.prepare_url(r.url, {self.query_param: self._key})
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

    def apply(self, r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = self._value


class BasicAuth(Auth):
    """``Authorization: Basic ...`` from a user name and password."""

    def __init__(self, username: str, password: str) -> None:
        register_secret(password)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        register_secret(token)
        self._value = f"Basic {token}"
        self.identity = credential_digest("basic", username, password)

    def apply(self, r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = self._value


class OAuth2ClientCredentials(Auth):
    """OAuth2 client-credentials grant: fetches a bearer token, refreshes it before expiry.

    The token is fetched from ``token_url`` (default: ``/oauth/token`` on the request's origin),
    ``skew`` seconds (default 30, at most half the lifetime) before it expires a new one is
    fetched. Concurrent callers share one fetch: the others wait on a condition, and no lock is
    held during the fetch itself. After a 401, the token is dropped and the call resent once.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        scope: str | None = None,
        skew: float = 30.0,
        timeout: tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
        clock: Clock = monotonic,
    ) -> None:
        register_secret(client_secret)
        self.client_id = client_id
        self._secret = client_secret
        self.token_url = token_url
        self.scope = scope
        self.skew = skew
        self.timeout = timeout
        self._session = session
        self._clock = clock
        self._cond = threading.Condition()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refreshing = False
        self.fetches = 0
        self.identity = credential_digest("oauth2", client_id, client_secret)

    def apply(self, r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = "Bearer " + self.token(r.url)

    def reapply(self, r: requests.PreparedRequest) -> None:
        self.apply(r)

    def token(self, request_url: str | None = None) -> str:
        """A valid access token, fetching one when there is none or it is about to expire."""
        with self._cond:
            while True:
                if self._token is not None and self._clock() < self._expires_at:
                    return self._token
                if not self._refreshing:
                    self._refreshing = True
                    break
                self._cond.wait(timeout=1.0)
        token: str | None = None
        try:
            token, lifetime = self._fetch(request_url)
        finally:
            with self._cond:
                if token is not None:
                    self._token = token
                    skew = min(self.skew, lifetime / 2)
                    self._expires_at = self._clock() + lifetime - skew
                self._refreshing = False
                self._cond.notify_all()
        return token

    def on_unauthorized(self, response: requests.Response) -> bool:
        sent = response.request.headers.get("Authorization", "") if response.request is not None else ""
        with self._cond:
            if self._token is not None and sent == f"Bearer {self._token}":
                self._token = None
        return True

    def _url(self, request_url: str | None) -> str:
        if self.token_url:
            return self.token_url
        if not request_url:
            raise RequestInvalid("OAuth2ClientCredentials needs token_url or a request URL to derive it from")
        scheme, _, rest = request_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}/oauth/token"

    def _fetch(self, request_url: str | None) -> tuple[str, float]:
        url = self._url(request_url)
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
        }
        if self.scope:
            form["scope"] = self.scope
        session = self._session
        if session is None:
            session = self._session = requests.Session()
        try:
            response = session.post(
                url, data=form, timeout=self.timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            raise map_exception(exc, method="POST", url=url) from exc
        self.fetches += 1
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise ResponseInvalid(
                f"token endpoint answered {response.status_code} with a non-JSON body"
            ) from exc
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            code = error if isinstance(error, str) else "token_error"
            raise Unauthorized(
                f"token request refused ({response.status_code} {code}) for client {self.client_id!r}",
                status=response.status_code,
                body={"error": code},
                code=code,
                response=response,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in", 3600) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise ResponseInvalid("token endpoint answered without a usable access_token/expires_in")
        register_secret(token)
        return token, float(lifetime)


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

    def on_unauthorized(self, response: requests.Response) -> bool:
        return self.inner.on_unauthorized(response) if self.inner is not None else False

    def apply(self, r: requests.PreparedRequest) -> None:
        if self.inner is not None:
            self.inner.apply(r)
        self.sign(r)

    def reapply(self, r: requests.PreparedRequest) -> None:
        if self.inner is not None:
            self.inner.reapply(r)
        self.sign(r)

    def sign(self, r: requests.PreparedRequest) -> None:
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
