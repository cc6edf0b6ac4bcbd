"""State a client can grow, on fake time: OAuth tokens, per-session rate-limit buckets, and
failed authentications per address. Work is counted by structure, never by timing."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from mock_server import DEFAULT_TENANTS, RateLimit
from mock_server._auth import Authenticator
from mock_server._ratelimit import FailureLimiter, RateLimiter, address_key
from mock_server._tenants import TenantDirectory


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoScan(dict[str, Any]):
    """A token map that fails the test if anything walks or copies it."""

    def _scan(self, *_: Any) -> Any:
        raise AssertionError("the token map was scanned")

    __iter__ = items = keys = values = copy = _scan  # type: ignore[assignment]


def _auth(clock: Clock, ttl: int = 3600, **kwargs: Any) -> Authenticator:
    return Authenticator(
        TenantDirectory(DEFAULT_TENANTS), token_ttl=ttl, signature_window=300, wall=clock, **kwargs
    )


def test_issuing_never_walks_the_live_tokens() -> None:
    """With 20,000 live tokens, each issue still touches a constant number of them: the map is
    never scanned, copied or rebuilt."""
    auth = _auth(Clock())
    tokens = NoScan()
    auth._tokens = tokens
    for _ in range(20_000):
        assert auth.issue_token("demo-client", "demo-secret") is not None
    assert auth._tokens is tokens
    assert auth.live_tokens == 20_000


def test_expired_tokens_are_dropped_as_new_ones_are_issued() -> None:
    """Tokens past their TTL leave the map a few per issue, so they never pile up."""
    clock = Clock()
    auth = _auth(clock, ttl=60)
    old = [auth.issue_token("demo-client", "demo-secret") for _ in range(1000)]
    assert auth.live_tokens == 1000
    clock.now += 61
    for _ in range(300):
        auth.issue_token("acme-client", "acme-secret")
    assert auth.live_tokens == 300
    assert all(auth.tenant_of({"authorization": f"Bearer {t[0]}"}) is None for t in old if t)


def test_an_expired_token_is_refused_and_forgotten() -> None:
    """A token used after its TTL is a 401 and leaves the map at once."""
    from starlette.datastructures import Headers

    from mock_server._errors import ApiError

    clock = Clock()
    auth = _auth(clock, ttl=60)
    issued = auth.issue_token("demo-client", "demo-secret")
    assert issued is not None
    headers = Headers(headers={"authorization": f"Bearer {issued[0]}"})
    assert auth.authenticate(headers, "GET", "/profiles", b"").tenant.name == "demo"
    clock.now += 60
    with pytest.raises(ApiError) as refused:
        auth.authenticate(headers, "GET", "/profiles", b"")
    assert refused.value.status == 401 and "expired" in refused.value.message
    assert auth.live_tokens == 0


def test_live_tokens_are_capped() -> None:
    """A client minting tokens in a loop cannot hold more than ``max_tokens``: the oldest go first."""
    auth = _auth(Clock(), max_tokens=100)
    first = auth.issue_token("demo-client", "demo-secret")
    for _ in range(1000):
        auth.issue_token("demo-client", "demo-secret")
    assert auth.live_tokens <= 100
    assert first is not None and auth.tenant_of({"authorization": f"Bearer {first[0]}"}) is None


LIMIT = RateLimit(per_minute=600, burst=100)


def test_a_fresh_session_per_request_leaves_no_buckets_behind() -> None:
    """A bucket that has refilled is forgotten: 20,000 one-request sessions, 0.2 s apart,
    leave a bucket or two, and the memory they held (measured) goes with them."""
    clock = Clock(1000.0)
    limiter = RateLimiter(clock=clock, wall=clock)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            clock.now += 0.2
            assert limiter.take("key:demo", f"session-{i}", LIMIT).allowed
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(limiter) <= 2
    assert held < 64 * 1024, held


def test_forgetting_a_bucket_changes_no_answer() -> None:
    """A bucket is only forgotten once full again, so a returning session is limited exactly as
    if it had been kept: drained, then back after 5 s, it has 50 tokens."""
    clock = Clock(1000.0)
    limiter = RateLimiter(clock=clock, wall=clock)
    for _ in range(100):
        assert limiter.take("key:demo", "drained", LIMIT).allowed
    assert not limiter.take("key:demo", "drained", LIMIT).allowed
    for i in range(2000):
        clock.now += 0.0025
        limiter.take("key:demo", f"passer-{i}", LIMIT)
    allowed = sum(limiter.take("key:demo", "drained", LIMIT).allowed for _ in range(100))
    assert allowed == 50


def test_bucket_count_is_capped() -> None:
    """However fast sessions come, at most ``capacity`` buckets are kept."""
    limiter = RateLimiter(clock=Clock(1000.0), capacity=100)
    for i in range(1000):
        limiter.take("key:demo", f"s{i}", LIMIT)
    assert len(limiter) <= 100


def test_long_sessions_share_a_bounded_key() -> None:
    """A 100 KB session is keyed by its bounded form, and reset by the full value."""
    limiter = RateLimiter(clock=Clock(1000.0))
    for _ in range(100):
        limiter.take("key:demo", "s" * 100_000, LIMIT)
    assert not limiter.take("key:demo", "s" * 100_000, LIMIT).allowed
    (key,) = limiter._buckets.map
    assert key[1] is not None and len(key[1]) <= 256
    limiter.reset("s" * 100_000)
    assert limiter.take("key:demo", "s" * 100_000, LIMIT).allowed


def test_failures_per_address_on_fake_time() -> None:
    """``burst`` failures, then a wait of a token's time; refilled addresses are forgotten."""
    clock = Clock(1000.0)
    limiter = FailureLimiter(RateLimit(per_minute=60, burst=100), clock=clock)
    for _ in range(100):
        assert limiter.wait("192.0.2.1") == 0
        limiter.failed("192.0.2.1")
    assert limiter.wait("192.0.2.1") == 1
    assert limiter.wait("192.0.2.2") == 0
    clock.now += 1.0
    assert limiter.wait("192.0.2.1") == 0
    limiter.failed("192.0.2.1")
    assert limiter.wait("192.0.2.1") == 1
    clock.now += 100.0
    limiter.failed("192.0.2.3")
    assert len(limiter) == 1


def test_ipv6_failures_count_per_64() -> None:
    """An IPv6 client cannot dodge the limit by walking its own /64."""
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("127.0.0.1") == "127.0.0.1"
    limiter = FailureLimiter(RateLimit(per_minute=60, burst=2), clock=Clock())
    limiter.failed("2001:db8::1")
    limiter.failed("2001:db8::2")
    assert limiter.wait("2001:db8::3") == 1


def test_failure_limit_off() -> None:
    """No limit, no waiting and nothing kept."""
    limiter = FailureLimiter(None)
    for _ in range(1000):
        limiter.failed("192.0.2.1")
    assert limiter.wait("192.0.2.1") == 0
    assert len(limiter) == 0


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        pytest.param([], RateLimit(per_minute=60, burst=100), id="default"),
        pytest.param(["--auth-failure-limit", "30:5"], RateLimit(per_minute=30, burst=5), id="rate-burst"),
        pytest.param(["--auth-failure-limit", "30"], RateLimit(per_minute=30, burst=30), id="rate-only"),
        pytest.param(["--auth-failure-limit", "off"], None, id="off"),
        pytest.param(["--auth-failure-limit", "0"], None, id="zero"),
    ],
)
def test_auth_failure_limit_flag(flag: list[str], expected: RateLimit | None) -> None:
    """``serve --auth-failure-limit PER_MINUTE[:BURST]|off`` sets the limit."""
    from mock_server._cli import _parser, config_from_args

    args = _parser().parse_args(["serve", *flag])
    assert config_from_args(args).auth_failure_limit == expected


@pytest.mark.parametrize(
    "flag",
    [
        pytest.param(["--auth-failure-limit", "x"], id="word"),
        pytest.param(["--auth-failure-limit=-1:5"], id="negative"),
        pytest.param(["--auth-failure-limit", "5:0"], id="no-burst"),
        pytest.param(["--auth-failure-limit", "9" * 5000], id="absurd"),
        pytest.param(["--journal-max-bytes", "0"], id="journal-bytes"),
        pytest.param(["--session-ttl", "0"], id="session-ttl"),
    ],
)
def test_bad_limits_name_the_flag(flag: list[str]) -> None:
    """A bad value is a ConfigError naming the flag."""
    from mock_server._cli import _parser, config_from_args
    from mock_server.exceptions import ConfigError

    with pytest.raises(ConfigError, match=flag[0].partition("=")[0]):
        config_from_args(_parser().parse_args(["serve", *flag]))


def test_memory_flags() -> None:
    """``--journal-max-bytes`` and ``--session-ttl`` reach the configuration."""
    from mock_server._cli import _parser, config_from_args

    args = _parser().parse_args(["serve", "--journal-max-bytes", "1000000", "--session-ttl", "30"])
    config = config_from_args(args)
    assert (config.journal_max_bytes, config.session_ttl) == (1_000_000, 30.0)
