"""The locustfile of every scenario: ``locust -f load_tests/locustfile.py`` (the runner adds the
``--lt-*`` options). Two users, one shape; pick users by class name on the command line."""

from load_tests._hooks import ScenarioShape
from load_tests._users import NaiveUser, ResilientUser

__all__ = ["NaiveUser", "ResilientUser", "ScenarioShape"]
