"""Properties of the client's retries against the fake: attempts, idempotency, Retry-After,
deadlines, backoff and the retry budget.

Fault plans are drawn per attempt; time is fake (the client's sleeps are recorded, not
slept) while the requests go over real sockets to the fake, whose journal is the witness.
"""

from __future__ import annotations

import itertools
import random
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from client import (
    ApiError,
    Policies,
    RetryBudget,
    RetryPolicy,
    Timeouts,
    TransportError,
    backoff,
    parse_retry_after,
)
from mock_server import ServerThread

from ._drivers import DRIVERS, caller
from ._support import (
    ANY_FAULT,
    BEFORE_APP,
    fake_clock,
    new_session,
    planned,
    retry_after,
)

pytestmark = pytest.mark.socket
#: Every client property runs against every driver of the engine.
each_driver = pytest.mark.parametrize("driver", DRIVERS)
KEY = {"X-API-Key": "demo-key"}


def _policies(retry: RetryPolicy, *, total: float | None = None, read: float = 5.0) -> Policies:
    return Policies(
        retry=retry, breaker=None, cache=None, limiter=None, timeouts=Timeouts(read=read, total=total)
    )


def _call(session: Any, method: str, url: str, **kwargs: Any) -> Any:
    try:
        return session.request(method, url, **kwargs)
    except ApiError as exc:
        return exc


@each_driver
@given(plan=st.lists(ANY_FAULT, max_size=6), attempts=st.integers(1, 5))
def test_attempts_never_exceed_the_maximum(
    driver: str, fake: ServerThread, plan: list[dict[str, Any]], attempts: int
) -> None:
    """Property 1: a logical call makes at most ``attempts`` attempts, and the journal agrees."""
    sid = new_session()
    clock = fake_clock()
    retry = RetryPolicy(
        attempts=attempts, budget=None, backoff_base=0.01, retry_after_cap=10, rng=random.Random(0)
    )
    session = recorder = caller(driver, _policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
    with planned(fake, sid, plan):
        outcome = _call(session, "GET", f"{fake.url}/profiles")
    sent = len(recorder.sent)
    assert 1 <= sent <= attempts
    assert fake.admin.count(session=sid) == sent == session.metrics.snapshot().attempts
    assert len({r.headers["X-Request-ID"] for r in recorder.sent}) == 1
    succeeded = getattr(outcome, "status_code", None) == 200
    assert succeeded == (len(plan) < attempts)


@each_driver
@given(plan=st.lists(ANY_FAULT, min_size=1, max_size=4), with_key=st.booleans())
def test_unsafe_requests_are_retried_only_with_a_key(
    driver: str, fake: ServerThread, plan: list[dict[str, Any]], with_key: bool
) -> None:
    """Property 2: a POST without an Idempotency-Key reaches the server once; with one, every
    attempt carries the same key and body, and one profile exists with the first answer replayed."""
    sid = new_session()
    name = f"p-{sid}"
    clock = fake_clock()
    retry = RetryPolicy(
        attempts=6,
        budget=None,
        backoff_base=0.01,
        retry_after_cap=10,
        rng=random.Random(0),
        idempotency_methods=frozenset({"POST"}) if with_key else frozenset(),
    )
    session = recorder = caller(driver, _policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
    body = {"tenant": "demo", "profile_name": name, "hrv_vector": [0.25] * 8}
    with planned(fake, sid, plan, path="/profiles"):
        outcome = _call(session, "POST", f"{fake.url}/profiles", json=body)
    posts = fake.admin.requests(session=sid, method="POST")
    assert len(posts) == len(recorder.sent)
    if not with_key:
        # Resets, closes and truncations all come after the request was sent: never repeat it.
        assert len(posts) == 1
        return
    assert len({p["idempotency_key"] for p in posts}) == 1 and posts[0]["idempotency_key"]
    assert len({r.body for r in recorder.sent}) == 1
    if len(plan) < 6:
        assert getattr(outcome, "status_code", None) == 201, outcome
    # The API did the work if the call succeeded or an attempt was truncated after the fact.
    succeeded = getattr(outcome, "status_code", None) == 201
    processed = succeeded or any(f["type"] == "truncate" for f in plan[: len(posts)])
    stored = session.get(f"{fake.url}/profiles/demo/{name}", headers={"X-Mock-Session": "plain"})
    assert stored.status_code == (200 if processed else 404)


@each_driver
@given(plan=st.lists(retry_after(), min_size=1, max_size=4), total=st.floats(1.0, 12.0))
def test_retry_after_and_deadline_are_honoured(
    driver: str, fake: ServerThread, plan: list[dict[str, Any]], total: float
) -> None:
    """Property 3: no retry before an accepted Retry-After (seconds or HTTP-date), none after the
    deadline, and the call ends within the deadline plus one attempt timeout."""
    sid = new_session()
    clock = fake_clock()
    read = 2.0
    retry = RetryPolicy(attempts=6, budget=None, backoff_base=0.05, retry_after_cap=30, rng=random.Random(1))
    session = recorder = caller(
        driver, _policies(retry, total=total, read=read), clock, base_headers={**KEY, "X-Mock-Session": sid}
    )
    start = clock.clock()
    with planned(fake, sid, plan):
        _call(session, "GET", f"{fake.url}/profiles")
    end = clock.clock()
    assert end - start <= total + read
    for earlier, later in itertools.pairwise(recorder.sent):
        assert later.mono <= start + total, "an attempt was sent after the deadline"
        value = earlier.response_headers.get("Retry-After")
        if value is None:
            continue
        if value.isdigit():
            assert later.mono - earlier.received_mono >= int(value) - 1e-9
        else:
            assert later.wall >= parsedate_to_datetime(value).timestamp() - 1e-6


@given(
    attempt=st.integers(1, 30), base=st.floats(0.001, 5), cap=st.floats(0.01, 60), seed=st.integers(0, 2**32)
)
def test_backoff_stays_within_the_jitter_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    """Property 7a: full-jitter backoff is within [0, min(cap, base * 2^(attempt-1))]."""
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (attempt - 1))


@each_driver
@given(calls=st.integers(1, 60), ratio=st.floats(0.0, 1.0), per_second=st.floats(0.0, 0.5))
def test_budget_caps_retries_across_calls(driver: str, calls: int, ratio: float, per_second: float) -> None:
    """Property 7b: across many failing calls, retries stay within the budget's allowance."""
    clock = fake_clock()
    window = 1000.0
    budget = RetryBudget(ratio=ratio, min_per_second=per_second, window=window)
    retry = RetryPolicy(
        attempts=5,
        budget=budget,
        backoff_base=0.001,
        backoff_cap=0.001,
        rng=random.Random(2),
        raise_on_exhausted=False,
    )
    adapter = session = caller(driver, _policies(retry), clock, script=[(503, {})])
    for _ in range(calls):
        _call(session, "GET", "http://upstream.invalid/x")
    retries = len(adapter.sent) - calls
    assert retries <= ratio * calls + per_second * window + 1e-9


@each_driver
@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_connect_errors_are_retried_for_any_method(driver: str, method: str) -> None:
    """Connect failures are retried even for a POST without a key: nothing was sent."""
    clock = fake_clock()
    retry = RetryPolicy(attempts=3, budget=None, idempotency_methods=frozenset(), rng=random.Random(3))
    adapter = session = caller(
        driver,
        _policies(retry),
        clock,
        script=[requests.exceptions.ConnectTimeout("connect timed out"), (200, {})],
    )
    response = session.request(method, "http://upstream.invalid/x", json={"a": 1})
    assert response.status_code == 200 and len(adapter.sent) == 2


#: Statuses no retry can fix: the request itself was refused (or the method is not there).
NON_RETRYABLE = st.sampled_from([400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 501])


@each_driver
@given(
    prefix=st.lists(BEFORE_APP, max_size=3), status=NON_RETRYABLE, method=st.sampled_from(["GET", "DELETE"])
)
def test_non_retryable_statuses_end_the_call(
    driver: str, fake: ServerThread, prefix: list[dict[str, Any]], status: int, method: str
) -> None:
    """Property 1b: after any retryable faults, a status no retry can fix ends the call at once
    and comes back unchanged, as a response (one attempt when it is the first answer)."""
    sid = new_session()
    clock = fake_clock()
    retry = RetryPolicy(attempts=6, budget=None, backoff_base=0.01, retry_after_cap=10, rng=random.Random(5))
    session = recorder = caller(driver, _policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
    with planned(fake, sid, [*prefix, {"type": "status", "status": status}]):
        outcome = _call(session, method, f"{fake.url}/profiles/demo/nobody")
    assert not isinstance(outcome, ApiError), f"status {status} was raised, not returned: {outcome!r}"
    assert outcome.status_code == status
    assert len(recorder.sent) == len(prefix) + 1 == fake.admin.count(session=sid)


@each_driver
@given(
    seconds=st.integers(2, 25),
    backoff_cap=st.floats(0.05, 1.5),
    status=st.sampled_from([429, 503]),
    http_date=st.booleans(),
)
def test_retry_after_beyond_the_backoff_cap_is_waited_in_full(
    driver: str, fake: ServerThread, seconds: int, backoff_cap: float, status: int, http_date: bool
) -> None:
    """Property 3b: the backoff cap bounds the client's own backoff, never the server's
    Retry-After. Up to ``retry_after_cap`` the wait is at least what the server asked; beyond
    it the call fails at once, without sleeping and without another attempt."""
    sid = new_session()
    clock = fake_clock()
    cap = 20.0
    retry = RetryPolicy(
        attempts=3,
        budget=None,
        backoff_base=0.01,
        backoff_cap=backoff_cap,
        retry_after_cap=cap,
        rng=random.Random(6),
    )
    session = recorder = caller(driver, _policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
    value: Any = {"seconds": seconds, "format": "http-date"} if http_date else seconds
    with planned(fake, sid, [{"type": "status", "status": status, "retry_after": value}]):
        outcome = _call(session, "GET", f"{fake.url}/profiles")
    first = recorder.sent[0]
    assert first.received_wall is not None and first.received_mono is not None
    asked = parse_retry_after(first.response_headers.get("Retry-After"), now=first.received_wall)
    assert asked is not None and asked >= seconds - 1e-6
    if asked > cap:
        assert len(recorder.sent) == 1 and not clock.sleeps, "waited for a Retry-After beyond the cap"
        assert isinstance(outcome, ApiError)
        return
    assert len(recorder.sent) == 2, outcome
    assert recorder.sent[1].mono - first.received_mono >= asked - 1e-6, "retried before Retry-After"
    assert getattr(outcome, "status_code", None) == 200


SENT_THEN_FAILED = {
    "read timeout": lambda: requests.exceptions.ReadTimeout("read timed out"),
    "body cut short": lambda: requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead"),
}


@each_driver
@given(
    method=st.sampled_from(["POST", "PATCH", "PUT", "DELETE", "GET"]),
    with_key=st.booleans(),
    failure=st.sampled_from(sorted(SENT_THEN_FAILED)),
)
def test_failures_after_sending_are_retried_only_when_safe(
    driver: str, method: str, with_key: bool, failure: str
) -> None:
    """Property 2b: a read timeout (or a body cut short) may come after the server acted, so
    an unsafe method without an Idempotency-Key gets one attempt and the error; an idempotent
    method, or any carrying a key, is retried."""
    clock = fake_clock()
    retry = RetryPolicy(attempts=3, budget=None, idempotency_methods=frozenset(), rng=random.Random(7))
    adapter = session = caller(
        driver, _policies(retry), clock, script=[SENT_THEN_FAILED[failure](), (200, {})]
    )
    headers = {"Idempotency-Key": "k-1"} if with_key else {}
    outcome = _call(session, method, "http://upstream.invalid/x", json={"a": 1}, headers=headers)
    if method in ("PUT", "DELETE", "GET") or with_key:
        assert len(adapter.sent) == 2 and getattr(outcome, "status_code", None) == 200, outcome
    else:
        assert len(adapter.sent) == 1, f"{method} without a key was sent again after a {failure}"
        assert isinstance(outcome, TransportError) and outcome.request_sent


@each_driver
@pytest.mark.parametrize(
    ("method", "with_key", "attempts"),
    [("POST", False, 1), ("POST", True, 2), ("PUT", False, 2)],
    ids=["POST without key", "POST with key", "PUT"],
)
def test_read_timeouts_on_the_wire(
    driver: str, fake: ServerThread, method: str, with_key: bool, attempts: int
) -> None:
    """The fake holds the first attempt past the client's read timeout: the journal shows a
    second attempt only where repeating the request is safe."""
    sid = new_session()
    clock = fake_clock()
    retry = RetryPolicy(
        attempts=3,
        budget=None,
        backoff_base=0.001,
        idempotency_methods=frozenset({"POST"}) if with_key else frozenset(),
        rng=random.Random(8),
    )
    session = caller(driver, _policies(retry, read=0.25), clock, base_headers={**KEY, "X-Mock-Session": sid})
    body = {"tenant": "demo", "profile_name": f"t-{sid}", "hrv_vector": [0.5] * 8}
    url = f"{fake.url}/profiles" if method == "POST" else f"{fake.url}/profiles/demo/t-{sid}"
    with planned(fake, sid, [{"type": "timeout", "hang_s": 5}]):
        _call(session, method, url, json=body if method == "POST" else {"hrv_vector": [0.5] * 8})
    assert fake.admin.count(session=sid, method=method) == attempts


@given(
    attempt=st.integers(1, 12),
    base=st.floats(0.001, 5),
    cap=st.floats(0.01, 60),
    seed=st.integers(0, 2**32),
)
def test_backoff_jitter_spreads_over_the_whole_window(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    """Property 7c: full jitter, not a fixed or half-jittered delay: over many draws the delays
    reach both ends of [0, min(cap, base * 2^(attempt-1))] and average about its middle."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(seed)
    delays = [backoff(attempt, base=base, cap=cap, rng=rng) for _ in range(300)]
    assert min(delays) <= 0.1 * ceiling, "never retries early in the window"
    assert max(delays) >= 0.9 * ceiling, "never uses the end of the window"
    assert 0.4 * ceiling <= sum(delays) / len(delays) <= 0.6 * ceiling
    assert len(set(delays)) >= 250, "delays repeat: a fleet would retry in step"
