"""State machine: profile CRUD through ``ResonanceClient`` against a model, under injected
faults. Whatever the faults and the retries they cause, the server ends up holding exactly
what the model holds."""

from __future__ import annotations

import random

import pytest
import requests
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from client import (
    ApiError,
    ApiKeyAuth,
    Conflict,
    FakeClock,
    NotFound,
    Policies,
    RetriesExhausted,
    RetryPolicy,
    Timeouts,
    TransportError,
)
from mock_server import ServerThread

from ._drivers import DRIVERS, TypedClient
from ._support import new_session

pytestmark = pytest.mark.socket
NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta"])
VECTORS = st.floats(0.0, 1.0).map(lambda v: [round(v, 3)] * 8)


def _fault_rules(session: str) -> list[dict[str, object]]:
    """Faults on the session's profile requests: before the API sees them (any method) and
    after it did the work (writes whose answer is lost on the way back)."""
    match = {"path": "/profiles*", "headers": {"X-Mock-Session": session}}
    return [
        {
            "id": f"{session}-503",
            "match": match,
            "probability": 0.15,
            "fault": {"type": "status", "status": 503, "retry_after": 0},
        },
        {"id": f"{session}-reset", "match": match, "probability": 0.1, "fault": {"type": "reset"}},
        {
            "id": f"{session}-lost",
            "match": {**match, "method": "POST"},
            "probability": 0.2,
            "fault": {"type": "truncate", "fraction": 0.3},
        },
        {
            "id": f"{session}-lost-put",
            "match": {**match, "method": "PUT"},
            "probability": 0.2,
            "fault": {"type": "truncate", "fraction": 0.3},
        },
    ]


class ProfileCrud(RuleBasedStateMachine):
    fake: ServerThread  # set by the test below
    driver = "requests"  # likewise: which driver runs the typed client
    names = Bundle("names")

    def __init__(self) -> None:
        super().__init__()
        self.session_id = new_session()
        clock = FakeClock()
        retry = RetryPolicy(attempts=8, budget=None, backoff_base=0.01, rng=random.Random(0))
        policies = Policies(retry=retry, breaker=None, cache=None, timeouts=Timeouts(read=5, total=None))
        self.client = TypedClient(
            self.driver,
            self.fake.url,
            policies.with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep),
            auth=ApiKeyAuth("demo-key"),
            headers={"X-Mock-Session": self.session_id},
        )
        self.truth = requests.Session()  # reads without faults, to settle uncertain outcomes
        self.truth.headers.update({"X-API-Key": "demo-key", "X-Mock-Session": f"{self.session_id}-truth"})
        self._wipe()
        for fault_rule in _fault_rules(self.session_id):
            self.fake.admin.add_fault(fault_rule)
        self.model: dict[str, list[float]] = {}

    def _wipe(self) -> None:
        for item in self.truth.get(f"{self.fake.url}/profiles?limit=100", timeout=10).json()["items"]:
            self.truth.delete(f"{self.fake.url}/profiles/demo/{item['profile_name']}", timeout=10)

    def _settle(self, name: str) -> None:
        """After a call that ran out of attempts, learn what the server actually did."""
        response = self.truth.get(f"{self.fake.url}/profiles/demo/{name}", timeout=10)
        if response.status_code == 200:
            self.model[name] = response.json()["hrv_vector"]
        else:
            self.model.pop(name, None)

    @rule(target=names, name=NAMES, vector=VECTORS)
    def create(self, name: str, vector: list[float]) -> str:
        try:
            profile = self.client.profiles.create("demo", name, vector)
        except Conflict:
            assert name in self.model
        except (RetriesExhausted, TransportError):
            self._settle(name)
        else:
            assert name not in self.model, "created a profile the model says exists"
            assert profile.hrv_vector == vector
            self.model[name] = vector
        return name

    @rule(name=names, vector=VECTORS)
    def update(self, name: str, vector: list[float]) -> None:
        try:
            profile = self.client.profiles.update("demo", name, vector)
        except NotFound:
            assert name not in self.model
        except (RetriesExhausted, TransportError):
            self._settle(name)
        else:
            assert name in self.model
            assert profile.hrv_vector == vector
            self.model[name] = vector

    @rule(name=names)
    def delete(self, name: str) -> None:
        try:
            self.client.profiles.delete("demo", name)
        except NotFound:
            assert name not in self.model
        except (RetriesExhausted, TransportError):
            self._settle(name)
        else:
            assert name in self.model
            del self.model[name]

    @rule(name=names)
    def get(self, name: str) -> None:
        try:
            profile = self.client.profiles.get("demo", name)
        except NotFound:
            assert name not in self.model
        except (RetriesExhausted, TransportError):
            pass
        else:
            assert profile.hrv_vector == self.model[name]

    @precondition(lambda self: bool(self.model))
    @rule()
    def list_all(self) -> None:
        try:
            names = [p.profile_name for p in self.client.profiles.list(limit=2)]
        except ApiError:
            return
        assert names == sorted(self.model)

    @invariant()
    def server_matches_model(self) -> None:
        items = self.truth.get(f"{self.fake.url}/profiles?limit=100", timeout=10).json()["items"]
        assert {i["profile_name"]: i["hrv_vector"] for i in items} == self.model

    def teardown(self) -> None:
        for fault_rule in _fault_rules(self.session_id):
            self.fake.admin.delete_fault(str(fault_rule["id"]))
        self.client.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_profile_crud_matches_the_model(driver: str, fake: ServerThread) -> None:
    """CRUD through the typed client (of every driver) under 503s, resets and lost answers
    leaves the model's state."""
    ProfileCrud.fake = fake
    ProfileCrud.driver = driver
    state_machine = ProfileCrud.TestCase
    state_machine.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
    state_machine().runTest()
