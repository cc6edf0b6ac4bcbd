"""The summary rows, the terminal table and the markdown, from samples and admin facts."""

from __future__ import annotations

from collections.abc import Callable

from load_tests._samples import Samples
from load_tests._summary import build_rows, markdown, terminal_table

from .conftest import call

SERVER = {
    "r-naive": {
        "requests": 12,
        "compliance": {
            "verdict": "fail",
            "score": 75.0,
            "findings": [{"kind": "request_while_rate_limited", "severity": "error", "count": 3}],
        },
    },
    "r-resilient": {"requests": 7, "compliance": {"verdict": "pass", "score": 100.0, "findings": []}},
}


def _samples(make_samples: Callable[..., Samples]) -> Samples:
    return make_samples(
        {
            "naive": [
                (s, 30.0, "HTTP 429" if s < 3 else None, call(1, attempt_429=int(s < 3))) for s in range(10)
            ],
            "resilient": [
                (s, 50.0, None, call(0 if s < 3 else 1, cache="hit" if s < 3 else None)) for s in range(10)
            ],
        }
    )


def test_rows_join_client_and_server_figures(make_samples):
    """Each kind's row has its success rate, latency, attempts, and what the fake saw of it."""
    naive, resilient = build_rows(_samples(make_samples), SERVER)
    assert (naive.kind, naive.success, naive.throttled, naive.server_requests) == ("naive", 0.7, 3, 12)
    assert naive.findings == {"request_while_rate_limited (error)": 3}
    assert naive.errors == {"HTTP 429": 3}
    assert (resilient.success, resilient.cache_hit, resilient.sent) == (1.0, 0.3, 7)
    assert resilient.p95 == 50.0 and resilient.compliance_verdict == "pass"


def test_rows_without_admin_api(make_samples):
    """Against a real upstream (no admin API) the server columns say n/a."""
    rows = build_rows(_samples(make_samples), {})
    assert rows[0].server_requests is None
    assert "n/a" in terminal_table(rows)


def test_terminal_table_has_every_figure(make_samples):
    """The printed table names each client and the figures the demo promises."""
    table = terminal_table(build_rows(_samples(make_samples), SERVER))
    for needle in (
        "naive",
        "resilient",
        "success",
        "70.00%",
        "p50",
        "p95",
        "p99",
        "reached server",
        "fail (75%",
    ):
        assert needle in table


def test_markdown_summary(make_samples):
    """summary.md has the per-client table, failures, findings, thresholds and plots."""
    verdict = {
        "ok": False,
        "results": [
            {
                "kind": "resilient",
                "metric": "fail_ratio",
                "expression": "rate<0",
                "observed": 0.0,
                "ok": False,
            }
        ],
    }
    text = markdown(
        title="T",
        meta={"scenario": "chaos", "duration": 10},
        rows=build_rows(_samples(make_samples), SERVER),
        verdict=verdict,
        plots=["latency.png"],
        files=["locust_stats.csv"],
    )
    assert text.startswith("# T\n")
    assert "| success | 70.00% | 100.00% |" in text
    assert "request_while_rate_limited" in text
    assert "## Thresholds: FAIL" in text and "**FAIL**" in text
    assert "![latency.png](latency.png)" in text
