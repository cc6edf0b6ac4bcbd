"""Shared test settings: the hypothesis profiles of the contract suite."""

from contract_tests import _profiles

_profiles.load()
