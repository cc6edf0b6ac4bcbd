"""The journal (ring buffer, filters, waiters) and the compliance analysis on synthetic entries."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from mock_server._faults import Entry, FaultConfigError, Filter, Journal, Thresholds, analyse
from mock_server._faults._journal import redact_query

_seq = itertools.count(1)


def entry(t: float, **kw: Any) -> Entry:
    """A completed entry that arrived at ``t`` (epoch seconds) and took 1 ms."""
    values: dict[str, Any] = {
        "seq": next(_seq),
        "request_id": f"r{t}",
        "client_request_id": False,
        "method": "GET",
        "path": "/x",
        "query": "",
        "tenant": "demo",
        "session": None,
        "idempotency_key": None,
        "arrived_at": t,
        "arrived_mono": t,
        "fault": None,
        "rule": None,
        "rules": (),
        "injected_delay_s": 0.0,
        "status": 200,
        "outcome": "response",
        "duration_s": 0.001,
    }
    values.update(kw)
    return Entry(**values)


def test_ring_buffer_keeps_the_newest():
    """Appends are bounded by ``size``; the oldest entries fall out."""
    j = Journal(3)
    for i in range(5):
        j.record(entry(float(i)))
    assert [e.arrived_at for e in j] == [2.0, 3.0, 4.0]


def test_filters_and_limit():
    """Filters combine; ``limit`` keeps the newest matches, in arrival order."""
    j = Journal()
    j.record(entry(1, method="POST", status=503, fault="status", rule="r1", rules=("r1",)))
    j.record(entry(2, path="/profiles/a", session="s"))
    j.record(entry(3, path="/profiles/b", session="s", status=404))
    assert j.count(Filter.parse({"status": "5xx"})) == 1
    assert j.count(Filter.parse({"status": "4XX"})) == 1
    assert j.count(Filter.parse({"path": "/profiles/*", "session": "s"})) == 2
    assert j.count(Filter.parse({"fault": "status"})) == 1
    assert j.count(Filter.parse({"fault": "r1"})) == 1
    assert j.count(Filter.parse({"fault": "none"})) == 2
    assert j.count(Filter.parse({"method": "post"})) == 1
    assert j.count(Filter.parse({"since": "1970-01-01T00:00:02Z"})) == 2
    assert [e.arrived_at for e in j.select(Filter(), limit=2)] == [2, 3]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        pytest.param({"status": "abc"}, "status", id="status"),
        pytest.param({"since": "yesterday"}, "since", id="since"),
        pytest.param({"colour": "red"}, "colour", id="unknown"),
    ],
)
def test_bad_filters_are_named(params, where):
    """A bad filter value is an error naming the filter."""
    with pytest.raises(FaultConfigError, match=f"^{where}: "):
        Filter.parse(params)


def test_wait_wakes_on_arrival_without_polling():
    """A waiter wakes when the n-th matching entry is recorded, and times out otherwise."""

    async def scenario() -> tuple[tuple[bool, int], tuple[bool, int]]:
        j = Journal()
        j.record(entry(1, session="a"))
        waiting = asyncio.create_task(j.wait(Filter(session="a"), 3, 5.0))
        await asyncio.sleep(0)
        j.record(entry(2, session="b"))
        j.record(entry(3, session="a"))
        j.record(entry(4, session="a"))
        woke = await waiting
        late = await j.wait(Filter(session="a"), 9, 0.01)
        return woke, late

    woke, late = asyncio.run(scenario())
    assert woke == (True, 3)
    assert late == (False, 3)


def test_wait_on_status_counts_completions():
    """A filter on status counts requests once they have been answered."""

    async def scenario() -> bool:
        j = Journal()
        pending = entry(1, status=None, outcome=None)
        j.record(pending)
        waiting = asyncio.create_task(j.wait(Filter(status="503"), 1, 5.0))
        await asyncio.sleep(0)
        pending.status, pending.outcome = 503, "response"
        j.complete(pending)
        return (await waiting)[0]

    assert asyncio.run(scenario())


def test_clear_one_session():
    """Clearing one session keeps the others."""
    j = Journal()
    for i, s in enumerate(["a", "b", "a"]):
        j.record(entry(float(i), session=s))
    assert j.clear("a") == 2
    assert [e.session for e in j] == ["b"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("page=2", "page=2", id="plain"),
        pytest.param("api_key=demo-key&page=2", "api_key=***&page=2", id="api-key"),
        pytest.param("access_token=abc", "access_token=***", id="token"),
        pytest.param("client_secret=x&sig=y", "client_secret=***&sig=***", id="secret"),
    ],
)
def test_secret_query_parameters_are_redacted(query, expected):
    """Secret-looking query values never reach the journal."""
    assert redact_query(query) == expected


def kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def test_requests_while_remaining_is_zero():
    """After a 200 saying Remaining 0, requests before the reset are flagged; after it, not."""
    entries = [
        entry(100.0, ratelimit_remaining=0, ratelimit_reset_at=105.0),
        entry(101.0, path="/y"),
        entry(106.0, path="/z"),
    ]
    report = analyse(entries)
    assert kinds(report) == {"request_while_rate_limited"}
    flagged = report["findings"][0]["requests"]
    assert [r["path"] for r in flagged] == ["/y"]


def test_concurrent_requests_are_not_blamed_for_a_response_they_could_not_see():
    """A request that arrived before the Remaining-0 response went out is not flagged."""
    entries = [
        entry(100.0, ratelimit_remaining=0, ratelimit_reset_at=110.0, duration_s=0.5),
        entry(100.2, path="/y"),
    ]
    assert analyse(entries)["findings"] == []


def test_retry_after_honoured_in_http_date_form():
    """A retry after the Retry-After delay passes; one before it is flagged with how early it was."""
    first = entry(100.0, status=503, retry_after_s=2.0)
    assert analyse([first, entry(102.1)])["verdict"] == "pass"
    early = analyse([entry(100.0, status=503, retry_after_s=2.0), entry(100.5)])
    finding = early["findings"][0]
    assert finding["kind"] == "retry_before_retry_after"
    assert finding["requests"][0]["early_by_s"] == pytest.approx(1.501, abs=0.01)


def test_attempts_are_grouped_by_idempotency_key_or_request_id():
    """Attempts sharing a key or a client request id are one logical request."""
    entries = [
        entry(1, method="POST", idempotency_key="k", status=502),
        entry(2, method="POST", idempotency_key="k"),
        entry(3, client_request_id=True, request_id="abc", outcome="reset", status=None),
        entry(4, client_request_id=True, request_id="abc"),
        entry(5),
        entry(6),
    ]
    report = analyse(entries)
    assert report["logical_requests"] == 4
    assert report["attempts"]["histogram"] == {"1": 2, "2": 2}
    assert report["findings"] == []


def test_post_retried_without_key_after_a_reset():
    """A POST repeated after a reset without Idempotency-Key may have run twice: flagged."""
    entries = [entry(1, method="POST", outcome="reset", status=None), entry(2, method="POST")]
    assert kinds(analyse(entries)) == {"unsafe_retry_without_idempotency_key"}


def test_post_retried_after_429_is_fine():
    """A 429 means the request was not processed: retrying it without a key is safe."""
    entries = [entry(1, method="POST", status=429), entry(3, method="POST")]
    assert analyse(entries)["findings"] == []


def test_excessive_attempts_is_a_warning():
    """Too many attempts with backoff is a warning, not a failure."""
    entries = [entry(float(i), status=500) for i in range(7)] + [entry(8.0)]
    report = analyse(entries, thresholds=Thresholds(outage_after=100))
    assert kinds(report) == {"excessive_attempts"}
    assert report["verdict"] == "pass"


def test_polling_a_healthy_endpoint_is_not_a_retry():
    """Repeating a request that succeeded starts a new logical request."""
    report = analyse([entry(1.0 + i * 0.001) for i in range(20)])
    assert report["logical_requests"] == 20
    assert report["findings"] == []


def test_probes_into_an_outage_at_a_polite_rate_pass():
    """A breaker probing once a second after 5 failures is not flagged."""
    failures = [entry(float(i) * 0.1, status=503) for i in range(5)]
    probes = [entry(2.0 + i, status=503, path=f"/probe{i}") for i in range(4)]
    assert analyse(failures + probes, thresholds=Thresholds(min_gap_s=0.01))["findings"] == []


def test_new_payloads_after_a_failure_are_not_retries():
    """A POST with a different body after a failure is a new request, not an unkeyed retry."""
    entries = [
        entry(1, method="POST", status=503, body_digest="a"),
        entry(2, method="POST", body_digest="b"),
        entry(3, method="POST", status=503, body_digest="c"),
        entry(4, method="POST", body_digest="c"),
    ]
    report = analyse(entries)
    assert report["logical_requests"] == 3
    assert [r["seq"] for f in report["findings"] for r in f["requests"]] == [entries[3].seq]


def test_only_the_clients_previous_request_can_be_retried():
    """Repeating a request that failed long ago, with others in between, starts a new one."""
    entries = [
        entry(1, method="POST", status=503, body_digest="a"),
        entry(2, method="POST", path="/other", body_digest="b"),
        entry(3, method="POST", body_digest="a"),
    ]
    assert analyse(entries)["logical_requests"] == 3
