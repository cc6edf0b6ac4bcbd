"""The rate-limit finding blames only what a client could have held back (issue 11's demo
finding): a request arriving within the tolerance after a Remaining-0 answer, while the client
had other requests open, may have left before the client could read that answer."""

from __future__ import annotations

from mock_server._faults import analyse

from .test_journal import entry, kinds


def test_a_request_on_its_way_is_not_blamed_when_others_were_open() -> None:
    entries = [
        entry(100.0, ratelimit_remaining=0, ratelimit_reset_at=110.0, duration_s=0.05),
        entry(100.01, path="/open", duration_s=0.5),  # open when the refusal went out
        entry(100.09, path="/racing"),  # 40 ms after: may not have seen it yet
        entry(100.3, path="/late"),  # 250 ms after: blamed
    ]
    report = analyse(entries)
    flagged = [r["path"] for f in report["findings"] for r in f["requests"]]
    assert flagged == ["/late"]


def test_a_client_with_one_request_at_a_time_gets_no_grace() -> None:
    """With nothing else open, the next request can only have been sent after the refusal was
    read: even one arriving a millisecond later is blamed."""
    entries = [
        entry(100.0, ratelimit_remaining=0, ratelimit_reset_at=110.0, duration_s=0.05),
        entry(100.051, path="/eager"),
    ]
    assert kinds(analyse(entries)) == {"request_while_rate_limited"}
