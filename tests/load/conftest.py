"""Helpers of the load-test tests. Nothing here imports locust or gevent: locust runs only in
child processes, so its monkey-patching never reaches the pytest process."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from load_tests._samples import Samples

T0 = 1_700_000_000


def call(attempts: int = 1, **context: Any) -> dict[str, Any]:
    return {"attempts": attempts, **context}


@pytest.fixture
def make_samples():
    """``make_samples({kind: [(second_offset, ms, error, context), ...]}, duration=...)``."""

    def make(
        calls: Mapping[str, Iterable[tuple[int, float, str | None, dict[str, Any]]]], duration: int = 10
    ):
        samples = Samples()
        samples.meta.update(
            {"run_id": "r", "started_at": T0, "stopped_at": T0 + duration, "scenario": "steady"}
        )
        for kind, rows in calls.items():
            for offset, ms, error, context in rows:
                samples.add(kind, T0 + offset + 0.5, ms, error, context)
        return samples

    return make
