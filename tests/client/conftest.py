"""Fixtures of the client's unit tests: fake time and a session on a scripted adapter."""

from __future__ import annotations

import random

import pytest

from client import FakeClock, Policies, ResilientSession, RetryPolicy

from .fakes import FakeAdapter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_session(clock):
    """``make_session(*script, policies=..., auth=...)`` -> (session, adapter), on fake time."""

    def make(*script, policies: Policies | None = None, auth=None, latency: float = 0.0):
        policies = policies or Policies(retry=RetryPolicy(rng=random.Random(7)))
        policies = policies.with_time(clock=clock, wall_clock=clock.wall, sleep=clock.sleep)
        session = ResilientSession(policies, auth=auth)
        adapter = FakeAdapter(*script, clock=clock, latency=latency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session, adapter

    return make
