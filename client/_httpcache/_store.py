"""The cache's memory: entries by key and by path, bounded by count and bytes, LRU first out.

Not thread-safe by itself: :class:`HttpCache` holds its lock around every call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ._entry import Entry, Key

__all__ = ["MAX_VARIANTS", "Store"]

# A URL varying on a high-cardinality header would otherwise make every lookup scan a long
# list; past this many variants the oldest of that URL goes.
MAX_VARIANTS = 16


class Store:
    """Entries in least-recently-used order, indexed by key (variants) and by path."""

    def __init__(self, *, max_entries: int, max_total_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_total_bytes = max_total_bytes
        self._lru: OrderedDict[Entry, None] = OrderedDict()
        self._by_key: dict[Key, list[Entry]] = {}
        self._by_path: dict[str, set[Key]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, entry: Entry) -> bool:
        return entry in self._lru

    def variants(self, key: Key) -> list[Entry]:
        """The entries stored under ``key``, oldest first (the list is the store's own)."""
        return self._by_key.get(key, [])

    def touch(self, entry: Entry) -> None:
        """Mark ``entry`` as recently used."""
        if entry in self._lru:
            self._lru.move_to_end(entry)

    def add(self, entry: Entry, *, replacing: Sequence[Entry] = ()) -> list[Entry]:
        """Store ``entry`` in place of ``replacing``; return what was evicted to make room."""
        for old in replacing:
            self.remove(old)
        variants = self._by_key.setdefault(entry.key, [])
        variants.append(entry)
        self._by_path.setdefault(entry.path, set()).add(entry.key)
        self._lru[entry] = None
        self.bytes += entry.size
        evicted: list[Entry] = []
        if len(variants) > MAX_VARIANTS:
            evicted.append(variants[0])
            self.remove(variants[0])
        while len(self._lru) > self.max_entries or (self.bytes > self.max_total_bytes and len(self._lru) > 1):
            oldest = next(iter(self._lru))
            evicted.append(oldest)
            self.remove(oldest)
        return evicted

    def replace(self, old: Entry, new: Entry) -> None:
        """Put ``new`` where ``old`` was (a 304 or HEAD refresh), as recently used."""
        if old not in self._lru:
            self.add(new)
            return
        variants = self._by_key[old.key]
        variants[variants.index(old)] = new
        del self._lru[old]
        self._lru[new] = None
        self.bytes += new.size - old.size

    def remove(self, entry: Entry) -> bool:
        """Drop one entry; ``False`` when it was not stored."""
        if entry not in self._lru:
            return False
        del self._lru[entry]
        self.bytes -= entry.size
        variants = self._by_key.get(entry.key)
        if variants is not None:
            variants.remove(entry)
            if not variants:
                del self._by_key[entry.key]
                keys = self._by_path.get(entry.path)
                if keys is not None:
                    keys.discard(entry.key)
                    if not keys:
                        del self._by_path[entry.path]
        return True

    def remove_path(self, path: str) -> int:
        """Drop every entry under ``path`` (any query, any credential); return how many."""
        keys = self._by_path.get(path)
        if not keys:
            return 0
        doomed = [e for k in list(keys) for e in self._by_key.get(k, [])]
        for e in doomed:
            self.remove(e)
        return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        self._lru.clear()
        self._by_key.clear()
        self._by_path.clear()
        self.bytes = 0
