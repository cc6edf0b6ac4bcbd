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
    backoff,
)
from mock_server import ServerThread

from ._support import (
    ANY_FAULT,
    CannedAdapter,
    client_session,
    fake_clock,
    new_session,
    planned,
    retry_after,
)

pytestmark = pytest.mark.socket
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


@given(plan=st.lists(ANY_FAULT, max_size=6), attempts=st.integers(1, 5))
def test_attempts_never_exceed_the_maximum(
    fake: ServerThread, plan: list[dict[str, Any]], attempts: int
) -> None:
    """Property 1: a logical call makes at most ``attempts`` attempts, and the journal agrees."""
    sid = new_session()
    clock = fake_clock()
    retry = RetryPolicy(
        attempts=attempts, budget=None, backoff_base=0.01, retry_after_cap=10, rng=random.Random(0)
    )
    session, recorder = client_session(_policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
    with planned(fake, sid, plan):
        outcome = _call(session, "GET", f"{fake.url}/profiles")
    sent = len(recorder.sent)
    assert 1 <= sent <= attempts
    assert fake.admin.count(session=sid) == sent == session.metrics.snapshot().attempts
    assert len({r.headers["X-Request-ID"] for r in recorder.sent}) == 1
    succeeded = getattr(outcome, "status_code", None) == 200
    assert succeeded == (len(plan) < attempts)


@given(plan=st.lists(ANY_FAULT, min_size=1, max_size=4), with_key=st.booleans())
def test_unsafe_requests_are_retried_only_with_a_key(
    fake: ServerThread, plan: list[dict[str, Any]], with_key: bool
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
    session, recorder = client_session(_policies(retry), clock, base_headers={**KEY, "X-Mock-Session": sid})
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


@given(plan=st.lists(retry_after(), min_size=1, max_size=4), total=st.floats(1.0, 12.0))
def test_retry_after_and_deadline_are_honoured(
    fake: ServerThread, plan: list[dict[str, Any]], total: float
) -> None:
    """Property 3: no retry before an accepted Retry-After (seconds or HTTP-date), none after the
    deadline, and the call ends within the deadline plus one attempt timeout."""
    sid = new_session()
    clock = fake_clock()
    read = 2.0
    retry = RetryPolicy(attempts=6, budget=None, backoff_base=0.05, retry_after_cap=30, rng=random.Random(1))
    session, recorder = client_session(
        _policies(retry, total=total, read=read), clock, base_headers={**KEY, "X-Mock-Session": sid}
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


@given(calls=st.integers(1, 60), ratio=st.floats(0.0, 1.0), per_second=st.floats(0.0, 0.5))
def test_budget_caps_retries_across_calls(calls: int, ratio: float, per_second: float) -> None:
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
    adapter = CannedAdapter(clock, [(503, {})])
    session, _ = client_session(_policies(retry), clock, adapter=adapter)
    for _ in range(calls):
        _call(session, "GET", "http://upstream.invalid/x")
    retries = len(adapter.sent) - calls
    assert retries <= ratio * calls + per_second * window + 1e-9


@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_connect_errors_are_retried_for_any_method(method: str) -> None:
    """Connect failures are retried even for a POST without a key: nothing was sent."""
    clock = fake_clock()
    retry = RetryPolicy(attempts=3, budget=None, idempotency_methods=frozenset(), rng=random.Random(3))
    adapter = CannedAdapter(clock, [requests.exceptions.ConnectTimeout("connect timed out"), (200, {})])
    session, _ = client_session(_policies(retry), clock, adapter=adapter)
    response = session.request(method, "http://upstream.invalid/x", json={"a": 1})
    assert response.status_code == 200 and len(adapter.sent) == 2
