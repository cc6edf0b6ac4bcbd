"""Hostile input over real HTTP: every one gets a 4xx with the contract's error body (never a
500), and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
from collections.abc import Callable, Iterator

import pytest

from mock_server import RateLimit, ServerConfig, ServerThread
from mock_server._auth import sign

from .conftest import Caller, error_of

pytestmark = pytest.mark.socket
JSON = {"Content-Type": "application/json"}
VECTOR = b"[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]"


def _profile_bytes(name: str, metadata: bytes) -> bytes:
    head = b'{"tenant":"demo","profile_name":"' + name.encode() + b'","hrv_vector":' + VECTOR
    return head + b',"metadata":' + metadata + b"}"


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"{}" + b"}" * depth


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """One fake for the many cases that change nothing (each checks that they did not)."""
    with ServerThread(ServerConfig(db=":memory:")) as running:
        yield running


@pytest.fixture
def shared(server: ServerThread) -> Caller:
    return Caller(server.url, {"X-API-Key": "demo-key"})


# -- point 1: inputs that gave a 500 ------------------------------------------------------------


def test_if_modified_since_with_an_enormous_year_is_ignored(demo: Caller) -> None:
    """An If-Modified-Since that is no HTTP-date is ignored (RFC 9110 §13.1.3): the full
    representation, never a 500; a sane date still gives a 304."""
    demo.create("p")
    for value in ("Mon, 01 Jan 99999999999 00:00:00 GMT", "Mon, 01 Jan 9999999999999999999999 00:00:00 GMT"):
        response = demo("GET", "/profiles/demo/p", headers={"If-Modified-Since": value})
        assert response.status_code == 200, response.text
        assert response.json()["profile_name"] == "p"
    sane = demo("GET", "/profiles/demo/p", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert sane.status_code == 304


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("1" * 400, id="400-digits"),
        pytest.param("9" * 5000, id="5000-digits"),
        pytest.param("1e10", id="float"),
        pytest.param("١٧٠٠٠٠٠٠٠٠", id="arabic-digits"),
        pytest.param("", id="empty"),
    ],
)
def test_signed_request_with_an_absurd_timestamp(server: ServerThread, stamp: str) -> None:
    """A signature over an absurd X-Timestamp is a 401 naming X-Timestamp, not a 500."""
    signature = sign("demo-signing-secret", "GET", "/profiles", stamp, b"")
    headers = {"X-Timestamp": stamp.encode("utf-8").decode("latin-1"), "X-Signature": signature}
    response = Caller(server.url)("GET", "/profiles", headers=headers)
    assert response.status_code == 401, response.text
    assert "X-Timestamp" in error_of(response)["message"]


def _page_cursor(caller: Caller) -> str:
    caller.create("a")
    caller.create("b")
    cursor = caller("GET", "/profiles", params={"limit": 1}).json()["next_cursor"]
    assert cursor
    return str(cursor)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[]", id="list"),
        pytest.param(b'{"t":"demo"}', id="no-after"),
        pytest.param(b'{"t":"demo","a":7}', id="after-not-string"),
        pytest.param(b'{"a":"x"}', id="no-tenant"),
        pytest.param(b'"demo"', id="string"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b'{"t":"demo","a":"x"', id="truncated-json"),
    ],
)
def test_signed_cursor_of_the_wrong_shape(server: ServerThread, shared: Caller, payload: bytes) -> None:
    """A cursor that carries this server's signature but no sane content is a 400 naming the cursor."""
    cursor = server.api.cursors.seal(payload)
    response = shared("GET", "/profiles", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert error_of(response)["message"].startswith("cursor:")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("...", id="dots"),
        pytest.param("é.é", id="non-ascii"),
        pytest.param("a" * 5000 + ".00", id="long"),
        pytest.param(".", id="empty-parts"),
    ],
)
def test_cursor_garbage(shared: Caller, cursor: str) -> None:
    """Unsigned garbage is a 400 too."""
    response = shared("GET", "/profiles", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "bad_request"


def test_cursor_signed_with_the_key_in_the_source_is_refused(shared: Caller) -> None:
    """The signing key is random per server: the constant the source once held signs nothing."""
    payload = base64.urlsafe_b64encode(b'{"t":"demo","a":"a"}').decode().rstrip("=")
    tag = hmac.new(b"resonance-fake-cursor", payload.encode(), hashlib.sha256).hexdigest()[:16]
    response = shared("GET", "/profiles", params={"cursor": f"{payload}.{tag}"})
    assert response.status_code == 400, response.text


def test_cursor_keys_are_per_server_unless_shared(mock_server_factory: Callable[..., ServerThread]) -> None:
    """A cursor from one fake means nothing to another, unless both were given the same key
    (as the workers of one server are)."""
    first, second = mock_server_factory(), mock_server_factory()
    cursor = _page_cursor(Caller(first.url, {"X-API-Key": "demo-key"}))
    other = Caller(second.url, {"X-API-Key": "demo-key"})
    _page_cursor(other)
    assert other("GET", "/profiles", params={"cursor": cursor}).status_code == 400

    key = b"k" * 32
    third, fourth = mock_server_factory(cursor_key=key), mock_server_factory(cursor_key=key)
    cursor = _page_cursor(Caller(third.url, {"X-API-Key": "demo-key"}))
    shared = Caller(fourth.url, {"X-API-Key": "demo-key"})
    _page_cursor(shared)
    page = shared("GET", "/profiles", params={"cursor": cursor})
    assert page.status_code == 200, page.text
    assert [item["profile_name"] for item in page.json()["items"]] == ["b"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_deeply_nested_metadata_is_a_422_naming_the_field(demo: Caller, method: str) -> None:
    """Metadata nested 960 deep is refused with a 422 on ``metadata``; 32 levels are fine."""
    demo.create("p")
    before = demo("GET", "/profiles").json()
    if method == "POST":
        response = demo("POST", "/profiles", data=_profile_bytes("deep", _nested(960)), headers=JSON)
    else:
        body = b'{"hrv_vector":' + VECTOR + b',"metadata":' + _nested(960) + b"}"
        response = demo("PUT", "/profiles/demo/p", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["message"].startswith("metadata:")
    assert error["details"][0]["loc"] == ["body", "metadata"]
    assert demo("GET", "/profiles").json() == before
    ok = demo("POST", "/profiles", data=_profile_bytes("fine", _nested(31)), headers=JSON)
    assert ok.status_code == 201, ok.text


def test_deep_nesting_in_an_ignored_field_is_never_a_500(shared: Caller) -> None:
    """Deep nesting where the API ignores the field answers (400 or 200), never a 500."""
    for depth in (500, 960, 990, 5000):
        body = b'{"prompt":"x","ignored":' + b"[" * depth + b"]" * depth + b"}"
        response = shared("POST", "/hr_generate", data=body, headers=JSON)
        assert response.status_code in (200, 400), (depth, response.text)


# -- point 2: invalid UTF-8 ---------------------------------------------------------------------

INVALID_UTF8 = [
    pytest.param(b'"\xed\xa0\x80"', id="encoded-high-surrogate"),
    pytest.param(b'"\xed\xbf\xbf"', id="encoded-low-surrogate"),
    pytest.param(b'"\xed\xa0\xbd\xed\xb8\x80"', id="encoded-surrogate-pair-cesu8"),
    pytest.param(b'"\xc0\xaf"', id="overlong-2-byte"),
    pytest.param(b'"\xe0\x80\xaf"', id="overlong-3-byte"),
    pytest.param(b'"\xf0\x80\x80\xaf"', id="overlong-4-byte"),
    pytest.param(b'"\xc1\xbf"', id="overlong-c1"),
    pytest.param(b'"\xe2\x82"', id="truncated-3-byte"),
    pytest.param(b'"\xf0\x9f\x98"', id="truncated-4-byte"),
    pytest.param(b'"\x80"', id="lone-continuation"),
    pytest.param(b'"\xbf\xbf"', id="continuations"),
    pytest.param(b'"\xff"', id="ff"),
    pytest.param(b'"\xfe"', id="fe"),
    pytest.param(b'"\xf4\x90\x80\x80"', id="above-10ffff"),
    pytest.param(b'"\xf8\x88\x80\x80\x80"', id="5-byte-form"),
    pytest.param(b'"\\ud800"', id="escaped-lone-high-surrogate"),
    pytest.param(b'"\\udc00"', id="escaped-lone-low-surrogate"),
    pytest.param(b'"\\ude00\\ud83d"', id="escaped-pair-reversed"),
    pytest.param(b'"\\uD800\\u0041"', id="escaped-high-then-letter"),
    pytest.param(b'{"\\ud800":1}', id="escaped-surrogate-in-a-key"),
]


@pytest.mark.parametrize("value", INVALID_UTF8)
def test_invalid_unicode_in_a_json_body_is_a_400(shared: Caller, value: bytes) -> None:
    """Invalid UTF-8 of every kind, and escapes that decode to a lone surrogate, are a 400; nothing stored."""
    before = shared("GET", "/profiles").json()
    metadata = value if value.startswith(b"{") else b'{"k":' + value + b"}"
    response = shared("POST", "/profiles", data=_profile_bytes("sur", metadata), headers=JSON)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "bad_request"
    assert shared("GET", "/profiles").json() == before
    prompt = shared("POST", "/hr_generate", data=b'{"prompt":' + value + b"}", headers=JSON)
    assert prompt.status_code == 400, prompt.text


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'"\\ud83d\\ude00"', id="escaped-pair"),
        pytest.param('"\U0001f600 é ✓"'.encode(), id="utf8-astral"),
        pytest.param(b'"\\\\ud800"', id="escaped-backslash-then-u"),
    ],
)
def test_valid_unicode_is_stored(demo: Caller, value: bytes) -> None:
    """Valid text, astral characters and surrogate pairs included, is stored as sent."""
    response = demo("POST", "/profiles", data=_profile_bytes("ok", b'{"k":' + value + b"}"), headers=JSON)
    assert response.status_code == 201, response.text
    assert demo("GET", "/profiles/demo/ok").json()["metadata"]["k"] == json.loads(value)


# -- point 9: failed authentication is throttled per client address ------------------------------


def _get_from(url: str, source: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/profiles", headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_wrong_keys_are_throttled_by_default(anon: Caller) -> None:
    """With the default limit, a burst of wrong keys gets a few 401s, then 429 with Retry-After
    and the error body."""
    statuses = []
    for i in range(130):
        statuses.append(anon("GET", "/profiles", headers={"X-API-Key": f"guess-{i}"}).status_code)
    assert set(statuses) == {401, 429}
    assert 100 <= statuses.count(401) <= 105
    assert statuses[-1] == 429
    last = anon("GET", "/profiles", headers={"X-API-Key": "guess-last"})
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) >= 1
    assert error_of(last)["code"] == "rate_limited"


@pytest.mark.mock_server(auth_failure_limit=RateLimit(per_minute=60, burst=3))
def test_throttled_address_waits_whatever_it_sends(mock_server: ServerThread, anon: Caller) -> None:
    """Once an address is throttled even a right key waits (a guess must not learn it is right),
    OAuth secrets and signatures count as guesses too, and other addresses are unaffected."""
    assert anon("GET", "/profiles", headers={"X-API-Key": "wrong"}).status_code == 401
    token = anon(
        "POST",
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "wrong"},
    )
    assert token.status_code == 401
    assert anon("GET", "/profiles", headers={"Authorization": "Basic ZGVtbzpub3Bl"}).status_code == 401
    refused = anon("GET", "/profiles", headers={"X-API-Key": "demo-key"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "failed authentication" in error_of(refused)["message"]
    token = anon(
        "POST",
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
    )
    assert token.status_code == 429
    assert token.json()["error"]["code"] == "rate_limited"
    status, _, _ = _get_from(mock_server.url, "127.0.0.2", {"X-API-Key": "demo-key"})
    assert status == 200
    status, _, _ = _get_from(mock_server.url, "127.0.0.2", {"X-API-Key": "wrong"})
    assert status == 401


def test_missing_credentials_are_not_guesses(anon: Caller) -> None:
    """Requests without credentials get 401s forever, never 429: nothing was guessed."""
    statuses = {anon("GET", "/profiles").status_code for _ in range(110)}
    assert statuses == {401}
    assert anon("GET", "/profiles", headers={"X-API-Key": "demo-key"}).status_code == 200


@pytest.mark.mock_server(auth_failure_limit=None)
def test_auth_failure_limit_off(anon: Caller) -> None:
    """``auth_failure_limit=None`` turns the throttle off."""
    statuses = {anon("GET", "/profiles", headers={"X-API-Key": f"g{i}"}).status_code for i in range(110)}
    assert statuses == {401}


@pytest.mark.parametrize("value", ["1" * 5000, "9" * 19, "0" * 30 + "5"])
def test_query_integers_of_absurd_length(shared: Caller, value: str) -> None:
    """``limit`` with thousands of digits is a 422 naming ``limit``, not a 500 from int()."""
    response = shared("GET", "/profiles", params={"limit": value})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert error_of(response)["details"][0]["loc"] == ["query", "limit"]
