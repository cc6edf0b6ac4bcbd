"""Hypothesis profiles of the suites: ``ci`` (chosen when CI is set), ``dev`` and ``thorough``.

``HYPOTHESIS_PROFILE`` picks one explicitly. ``ci`` is derandomized with no deadline and a
bounded number of examples, so a CI run is repeatable and its time predictable.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def load() -> str:
    settings.register_profile(
        "ci",
        derandomize=True,
        deadline=None,
        max_examples=40,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("dev", deadline=None, max_examples=60)
    settings.register_profile("thorough", deadline=None, max_examples=1000)
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name
