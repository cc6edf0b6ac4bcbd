"""``requests_into_outage`` blames only requests sent after the client could have seen the
failure streak they are counted against (the chaos run's seed-2 finding): the answers that make
the streak must have gone out before the request arrived, a success answered before the request's
own failure breaks that streak, and a client with other requests open gets the in-flight grace
for reading those answers. A client that keeps sending into an outage, one request at a time or
many after the streak's answers went out, is still named."""

from __future__ import annotations

from typing import Any

from mock_server._faults import analyse

from .test_journal import entry


def outage_paths(entries: list[Any]) -> list[str]:
    """The paths ``requests_into_outage`` names, in the order it names them (arrival order)."""
    report = analyse(entries)
    named = [f["requests"] for f in report["findings"] if f["kind"] == "requests_into_outage"]
    return [r["path"] for requests in named for r in requests]


def streak(start: float, count: int = 6) -> list[Any]:
    """``count`` failures one at a time, 0.1 s apart, each answered in 10 ms."""
    return [entry(start + 0.1 * i, status=503, path=f"/s{i}", duration_s=0.01) for i in range(count)]


def test_a_burst_whose_failures_and_successes_interleave_in_answer_order_is_not_blamed() -> None:
    """Six failures, a pause, then 32 requests sent together, 4 of which fail: in answer order
    the burst's successes come between its failures, so no failure continues the streak the
    client saw before the pause."""
    answers = ("F" + "S" * 7) * 4
    assert len(answers) == 32 and answers.count("F") == 4
    burst = []
    for i in range(32):
        arrived = 101.5 + 0.0005 * i
        rank = (i * 7) % 32  # the order answers go out is not the order requests came in
        finished = 101.6 + 0.002 * rank
        status = 503 if answers[rank] == "F" else 200
        burst.append(entry(arrived, status=status, path=f"/b{i:02d}", duration_s=finished - arrived))
    assert analyse(streak(100.0) + burst)["findings"] == []


def test_requests_sent_together_are_not_blamed_for_answers_that_went_out_as_they_arrived() -> None:
    """A burst of 12 arriving over 22 ms, in which every third request succeeds slowly and the
    others fail at once: the last three failures arrive milliseconds after five failures in a row
    went out, while the burst's successes were still open. They may have left before the client
    could read those answers: not blamed."""
    burst = []
    for i in range(12):
        fails = i % 3 != 0
        burst.append(
            entry(
                100.0 + 0.002 * i,
                status=503 if fails else 200,
                path=f"/b{i:02d}",
                duration_s=0.001 if fails else 0.2,
            )
        )
    assert outage_paths(burst) == []


def test_a_client_sending_one_at_a_time_into_an_outage_is_blamed() -> None:
    """Each request arrives a millisecond after the previous failure was answered: from the
    sixth on, every one was sent after the client had read five failures in a row."""
    entries = []
    t = 100.0
    for i in range(12):
        entries.append(entry(t, status=503, path=f"/n{i:02d}", duration_s=0.01))
        t += 0.011
    assert outage_paths(entries) == [f"/n{i:02d}" for i in range(5, 12)]


def burst_after_streak(delay_s: float) -> list[Any]:
    """A slow request open throughout, five failures answered by 100.41, then ten requests sent
    together ``delay_s`` after the last of those answers, all failing, answered in order."""
    slow = entry(99.9, path="/slow", duration_s=5.0)
    failures = streak(100.0, 5)
    last_answer = max(e.finished_at for e in failures)
    burst = [
        entry(last_answer + delay_s + 0.001 * i, status=503, path=f"/b{i:02d}", duration_s=0.01 + 0.001 * i)
        for i in range(10)
    ]
    return [slow, *failures, *burst]


def test_many_requests_sent_after_the_streaks_answers_went_out_are_blamed() -> None:
    """Sent 0.3 s after the fifth failure went out, well past the in-flight grace: all ten named."""
    assert outage_paths(burst_after_streak(0.3)) == [f"/b{i:02d}" for i in range(10)]


def test_the_same_burst_within_the_in_flight_grace_is_not_blamed() -> None:
    """Arriving 20 ms after the fifth failure went out, while another request was open, the
    burst may have left before the client read it: the grace is the one the rate-limit finding
    gives (0.1 s)."""
    assert outage_paths(burst_after_streak(0.02)) == []


def test_a_success_between_the_streak_and_a_failure_breaks_it() -> None:
    """Sent one at a time after six failures, the requests alternate success and failure: no
    failure continues a streak, whatever the client had seen earlier."""
    entries = streak(100.0)
    t = 101.0
    for i in range(10):
        entries.append(entry(t, status=503 if i % 2 else 200, path=f"/a{i}", duration_s=0.01))
        t += 0.011
    assert outage_paths(entries) == []


def test_concurrent_loops_that_keep_sending_into_an_outage_are_blamed() -> None:
    """Eight loops sharing a session, each sending again as soon as its last request failed, for
    a second of outage: everything after the first answers plus the grace is named."""
    entries = []
    for u in range(8):
        t = 100.0 + 0.002 * u
        for k in range(50):
            entries.append(entry(t, status=503, path=f"/u{u}/{k:02d}", duration_s=0.02))
            t += 0.0201
    (finding,) = analyse(entries)["findings"]
    assert finding["kind"] == "requests_into_outage"
    # Other requests were open as each answer went out: the client could have read five
    # failures in a row 0.1 s after the fifth went out. Every request arriving from then on is
    # named (the report lists only the first 50 it names, so compare counts).
    fifth_readable = sorted(e.finished_at for e in entries)[4] + 0.1
    assert finding["count"] == sum(e.arrived_at >= fifth_readable for e in entries) > 0.8 * len(entries)
