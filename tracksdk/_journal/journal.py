"""The writing side of a run's journal: segments, the append, and the fallback to memory.

Records are appended to segment files that are preallocated and memory-mapped. An append
is a copy into the mapping: no system call, so the training thread never gives up the GIL
and never waits on the disk. The pages belong to the kernel, so a record survives the
process being killed (SIGKILL, a crash, the OOM killer); it does not survive a power cut
before the kernel writes it back. The payload is written before its header, so a reader
sees either the whole record or nothing. docs/offline.md explains why this format rather
than sqlite.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import mmap
import os
import shutil
import socket
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from tracksdk._journal import live
from tracksdk._journal.layout import (
    FILE_MODE,
    FORMAT,
    HEADER,
    NEXT,
    SEGMENT_SIZE,
    Position,
    make_private_dir,
    punch_hole,
    segment_name,
    write_marker,
    write_private,
)
from tracksdk._journal.memory import MemoryTail
from tracksdk._journal.reader import TailReader
from tracksdk._journal.records import Record, encode
from tracksdk._journal.spool import Spool

# On a nearly full disk a segment is halved until it fits, down to this size.
MIN_SEGMENT_SIZE = 64 << 10
# The errors that mean "no room": the journal then falls back to memory.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_TAIL_RESERVE = 8 << 10
# The acknowledged start of a segment is given back to the disk in pieces of at least this.
_PUNCH_MIN = 256 << 10


class JournalFull(Exception):
    """Raised by :meth:`Journal.append` when a record is refused under the size cap."""


class Journal:
    """The writing side of one run's journal, owned by the process running it."""

    def __init__(self, path: Path, meta: dict[str, Any], *, max_bytes: int) -> None:
        self.path = path
        self.meta = meta
        self.client_id: str = meta["client_id"]
        self.max_bytes = max_bytes
        self._lock = threading.RLock()  # re-entrant: a SIGTERM handler may append
        self._segment = 0
        self._offset = 0
        self._mm: mmap.mmap | None = None
        self._fd = -1
        self.acked_segment = 1  # advanced by the sender; old segments are deleted
        self.records = 0
        self.closed = False
        self.files_bytes = 0
        self._lock_fd = -1
        # Set when the disk cannot take the journal: records then live in memory until
        # the store has them (durability reduced, delivery kept; docs/offline.md).
        self._memory: MemoryTail | None = None
        self.degraded: str | None = None  # why the journal fell back to memory
        self._spool = Spool(path)
        self._punched = 0  # bytes at the start of the segment whose disk space was freed
        self._acked_offset = 0  # acknowledged bytes of the current segment (ack on disk)
        self.memory_fallback = True
        # After a hole was punched, the first whole record of the current segment.
        self.punched_at: Position | None = None
        self._retired = False  # the journal is being deleted: no more heartbeats

    # -- creation --------------------------------------------------------------------

    @classmethod
    def create(
        cls, folder: Path, meta: dict[str, Any], *, max_bytes: int, memory_fallback: bool = True
    ) -> Journal:
        """Create the journal folder for a new run and lock it for this process.

        With ``memory_fallback`` (a run with a store to send to), a disk that fills up
        later moves the rest of the journal to memory; without it (offline: nothing
        would ever read that memory), appends then raise OSError.

        Raises:
            OSError: The folder cannot be created or written (read-only, full disk).
                Nothing is left behind: a half-created folder is removed.
        """
        existed = folder.is_dir()
        make_private_dir(folder)
        path = folder / meta["client_id"]
        try:
            make_private_dir(path)
        except OSError:
            if not existed:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        meta = {
            **meta,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "created": time.time(),
            "format": FORMAT,
        }
        journal = cls(path, meta, max_bytes=max_bytes)
        journal.memory_fallback = memory_fallback
        try:
            journal._lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
            fcntl.flock(journal._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_marker(path)  # before meta.json: a folder with meta.json is always ours
            write_private(path / "meta.json", json.dumps(meta, indent=1))
            journal.beat()
            journal._open_segment(1, 0)
        except OSError:
            journal.release()
            shutil.rmtree(path, ignore_errors=True)
            if not existed:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty: another run may have started there
            raise
        live.track(journal)
        return journal

    @classmethod
    def in_memory(
        cls, folder: Path, meta: dict[str, Any], *, max_bytes: int, reason: str | None
    ) -> Journal:
        """A journal that keeps its records in memory.

        With a ``reason``, the disk cannot take them: the run is still delivered while
        the process lives, and what the store has not taken when the process dies is
        lost, so the caller warns once. Without one, memory is all the run needs (its
        store lives in this process too: the memory store).
        """
        meta = {**meta, "pid": os.getpid(), "host": socket.gethostname(), "created": time.time()}
        journal = cls(folder / meta["client_id"], meta, max_bytes=max_bytes)
        journal._memory = MemoryTail(1)
        journal._segment = 1
        journal.degraded = reason
        live.track(journal)
        return journal

    @property
    def durable(self) -> bool:
        """Whether every record so far is on disk (survives the process being killed)."""
        return self._memory is None

    def _open_segment(self, number: int, minimum: int, *, mark: bool = False) -> None:
        """Create, reserve and map segment ``number`` (at least ``minimum`` bytes).

        With ``mark``, the current segment gets its "continued in the next segment"
        header once the new one exists: a failure leaves the journal as it was.

        The space is reserved (posix_fallocate) before mapping: writing to a mapped page
        the filesystem cannot back kills the process with SIGBUS, while a failed
        reservation is an OSError here. On a nearly full disk the segment shrinks.
        """
        path = self.path / segment_name(number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        size = max(SEGMENT_SIZE, minimum)
        try:
            while True:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError as exc:
                    smaller = size // 2
                    if exc.errno not in _NO_SPACE or smaller < max(MIN_SEGMENT_SIZE, minimum):
                        raise
                    os.ftruncate(fd, 0)
                    size = smaller
            mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        if self._mm is not None:
            if mark:
                self._mark_next()
            self._mm.close()
            os.close(self._fd)
        self._fd, self._mm, self._segment, self._offset = fd, mm, number, 0
        self._punched = self._acked_offset = 0

    # -- appending -------------------------------------------------------------------

    def append(self, record: Record, *, droppable: bool = False) -> None:
        """Append one record. Costs a JSON encoding and a memory copy.

        Raises:
            JournalFull: ``droppable`` is set and the journal holds more unsent data than
                its cap. Other records are always kept (docs/offline.md, "Journal full").
            OSError: the journal is closed.
        """
        payload = encode(record)
        size = len(payload)
        with self._lock:
            mm = self._mm
            if mm is None:
                if self._memory is not None and not self.closed:
                    self._append_memory(payload, droppable)
                    return
                raise OSError("the journal is closed")
            end = self._offset + HEADER.size + size
            # Metric points leave the last few kB of a segment to the records that are
            # never dropped (params, tags, the run's end): on a full disk those still fit.
            limit = len(mm) - (_TAIL_RESERVE if droppable else 0)
            if end + HEADER.size > limit:
                if droppable and self.pending_bytes() >= self.max_bytes:
                    raise JournalFull
                try:
                    self._open_segment(self._segment + 1, size + 2 * HEADER.size, mark=True)
                except OSError as exc:
                    if not self.memory_fallback:
                        raise
                    self._to_memory(exc)
                    self._append_memory(payload, droppable)
                    return
                mm = self._mm
                assert mm is not None
                end = HEADER.size + size
            start = self._offset
            mm[start + HEADER.size : end] = payload
            mm[start : start + HEADER.size] = HEADER.pack(size, zlib.crc32(payload))
            self._offset = end
            self.records += 1

    def _mark_next(self) -> None:
        """Write "continued in the next segment" where the next record would go."""
        assert self._mm is not None
        self._mm[self._offset : self._offset + HEADER.size] = HEADER.pack(NEXT, 0)

    def _to_memory(self, exc: OSError) -> None:
        """The disk cannot take the next segment: keep the rest of the journal in memory."""
        self.degraded = f"{exc.strerror or exc} in {self.path}"
        self._memory = MemoryTail(self._segment + 1)
        if self._mm is not None:
            # The marker lives in the reserved part of this segment: the sender's reader
            # follows it to the memory tail.
            self._mark_next()
            self._mm.close()
            os.close(self._fd)
            self._mm, self._fd = None, -1
        self._segment += 1
        self._offset = 0

    def _append_memory(self, payload: bytes, droppable: bool) -> None:
        memory = self._memory
        assert memory is not None
        if droppable and self.pending_bytes() >= self.max_bytes:
            raise JournalFull
        memory.append(payload)
        self.records += 1

    def pending_bytes(self) -> int:
        """Roughly how much unsent data is kept: segments not yet acknowledged + files."""
        if self._memory is not None:
            disk = max(0, self._memory.segment - self.acked_segment) * SEGMENT_SIZE
            return disk + self._memory.bytes + self.files_bytes
        segments = self._segment - self.acked_segment + 1
        return segments * SEGMENT_SIZE + self.files_bytes

    @property
    def position(self) -> Position:
        """Where the next record will be written."""
        if self._memory is not None:
            return self._memory.position
        return (self._segment, self._offset)

    @property
    def memory_start(self) -> Position | None:
        """Where the records kept in memory begin (None: every record is on disk).

        They form one virtual segment after the last one on disk; a position in it is the
        index of a record, counted from the first one kept there.
        """
        memory = self._memory
        return None if memory is None else (memory.segment, memory.base)

    def memory_records(self, index: int, limit: int) -> tuple[int, list[bytes]]:
        """Up to ``limit`` payloads kept in memory from record ``index`` on.

        Returns the index of the first one returned (records before the oldest still
        kept were acknowledged and dropped) and the payloads.
        """
        with self._lock:
            memory = self._memory
            return (index, []) if memory is None else memory.read(index, limit)

    def reader(self, start: Position) -> TailReader:
        """A reader for this process's sender: the segments on disk, then memory."""
        return TailReader(self, start)

    def acknowledge(self, position: Position, *, durable: bool) -> None:
        """The store has everything before ``position``: free what holds it.

        Memory records are dropped at once. On disk, whole segments are deleted by
        :func:`write_ack`; ``durable`` says that ack reached the disk.
        """
        with self._lock:
            self.acked_segment = position[0]
            if self._memory is not None and position[0] == self._memory.segment:
                self._memory.trim(position[1])
            if durable and position[0] == self._segment and self._mm is not None:
                self._acked_offset = position[1]

    def free_acknowledged(self) -> None:
        """Give the disk back the acknowledged start of the current segment.

        Called by the sender when it has nothing left to send, so a journal that keeps
        up with the store holds almost no disk even inside a long segment. The space
        is freed with a hole (FALLOC_FL_PUNCH_HOLE); where that is not supported the
        space is freed when the segment is.
        """
        with self._lock:
            acked = self._acked_offset
            if self._mm is None or self._fd < 0 or acked - self._punched < _PUNCH_MIN:
                return
            end = acked - acked % mmap.PAGESIZE
            if end > self._punched and punch_hole(self._fd, self._punched, end - self._punched):
                self._punched = end
                # Acks fall on record boundaries: a resend from the start (a store that
                # lost the run) begins here, after the freed bytes.
                self.punched_at = (self._segment, acked)

    @property
    def files_root(self) -> Path:
        """Where spooled artifacts live (``files/``, or a temp folder on a full disk)."""
        return self._spool.root

    def spool(self, name: str, *, fallback: bool = False) -> Path:
        """A fresh path to copy an artifact to before it is uploaded.

        Under ``files/`` in the journal, or, when that cannot be written (full disk,
        a journal kept in memory) or ``fallback`` is set, under a private temporary
        folder: the upload then still happens while the process lives.
        """
        unique = f"{self.records:08d}-{uuid.uuid4().hex[:8]}"
        on_disk = not fallback and self._memory is None
        return self._spool.new_path(unique, name, on_disk=on_disk)

    def beat(self) -> None:
        """Record that the writing process is alive."""
        with self._lock:
            if self._retired:
                return
            with contextlib.suppress(OSError):
                write_private(self.path / "heartbeat", f"{time.time():.3f}\n")

    def retire(self) -> None:
        """The journal is about to be deleted: stop its heartbeat first."""
        with self._lock:
            self._retired = True
        live.untrack(self)

    def close(self) -> None:
        """Stop appending; keep the lock (and the data) until :meth:`release`."""
        with self._lock:
            self.closed = True
            if self._mm is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._mm.flush()
                self._mm.close()
                os.close(self._fd)
                self._mm = None
                self._fd = -1

    def release(self) -> None:
        """Give up the lock: a sync in this or another process may replay the rest."""
        live.untrack(self)
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def abandon_in_child(self) -> None:
        """In a forked child: let go of the parent's journal without touching it.

        The child got copies of the mapping, the write position, the held lock (maybe
        held by a thread that does not exist here) and the flock's descriptor. Writing
        through them would overwrite the parent's records, so all are dropped; the
        parent's files are not changed.
        """
        self._lock = threading.RLock()
        self.closed = True
        if self._mm is not None:
            with contextlib.suppress(Exception):
                self._mm.close()
            self._mm = None
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1
        self._memory = None
