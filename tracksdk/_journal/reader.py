"""Reading a journal back, in order: the sender's and a sync's view of it.

A live journal is read up to the first record not written yet. Once the journal is final
(its writer closed it or died), a damaged record (a bad checksum, length or header, a
truncated file, a payload that is not a record) is skipped: the reader looks for the next
valid record and goes on, and notes the byte range it could not read (:class:`Damage`).
Every payload starts with ``["`` (a record is a JSON array whose first element is a
string), which serves as the sync pattern: a candidate is the 8 bytes before a ``["``,
accepted only when its length fits and its CRC matches.
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk._journal.layout import (
    HEADER,
    NEXT,
    START,
    SYNC,
    Position,
    segment_name,
    segment_numbers,
)
from tracksdk._journal.records import Create, Record, decode

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal


@dataclass(slots=True)
class Entry:
    """One record read back, with the position right after it."""

    record: Record
    end: Position


@dataclass
class Damage:
    """A byte range of a journal that could not be read (its records are lost)."""

    segment: int
    start: int
    end: int
    reason: str

    def describe(self) -> str:
        """``segment 1 bytes 1200-1340 (bad checksum)``."""
        if self.start == self.end:
            return f"segment {self.segment}: {self.reason}"
        return (
            f"segment {self.segment} bytes {self.start}-{self.end} "
            f"({self.end - self.start} B, {self.reason})"
        )

    def as_dict(self) -> dict[str, Any]:
        """For the kept journal's ``damage.json``."""
        return {
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "reason": self.reason,
        }


class Reader:
    """Reads records in order from a journal folder, live or after its writer died.

    ``read(final=False)`` (a live journal) stops at the first header that is not a valid
    record: it may not be written yet. ``read(final=True)`` (the writer closed the
    journal or is gone) skips damaged bytes instead, finds the next valid record and goes
    on; every skipped range is listed in :attr:`damage`.
    """

    def __init__(self, path: Path, start: Position = START) -> None:
        self.path = path
        self.position = start
        self._mm: mmap.mmap | None = None
        self._mapped = 0
        self.damage: list[Damage] = []
        self._first = start == START  # the first record read must create the run
        self._clean_end: Position | None = None

    @property
    def torn(self) -> bool:
        """Whether part of the journal could not be read."""
        return bool(self.damage)

    def _map(self, number: int) -> mmap.mmap | None:
        if self._mm is not None and self._mapped == number:
            return self._mm
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        try:
            fd = os.open(self.path / segment_name(number), os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size == 0:
                return None
            self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        self._mapped = number
        return self._mm

    def _next_segment(self, number: int) -> int | None:
        """The lowest segment number above ``number`` that has a file."""
        later = [n for n in segment_numbers(self.path) if n > number]
        return min(later) if later else None

    def read(self, limit: int = 1000, *, final: bool = False) -> list[Entry]:
        """Return up to ``limit`` records after the current position (never raises)."""
        out: list[Entry] = []
        segment, offset = self.position
        while len(out) < limit:
            if final and self._clean_end == (segment, offset):
                break
            mm = self._map(segment)
            size = crc = 0
            if mm is not None and offset + HEADER.size <= len(mm):
                size, crc = HEADER.unpack_from(mm, offset)
                # In a final journal, an end marker with no next segment is damage when
                # records follow it (a flipped header); when none do, it is the end.
                if size == NEXT and not (final and self._next_segment(segment) is None):
                    segment, offset = segment + 1, 0
                    self.position = (segment, offset)
                    continue
                end = offset + HEADER.size + size
                if size and end <= len(mm):
                    payload = mm[offset + HEADER.size : end]
                    if zlib.crc32(payload) == crc:
                        record = decode(payload)
                        if record is None:
                            # Whole and checksummed, but not a record: it will not change.
                            self.damage.append(Damage(segment, offset, end, "not a record"))
                        else:
                            entry = Entry(record, (segment, end))
                            self._check_first(entry)
                            out.append(entry)
                        segment, offset = segment, end
                        self.position = (segment, offset)
                        continue
            if not final:
                break  # live: not written yet, or being written; read again later
            resumed = self._resync(mm, segment, offset)
            if resumed is None:
                self._clean_end = (segment, offset)
                if self._first:
                    self._first = False
                    self.damage.append(Damage(1, 0, 0, "no record creates the run"))
                break
            segment, offset = resumed
            self.position = resumed
        return out

    def _check_first(self, entry: Entry) -> None:
        if self._first:
            self._first = False
            if not isinstance(entry.record, Create):
                self.damage.append(Damage(1, 0, 0, "no record creates the run"))

    def _resync(self, mm: mmap.mmap | None, segment: int, offset: int) -> Position | None:
        """Where reading goes on after a bad record at ``(segment, offset)``; None: the end.

        Notes the bytes skipped as damage; zero bytes (never written) are not damage.
        """
        if mm is not None:
            found = _find_record(mm, offset)
            if found is not None:
                self.damage.append(Damage(segment, offset, found, _why_bad(mm, offset)))
                return (segment, found)
            tail = mm[offset:].rstrip(b"\0")
            if tail.endswith(HEADER.pack(NEXT, 0).rstrip(b"\0")):
                tail = tail[:-4]  # the segment's end marker is not data
            if tail:
                why = _why_bad(mm, offset)
                self.damage.append(Damage(segment, offset, offset + len(tail), why))
        following = self._next_segment(segment)
        if following is None:
            return None
        if following != segment + 1:
            missing = f"segments {segment + 1}-{following - 1} are missing"
            if following == segment + 2:
                missing = f"segment {segment + 1} is missing"
            self.damage.append(Damage(segment + 1, 0, 0, missing))
        return (following, 0)

    def close(self) -> None:
        """Unmap the current segment."""
        if self._mm is not None:
            self._mm.close()
            self._mm = None


def _find_record(mm: mmap.mmap, offset: int) -> int | None:
    """The offset of the next whole, checksummed record after ``offset``, or None."""
    total = len(mm)
    search = offset + 1 + HEADER.size
    while True:
        hit = mm.find(SYNC, search)
        if hit < 0:
            return None
        start = hit - HEADER.size
        size, crc = HEADER.unpack_from(mm, start)
        end = hit + size
        plausible = size >= 2 and end <= total and mm[end - 1] == 0x5D  # ends with "]"
        if plausible and zlib.crc32(mm[hit:end]) == crc and decode(mm[hit:end]) is not None:
            return start
        search = hit + 1


def _why_bad(mm: mmap.mmap, offset: int) -> str:
    if offset + HEADER.size > len(mm):
        return "cut short"
    size, _ = HEADER.unpack_from(mm, offset)
    if size == 0:
        return "zeroed header"
    if size == NEXT:
        return "a segment-end marker in the middle of the segment"
    if offset + HEADER.size + size > len(mm):
        return "bad length or cut short"
    return "bad checksum"


class TailReader:
    """The live sender's reader: segments on disk, then the records kept in memory."""

    def __init__(self, journal: Journal, start: Position) -> None:
        self._journal = journal
        self._disk = Reader(journal.path, start)
        self._memory_position: Position | None = None

    @property
    def position(self) -> Position:
        """Where the next read starts."""
        return self._memory_position or self._disk.position

    @property
    def torn(self) -> bool:
        """Whether a damaged record was met on disk."""
        return self._disk.torn

    @property
    def damage(self) -> list[Damage]:
        """Damaged ranges met on disk."""
        return self._disk.damage

    def read(self, limit: int = 1000, *, final: bool = False) -> list[Entry]:
        """Return up to ``limit`` records after the current position."""
        journal = self._journal
        memory = journal.memory_start
        if self._memory_position is None:
            if memory is None:
                return self._disk.read(limit, final=final)
            # The disk part ends with a "next segment" marker pointing into memory; it
            # was written by this process and is read as a live journal is.
            if self._disk.position[0] < memory[0]:
                entries = self._disk.read(limit)
                if entries or self._disk.position[0] < memory[0]:
                    return entries
            disk_segment, disk_offset = self._disk.position
            index = disk_offset if disk_segment == memory[0] else 0
            self._memory_position = (memory[0], index)
            self._disk.close()
        segment, index = self._memory_position
        first, payloads = journal.memory_records(index, limit)
        out: list[Entry] = []
        for number, payload in enumerate(payloads, first):
            record = decode(payload)
            if record is None:  # encoded by this process: only a bug gets here
                self._disk.damage.append(Damage(segment, number, number, "not a record"))
                continue
            out.append(Entry(record, (segment, number + 1)))
        if payloads:
            self._memory_position = (segment, first + len(payloads))
        return out

    def close(self) -> None:
        """Unmap the current segment."""
        self._disk.close()


def first_held(path: Path, journal: Journal | None) -> tuple[Position, str | None]:
    """The first record a journal still holds, to send it all again to a store that lost it.

    Records the store had acknowledged may be gone already: whole segments are deleted,
    the start of the current one may be freed (a hole), and a journal on a full disk keeps
    only unsent records in memory. Returns the position and, when records before it are
    gone, a clause saying which (after "the store lost it and").
    """
    numbers = segment_numbers(path)
    first = numbers[0] if numbers else 1
    start: Position = (first, 0)
    gone = None
    if first != 1:
        gone = (
            f"the journal's segments 1-{first - 1} had already been sent and deleted, so "
            "their records are missing from it"
        )
    if journal is not None:
        memory = journal.memory_start
        if memory is not None and not numbers:
            # Every disk segment was sent and deleted before the disk filled up.
            start = memory
            gone = (
                "the records it had already taken were no longer kept (the journal's disk "
                "was full), so they are missing from it"
            )
        elif journal.punched_at is not None and start < journal.punched_at:
            start = journal.punched_at  # the bytes before it were freed once sent
            gone = (
                "the records it had already taken from the journal's start were freed, so "
                "they are missing from it"
            )
    return start, gone
