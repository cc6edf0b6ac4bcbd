"""ResonanceClient on a scripted adapter: models, errors, pagination, batches, from_env."""

from __future__ import annotations

import json
import random

import pytest
import requests
import requests.adapters

from client import (
    ApiError,
    ApiKeyAuth,
    BasicAuth,
    ConfigError,
    Conflict,
    FakeClock,
    Forbidden,
    GenerateResult,
    HmacAuth,
    NotFound,
    OAuth2ClientCredentials,
    Policies,
    PreconditionFailed,
    ResilientSession,
    ResonanceClient,
    ResponseInvalid,
    RetryPolicy,
    ServerError,
    ValidationFailed,
)

from .fakes import FakeAdapter, error, ok

BASE = "http://api.test"
VECTOR = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def gen(content="c", request_id="r1"):
    return {
        "content": content,
        "hrv_vector": VECTOR,
        "metadata": {
            "tenant": "demo",
            "profile_name": None,
            "model": "m",
            "tokens": 3,
            "temperature": 0.7,
            "max_length": 256,
            "request_id": request_id,
            "created_at": "2024-01-01T00:00:00Z",
        },
    }


def profile(name="p1", version=1):
    return {
        "tenant": "demo",
        "profile_name": name,
        "hrv_vector": VECTOR,
        "metadata": {},
        "version": version,
        "created_at": "t",
        "updated_at": "t",
    }


@pytest.fixture
def make_client():
    def make(*script, policies=None):
        clock = FakeClock()
        p = (policies or Policies(retry=RetryPolicy(rng=random.Random(1)))).with_time(
            clock=clock, wall_clock=clock.wall, sleep=clock.sleep
        )
        session = ResilientSession(p)
        adapter = FakeAdapter(*script)
        session.mount("http://", adapter)
        return ResonanceClient(BASE, auth=ApiKeyAuth("demo-key"), session=session), adapter

    return make


def test_health(make_client):
    """health() returns the Health model."""
    c, a = make_client(ok({"status": "ok", "version": "6.0.0", "timestamp": "2024-01-01T00:00:00Z"}))
    h = c.health()
    assert h.status == "ok" and h.version == "6.0.0"
    assert a.sent[0].url == BASE + "/health"


def test_generate_sends_only_given_options_with_an_idempotency_key(make_client):
    """generate() posts the prompt and options that were given, and parses the result."""
    c, a = make_client(ok(gen()))
    result = c.generate("hello", max_length=10, idempotency_key="k1")
    assert isinstance(result, GenerateResult) and result.metadata.tokens == 3
    sent = a.sent[0]
    assert json.loads(sent.body) == {"prompt": "hello", "max_length": 10}
    assert sent.headers["Idempotency-Key"] == "k1" and sent.headers["X-API-Key"] == "demo-key"


def test_generate_retried_post_keeps_key_and_body(make_client):
    """A POST /hr_generate retried after 503 repeats the same key and bytes."""
    c, a = make_client(error(503), ok(gen()))
    c.generate("hello")
    assert a.count == 2
    assert a.sent[0].headers["Idempotency-Key"] == a.sent[1].headers["Idempotency-Key"]
    assert a.sent[0].body == a.sent[1].body


def test_unknown_fields_are_ignored(make_client):
    """A newer server's extra fields do not break parsing."""
    body = {"status": "ok", "version": "6.1.0", "timestamp": "t", "extra": {"new": True}}
    c, _ = make_client(ok(body))
    assert c.health().version == "6.1.0"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param({"status": "ok"}, id="missing-fields"),
        pytest.param([1, 2], id="wrong-type"),
        pytest.param({**gen(), "hrv_vector": [0.1]}, id="short-vector"),
    ],
)
def test_body_not_matching_the_model_is_response_invalid(make_client, body):
    """Any mismatch is ResponseInvalid, never KeyError or a pydantic error."""
    c, _ = make_client(ok(body))
    with pytest.raises(ResponseInvalid):
        c.generate("x")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "not_found", NotFound),
        (403, "forbidden", Forbidden),
        (409, "conflict", Conflict),
        (412, "precondition_failed", PreconditionFailed),
        (422, "validation_error", ValidationFailed),
    ],
)
def test_error_statuses_raise_their_class(make_client, status, code, cls):
    """Error bodies map to the HttpError subclass, carrying code and request id."""
    c, _ = make_client(error(status, code, "nope"))
    with pytest.raises(cls) as info:
        c.profiles.get("demo", "p1")
    assert info.value.code == code and info.value.request_id == "rid-1" and info.value.status == status


def test_exhausted_server_errors_surface_as_retries_exhausted(make_client):
    """A server that keeps failing ends in RetriesExhausted whose last is a ServerError."""
    c, a = make_client(error(500))
    with pytest.raises(ApiError) as info:
        c.health()
    assert isinstance(info.value.last, ServerError)
    assert a.count == 4


def test_profiles_list_follows_every_cursor(make_client):
    """list() yields every item across pages, passing limit and cursor."""
    c, a = make_client(
        ok({"items": [profile("a"), profile("b")], "next_cursor": "c1", "has_more": True}),
        ok({"items": [profile("c")], "next_cursor": "c2", "has_more": True}),
        ok({"items": [], "next_cursor": None, "has_more": False}),
    )
    names = [p.profile_name for p in c.profiles.list(limit=2)]
    assert names == ["a", "b", "c"]
    assert [s.url for s in a.sent] == [
        BASE + "/profiles?limit=2",
        BASE + "/profiles?limit=2&cursor=c1",
        BASE + "/profiles?limit=2&cursor=c2",
    ]


def test_profiles_list_refuses_a_cursor_loop(make_client):
    """A server repeating a cursor cannot trap the iterator."""
    c, _ = make_client(ok({"items": [profile()], "next_cursor": "same", "has_more": True}))
    with pytest.raises(ResponseInvalid):
        list(c.profiles.list())


def test_profile_crud_with_etags(make_client):
    """get keeps the ETag; update/delete send If-Match; create sends an Idempotency-Key."""
    c, a = make_client(
        ok(profile(), ETag='"v1"'),
        ok(profile(version=2), ETag='"v2"'),
        ok(profile("p2"), status=201, ETag='"n1"', Location="/profiles/demo/p2"),
        ok(None, status=204),
    )
    p = c.profiles.get("demo", "p1")
    assert p.etag == '"v1"'
    updated = c.profiles.update("demo", "p1", VECTOR, {"k": 1}, if_match=p.etag)
    assert updated.version == 2 and updated.etag == '"v2"'
    created = c.profiles.create("demo", "p2", VECTOR)
    assert created.profile_name == "p2"
    c.profiles.delete("demo", "p2", if_match='"n1"')
    assert a.sent[1].headers["If-Match"] == '"v1"' and a.sent[1].method == "PUT"
    assert json.loads(a.sent[1].body) == {"hrv_vector": VECTOR, "metadata": {"k": 1}}
    assert "Idempotency-Key" in a.sent[2].headers
    assert a.sent[3].method == "DELETE" and a.sent[3].headers["If-Match"] == '"n1"'


def test_profile_path_segments_are_quoted(make_client):
    """Tenant and name are URL-quoted in the path."""
    c, a = make_client(ok(profile()))
    c.profiles.get("demo", "a/b c")
    assert a.sent[0].url == BASE + "/profiles/demo/a%2Fb%20c"


def test_analytics(make_client):
    """usage() and performance() send their query and parse their reports."""
    usage = {
        "tenant": "demo",
        "date_range": {"start": "2024-01-01", "end": "2024-01-07"},
        "total": 3,
        "by_endpoint": {"GET /health": 3},
        "by_status": {"200": 3},
        "by_day": [{"date": "2024-01-01", "requests": 3}],
    }
    perf = {
        "latency_ms": {"p50": 1, "p95": 2, "p99": 3, "mean": 1.5},
        "error_rate": 0.0,
        "requests_per_second": 0.1,
        "requests": 3,
        "window": "5m",
        "metric_type": "all",
    }
    c, a = make_client(ok(usage), ok(perf))
    assert c.analytics.usage(date_range="7d").total == 3
    assert c.analytics.performance(metric_type="latency", timeframe="1h").latency_ms.p99 == 3
    assert a.sent[0].url == BASE + "/analytics/usage?date_range=7d"
    assert a.sent[1].url == BASE + "/analytics/performance?metric_type=latency&timeframe=1h"


def batch_answer(request):
    prompts = json.loads(request.body)["prompts"]
    results = []
    for i, p in enumerate(prompts):
        if p == "bad":
            results.append(
                {"index": i, "status": "error", "error": {"code": "validation_error", "message": "m"}}
            )
        elif p == "boom":
            return error(500)
        else:
            results.append({"index": i, "status": "ok", "result": gen(content=p)})
    return ok({"results": results})


def test_generate_batch_keeps_order_and_returns_item_errors(make_client):
    """Results come in input order; a bad item is an error value; a failed chunk fails only its items."""
    prompts = ["a", "b", "bad", "c", "boom", "d", "e"]
    c, a = make_client(batch_answer, policies=Policies(retry=None))
    results = c.generate_batch(prompts, concurrency=3, chunk_size=2)
    assert [r.content if isinstance(r, GenerateResult) else type(r).__name__ for r in results] == [
        "a",
        "b",
        "ValidationFailed",
        "c",
        "ServerError",
        "ServerError",
        "e",
    ]
    assert a.count == 4


def test_generate_batch_validates_arguments(make_client):
    """concurrency and chunk_size are checked."""
    c, _ = make_client(ok())
    with pytest.raises(ValueError):
        c.generate_batch(["a"], concurrency=0)
    with pytest.raises(ValueError):
        c.generate_batch(["a"], chunk_size=51)
    assert c.generate_batch([]) == []


def test_metrics_and_advice_are_exposed(make_client):
    """metrics() returns the client-side counters."""
    c, _ = make_client(ok({"status": "ok", "version": "6", "timestamp": "t"}))
    c.health()
    assert c.metrics().requests == 1
    assert isinstance(c.advice(), list)


def test_plain_session_gets_a_resilient_adapter():
    """Given a plain requests.Session, the client mounts a ResilientAdapter for its base URL."""
    session = requests.Session()
    c = ResonanceClient(BASE, session=session, policies=Policies.off())
    assert type(session.get_adapter(BASE + "/health")).__name__ == "ResilientAdapter"
    assert c.session is session


def test_oauth_token_url_defaults_to_the_base_url():
    """OAuth2 client credentials fetch from {base}/oauth/token."""
    auth = OAuth2ClientCredentials("c", "client-secret-x")
    ResonanceClient(BASE + "/", auth=auth)
    assert auth.token_url == BASE + "/oauth/token"


# -- from_env ------------------------------------------------------------------------------------


def test_from_env_reads_variables(tmp_path):
    """Base URL, API key and timeouts come from RESONANCE_* variables."""
    env = {"RESONANCE_BASE_URL": "http://x.test:9", "RESONANCE_API_KEY": "k-env", "RESONANCE_TIMEOUT": "12"}
    c = ResonanceClient.from_env(environ=env, dotenv=tmp_path / "none")
    assert c.base_url == "http://x.test:9"
    assert isinstance(c.session.pipeline.auth, ApiKeyAuth)
    assert c.session.policies.timeouts.total == 12


def test_dotenv_does_not_override_real_variables(tmp_path):
    """.env fills gaps; the environment wins."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nexport RESONANCE_BASE_URL='http://from-file:1'\nRESONANCE_BASIC_USER=demo\n"
        'RESONANCE_BASIC_PASSWORD="demo-pass"\n'
    )
    c = ResonanceClient.from_env(environ={"RESONANCE_BASE_URL": "http://from-env:2"}, dotenv=dotenv)
    assert c.base_url == "http://from-env:2"
    assert isinstance(c.session.pipeline.auth, BasicAuth)


def test_from_env_uses_dotenv_in_cwd(tmp_path, monkeypatch):
    """By default the .env of the current directory is read."""
    (tmp_path / ".env").write_text("RESONANCE_BASE_URL=http://cwd.test\n")
    monkeypatch.chdir(tmp_path)
    assert ResonanceClient.from_env(environ={}).base_url == "http://cwd.test"


def test_signing_secret_wraps_other_credentials(tmp_path):
    """RESONANCE_SIGNING_SECRET signs on top of the OAuth credentials."""
    env = {
        "RESONANCE_CLIENT_ID": "demo-client",
        "RESONANCE_CLIENT_SECRET": "demo-secret",
        "RESONANCE_SIGNING_SECRET": "demo-signing-secret",
    }
    c = ResonanceClient.from_env(environ=env, dotenv=None)
    auth = c.session.pipeline.auth
    assert isinstance(auth, HmacAuth) and isinstance(auth.inner, OAuth2ClientCredentials)
    assert auth.inner.token_url == "http://127.0.0.1:8000/oauth/token"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"RESONANCE_TIMEOUT": "soon"}, "RESONANCE_TIMEOUT"),
        ({"RESONANCE_TIMEOUT": "-1"}, "RESONANCE_TIMEOUT"),
        ({"RESONANCE_READ_TIMEOUT": "x"}, "RESONANCE_READ_TIMEOUT"),
        ({"RESONANCE_RETRIES": "many"}, "RESONANCE_RETRIES"),
        ({"RESONANCE_BASE_URL": "ftp://x"}, "RESONANCE_BASE_URL"),
        ({"RESONANCE_CLIENT_ID": "only-id"}, "RESONANCE_CLIENT_SECRET"),
        ({"RESONANCE_BASIC_PASSWORD": "pw-only"}, "RESONANCE_BASIC_USER"),
        ({"RESONANCE_CACHE": "maybe"}, "RESONANCE_CACHE"),
        ({"RESONANCE_RATE_LIMIT": "fast"}, "RESONANCE_RATE_LIMIT"),
    ],
)
def test_bad_values_raise_naming_the_variable(env, name):
    """A bad value raises ConfigError whose message names the variable."""
    with pytest.raises(ConfigError, match=name):
        ResonanceClient.from_env(environ=env, dotenv=None)


def test_bad_dotenv_line_names_the_file_and_line(tmp_path):
    """A malformed .env line is reported with its location."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("RESONANCE_BASE_URL=http://x\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=":2:"):
        ResonanceClient.from_env(environ={}, dotenv=dotenv)


def test_retries_and_rate_limit_settings(tmp_path):
    """RESONANCE_RETRIES=0 means one attempt; RESONANCE_RATE_LIMIT enables the limiter."""
    c = ResonanceClient.from_env(
        environ={"RESONANCE_RETRIES": "0", "RESONANCE_RATE_LIMIT": "5", "RESONANCE_CACHE": "false"},
        dotenv=None,
    )
    p = c.session.policies
    assert p.retry.attempts == 1 and p.limiter.rate == 5 and p.cache is None
