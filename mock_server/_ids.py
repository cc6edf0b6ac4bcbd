"""Request ids: unique per process and cheap, since every request needs one.

They need to be unique, not unpredictable: a random per-process prefix and a counter cost
far less than ``uuid4`` on the hot path.
"""

from __future__ import annotations

import itertools
import uuid

_PREFIX = uuid.uuid4().hex[:12]
_counter = itertools.count(1)


def new_request_id() -> str:
    """A new request id: 24 hex characters."""
    return f"{_PREFIX}{next(_counter):012x}"
