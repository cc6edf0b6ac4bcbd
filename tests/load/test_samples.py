"""Per-second samples: buckets, percentiles, merging across processes, persistence."""

from __future__ import annotations

import math

import pytest

from load_tests._samples import Samples, bucket_ms, percentile

from .conftest import T0, call


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [
        pytest.param(3.4, 3, id="under-100-to-1ms"),
        pytest.param(456.0, 460, id="under-1000-to-10ms"),
        pytest.param(2345.0, 2300, id="above-to-100ms"),
    ],
)
def test_bucket_ms_rounds_like_locust(ms, bucket):
    """Latencies are rounded to 1, 10 or 100 ms by magnitude, as locust's own stats are."""
    assert bucket_ms(ms) == bucket


def test_percentile_of_histogram():
    """Quantiles come from counts; an empty histogram has no quantile."""
    hist = {10: 90, 100: 9, 1000: 1}
    assert percentile(hist, 0.5) == 10
    assert percentile(hist, 0.95) == 100
    assert percentile(hist, 1.0) == 1000
    assert math.isnan(percentile({}, 0.5))


def test_window_counts_context_facts(make_samples):
    """A call's context (attempts, statuses, cache, breaker) lands in its second's window."""
    samples = make_samples(
        {
            "resilient": [
                (0, 12.0, None, call(3, attempt_5xx=2, breaker_state="closed")),
                (0, 1.0, None, call(0, cache="hit", breaker_state="closed")),
                (1, 5.0, "CircuitOpen", call(0, breaker_state="open")),
            ]
        }
    )
    m = samples.metrics("resilient")
    assert (m.calls, m.failures, m.window.attempts, m.window.server_errors) == (3, 1, 3, 2)
    assert m.window.cache_hits == 1 and m.window.breaker_rejections == 1
    assert m.rps == pytest.approx(0.3)
    series = samples.series("resilient", T0, T0 + 1)
    assert [w.worst_breaker() for _, w in series] == ["closed", "open"]


def test_worker_reports_merge_on_master():
    """What workers drain and ship adds up on the master, counted per worker."""
    master = Samples()
    for worker, n in (("w1", 3), ("w2", 5)):
        local = Samples()
        for i in range(n):
            local.add("resilient", T0 + i, 10.0, None, call(1), pending=True)
        master.merge(local.drain(), source=worker)
        assert local.drain() == []
    assert master.sources == {"w1": 3, "w2": 5}
    assert master.metrics("resilient").calls == 8


def test_round_trip_through_json_dict(make_samples):
    """``to_dict``/``from_dict`` keep every count and the run facts."""
    samples = make_samples({"naive": [(0, 40.0, "HTTP 503", call(1, attempt_5xx=1))]})
    samples.add_breaker_open("resilient", T0 + 1)
    again = Samples.from_dict(samples.to_dict())
    assert again.to_dict() == samples.to_dict()
    assert again.metrics("naive").window.errors == {"HTTP 503": 1}
