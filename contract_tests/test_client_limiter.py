"""Property 5: the client's rate limiter. Over any window the requests sent stay within the
bucket; nothing is sent while the server said none remain, until its reset, and the pause ends
when the server said it would, whichever header (IETF ``RateLimit`` or ``X-RateLimit-*``) said it."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import FakeClock, Policies, RateLimited, RateLimitPolicy, RetryPolicy, Timeouts
from mock_server import RateLimit, ServerThread, Tenant

from ._drivers import DRIVERS, caller
from ._support import fake_clock, new_session

each_driver = pytest.mark.parametrize("driver", DRIVERS)


def _policies(limiter: RateLimitPolicy, attempts: int = 1) -> Policies:
    return Policies(
        retry=RetryPolicy(attempts=attempts, budget=None),
        breaker=None,
        cache=None,
        limiter=limiter,
        timeouts=Timeouts(read=5, total=None),
    )


@each_driver
@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 8),
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.2, 1.0, 5.0]), min_size=1, max_size=40),
)
def test_sends_stay_within_the_bucket(driver: str, rate: float, burst: int, gaps: list[float]) -> None:
    """Over every window [t_i, t_j] the client sends at most burst + rate * (t_j - t_i) requests."""
    clock = fake_clock()
    policies = _policies(RateLimitPolicy(rate=rate, burst=burst, follow_server=False))
    adapter = session = caller(driver, policies, clock, script=[(200, {})])
    for gap in gaps:
        clock.advance(gap)
        session.get("http://upstream.invalid/x")
    times = [s.mono for s in adapter.sent]
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1e-6


@st.composite
def server_replies(draw: st.DrawFn) -> tuple[list[Any], list[float | None]]:
    """Responses announcing a remaining count and a reset, some of them 0 remaining or 429;
    and, filled in as they are sent, the pause each one announced (None: no pause)."""
    announced: list[float | None] = []
    replies = []
    for _ in range(draw(st.integers(1, 12))):
        remaining = draw(st.integers(0, 3))
        reset_in = draw(st.integers(1, 30))
        status = 429 if remaining == 0 and draw(st.booleans()) else 200
        ietf = draw(st.booleans())

        def reply(
            clock: FakeClock,
            remaining: int = remaining,
            reset_in: int = reset_in,
            status: int = status,
            ietf: bool = ietf,
        ) -> tuple[int, dict[str, str]]:
            if ietf:
                headers = {"RateLimit": f'"default";r={remaining};t={reset_in}'}
                pause = float(reset_in)
            else:
                reset_at = int(clock.wall()) + reset_in
                headers = {"X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset_at)}
                pause = reset_at - clock.wall()
            if status == 429:
                headers["Retry-After"] = str(reset_in)
                pause = max(pause, reset_in)
            announced.append(pause if remaining == 0 else None)
            return status, headers

        replies.append(reply)
    return replies, announced


@each_driver
@given(script=server_replies(), calls=st.integers(1, 15))
def test_nothing_is_sent_while_the_server_says_none_remain(
    driver: str, script: tuple[list[Any], list[float | None]], calls: int
) -> None:
    """After a response saying 0 remain (or a 429), the next request waits for the announced
    reset, and no longer: the pause has a lower and an upper bound."""
    replies, announced = script
    announced.clear()
    clock = fake_clock()
    adapter = session = caller(driver, _policies(RateLimitPolicy(rate=100, burst=100)), clock, script=replies)
    for _ in range(calls):
        try:
            session.get("http://upstream.invalid/x")
        except RateLimited:  # a 429 ends the call (one attempt): the property is about timing
            pass
    for pause, (earlier, later) in zip(announced, itertools.pairwise(adapter.sent), strict=False):
        gap = later.mono - earlier.mono
        if pause is not None:
            assert gap >= pause - 1e-6, "sent before the server's reset"
        # Beyond the server's pause the only wait is the client's own bucket, which follows the
        # announced Remaining and refills at 100/s: the pause is never stretched (an epoch read
        # as seconds, say).
        bound = max(pause or 0.0, 1 / 100) + 1e-6
        assert gap <= bound, f"waited {gap:.3f} s where the server asked for {pause}"


@pytest.mark.socket
@each_driver
def test_limiter_keeps_429s_away_on_the_wire(driver: str, mock_server_factory: Any) -> None:
    """Against a fake with a tight limit, a client following its headers gets no 429 and the
    fake's compliance report finds nothing sent while Remaining was 0."""
    tight = (Tenant(name="demo", api_keys=("demo-key",), rate_limit=RateLimit(per_minute=240, burst=2)),)
    fake: ServerThread = mock_server_factory(tenants=tight)
    sid = new_session()
    limiter = RateLimitPolicy(rate=100, burst=100)  # generous: the server's headers are what slow it
    headers = {"X-API-Key": "demo-key", "X-Mock-Session": sid}
    session = caller(
        driver, _policies(limiter, attempts=3), _RealClock(), base_headers=headers, real_time=True
    )
    statuses = [session.get(f"{fake.url}/profiles").status_code for _ in range(6)]
    assert statuses == [200] * 6
    report = fake.admin.compliance(session=sid)
    kinds = {f["kind"] for f in report["findings"]}
    assert not any("remaining" in k for k in kinds), report["findings"]
    assert fake.admin.count(session=sid, status=429) == 0


@pytest.mark.socket
@each_driver
def test_x_ratelimit_reset_is_an_epoch_on_the_wire(driver: str, mock_server_factory: Any) -> None:
    """Against a fake with burst 2 whose IETF headers are hidden (a server that speaks only
    ``X-RateLimit-*``, an epoch reset, as many do), the client's pause after
    ``X-RateLimit-Remaining: 0`` ends at ``X-RateLimit-Reset``: it waits no longer than that,
    and the request after it is accepted."""
    tight = (Tenant(name="demo", api_keys=("demo-key",), rate_limit=RateLimit(per_minute=120, burst=2)),)
    fake: ServerThread = mock_server_factory(tenants=tight)
    pauses: list[tuple[float, float]] = []
    sent: list[Any] = []

    def sleep(seconds: float) -> None:
        # Real time (the fake's bucket refills in real time), but a pause longer than the
        # server announced fails here instead of hanging the suite.
        resets = [float(s.response_headers["X-RateLimit-Reset"]) for s in sent if s.response_headers]
        allowed = max(resets) - time.time() + 0.05 if resets else 0.0
        pauses.append((seconds, allowed))
        assert seconds <= allowed, f"paused {seconds:.1f} s; X-RateLimit-Reset allows {allowed:.2f} s"
        time.sleep(seconds)

    limiter = RateLimitPolicy(rate=100, burst=100, sleep=sleep)
    headers = {"X-API-Key": "demo-key", "X-Mock-Session": new_session()}
    hidden = ("RateLimit", "RateLimit-Policy")
    with caller(
        driver, _policies(limiter), _RealClock(), base_headers=headers, real_time=True, hide=hidden
    ) as client:
        sent = client.sent
        statuses = [client.get(f"{fake.url}/profiles").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert all("RateLimit" not in s.response_headers for s in sent)
    assert sent[1].response_headers["X-RateLimit-Remaining"] == "0"
    assert len(pauses) == 1, f"expected one pause, after Remaining: 0; got {pauses}"


class _RealClock(FakeClock):
    """Readings of the real clocks, for a RecordingAdapter on real time."""

    def clock(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
