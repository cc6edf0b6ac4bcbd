"""The resilient layer end to end on a scripted adapter: ordering, headers, retries, breaker."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random

import pytest
import requests
import requests.adapters
import urllib3.exceptions as u3

from client import (
    ApiKeyAuth,
    BreakerPolicy,
    CircuitOpen,
    ConnectionFailed,
    DeadlineExceeded,
    HmacAuth,
    OAuth2ClientCredentials,
    Policies,
    RateLimited,
    RateLimitPolicy,
    ReadTimeout,
    ResilientAdapter,
    ResilientSession,
    RetriesExhausted,
    RetryBudget,
    RetryPolicy,
    Timeouts,
    backoff,
    call_info,
)
from client._transport import host_key

from .fakes import FakeAdapter, error, ok

URL = "http://api.test/hr_generate"


def refused():
    return requests.exceptions.ConnectionError(
        u3.MaxRetryError(None, "/", u3.NewConnectionError(None, "refused"))
    )


def reset():
    return requests.exceptions.ConnectionError(
        u3.ProtocolError("Connection aborted.", ConnectionResetError())
    )


def retry_policy(**kw):
    kw.setdefault("rng", random.Random(7))
    kw.setdefault("budget", None)
    return RetryPolicy(**kw)


def test_same_request_id_on_every_attempt_new_one_per_call(make_session):
    """Attempts of one call share X-Request-ID; the next call gets a new one."""
    s, a = make_session(error(503), error(502), ok({"ok": 1}))
    s.get("http://api.test/x")
    ids = {sent.headers["X-Request-ID"] for sent in a.sent}
    assert len(ids) == 1 and a.count == 3
    s.get("http://api.test/y")
    assert a.sent[-1].headers["X-Request-ID"] not in ids


def test_caller_request_id_is_kept(make_session):
    """A caller's own X-Request-ID is sent as is."""
    s, a = make_session(ok())
    s.get("http://api.test/x", headers={"X-Request-ID": "mine"})
    assert a.sent[0].headers["X-Request-ID"] == "mine"


def test_post_gets_no_idempotency_key_and_no_retry_by_default(make_session):
    """The generic layer adds no Idempotency-Key and does not retry a POST unless asked: a key
    is only safe against an API that honours it."""
    s, a = make_session(error(503), ok({"ok": 1}))
    assert s.post(URL, json={"prompt": "hi"}).status_code == 503
    assert a.count == 1 and "Idempotency-Key" not in a.sent[0].headers


def test_post_gets_one_idempotency_key_and_identical_body_on_every_attempt(make_session):
    """Opted in, a POST carries an Idempotency-Key and the same body bytes across retries."""
    p = Policies(retry=retry_policy(idempotency_methods=frozenset({"POST"})))
    s, a = make_session(error(503), reset(), ok({"ok": 1}), policies=p)
    s.post(URL, json={"prompt": "hi", "temperature": 0.5})
    keys = {sent.headers["Idempotency-Key"] for sent in a.sent}
    bodies = {sent.body for sent in a.sent}
    assert a.count == 3 and len(keys) == 1 and len(bodies) == 1


def test_callers_idempotency_key_is_kept(make_session):
    """An explicit Idempotency-Key is not replaced."""
    s, a = make_session(error(503), ok())
    s.post(URL, json={}, headers={"Idempotency-Key": "k-1"})
    assert [x.headers["Idempotency-Key"] for x in a.sent] == ["k-1", "k-1"]


def test_post_without_key_is_not_retried_after_sending(make_session):
    """With automatic keys off, a POST that got a 503 is handed back, sent once."""
    p = Policies(retry=retry_policy(idempotency_methods=frozenset()))
    s, a = make_session(error(503), ok(), policies=p)
    assert s.post(URL, json={}).status_code == 503
    assert a.count == 1 and "Idempotency-Key" not in a.sent[0].headers


def test_post_without_key_read_timeout_is_raised_not_retried(make_session):
    """A POST that may have reached the server is not repeated without a key."""
    p = Policies(retry=retry_policy(idempotency_methods=frozenset()))
    s, a = make_session(requests.exceptions.ReadTimeout("slow"), ok(), policies=p)
    with pytest.raises(ReadTimeout) as info:
        s.post(URL, json={})
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)
    assert a.count == 1


def test_post_without_key_connect_error_is_retried(make_session):
    """A refused connection sent nothing, so even a keyless POST is retried."""
    p = Policies(retry=retry_policy(idempotency_methods=frozenset()))
    s, a = make_session(refused(), ok({"ok": 1}), policies=p)
    assert s.post(URL, json={}).status_code == 200
    assert a.count == 2


def test_recorded_sleeps_are_the_seeded_full_jitter_backoff(make_session, clock):
    """Sleeps between attempts are exactly backoff(1), backoff(2) from the injected rng."""
    s, _ = make_session(error(500), error(504), ok())
    s.get("http://api.test/x")
    rng = random.Random(7)
    expected = [backoff(n, base=0.1, cap=10.0, rng=rng) for n in (1, 2)]
    assert clock.sleeps == pytest.approx(expected)
    info = call_info(s.get("http://api.test/z"))
    assert info is not None and info.attempts == 1


def test_retry_after_is_honoured_between_attempts(make_session, clock):
    """A 429 with Retry-After: 2 makes the next attempt wait at least 2 s."""
    s, a = make_session(error(429, "rate_limited", Retry_After="2"), ok())
    assert s.get("http://api.test/x").status_code == 200
    assert clock.sleeps == [2.0]


def test_retry_after_http_date_is_honoured(make_session, clock):
    """Retry-After as an HTTP-date (non-GMT zone) is honoured too."""
    s, _ = make_session(error(503, Retry_After="Wed, 15 Nov 2023 00:13:23 +0200"), ok())
    s.get("http://api.test/x")
    assert clock.sleeps == [pytest.approx(3.0)]


def test_retry_after_beyond_the_deadline_fails_fast(make_session, clock):
    """A 429 asking for 60 s with 10 s left raises DeadlineExceeded at once, from the 429."""
    p = Policies(retry=retry_policy(), timeouts=Timeouts(total=10))
    s, a = make_session(error(429, Retry_After="60"), ok(), policies=p)
    with pytest.raises(DeadlineExceeded) as info:
        s.get("http://api.test/x")
    assert isinstance(info.value.__cause__, RateLimited) and info.value.__cause__.retry_after == 60
    assert isinstance(info.value, requests.exceptions.Timeout)
    assert clock.sleeps == [] and a.count == 1


def test_no_sleep_crosses_the_deadline(make_session, clock):
    """Against a server that always fails, sleeps stop before the total deadline."""
    p = Policies(
        retry=retry_policy(attempts=50, backoff_base=0.5, backoff_cap=4), timeouts=Timeouts(total=10)
    )
    s, a = make_session(error(503), policies=p, latency=0.3)
    start = clock()
    with pytest.raises(DeadlineExceeded):
        s.get("http://api.test/x")
    assert clock() - start < 10
    assert a.count > 1


def test_attempt_timeouts_shrink_to_the_time_left(make_session, clock):
    """Connect and read timeouts never exceed what remains of the total deadline."""
    p = Policies(
        retry=retry_policy(backoff_base=2, backoff_cap=2), timeouts=Timeouts(connect=3, read=10, total=5)
    )
    s, a = make_session(error(503), error(503), ok(), policies=p, latency=1)
    s.get("http://api.test/x")
    assert a.sent[0].timeout == (3, 5)
    for sent in a.sent[1:]:
        assert sent.timeout[1] < 5 and sent.timeout[0] <= 3


def test_caller_timeout_is_used_per_attempt(make_session):
    """timeout= passed to the call is the per-attempt timeout, clipped by the deadline."""
    s, a = make_session(ok())
    s.get("http://api.test/x", timeout=2)
    assert a.sent[0].timeout == 2


def test_exhausted_retries_raise_with_the_last_error(make_session):
    """After every attempt failed, RetriesExhausted carries the last HTTP error and response."""
    s, a = make_session(error(503))
    with pytest.raises(RetriesExhausted) as info:
        s.get("http://api.test/x")
    assert a.count == 4
    assert info.value.last.status == 503 and info.value.response.status_code == 503


def test_transport_errors_are_mapped_and_chained(make_session):
    """A requests exception from the adapter surfaces as the client's, from the original."""
    p = Policies(retry=None)
    s, _ = make_session(reset(), policies=p)
    with pytest.raises(ConnectionFailed) as info:
        s.get("http://api.test/x?api_key=abcdef-secret")
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    assert "abcdef-secret" not in str(info.value)
    assert isinstance(info.value, requests.exceptions.ConnectionError)


def test_open_breaker_sends_nothing(make_session):
    """Once open, calls raise CircuitOpen and the adapter sees no request."""
    p = Policies(retry=None, breaker=BreakerPolicy(window=4, min_calls=4, open_for=30))
    s, a = make_session(error(500), policies=p)
    for _ in range(4):
        s.get("http://api.test/x")
    with pytest.raises(CircuitOpen):
        s.get("http://api.test/x")
    assert a.count == 4
    assert s.metrics.snapshot().breaker_rejections == 1


def test_breaker_is_per_host(make_session):
    """An open breaker for one host does not block another."""
    p = Policies(retry=None, breaker=BreakerPolicy(window=2, min_calls=2))
    s, a = make_session(error(500), error(500), ok(), policies=p)
    s.get("http://a.test/x")
    s.get("http://a.test/x")
    assert s.get("http://b.test/x").status_code == 200
    with pytest.raises(CircuitOpen):
        s.get("http://a.test/y")


def test_breaker_recovers_through_half_open(make_session, clock):
    """After open_for, one probe goes through and its success closes the breaker."""
    p = Policies(retry=None, breaker=BreakerPolicy(window=2, min_calls=2, open_for=5))
    s, a = make_session(error(500), error(500), ok(), policies=p)
    s.get("http://api.test/x")
    s.get("http://api.test/x")
    clock.advance(5)
    assert s.get("http://api.test/x").status_code == 200
    assert s.metrics.snapshot().breaker_transitions == 3


def test_retries_stop_when_the_breaker_opens(make_session):
    """A retry loop meeting an open breaker raises CircuitOpen instead of sending."""
    p = Policies(retry=retry_policy(attempts=10), breaker=BreakerPolicy(window=3, min_calls=3))
    s, a = make_session(error(503), policies=p)
    with pytest.raises(CircuitOpen):
        s.get("http://api.test/x")
    assert a.count == 3


def test_limiter_waits_out_server_remaining_zero(make_session, clock):
    """After Remaining: 0 the next request waits until the reset before it is sent."""
    p = Policies(limiter=RateLimitPolicy(rate=100, burst=100))
    reset_at = str(int(clock.wall()) + 6)
    s, a = make_session(ok({}, X_RateLimit_Remaining="0", X_RateLimit_Reset=reset_at), ok({}), policies=p)
    s.get("http://api.test/a")
    s.get("http://api.test/b")
    assert clock.sleeps == [pytest.approx(6.0)]
    assert s.metrics.snapshot().rate_limit_waits == 1


def test_retry_budget_is_shared_across_calls(make_session):
    """A session-wide budget refuses retries once spent, failing promptly."""
    p = Policies(retry=retry_policy(budget=RetryBudget(ratio=0, min_per_second=0.2, window=10)), breaker=None)
    s, a = make_session(error(503), policies=p)
    with pytest.raises(RetriesExhausted):
        s.get("http://api.test/x")
    assert a.count == 3  # two retries allowed (0.2/s * 10 s), the third refused
    with pytest.raises(RetriesExhausted, match="budget"):
        s.get("http://api.test/y")
    assert a.count == 4
    assert s.metrics.snapshot().budget_refusals == 2


def test_signature_is_redone_on_every_attempt(make_session, clock):
    """HMAC auth signs each attempt afresh: new timestamp/signature, verifiable by the server's formula."""
    auth = HmacAuth("demo-signing-secret", wall_clock=clock.wall)
    s, a = make_session(error(503), ok(), auth=auth)
    s.post("http://api.test/hr_generate?x=1", json={"prompt": "p"}, headers={"Idempotency-Key": "k"})
    sigs = [x.headers["X-Signature"] for x in a.sent]
    assert len(set(sigs)) == 2
    for sent in a.sent:
        body = sent.body if isinstance(sent.body, bytes) else sent.body.encode()
        base = f"POST\n/hr_generate?x=1\n{sent.headers['X-Timestamp']}\n{hashlib.sha256(body).hexdigest()}"
        expected = "sha256=" + hmac.new(b"demo-signing-secret", base.encode(), hashlib.sha256).hexdigest()
        assert sent.headers["X-Signature"] == expected


def test_oauth_refreshes_once_on_401_and_resends(make_session, clock):
    """A 401 drops the token, fetches a new one and resends exactly once."""
    token_adapter = FakeAdapter(
        ok({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}),
        ok({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}),
    )
    token_session = requests.Session()
    token_session.mount("http://", token_adapter)
    auth = OAuth2ClientCredentials("demo-client", "demo-secret", session=token_session, clock=clock)
    s, a = make_session(error(401, "unauthorized"), ok({"v": 1}), auth=auth)
    assert s.get("http://api.test/x").status_code == 200
    assert [x.headers["Authorization"] for x in a.sent] == ["Bearer tok-1", "Bearer tok-2"]
    assert token_adapter.sent[0].url == "http://api.test/oauth/token"


def test_oauth_second_401_is_returned(make_session, clock):
    """Only one resend after a 401: a second 401 is the answer."""
    token_adapter = FakeAdapter(ok({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}))
    ts = requests.Session()
    ts.mount("http://", token_adapter)
    auth = OAuth2ClientCredentials("c", "s3cr3t-value", session=ts, clock=clock)
    s, a = make_session(error(401), auth=auth)
    assert s.get("http://api.test/x").status_code == 401
    assert a.count == 2


def test_adapter_mounts_on_a_plain_session(clock, monkeypatch):
    """ResilientAdapter brings retries and the cache to an existing requests.Session."""
    fake = FakeAdapter(error(503), ok({"v": 1}, Cache_Control="max-age=60"))
    # The adapter's wire sends (HTTPAdapter.send) go to the scripted fake.
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", lambda self, req, **kw: fake.send(req, **kw))
    p = Policies(retry=retry_policy()).with_time(clock=clock, wall_clock=clock.wall, sleep=clock.sleep)
    session = requests.Session()
    session.mount("http://", ResilientAdapter(p))
    assert session.get("http://api.test/x").json() == {"v": 1}
    assert fake.count == 2
    assert len({x.headers["X-Request-ID"] for x in fake.sent}) == 1
    assert session.get("http://api.test/x").json() == {"v": 1}
    assert fake.count == 2


def test_session_is_a_drop_in_requests_session():
    """ResilientSession is a requests.Session with pooled HTTPAdapters of the configured sizes."""
    s = ResilientSession(Policies(pool_connections=3, pool_maxsize=7))
    assert isinstance(s, requests.Session)
    adapter = s.get_adapter("http://x")
    assert adapter._pool_connections == 3 and adapter._pool_maxsize == 7


def test_logs_redact_secrets(make_session, caplog):
    """Debug and retry logs never show API keys."""
    caplog.set_level(logging.DEBUG, logger="client")
    s, _ = make_session(error(503), ok(), auth=ApiKeyAuth("log-secret-key", query_param="api_key"))
    s.get("http://api.test/x")
    assert caplog.records
    assert "log-secret-key" not in caplog.text


def test_metrics_count_calls_attempts_and_retries(make_session):
    """One call with two retries: 1 request, 3 attempts, 2 retries."""
    s, _ = make_session(error(503), error(503), ok())
    s.get("http://api.test/x")
    snap = s.metrics.snapshot()
    assert (snap.requests, snap.attempts, snap.retries) == (1, 3, 2)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://API.test/x", "http://api.test:80"),
        ("https://api.test/x?q=1", "https://api.test:443"),
        ("http://api.test:8080", "http://api.test:8080"),
        ("http://user:pw@h:81/x", "http://h:81"),
        ("http://[::1]:9000/x", "http://[::1]:9000"),
    ],
)
def test_host_key(url, key):
    """Breakers and buckets are keyed by scheme://host:port."""
    assert host_key(url) == key


def test_the_session_remembers_short_urls_only(make_session):
    """A session remembers each cacheable URL as prepared (to look the cache up before
    preparing); a URL longer than ``MEMO_URL_CHARS`` is served the same and not remembered."""
    from client._http import MEMO_URL_CHARS

    s, _ = make_session(ok({"v": 1}), ok({"v": 2}))
    short, long = "http://api.test/a?q=1", f"http://api.test/a?q={'x' * MEMO_URL_CHARS}"
    assert s.get(short).status_code == 200 and s.get(long).status_code == 200
    assert [url for url, _ in s._urls] == [short]
