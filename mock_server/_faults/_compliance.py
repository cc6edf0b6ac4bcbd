"""How well the calling clients behaved, judged from the journal (``GET /__admin/compliance``).

A *client* is a (session, tenant) pair. Attempts of one *logical request* share an
``Idempotency-Key`` or a client-sent ``X-Request-ID``. Without either, a request that repeats
the method, path, query and body (compared by a fingerprint the journal keeps) of the client's
previous request, when that one failed (429, 5xx or a connection fault), is taken as its retry:
that is how a naive retry loop shows up, while a loop over different payloads does not.

Findings (each names the offending requests):

- ``retry_before_retry_after`` (error): a retry sent before the previous attempt's
  ``Retry-After`` elapsed.
- ``request_while_rate_limited`` (error): a request sent after a response said
  ``X-RateLimit-Remaining: 0`` and before its ``X-RateLimit-Reset``. When the client had other
  requests open as that response went out, "after" means at least ``_IN_FLIGHT_GRACE_S`` (0.1 s)
  after it: a request arriving sooner may have left before the client could read it (with
  several requests on the way, one often is); a client with one request at a time gets no grace.
- ``unsafe_retry_without_idempotency_key`` (error): a POST or PATCH repeated after a 5xx or a
  connection fault without an ``Idempotency-Key`` (the first attempt may have been processed).
- ``no_backoff`` (error): a logical request retried three or more times with every gap under
  ``min_gap_s``.
- ``requests_into_outage`` (error): requests that kept coming, faster than a probe a second,
  after the client had seen ``outage_after`` failures in a row, while the failures went on. A
  failed request counts only when it was sent after the client could have seen the streak it
  continues: the failures answered just before its own answer, with no success between (in
  answer order), of which at least ``outage_after`` had gone out before it arrived (when the
  client had other requests open as one went out, ``_IN_FLIGHT_GRACE_S`` before). A burst sent
  together whose failures and successes interleave as the answers go out is not blamed for a
  streak its own successes break, nor for answers that went out while it was on its way.
- ``excessive_attempts`` (warning): a logical request tried more than ``max_attempts`` times.

The score is the share of requests named by no error finding; the verdict is ``pass`` without
error findings, else ``fail``.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._journal import Entry

_UNSAFE = frozenset({"POST", "PATCH"})
_TOLERANCE_S = 0.02
#: How long after a "none remaining" answer (or a failure of an outage streak) went out a
#: concurrent client may still have requests on their way: it learns of the answer only when its
#: event loop (or thread) gets to read it, which on a loaded machine takes tens of milliseconds. A
#: client that ignores the answer is still caught for the rest of the window (a second or more),
#: or by its next requests into the outage.
_IN_FLIGHT_GRACE_S = 0.1
_MAX_NAMED = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Knobs of the report; the defaults suit the reference client's defaults."""

    max_attempts: int = 5
    min_gap_s: float = 0.02
    outage_after: int = 5
    probes_per_s: float = 1.0


class _Finding:
    def __init__(self, kind: str, severity: str, message: str) -> None:
        self.kind = kind
        self.severity = severity
        self.message = message
        self.requests: list[dict[str, Any]] = []

    def add(self, entry: Entry, **facts: Any) -> None:
        self.requests.append({"seq": entry.seq, "request_id": entry.request_id, **_where(entry), **facts})

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "count": len(self.requests),
            "requests": self.requests[:_MAX_NAMED],
        }


def _where(entry: Entry) -> dict[str, Any]:
    return {"method": entry.method, "path": entry.path, "session": entry.session, "tenant": entry.tenant}


def _client(entry: Entry) -> tuple[str | None, str | None]:
    return entry.session, entry.tenant


def _maybe_processed(entry: Entry) -> bool:
    """A failure after which the client cannot know whether the request took effect."""
    if entry.outcome in ("reset", "closed", "timeout", "truncated", "client_gone"):
        return True
    return entry.outcome == "response" and entry.status is not None and entry.status >= 500


def _groups(entries: Sequence[Entry]) -> list[list[Entry]]:
    """Attempts of each logical request, in arrival order."""
    groups: list[list[Entry]] = []
    explicit: dict[tuple[Any, ...], list[Entry]] = {}
    last_by_signature: dict[tuple[Any, ...], list[Entry]] = {}
    last_of_client: dict[tuple[str | None, str | None], Entry] = {}
    for e in entries:
        client = _client(e)
        before = last_of_client.get(client)
        last_of_client[client] = e
        if e.idempotency_key is not None:
            key: tuple[Any, ...] = ("idem", client, e.idempotency_key)
        elif e.client_request_id:
            key = ("rid", client, e.request_id)
        else:
            signature = (client, e.method, e.path, e.query, e.body_digest)
            previous = last_by_signature.get(signature)
            if previous is not None and previous[-1] is before and before.completed and before.failed:
                previous.append(e)
            else:
                group = [e]
                groups.append(group)
                last_by_signature[signature] = group
            continue
        group_or_none = explicit.get(key)
        if group_or_none is None:
            explicit[key] = group_or_none = []
            groups.append(group_or_none)
        group_or_none.append(e)
    return groups


def analyse(
    entries: Iterable[Entry], *, session: str | None = None, thresholds: Thresholds = Thresholds()
) -> dict[str, Any]:
    """The compliance report over ``entries`` (those of ``session`` when given)."""
    selected = [e for e in entries if session is None or e.session == session]
    selected.sort(key=lambda e: (e.arrived_at, e.seq))
    early = _Finding(
        "retry_before_retry_after", "error", "retried before the previous attempt's Retry-After elapsed"
    )
    limited = _Finding(
        "request_while_rate_limited",
        "error",
        "sent while X-RateLimit-Remaining was 0, before X-RateLimit-Reset",
    )
    unsafe = _Finding(
        "unsafe_retry_without_idempotency_key",
        "error",
        "a POST/PATCH repeated after a 5xx or a connection fault without an Idempotency-Key",
    )
    no_backoff = _Finding(
        "no_backoff",
        "error",
        f"retried 3+ times with every gap under {thresholds.min_gap_s:g} s (no backoff)",
    )
    outage = _Finding(
        "requests_into_outage",
        "error",
        f"kept sending, faster than {thresholds.probes_per_s:g} probe/s, after "
        f"{thresholds.outage_after} failures in a row while the outage went on",
    )
    excessive = _Finding(
        "excessive_attempts", "warning", f"a logical request tried more than {thresholds.max_attempts} times"
    )

    groups = _groups(selected)
    gaps: list[float] = []
    attempts_hist: dict[int, int] = defaultdict(int)
    for group in groups:
        attempts_hist[len(group)] += 1
        group_gaps: list[float] = []
        for prev, cur in zip(group, group[1:], strict=False):
            gap = max(0.0, cur.arrived_at - prev.finished_at) if prev.completed else 0.0
            group_gaps.append(gap)
            if prev.completed and prev.retry_after_s is not None:
                due = prev.finished_at + prev.retry_after_s
                if cur.arrived_at < due - _TOLERANCE_S:
                    early.add(
                        cur, early_by_s=round(due - cur.arrived_at, 3), retry_after_s=prev.retry_after_s
                    )
            if cur.method in _UNSAFE and cur.idempotency_key is None and _maybe_processed(prev):
                unsafe.add(cur, previous_outcome=prev.outcome, previous_status=prev.status)
        gaps += group_gaps
        if len(group_gaps) >= 3 and max(group_gaps) < thresholds.min_gap_s:
            for cur, gap in zip(group[1:], group_gaps, strict=True):
                no_backoff.add(cur, gap_s=round(gap, 4))
        if len(group) > thresholds.max_attempts:
            excessive.add(group[-1], attempts=len(group))

    flagged_early = {r["seq"] for r in early.requests}
    by_client: dict[tuple[str | None, str | None], list[Entry]] = defaultdict(list)
    for e in selected:
        by_client[_client(e)].append(e)
    for client_entries in by_client.values():
        _sweep(client_entries, limited, outage, flagged_early, thresholds)

    findings = [f for f in (early, limited, unsafe, no_backoff, outage, excessive) if f.requests]
    offending = {r["seq"] for f in findings if f.severity == "error" for r in f.requests}
    total = len(selected)
    attempts_total = sum(len(g) for g in groups)
    return {
        "session": session,
        "requests": total,
        "clients": len(by_client),
        "logical_requests": len(groups),
        "attempts": {
            "total": attempts_total,
            "max": max((len(g) for g in groups), default=0),
            "mean": round(attempts_total / len(groups), 3) if groups else 0.0,
            "histogram": {str(k): v for k, v in sorted(attempts_hist.items())},
        },
        "gaps_s": {
            "count": len(gaps),
            "min": round(min(gaps), 4) if gaps else None,
            "median": round(statistics.median(gaps), 4) if gaps else None,
            "max": round(max(gaps), 4) if gaps else None,
        },
        "findings": [f.to_dict() for f in findings],
        "score": round(100.0 * (1 - len(offending) / total), 1) if total else 100.0,
        "verdict": "fail" if any(f.severity == "error" for f in findings) else "pass",
    }


def _sweep(
    entries: list[Entry],
    limited: _Finding,
    outage: _Finding,
    flagged_early: set[int],
    thresholds: Thresholds,
) -> None:
    """Walk one client's requests and responses in time order: what it knew at each arrival."""
    events: list[tuple[float, int, Entry]] = []
    for e in entries:
        events.append((e.arrived_at, 1, e))
        if e.completed:
            events.append((e.finished_at, 0, e))
    events.sort(key=lambda ev: (ev[0], ev[1], ev[2].seq))
    blocked_until = 0.0
    # The client's current failure streak in answer order (a success empties it), as the times
    # the client could have read each answer: non-decreasing, since it knows the streak is that
    # long only once it has read every answer in it. A failure is judged at its own answer,
    # against the part of the streak before it that was readable when it arrived: a success
    # answered in between (say from the same burst) has broken the streak by then.
    streak_readable: list[float] = []
    into_outage: list[Entry] = []
    # Requests of this client the server holds (arrived, answer not finished yet), and windows
    # that open a grace after their refusal was sent: with other requests open when a
    # refusal goes out, the client has several on the way, and one arriving that soon may have
    # left before the client could read the refusal. A client with nothing else open can only
    # have sent its next request after reading it, so its window opens at once.
    open_now = 0
    pending: deque[tuple[float, float]] = deque()
    for when, kind, e in events:
        if kind == 0:
            open_now -= 1
            if e.ratelimit_remaining == 0 and e.ratelimit_reset_at is not None:
                # The reset is whole epoch seconds, rounded up: the limit may lift up to 1 s
                # sooner, and a Retry-After on the same response is permission to come back.
                until = e.ratelimit_reset_at - 1.0
                if e.retry_after_s is not None:
                    until = min(until, e.finished_at + e.retry_after_s)
                if open_now > 0:
                    pending.append((when + _IN_FLIGHT_GRACE_S, until))
                else:
                    blocked_until = max(blocked_until, until)
            if e.outcome == "cancelled":
                continue
            if not e.failed:
                streak_readable.clear()
                continue
            if bisect_right(streak_readable, e.arrived_at) >= thresholds.outage_after:
                into_outage.append(e)
            readable = when + _IN_FLIGHT_GRACE_S if open_now > 0 else when
            streak_readable.append(max(readable, streak_readable[-1]) if streak_readable else readable)
            continue
        while pending and pending[0][0] <= when:
            blocked_until = max(blocked_until, pending.popleft()[1])
        if e.completed:
            open_now += 1
        if when < blocked_until - _TOLERANCE_S and e.seq not in flagged_early:
            limited.add(e, reset_in_s=round(blocked_until - when, 3))
    if len(into_outage) >= 2:
        into_outage.sort(key=lambda e: (e.arrived_at, e.seq))  # judged in answer order
        span = into_outage[-1].arrived_at - into_outage[0].arrived_at
        if len(into_outage) > 2 + span * thresholds.probes_per_s:
            for e in into_outage:
                outage.add(e, outcome=e.outcome, status=e.status)
