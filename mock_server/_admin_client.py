"""A Python client of the fake's admin API, for tests that steer faults and read the journal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests


class AdminError(Exception):
    """The admin API refused a call; ``status`` and ``body`` say why."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"admin API answered {status}: {message}")
        self.status = status
        self.body = body


class AdminClient:
    """``/__admin`` of one fake: fault rules, the journal, resets, compliance and metrics.

    Every journal call takes the filters of ``GET /__admin/requests`` as keywords
    (``method``, ``path``, ``status``, ``session``, ``fault``, ``since``, ``limit``).
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/") + "/__admin"
        self.session = requests.Session()
        if token is not None:
            self.session.headers["X-Admin-Token"] = token
        self.timeout = timeout

    def _call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        response = self.session.request(method, self.base + path, **kwargs)
        body: Any = (
            response.json()
            if response.content and "json" in response.headers.get("content-type", "")
            else response.text
        )
        if response.status_code not in expect:
            raise AdminError(response.status_code, body)
        return body

    # -- rules ---------------------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["rules"])

    def add_fault(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """Add one rule (the contract's rule format); returns it as stored."""
        return dict(self._call("POST", "/faults", json=dict(rule), expect=(201,)))

    def put_fault(self, rule_id: str, rule: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/faults/{rule_id}", json=dict(rule), expect=(200, 201)))

    def disable_fault(self, rule_id: str) -> dict[str, Any]:
        """Switch a rule off where it stands (its place and counters kept; every process)."""
        return dict(self._call("PATCH", f"/faults/{rule_id}", json={"enabled": False}))

    def enable_fault(self, rule_id: str) -> dict[str, Any]:
        """Switch a disabled rule back on; returns it as stored."""
        return dict(self._call("PATCH", f"/faults/{rule_id}", json={"enabled": True}))

    def delete_fault(self, rule_id: str) -> None:
        self._call("DELETE", f"/faults/{rule_id}", expect=(204,))

    def reset_faults(self) -> None:
        self._call("POST", "/faults/reset", expect=(200, 204))

    def reset(self, session: str | None = None) -> None:
        """Rules, counters, journal and rate-limit buckets (of one session, or all)."""
        self._call("POST", "/reset", params={"session": session} if session else None, expect=(200, 204))

    # -- journal -------------------------------------------------------------------------
    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests", params=_params(filters))["requests"])

    def count(self, **filters: Any) -> int:
        return int(self._call("GET", "/requests/count", params=_params(filters))["count"])

    def wait(self, count: int, *, timeout_s: float = 5.0, **filters: Any) -> bool:
        """Whether ``count`` matching requests arrived within ``timeout_s`` (no sleeping loop)."""
        body = {"filter": _params(filters), "count": count, "timeout_s": timeout_s}
        response = self.session.post(
            self.base + "/requests/wait", json=body, timeout=timeout_s + self.timeout
        )
        if response.status_code not in (200, 408):
            raise AdminError(response.status_code, response.text)
        return response.status_code == 200

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests", expect=(200, 204))

    # -- reports -------------------------------------------------------------------------
    def compliance(self, session: str | None = None) -> dict[str, Any]:
        return dict(self._call("GET", "/compliance", params={"session": session} if session else None))

    def metrics(self) -> str:
        return str(self._call("GET", "/metrics"))


def _params(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if v is not None}
