"""A process's copy of a journal that several processes share through a Redis stream.

Each process records its own requests here at once (so ``wait`` and ``count`` answer without a
round trip) and queues them, as JSON records, for the stream; records the other processes wrote
come back from the stream and are merged in by sequence number (the number Redis gave each
request on arrival), so every process ends up with the same journal in the same order.

Three kinds of record: ``a`` a request arrived, ``c`` it completed (status, outcome, duration...),
``x`` the journal was cleared (of every entry or one session's) up to a sequence number: entries
at or below it are gone, even those whose records reach a process after the clear.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ._journal import Entry, Journal, entry_bytes

# Session clears remembered, to drop their late-arriving entries (least recently cleared go).
_MAX_SESSION_MARKS = 10_000


def _arrival(entry: Entry) -> str:
    return json.dumps(
        [
            "a",
            entry.seq,
            entry.request_id,
            entry.client_request_id,
            entry.method,
            entry.path,
            entry.query,
            entry.tenant,
            entry.session,
            entry.idempotency_key,
            entry.arrived_at,
            entry.fault,
            entry.rule,
            list(entry.rules),
            entry.injected_delay_s,
        ],
        separators=(",", ":"),
    )


def _completion(entry: Entry) -> str:
    return json.dumps(
        [
            "c",
            entry.seq,
            entry.status,
            entry.outcome,
            entry.duration_s,
            entry.retry_after_s,
            entry.ratelimit_remaining,
            entry.ratelimit_reset_at,
            entry.body_digest,
        ],
        separators=(",", ":"),
    )


class MirrorJournal(Journal):
    """The shared journal as this process sees it; ``outbox`` holds the records to ship.

    ``wake`` is called when the outbox goes from empty to not empty (the flusher's cue);
    ``clock`` and ``wall`` turn another process's arrival time into this process's clock.
    """

    def __init__(
        self,
        size: int = 10_000,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        super().__init__(size, max_bytes=max_bytes)
        self._clock = clock
        self._wall = wall
        self._by_seq: dict[int, Entry] = {}
        self._cleared = 0
        self._session_marks: OrderedDict[str, int] = OrderedDict()
        self.outbox: list[str] = []
        self.wake: Callable[[], None] = _nothing

    def next_seq(self) -> int:
        """One past the highest sequence number seen (the shared counter gives the real ones)."""
        # Entries are in sequence order: the last has the highest.
        self._seq = max(self._seq, self._entries[-1].seq if self._entries else 0) + 1
        return self._seq

    # -- this process's requests ----------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        if self._insert(entry):
            self._ship(_arrival(entry))

    def complete(self, entry: Entry) -> None:
        super().complete(entry)
        if entry.seq in self._by_seq:
            self._ship(_completion(entry))

    def _ship(self, record: str) -> None:
        outbox = self.outbox
        outbox.append(record)
        if len(outbox) == 1:
            self.wake()

    # -- records from the stream ----------------------------------------------------------------

    def apply(self, raw: str | bytes) -> None:
        """Merge one record another process wrote (JSON); malformed ones are skipped."""
        try:
            record = json.loads(raw)
        except ValueError:
            return
        self.apply_record(record)

    def apply_batch(self, raw: str | bytes) -> None:
        """Merge a batch of records (a JSON array of them) another process wrote."""
        try:
            records = json.loads(raw)
        except ValueError:
            return
        if isinstance(records, list):
            for record in records:
                self.apply_record(record)

    def apply_record(self, record: Any) -> None:
        """Merge one decoded record; malformed ones are skipped."""
        try:
            kind = record[0]
            if kind == "a":
                self._insert(self._entry(record))
            elif kind == "c":
                self._complete_remote(record)
            elif kind == "x":
                self.clear_upto(int(record[2]), record[1])
        except (ValueError, TypeError, IndexError, KeyError):
            return

    def _entry(self, r: list[Any]) -> Entry:
        arrived_at = float(r[10])
        return Entry(
            seq=int(r[1]),
            request_id=str(r[2]),
            client_request_id=bool(r[3]),
            method=str(r[4]),
            path=str(r[5]),
            query=str(r[6]),
            tenant=r[7],
            session=r[8],
            idempotency_key=r[9],
            arrived_at=arrived_at,
            arrived_mono=self._clock() - max(0.0, self._wall() - arrived_at),
            fault=r[11],
            rule=r[12],
            rules=tuple(r[13]),
            injected_delay_s=float(r[14]),
        )

    def _complete_remote(self, r: list[Any]) -> None:
        entry = self._by_seq.get(int(r[1]))
        if entry is None or entry.completed:
            return
        entry.status, entry.outcome, entry.duration_s = r[2], r[3], r[4]
        entry.retry_after_s, entry.ratelimit_remaining, entry.ratelimit_reset_at = r[5], r[6], r[7]
        entry.body_digest = r[8]
        super().complete(entry)

    # -- keeping order and bounds ---------------------------------------------------------------

    def _gone(self, entry: Entry) -> bool:
        if entry.seq <= self._cleared or entry.seq in self._by_seq:
            return True
        if entry.session is not None:
            mark = self._session_marks.get(entry.session)
            if mark is not None and entry.seq <= mark:
                return True
        return False

    def _insert(self, entry: Entry) -> bool:
        """Put ``entry`` in sequence order (almost always last), dropping the oldest past the
        bounds; False when a clear already removed it."""
        if self._gone(entry):
            return False
        entries, sizes = self._entries, self._sizes
        cost = entry_bytes(entry)
        if not entries or entries[-1].seq < entry.seq:
            entries.append(entry)
            sizes.append(cost)
        else:
            i = len(entries) - 1
            while i > 0 and entries[i - 1].seq > entry.seq:
                i -= 1
            entries.insert(i, entry)
            sizes.insert(i, cost)
        self._by_seq[entry.seq] = entry
        self._bytes += cost
        while len(entries) > 1 and (len(entries) > self.size or self._bytes > self.max_bytes):
            self._by_seq.pop(entries.popleft().seq, None)
            self._bytes -= sizes.popleft()
        if self._waiters:
            self._notify(entry, completion=False)
        return True

    def clear(self, session: str | None = None) -> int:
        """Forget every entry this process holds, or one session's (no mark: see clear_upto)."""
        return self.clear_upto(max(self._by_seq, default=0), session)

    def clear_upto(self, mark: int, session: str | None) -> int:
        """Forget the entries up to sequence number ``mark`` (every one, or one session's), now and
        when their records arrive later; how many were held."""
        if session is None:
            self._cleared = max(self._cleared, mark)
        else:
            self._session_marks[session] = max(mark, self._session_marks.get(session, 0))
            self._session_marks.move_to_end(session)
            while len(self._session_marks) > _MAX_SESSION_MARKS:
                self._session_marks.popitem(last=False)
        kept: deque[Entry] = deque()
        sizes: deque[int] = deque()
        dropped = 0
        for e, n in zip(self._entries, self._sizes, strict=True):
            if e.seq <= mark and (session is None or e.session == session):
                self._by_seq.pop(e.seq, None)
                dropped += 1
            else:
                kept.append(e)
                sizes.append(n)
        self._entries, self._sizes = kept, sizes
        self._bytes = sum(sizes)
        return dropped


def _nothing() -> None:
    return None
