"""Who is calling: the four credential forms, OAuth tokens and HMAC request signing.

Accepted everywhere but ``/health`` and ``/oauth/token``: ``X-API-Key``, ``Authorization:
Bearer`` with an API key or an issued token, ``Authorization: Basic``, and HMAC signing
(``X-Timestamp`` + ``X-Signature``), which a tenant may require. Messages never echo a
credential: a 401 says what was wrong, not with what. A credential that was presented and is
wrong raises :class:`WrongCredential`, so the caller can count guesses per address.

Issued tokens live in a map and in a queue in order of expiry (one TTL, so issue order): each
issue drops a few expired ones from the front, so issuing is O(1) however many are live.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers

from ._errors import ApiError
from ._tenants import Tenant, TenantDirectory


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its tenant and an opaque id of the credential used."""

    tenant: Tenant
    credential: str


@functools.lru_cache(maxsize=4096)
def _credential_id(kind: str, secret: str) -> str:
    # Buckets and logs need a stable name for a credential that is not the credential.
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def path_with_query(scope: MutableMapping[str, Any]) -> str:
    """The path and query as sent, which a request signature covers."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def signature_base(method: str, path_with_query: str, timestamp: str, body: bytes) -> bytes:
    """The string a request signature covers (CONTRACT section 2)."""
    return f"{method}\n{path_with_query}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(secret: str, method: str, path_with_query: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` value for a request."""
    mac = hmac.new(secret.encode(), signature_base(method, path_with_query, timestamp, body), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WrongCredential(ApiError):
    """A 401 for a credential that was presented and is wrong: a guess, as far as we can tell."""

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(401, message, headers=headers)


# Unix seconds have 10 digits until 2286; anything longer is no timestamp worth parsing.
_MAX_TIMESTAMP_DIGITS = 12
# Expired tokens dropped per issue: more than one, so the queue shrinks after a busy spell.
_PURGE_PER_ISSUE = 4


@dataclass(frozen=True, slots=True)
class IssuedToken:
    tenant: Tenant
    client_id: str
    expires_at: float


class Authenticator:
    """Resolves credentials to a :class:`Principal` or raises a 401 :class:`ApiError`."""

    def __init__(
        self,
        directory: TenantDirectory,
        *,
        token_ttl: int,
        signature_window: int,
        wall: Callable[[], float] = time.time,
        max_tokens: int = 100_000,
        tenant_in_token: bool = False,
    ) -> None:
        self._dir = directory
        self._token_ttl = token_ttl
        self._window = signature_window
        self._wall = wall
        self._max_tokens = max_tokens
        # With a shared state, a token ends in ".<tenant>": another process can match fault
        # rules on its tenant before it has looked the token up (verifying still does).
        self._tenant_in_token = tenant_in_token
        self._tokens: dict[str, IssuedToken] = {}
        # (expires_at, token) in order of expiry, for dropping expired tokens from the front.
        self._expiry: deque[tuple[float, str]] = deque()
        # Signatures seen within the window, oldest first, for replay detection.
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._signers = [t for t in directory.tenants if t.signing_secret]

    # -- tokens --------------------------------------------------------------------------
    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, int] | None:
        """A new access token for valid client credentials, else None."""
        entry = self._dir.by_client_id.get(client_id)
        if entry is None or not hmac.compare_digest(entry[0].encode(), client_secret.encode()):
            return None
        token = secrets.token_urlsafe(32)
        if self._tenant_in_token:
            token = f"{token}.{entry[1].name}"  # token_urlsafe never holds a "."
        now = self._wall()
        self._purge(now)
        expires_at = now + self._token_ttl
        self._tokens[token] = IssuedToken(entry[1], client_id, expires_at)
        self._expiry.append((expires_at, token))
        return token, self._token_ttl

    @property
    def live_tokens(self) -> int:
        """How many issued tokens are kept (some may have expired since the last purge)."""
        return len(self._tokens)

    def _purge(self, now: float) -> None:
        expiry, tokens = self._expiry, self._tokens
        for _ in range(_PURGE_PER_ISSUE):
            if not expiry:
                return
            expires_at, token = expiry[0]
            # Past the cap the oldest token goes early: a client that mints tokens in a loop
            # must not pin memory for a whole TTL.
            if expires_at > now and len(expiry) < self._max_tokens:
                return
            expiry.popleft()
            tokens.pop(token, None)

    def learn_token(self, token: str, tenant: str, client_id: str, expires_at: float) -> bool:
        """Keep a token another process issued (shared state); False if its tenant is unknown."""
        found = self._dir.by_name.get(tenant)
        if found is None:
            return False
        now = self._wall()
        self._purge(now)
        self._tokens[token] = IssuedToken(found, client_id, expires_at)
        self._expiry.append((expires_at, token))
        return True

    def unknown_token(self, headers: Mapping[str, str]) -> str | None:
        """The bearer token of a request when it is neither an API key nor a token this
        process knows: one another process may have issued (None otherwise)."""
        split = _split_authorization(headers)
        if split is None or split[0] != "bearer" or not split[1]:
            return None
        value = split[1]
        if value in self._tokens or value in self._dir.by_api_key:
            return None
        return value

    def issued(self, token: str) -> IssuedToken | None:
        """What this process knows of ``token``."""
        return self._tokens.get(token)

    # -- requests ------------------------------------------------------------------------
    def tenant_of(self, headers: Mapping[str, str]) -> str | None:
        """The tenant a request's credentials name, without verifying them (for matching)."""
        key = headers.get("x-api-key")
        if key is not None:
            tenant = self._dir.by_api_key.get(key)
            return tenant.name if tenant else None
        split = _split_authorization(headers)
        if split is None:
            return None
        scheme, value = split
        if scheme == "bearer":
            tenant = self._dir.by_api_key.get(value)
            if tenant is not None:
                return tenant.name
            issued = self._tokens.get(value)
            if issued is not None:
                return issued.tenant.name
            if self._tenant_in_token:
                named = self._dir.by_name.get(value.partition(".")[2])
                return named.name if named else None
            return None
        if scheme == "basic":
            user = _basic(value)
            entry = self._dir.by_basic_user.get(user[0]) if user else None
            return entry[1].name if entry else None
        return None

    def authenticate(
        self, headers: Headers, method: str, target: str | MutableMapping[str, Any], body: bytes
    ) -> Principal:
        """The caller, or a 401. ``target`` is the path with query, or the ASGI scope to read it
        from: it is only needed to check a signature, so unsigned requests never build it."""
        principal = self._credential(headers)
        signature = headers.get("x-signature")
        if signature is not None:
            path = target if isinstance(target, str) else path_with_query(target)
            signed_by = self._verify_signature(headers, signature, method, path, body, principal)
            if principal is None:
                principal = Principal(signed_by, f"sig:{signed_by.name}")
        if principal is None:
            raise ApiError(
                401,
                "authentication required: send X-API-Key, Authorization (Bearer or Basic)"
                " or a request signature",
            )
        if principal.tenant.require_signature and signature is None:
            raise ApiError(
                401,
                f"tenant {principal.tenant.name!r} requires signed requests:"
                " send X-Timestamp and X-Signature",
            )
        return principal

    def _credential(self, headers: Headers) -> Principal | None:
        # Every credential presented must be valid: a bad one is never masked by a good one.
        by_key = self._api_key(headers)
        by_auth = self._authorization(headers)
        if by_key is not None and by_auth is not None and by_key.tenant is not by_auth.tenant:
            raise ApiError(401, "X-API-Key and Authorization name different tenants")
        return by_key or by_auth

    def _api_key(self, headers: Headers) -> Principal | None:
        key = headers.get("x-api-key")
        if key is None:
            return None
        tenant = self._dir.by_api_key.get(key)
        if tenant is None:
            raise WrongCredential("the X-API-Key header does not name a known API key")
        return Principal(tenant, _credential_id("key", key))

    def _authorization(self, headers: Headers) -> Principal | None:
        split = _split_authorization(headers)
        if split is None:
            return None
        scheme, value = split
        if scheme == "bearer":
            if not value:
                raise ApiError(401, "the Bearer credential is empty")
            tenant = self._dir.by_api_key.get(value)
            if tenant is not None:
                return Principal(tenant, _credential_id("key", value))
            issued = self._tokens.get(value)
            if issued is None:
                raise WrongCredential(
                    "the bearer token is not a known API key or access token",
                    headers={"WWW-Authenticate": 'Bearer realm="resonanceos", error="invalid_token"'},
                )
            if issued.expires_at <= self._wall():
                # Its queue entry goes when the purge reaches it.
                del self._tokens[value]
                raise ApiError(
                    401,
                    "the access token has expired; request a new one from /oauth/token",
                    headers={"WWW-Authenticate": 'Bearer realm="resonanceos", error="invalid_token"'},
                )
            return Principal(issued.tenant, _credential_id("oauth", issued.client_id))
        if scheme == "basic":
            user = _basic(value)
            if user is None:
                raise ApiError(401, "the Basic credential is not base64 of user:password")
            entry = self._dir.by_basic_user.get(user[0])
            if entry is None or not hmac.compare_digest(entry[0].encode(), user[1].encode()):
                raise WrongCredential("unknown user or wrong password")
            return Principal(entry[1], _credential_id("basic", user[0]))
        raise ApiError(401, f"unsupported Authorization scheme {scheme[:20]!r}: use Bearer or Basic")

    def _verify_signature(
        self,
        headers: Headers,
        signature: str,
        method: str,
        path_with_query: str,
        body: bytes,
        principal: Principal | None,
    ) -> Tenant:
        stamp = headers.get("x-timestamp")
        if stamp is None:
            raise ApiError(401, "X-Signature needs X-Timestamp (unix seconds)")
        # int() would take " 1", "+1", "1_0", other scripts' digits and 4,000-digit numbers
        # whose distance from now overflows a float: accept plain ASCII seconds only.
        if not (0 < len(stamp) <= _MAX_TIMESTAMP_DIGITS and stamp.isascii() and stamp.isdigit()):
            raise ApiError(401, "X-Timestamp must be an integer number of unix seconds")
        when = int(stamp)
        if abs(self._wall() - when) > self._window:
            raise ApiError(401, f"X-Timestamp is outside the allowed window of ±{self._window} s")
        if not signature.startswith("sha256="):
            raise ApiError(401, "X-Signature must look like sha256=<hex>")
        candidates = [principal.tenant] if principal is not None else self._signers
        base = signature_base(method, path_with_query, stamp, body)
        signer = None
        for tenant in candidates:
            if tenant.signing_secret is None:
                continue
            expected = "sha256=" + hmac.new(tenant.signing_secret.encode(), base, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode(), signature.encode()):
                signer = tenant
                break
        if signer is None:
            raise WrongCredential("the request signature does not match")
        self._remember(signature, when)
        return signer

    def _remember(self, signature: str, when: int) -> None:
        now = self._wall()
        seen = self._seen
        while seen:
            first_sig, first_expiry = next(iter(seen.items()))
            if first_expiry > now:
                break
            del seen[first_sig]
        if signature in seen:
            raise ApiError(401, "this request signature was already used (replay)")
        # A signature stays replayable as long as its timestamp is inside the window.
        seen[signature] = when + self._window + 1


def _split_authorization(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The Authorization header as (lower-case scheme, credential), or None when absent."""
    auth = headers.get("authorization")
    if auth is None:
        return None
    scheme, _, value = auth.partition(" ")
    return scheme.lower(), value.strip()


def _basic(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
