"""Exceptions the fake raises to its operator (never to API clients, who get error bodies).

* MockServerError
  - ConfigError  -- a bad flag, tenants file or fault file; the message names the field.
"""

from __future__ import annotations


class MockServerError(Exception):
    """Base of every exception the fake raises to its operator."""


class ConfigError(MockServerError, ValueError):
    """A setting, tenants file or fault file is invalid; the message names the field."""
