"""Credentials: the four forms, OAuth tokens, signing and replay, tenant isolation."""

from __future__ import annotations

import base64
import time

import pytest
from starlette.datastructures import Headers

from mock_server import ServerThread
from mock_server._auth import Authenticator, sign
from mock_server._errors import ApiError
from mock_server._tenants import DEFAULT_TENANTS, TenantDirectory, parse_tenants

from .conftest import Caller, error_of

BASIC = "Basic " + base64.b64encode(b"demo:demo-pass").decode()


@pytest.mark.socket
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-API-Key": "demo-key"}, id="api-key-header"),
        pytest.param({"Authorization": "Bearer demo-key"}, id="api-key-bearer"),
        pytest.param({"Authorization": BASIC}, id="basic"),
    ],
)
def test_credential_forms(mock_server: ServerThread, headers: dict[str, str]) -> None:
    """API key (header or bearer) and Basic each authenticate as the demo tenant."""
    caller = Caller(mock_server.url, headers)
    assert caller.create("mine").status_code == 201
    assert caller("GET", "/profiles").json()["items"][0]["tenant"] == "demo"


@pytest.mark.socket
def test_oauth_client_credentials(mock_server: ServerThread) -> None:
    """A token from /oauth/token (form or Basic client auth) works as a bearer credential."""
    anon = Caller(mock_server.url)
    form = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"}
    token = anon("POST", "/oauth/token", data=form).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert (
        Caller(mock_server.url, {"Authorization": f"Bearer {token['access_token']}"}).create("t").status_code
        == 201
    )
    basic = anon(
        "POST", "/oauth/token", data={"grant_type": "client_credentials"}, auth=("acme-client", "acme-secret")
    )
    assert basic.status_code == 200
    acme = Caller(mock_server.url, {"Authorization": f"Bearer {basic.json()['access_token']}"})
    assert acme("GET", "/profiles").json()["items"] == []


@pytest.mark.socket
@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        pytest.param(
            {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "nope"},
            401,
            "invalid_client",
            id="wrong-secret",
        ),
        pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", id="grant"),
        pytest.param({"client_id": "demo-client"}, 400, "invalid_request", id="no-grant"),
        pytest.param({"grant_type": "client_credentials"}, 401, "invalid_client", id="no-client"),
    ],
)
def test_oauth_errors_follow_rfc6749(
    mock_server: ServerThread, form: dict[str, str], status: int, error: str
) -> None:
    """Token errors use RFC 6749's codes and never echo the secret."""
    response = Caller(mock_server.url)("POST", "/oauth/token", data=form)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "nope" not in response.text


@pytest.mark.socket
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"X-API-Key": "wrong-key"}, id="unknown-key"),
        pytest.param({"Authorization": "Bearer forged-token"}, id="forged-token"),
        pytest.param({"Authorization": "Basic " + base64.b64encode(b"demo:bad").decode()}, id="bad-password"),
        pytest.param({"Authorization": "Basic !!!"}, id="not-base64"),
        pytest.param({"Authorization": "Digest x"}, id="unknown-scheme"),
        pytest.param({"X-Signature": "sha256=00", "X-Timestamp": str(int(time.time()))}, id="bad-signature"),
    ],
)
def test_bad_credentials_are_401(mock_server: ServerThread, headers: dict[str, str]) -> None:
    """Missing or bad credentials are 401 with WWW-Authenticate, naming no secret."""
    response = Caller(mock_server.url, headers)("GET", "/profiles")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert "Bearer" in response.headers["WWW-Authenticate"]
    for secret in ("wrong-key", "forged-token", "bad"):
        assert secret not in error_of(response)["message"]


@pytest.mark.socket
def test_tenants_are_isolated(demo: Caller, acme: Caller) -> None:
    """One tenant can neither read, change, delete nor list another's profiles."""
    demo.create("secret-plan")
    assert acme("GET", "/profiles/demo/secret-plan").status_code == 403
    assert acme("PUT", "/profiles/demo/secret-plan", json={"hrv_vector": [0] * 8}).status_code == 403
    assert acme("DELETE", "/profiles/demo/secret-plan").status_code == 403
    assert acme.create("x", tenant="demo").status_code == 403
    assert acme("GET", "/profiles").json()["items"] == []
    assert "secret-plan" not in acme("GET", "/profiles/demo/secret-plan").text
    assert demo("GET", "/profiles/demo/secret-plan").status_code == 200


def _signed(
    caller: Caller,
    secret: str,
    method: str,
    path: str,
    body: bytes = b"",
    stamp: int | None = None,
    **headers: str,
) -> dict[str, str]:
    ts = str(int(time.time()) if stamp is None else stamp)
    return {"X-Timestamp": ts, "X-Signature": sign(secret, method, path, ts, body), **headers}


@pytest.mark.socket
def test_signed_requests_and_replay(mock_server: ServerThread) -> None:
    """A correct signature authenticates alone; the same signature twice is a replay (401)."""
    caller = Caller(mock_server.url)
    body = b'{"tenant":"demo","profile_name":"signed","hrv_vector":[0,0,0,0,0,0,0,0]}'
    headers = _signed(
        caller, "demo-signing-secret", "POST", "/profiles", body, **{"Content-Type": "application/json"}
    )
    assert caller("POST", "/profiles", data=body, headers=headers).status_code == 201
    replay = caller("POST", "/profiles", data=body, headers=headers)
    assert replay.status_code == 401 and "replay" in error_of(replay)["message"]
    query = _signed(caller, "demo-signing-secret", "GET", "/profiles?limit=5")
    assert caller("GET", "/profiles?limit=5", headers=query).status_code == 200
    wrong_path = _signed(caller, "demo-signing-secret", "GET", "/profiles?limit=6")
    assert caller("GET", "/profiles?limit=5", headers=wrong_path).status_code == 401


@pytest.mark.socket
def test_signature_window(mock_server: ServerThread) -> None:
    """A timestamp outside ±300 s is refused even with a correct signature."""
    caller = Caller(mock_server.url)
    old = _signed(caller, "demo-signing-secret", "GET", "/profiles", stamp=int(time.time()) - 400)
    response = caller("GET", "/profiles", headers=old)
    assert response.status_code == 401 and "window" in error_of(response)["message"]


@pytest.mark.socket
def test_signature_is_verified_with_a_credential(mock_server: ServerThread) -> None:
    """An API key with a wrong signature is still 401: a present signature is always checked."""
    caller = Caller(mock_server.url, {"X-API-Key": "demo-key"})
    headers = _signed(caller, "acme-signing-secret", "GET", "/profiles")
    assert caller("GET", "/profiles", headers=headers).status_code == 401


def test_require_signature_tenant() -> None:
    """A tenant that requires signing refuses unsigned requests and accepts signed ones."""
    tenants = parse_tenants(
        {"tenants": [{"name": "strict", "api_keys": ["k"], "signing_secret": "s", "require_signature": True}]}
    )
    now = [1_000_000.0]
    auth = Authenticator(TenantDirectory(tenants), token_ttl=60, signature_window=300, wall=lambda: now[0])
    with pytest.raises(ApiError, match="requires signed"):
        auth.authenticate(Headers({"x-api-key": "k"}), "GET", "/profiles", b"")
    signed = {
        "x-api-key": "k",
        "x-timestamp": "1000000",
        "x-signature": sign("s", "GET", "/profiles", "1000000", b""),
    }
    assert auth.authenticate(Headers(signed), "GET", "/profiles", b"").tenant.name == "strict"


def test_tokens_expire_on_the_injected_clock() -> None:
    """An issued token stops working once its lifetime passes."""
    now = [0.0]
    auth = Authenticator(
        TenantDirectory(DEFAULT_TENANTS), token_ttl=60, signature_window=300, wall=lambda: now[0]
    )
    issued = auth.issue_token("demo-client", "demo-secret")
    assert issued is not None
    headers = Headers({"authorization": f"Bearer {issued[0]}"})
    assert auth.authenticate(headers, "GET", "/", b"").tenant.name == "demo"
    now[0] = 60.0
    with pytest.raises(ApiError, match="expired"):
        auth.authenticate(headers, "GET", "/", b"")
    assert auth.issue_token("demo-client", "wrong") is None


def test_replay_memory_forgets_old_signatures() -> None:
    """Signatures are remembered only while their timestamp could still be accepted."""
    now = [1_000_000.0]
    auth = Authenticator(
        TenantDirectory(DEFAULT_TENANTS), token_ttl=60, signature_window=300, wall=lambda: now[0]
    )
    for i in range(50):
        ts = str(int(now[0]))
        sig = sign("demo-signing-secret", "GET", f"/p{i}", ts, b"")
        auth.authenticate(Headers({"x-timestamp": ts, "x-signature": sig}), "GET", f"/p{i}", b"")
        now[0] += 30
    assert len(auth._seen) <= 12
