"""Support for the client properties: per-example fault plans, recording adapters, clients.

Each hypothesis example gets its own ``X-Mock-Session``: the fake keeps rule counters,
rate-limit buckets and the journal per session, so examples never see each other's
traffic, and one rule per example (matching that session's header) carries the drawn plan.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from hypothesis import strategies as st
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict

from client import FakeClock, Policies, ResilientSession
from mock_server import ServerThread

_ids = itertools.count()


def new_session() -> str:
    return f"prop-{next(_ids)}-{uuid.uuid4().hex[:8]}"


# -- fault plans --------------------------------------------------------------------------
RETRYABLE_STATUS = st.sampled_from([500, 502, 503, 504, 429])


@st.composite
def retry_after(draw: st.DrawFn) -> dict[str, Any]:
    """A 429 or 503 with Retry-After as delta-seconds or as an HTTP-date."""
    status = draw(st.sampled_from([429, 503]))
    seconds = draw(st.integers(0, 4))
    if draw(st.booleans()):
        return {
            "type": "status",
            "status": status,
            "retry_after": {"seconds": seconds, "format": "http-date"},
        }
    return {"type": "status", "status": status, "retry_after": seconds}


#: Faults the server answers before the API sees the request.
BEFORE_APP = st.one_of(
    RETRYABLE_STATUS.map(lambda s: {"type": "status", "status": s}),
    retry_after(),
    st.just({"type": "reset"}),
    st.just({"type": "close"}),
)
#: Faults that let the API do its work, then spoil the answer.
AFTER_APP = st.just({"type": "truncate", "fraction": 0.5})
ANY_FAULT = st.one_of(BEFORE_APP, AFTER_APP)


def plan_rule(session: str, plan: Sequence[Mapping[str, Any]], *, path: str | None = None) -> dict[str, Any]:
    """A rule answering ``session``'s requests with ``plan`` in order, then normally."""
    match: dict[str, Any] = {"headers": {"X-Mock-Session": session}}
    if path is not None:
        match["path"] = path
    return {"id": f"plan-{session}", "match": match, "sequence": [*plan, "ok"]}


@contextmanager
def planned(fake: ServerThread, session: str, plan: Sequence[Mapping[str, Any]], **kw: Any) -> Iterator[None]:
    rule = fake.admin.add_fault(plan_rule(session, plan, **kw))
    try:
        yield
    finally:
        fake.admin.delete_fault(rule["id"])


# -- recording what the client sends ------------------------------------------------------
@dataclass
class Sent:
    """One attempt as the client sent it: clock readings, headers, and what came back."""

    mono: float
    wall: float
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    received_mono: float | None = None
    received_wall: float | None = None

    @classmethod
    def of(cls, request: requests.PreparedRequest, clock: FakeClock) -> Sent:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        return cls(
            clock.clock(), clock.wall(), request.method or "", request.url or "", dict(request.headers), body
        )


class RecordingAdapter(HTTPAdapter):
    """A real HTTPAdapter that notes every attempt with the test's clock readings."""

    def __init__(self, clock: FakeClock, *, hide: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.hide = tuple(hide)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        for name in self.hide:  # answer headers the client must not see (a server without them)
            response.headers.pop(name, None)
        return response

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        record = Sent.of(request, self.clock)
        with self._lock:
            self.sent.append(record)
        response = super().send(request, *args, **kwargs)
        record.status = response.status_code
        record.response_headers = CaseInsensitiveDict(response.headers)
        record.received_mono, record.received_wall = self.clock.clock(), self.clock.wall()
        return response


Answer = tuple[int, Mapping[str, str]] | BaseException
Step = Answer | Callable[[FakeClock], Answer]


class CannedAdapter(BaseAdapter):
    """Answers from a script instead of the network; a script entry is a status and headers,
    an exception to raise, or a function of the clock giving either. Past the script's end it
    repeats the last entry."""

    def __init__(
        self, clock: FakeClock, script: Sequence[tuple[int, Mapping[str, str]] | BaseException]
    ) -> None:
        super().__init__()
        self.clock = clock
        self.script = list(script)
        self.sent: list[Sent] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(Sent.of(request, self.clock))
        step = self.script[min(len(self.sent) - 1, len(self.script) - 1)]
        if callable(step):
            step = step(self.clock)
        if isinstance(step, BaseException):
            raise step
        status, headers = step
        response = requests.Response()
        response.status_code = status
        response.headers.update({"Content-Type": "application/json", **headers})
        response._content = b'{"n": %d}' % len(self.sent)
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def fake_clock() -> FakeClock:
    # The wall reading starts at the real time, so HTTP-dates from the fake mean the same
    # moment to the client; after that only the client's sleeps move it.
    return FakeClock(start=1000.0, epoch=time.time())


def client_session(
    policies: Policies,
    clock: FakeClock,
    *,
    base_headers: Mapping[str, str] | None = None,
    adapter: BaseAdapter | None = None,
) -> tuple[ResilientSession, Any]:
    """A resilient session on fake time whose attempts are recorded."""
    session = ResilientSession(
        policies.with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
    )
    recorder = adapter or RecordingAdapter(clock, max_retries=0)
    session.mount("http://", recorder)
    session.mount("https://", recorder)
    session.headers.update(base_headers or {})
    return session, recorder
