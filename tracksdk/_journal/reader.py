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

import json
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

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal


@dataclass
class Entry:
    """One record read back, with the position right after it."""

    record: list[Any]
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_str(record: list[Any], index: int) -> bool:
    return len(record) <= index or record[index] is None or isinstance(record[index], str)


def well_formed(record: Any) -> bool:
    """Whether a decoded payload is a record the sender can use without an exception.

    Unknown kinds (from a newer tracksdk) are well formed: the sender skips them.
    """
    if not isinstance(record, list) or not record or not isinstance(record[0], str):
        return False
    kind = record[0]
    body = record[1] if len(record) > 1 else None
    if kind == "m":
        return isinstance(body, list) and all(
            isinstance(p, list)
            and len(p) == 4
            and isinstance(p[0], str)
            and _is_number(p[1])
            and _is_int(p[2])
            and _is_int(p[3])
            for p in body
        )
    if kind in ("p", "t"):
        return isinstance(body, dict)
    if kind == "c":
        return (
            isinstance(body, dict)
            and isinstance(body.get("experiment"), str)
            and _is_number(body.get("start"))
            and isinstance(body.get("tags", {}), dict)
            and (body.get("run_name") is None or isinstance(body["run_name"], str))
            and (body.get("parent") is None or isinstance(body["parent"], str))
            and (body.get("parent_run_id") is None or isinstance(body["parent_run_id"], str))
        )
    if kind == "f":
        return isinstance(body, str) and _optional_str(record, 2)
    if kind == "i":
        return isinstance(body, dict) and _optional_str(record, 2)
    if kind == "r":
        return (
            isinstance(body, dict)
            and len(record) > 2
            and isinstance(record[2], dict)
            and all(_is_number(v) for v in record[2].values())
        )
    if kind == "e":
        if not (isinstance(body, str) and len(record) > 2 and _is_number(record[2])):
            return False
        extra = record[3] if len(record) > 3 else {}
        return isinstance(extra, dict) and isinstance(extra.get("tags", {}), dict)
    return True


def decode(payload: bytes) -> list[Any] | None:
    """A payload as a record, or None when it is not one (never raises)."""
    try:
        record = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return record if well_formed(record) else None


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
            if entry.record[0] != "c":
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
        out = [
            Entry(json.loads(payload), (segment, first + offset + 1))
            for offset, payload in enumerate(payloads)
        ]
        if out:
            self._memory_position = out[-1].end
        return out

    def close(self) -> None:
        """Unmap the current segment."""
        self._disk.close()
