"""Credentials: API key, bearer, basic, OAuth2 client credentials, HMAC signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading

import pytest
import requests

from client import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    FakeClock,
    HmacAuth,
    OAuth2ClientCredentials,
    ResponseInvalid,
    Unauthorized,
)
from client._redaction import redact

from .fakes import FakeAdapter, ok


def prepared(method="GET", url="http://api.test/profiles?limit=5", body=None):
    return requests.Request(method, url, data=body).prepare()


def expected_signature(secret, method, path, ts, body=b""):
    base = f"{method}\n{path}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    return "sha256=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def test_api_key_in_header():
    """X-API-Key by default."""
    r = prepared()
    ApiKeyAuth("demo-key")(r)
    assert r.headers["X-API-Key"] == "demo-key"


def test_api_key_in_query():
    """query_param puts the key in the query, keeping existing parameters."""
    r = prepared()
    ApiKeyAuth("demo-key", query_param="api_key")(r)
    assert r.url == "http://api.test/profiles?limit=5&api_key=demo-key"


def test_bearer_and_basic():
    """Bearer and Basic set Authorization."""
    r = prepared()
    BearerAuth("tok-abc")(r)
    assert r.headers["Authorization"] == "Bearer tok-abc"
    BasicAuth("demo", "demo-pass")(r)
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b"demo:demo-pass").decode()


def test_identities_differ_and_hide_the_secret():
    """Each credential has a digest identity that does not contain the secret."""
    a, b = ApiKeyAuth("demo-key"), ApiKeyAuth("acme-key")
    assert a.identity != b.identity
    assert "demo-key" not in a.identity and "demo-key" not in repr(a)


def test_secrets_are_registered_for_redaction():
    """Constructing an auth object makes redact() mask its secret anywhere."""
    BasicAuth("u", "very-private-pass")
    HmacAuth("signing-secret-xyz")
    assert "very-private-pass" not in redact("pw=very-private-pass")
    assert "signing-secret-xyz" not in redact("oops signing-secret-xyz")


def test_hmac_signature_matches_the_contract_formula():
    """X-Signature = sha256=HMAC(secret, METHOD\\nPATH?QUERY\\nTS\\nsha256(body))."""
    clock = FakeClock()
    r = prepared("POST", "http://api.test/hr_generate?x=1", body=b'{"prompt":"p"}')
    HmacAuth("demo-signing-secret", wall_clock=clock.wall)(r)
    ts = r.headers["X-Timestamp"]
    assert ts == str(int(clock.wall()))
    assert r.headers["X-Signature"] == expected_signature(
        "demo-signing-secret", "POST", "/hr_generate?x=1", ts, b'{"prompt":"p"}'
    )


def test_hmac_signs_empty_body_and_str_body():
    """No body hashes b''; a str body hashes its UTF-8 bytes (as urllib3 sends them)."""
    clock = FakeClock()
    r = prepared()
    HmacAuth("s3cret", wall_clock=clock.wall)(r)
    assert r.headers["X-Signature"] == expected_signature(
        "s3cret", "GET", "/profiles?limit=5", r.headers["X-Timestamp"]
    )
    r2 = prepared("PUT", "http://api.test/p", body="é")
    HmacAuth("s3cret", wall_clock=clock.wall)(r2)
    assert r2.headers["X-Signature"] == expected_signature(
        "s3cret", "PUT", "/p", r2.headers["X-Timestamp"], "é".encode()
    )


def test_hmac_never_repeats_a_signature():
    """Identical requests in the same second get distinct timestamps, so no replay is refused."""
    clock = FakeClock()
    auth = HmacAuth("s3cret", wall_clock=clock.wall)
    sigs, stamps = set(), []
    for _ in range(5):
        r = prepared()
        auth(r)
        sigs.add(r.headers["X-Signature"])
        stamps.append(int(r.headers["X-Timestamp"]))
    assert len(sigs) == 5
    assert stamps == [int(clock.wall()) + i for i in range(5)]


def test_hmac_reapply_keeps_inner_credential_once():
    """Re-signing for a retry does not add the inner query key twice."""
    clock = FakeClock()
    auth = HmacAuth("s3cret", inner=ApiKeyAuth("k-123", query_param="api_key"), wall_clock=clock.wall)
    r = prepared()
    auth.apply(r)
    first = r.headers["X-Signature"]
    auth.reapply(r)
    assert r.url.count("api_key=") == 1
    assert r.headers["X-Signature"] != first


def test_hmac_refuses_streams():
    """A generator body cannot be signed."""
    r = requests.Request("POST", "http://h/x", data=iter([b"a"])).prepare()
    with pytest.raises(ValueError):
        HmacAuth("s3cret")(r)


def token_session(*answers):
    adapter = FakeAdapter(*answers)
    session = requests.Session()
    session.mount("http://", adapter)
    return session, adapter


def tok(name, expires=3600):
    return ok({"access_token": name, "token_type": "Bearer", "expires_in": expires})


def test_oauth_fetches_with_client_credentials_form():
    """The token request is a form POST with grant_type=client_credentials and the client's id/secret."""
    session, adapter = token_session(tok("t1"))
    auth = OAuth2ClientCredentials(
        "demo-client", "demo-secret", token_url="http://api.test/oauth/token", session=session
    )
    r = prepared()
    auth(r)
    assert r.headers["Authorization"] == "Bearer t1"
    sent = adapter.sent[0]
    assert sent.method == "POST" and sent.url == "http://api.test/oauth/token"
    assert "grant_type=client_credentials" in sent.body and "client_id=demo-client" in sent.body


def test_oauth_reuses_then_refreshes_before_expiry_with_skew():
    """The token is reused until expires_in - skew, then refreshed."""
    clock = FakeClock()
    session, adapter = token_session(tok("t1", 100), tok("t2", 100))
    auth = OAuth2ClientCredentials("c", "secret-1", session=session, clock=clock, skew=10)
    assert auth.token("http://api.test/x") == "t1"
    clock.advance(89)
    assert auth.token("http://api.test/x") == "t1"
    clock.advance(1)
    assert auth.token("http://api.test/x") == "t2"
    assert adapter.count == 2


def test_oauth_skew_is_at_most_half_the_lifetime():
    """A 10 s token with a 30 s skew is refreshed after 5 s, not immediately forever."""
    clock = FakeClock()
    session, adapter = token_session(tok("t1", 10), tok("t2", 10))
    auth = OAuth2ClientCredentials("c", "secret-2", session=session, clock=clock, skew=30)
    auth.token("http://h/")
    clock.advance(4)
    auth.token("http://h/")
    assert adapter.count == 1


def test_oauth_single_flight_under_threads():
    """32 threads needing a token cause one fetch."""
    session, adapter = token_session(tok("t1"))
    auth = OAuth2ClientCredentials("c", "secret-3", session=session)
    barrier = threading.Barrier(32)
    got = []

    def worker():
        barrier.wait()
        got.append(auth.token("http://api.test/x"))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["t1"] * 32 and adapter.count == 1


def test_oauth_refused_credentials_raise_unauthorized_without_the_secret():
    """invalid_client becomes Unauthorized; the message names the client, not the secret."""
    session, _ = token_session(ok({"error": "invalid_client"}, status=401))
    auth = OAuth2ClientCredentials("demo-client", "wrong-secret-999", session=session)
    with pytest.raises(Unauthorized) as info:
        auth.token("http://api.test/x")
    assert info.value.code == "invalid_client"
    assert "wrong-secret-999" not in str(info.value)


def test_oauth_garbage_token_body_is_response_invalid():
    """A token body without access_token is ResponseInvalid."""
    session, _ = token_session(ok({"token": "x"}))
    with pytest.raises(ResponseInvalid):
        OAuth2ClientCredentials("c", "secret-4", session=session).token("http://h/")


def test_oauth_401_invalidates_only_the_token_that_was_sent():
    """on_unauthorized drops the current token if the failed request used it."""
    session, adapter = token_session(tok("t1"), tok("t2"))
    auth = OAuth2ClientCredentials("c", "secret-5", session=session)
    r = prepared()
    auth(r)
    response = requests.Response()
    response.status_code = 401
    response.request = r
    assert auth.on_unauthorized(response) is True
    assert auth.token("http://api.test/") == "t2"
