"""A scripted ``requests`` adapter: canned responses and exceptions, no network."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


@dataclass
class Canned:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | Any = b""

    def content(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return jsonlib.dumps(self.body).encode()


def ok(body: Any = None, status: int = 200, **headers: str) -> Canned:
    """A JSON answer; header names use underscores for dashes."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    if body is not None and not isinstance(body, bytes | str):
        hdrs.setdefault("Content-Type", "application/json")
    return Canned(status, hdrs, b"" if body is None else body)


def error(status: int, code: str = "error", message: str = "failed", **headers: str) -> Canned:
    """An error answer with the contract's error body."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    hdrs.setdefault("Content-Type", "application/json")
    return Canned(status, hdrs, {"error": {"code": code, "message": message, "request_id": "rid-1"}})


@dataclass
class Sent:
    """What the adapter received."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | str | None
    timeout: Any


Script = Canned | BaseException | Callable[[requests.PreparedRequest], "Canned | BaseException"]


class FakeAdapter(BaseAdapter):
    """Answers from ``script`` in order; the last item repeats. Records every request."""

    def __init__(self, *script: Script, clock: Any = None, latency: float = 0.0) -> None:
        super().__init__()
        self.script = list(script) or [ok()]
        self.sent: list[Sent] = []
        self.clock = clock
        self.latency = latency

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append(Sent(request.method, request.url, dict(request.headers), request.body, timeout))
        if self.clock is not None and self.latency:
            self.clock.advance(self.latency)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if callable(item) and not isinstance(item, BaseException | Canned):
            item = item(request)
        if isinstance(item, BaseException):
            raise item
        r = requests.Response()
        r.status_code = item.status
        r.headers = CaseInsensitiveDict(item.headers)
        r._content = item.content()
        r._content_consumed = True
        r.url = request.url
        r.request = request
        r.reason = "OK" if item.status < 400 else "ERR"
        r.encoding = "utf-8"
        return r

    def close(self) -> None:
        pass

    @property
    def count(self) -> int:
        return len(self.sent)
