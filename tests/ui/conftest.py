"""Helpers of the dashboard tests: an SSE reader over a real socket and the live event hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

from mock_server import ServerThread
from mock_server._faults._events import EventHub


def hub_of(server: ServerThread) -> EventHub:
    """The event hub of a running fake (to shorten its heartbeat or its buffer in a test)."""
    for route in server.app._admin.routes:  # type: ignore[attr-defined]
        if getattr(route, "path", None) == "/__admin/events":
            hub: EventHub = route.endpoint.__self__.hub
            return hub
    raise AssertionError("no /__admin/events route")


class Sse:
    """A client of ``GET /__admin/events``: reads events as they arrive."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        self.response = requests.get(url, headers=headers, stream=True, timeout=timeout)
        self._chunks: Iterator[bytes] = self.response.iter_content(chunk_size=None)
        self._buf = ""
        self.raw = ""

    def blocks(self) -> Iterator[dict[str, Any]]:
        """Each event block as {id, event, data, comment}, in order."""
        while True:
            while "\n\n" in self._buf:
                block, self._buf = self._buf.split("\n\n", 1)
                yield _parse(block)
            chunk = next(self._chunks)
            text = chunk.decode()
            self.raw += text
            self._buf += text

    def requests(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` request events (id and parsed data), skipping comments and others."""
        out: list[dict[str, Any]] = []
        for block in self.blocks():
            if block["event"] == "message" and block["data"] is not None:
                out.append(block)
                if len(out) == n:
                    return out
        return out  # pragma: no cover

    def close(self) -> None:
        self.response.close()


def _parse(block: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": None, "event": "message", "data": None, "comment": None, "retry": None}
    data: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            out["comment"] = line[1:].strip()
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field in ("id", "event", "retry"):
            out[field] = value
    if data:
        out["data"] = json.loads("\n".join(data))
    return out
