"""Records kept in memory once the journal's disk could not take them.

When a segment cannot be created (a full disk, a read-only folder), a run with a store
keeps the rest of its journal in memory: the run is still delivered while the process
lives, with durability reduced (docs/offline.md, "The journal's disk"). The records form
one virtual segment after the last one on disk, in which a position is a record's index.
"""

from __future__ import annotations

from tracksdk._journal.layout import Position


class MemoryTail:
    """The records kept in memory: one virtual segment, trimmed as the store takes them."""

    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.base = 0  # index of records[0] in the segment
        self.records: list[bytes] = []
        self.bytes = 0

    @property
    def position(self) -> Position:
        """Where the next record goes."""
        return (self.segment, self.base + len(self.records))

    def append(self, payload: bytes) -> None:
        """Keep one record's payload."""
        self.records.append(payload)
        self.bytes += len(payload)

    def read(self, index: int, limit: int) -> tuple[int, list[bytes]]:
        """Up to ``limit`` payloads from record ``index`` on, and the index of the first.

        Records before the oldest one kept were taken by the store and dropped.
        """
        first = max(index, self.base)
        start = first - self.base
        return first, self.records[start : start + limit]

    def trim(self, index: int) -> None:
        """Drop the records before ``index``: the store has them."""
        drop = min(max(0, index - self.base), len(self.records))
        if drop:
            self.bytes -= sum(len(p) for p in self.records[:drop])
            del self.records[:drop]
            self.base += drop
