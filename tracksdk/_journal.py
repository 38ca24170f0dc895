"""The on-disk journal: every record of a run, kept until the store has acknowledged it.

One folder per run, ``<journal dir>/<client run id>/`` (mode 0700, files 0600)::

    meta.json        who wrote it: client run id, pid, host, target store, start time
    lock             flock-ed by the process writing the run, or by a sync replaying it
    heartbeat        the time the writer was last seen alive (for journals on other hosts)
    tracksdk-journal marker: "tracksdk journal <format>" (only such folders are touched)
    seg-000001.log   the records, appended in order (see below)
    ack              "<segment> <offset>": everything before it reached the store
    created.json     the store and MLflow run id the run was created as
    files/           artifacts waiting to be uploaded (copies: the user's file may change)
    rejected.jsonl   requests the store refused, in full (replayable), with its answer

Journals that cannot be finished normally are moved to ``<journal dir>/kept/`` with a
``KEPT.txt`` note saying why (damaged, refused requests, deleted run or experiment).

Records are JSON arrays in segment files that are preallocated and memory-mapped. An
append is a copy into the mapping: no system call, so the training thread never gives up
the GIL and never waits on the disk. The pages belong to the kernel, so a record survives
the process being killed (SIGKILL, a crash, the OOM killer); it does not survive a power
cut before the kernel writes it back. Each record is framed as ``<length u32><crc32 u32>``
then the payload. The payload is written before its header, so a reader sees either the
whole record or nothing; while the journal is live, a torn or zero header means "not
written yet". A header of ``0xFFFFFFFF`` means "continued in the next segment".
docs/offline.md explains why this format rather than sqlite.

Once the journal is final (its writer closed it or died), a damaged record (a bad
checksum, length or header, a truncated file, a payload that is not a record) is skipped:
the reader looks for the next valid record and goes on, and notes the byte range it
could not read (:class:`Damage`). Every payload starts with ``["`` (a record is a JSON
array whose first element is a string), which serves as the sync pattern: a candidate is
the 8 bytes before a ``["``, accepted only when its length fits and its CRC matches.

Each journal folder holds a marker file, ``tracksdk-journal``, with a magic value and the
format version: tracksdk only reads, sends, moves or deletes folders that have it.

Record types (first element):

- ``["c", {...}]`` create the run: experiment name, run name, tags, parent, start time
- ``["m", [[key, value, timestamp_ms, step], ...]]`` metric points
- ``["p", {key: value}]`` params; ``["t", {key: value}]`` tags
- ``["f", "<path under files/>", "<artifact path or null>"]`` upload a file or folder
- ``["i", {dataset}, "<context or null>"]`` a dataset input
- ``["r", {register spec}, {metrics}]`` register the logged model (when it could not be
  registered while the run was live)
- ``["e", "<status>", end_time_ms]`` end the run
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import mmap
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk.settings import Explained

SEGMENT_SIZE = 4 << 20
# On a nearly full disk a segment is halved until it fits, down to this size.
MIN_SEGMENT_SIZE = 64 << 10
# The errors that mean "no room": the journal then falls back to memory.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
HEARTBEAT_EVERY = 5.0
_TAIL_RESERVE = 8 << 10
# One encoder: json.dumps with options builds a new one per call (about 4 us).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_HEADER = struct.Struct("<II")
_NEXT = 0xFFFFFFFF
_DIR_MODE = 0o700
_FILE_MODE = 0o600

Position = tuple[int, int]  # (segment number, byte offset)
START: Position = (1, 0)

FORMAT = 1
MARKER = "tracksdk-journal"
_MAGIC = "tracksdk journal"
KEPT = "kept"  # journals set aside: damaged, refused requests, deleted run or experiment
KEPT_NOTE = "KEPT.txt"
_SYNC = b'["'  # every payload starts with it: the reader resynchronises on it
_SEGMENT = re.compile(r"seg-(\d{6})\.log")
_CLIENT_ID = re.compile(r"[0-9a-f]{32}")


def new_client_id() -> str:
    """A run id chosen by the client, so a retried or replayed create is recognised."""
    return uuid.uuid4().hex


def _segment_name(number: int) -> str:
    return f"seg-{number:06d}.log"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask, and exist_ok leaves an older folder as it was.
    with contextlib.suppress(OSError):
        os.chmod(path, _DIR_MODE)


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (for the journal's cap)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def make_private(path: Path) -> None:
    """Folders 0700, files 0600, under ``path``: copies keep their source's bits."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        with contextlib.suppress(OSError):
            os.chmod(item, _DIR_MODE if item.is_dir() else _FILE_MODE)


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
        self._memory: _MemoryTail | None = None
        self.degraded: str | None = None  # why the journal fell back to memory
        self._fallback_spool: Path | None = None
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
        _make_private_dir(folder)
        path = folder / meta["client_id"]
        try:
            _make_private_dir(path)
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
            "format": 1,
        }
        journal = cls(path, meta, max_bytes=max_bytes)
        journal.memory_fallback = memory_fallback
        try:
            journal._lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
            fcntl.flock(journal._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            write_marker(path)  # before meta.json: a folder with meta.json is always ours
            _write_private(path / "meta.json", json.dumps(meta, indent=1))
            journal.beat()
            journal._open_segment(1, 0)
        except OSError:
            journal.release()
            shutil.rmtree(path, ignore_errors=True)
            if not existed:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty: another run may have started there
            raise
        _track(journal)
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
        journal._memory = _MemoryTail(1)
        journal._segment = 1
        journal.degraded = reason
        _track(journal)
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
        path = self.path / _segment_name(number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
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

    def append(self, record: list[Any], *, droppable: bool = False) -> None:
        """Append one record. Costs a JSON encoding and a memory copy.

        Raises:
            JournalFull: ``droppable`` is set and the journal holds more unsent data than
                its cap. Other records are always kept (docs/offline.md, "Journal full").
            OSError: the journal is closed.
        """
        payload = _encode(record).encode()
        size = len(payload)
        with self._lock:
            mm = self._mm
            if mm is None:
                if self._memory is not None and not self.closed:
                    self._append_memory(payload, droppable)
                    return
                raise OSError("the journal is closed")
            end = self._offset + _HEADER.size + size
            # Metric points leave the last few kB of a segment to the records that are
            # never dropped (params, tags, the run's end): on a full disk those still fit.
            limit = len(mm) - (_TAIL_RESERVE if droppable else 0)
            if end + _HEADER.size > limit:
                if droppable and self.pending_bytes() >= self.max_bytes:
                    raise JournalFull
                try:
                    self._open_segment(self._segment + 1, size + 2 * _HEADER.size, mark=True)
                except OSError as exc:
                    if not self.memory_fallback:
                        raise
                    self._to_memory(exc)
                    self._append_memory(payload, droppable)
                    return
                mm = self._mm
                assert mm is not None
                end = _HEADER.size + size
            start = self._offset
            mm[start + _HEADER.size : end] = payload
            mm[start : start + _HEADER.size] = _HEADER.pack(size, zlib.crc32(payload))
            self._offset = end
            self.records += 1

    def _mark_next(self) -> None:
        """Write "continued in the next segment" where the next record would go."""
        assert self._mm is not None
        self._mm[self._offset : self._offset + _HEADER.size] = _HEADER.pack(_NEXT, 0)

    def _to_memory(self, exc: OSError) -> None:
        """The disk cannot take the next segment: keep the rest of the journal in memory."""
        self.degraded = f"{exc.strerror or exc} in {self.path}"
        self._memory = _MemoryTail(self._segment + 1)
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
            if end > self._punched and _punch_hole(self._fd, self._punched, end - self._punched):
                self._punched = end
                # Acks fall on record boundaries: a resend from the start (a store that
                # lost the run) begins here, after the freed bytes.
                self.punched_at = (self._segment, acked)

    @property
    def files_root(self) -> Path:
        """Where spooled artifacts live (``files/``, or a temp folder on a full disk)."""
        return self.path / "files"

    def spool(self, name: str, *, fallback: bool = False) -> Path:
        """A fresh path to copy an artifact to before it is uploaded.

        Under ``files/`` in the journal, or, when that cannot be written (full disk,
        a journal kept in memory) or ``fallback`` is set, under a private temporary
        folder: the upload then still happens while the process lives.
        """
        unique = f"{self.records:08d}-{uuid.uuid4().hex[:8]}"
        if not fallback and self._memory is None:
            try:
                files = self.path / "files"
                _make_private_dir(files)
                folder = files / unique
                _make_private_dir(folder)
                return folder / name
            except OSError:
                pass
        if self._fallback_spool is None:
            self._fallback_spool = Path(tempfile.mkdtemp(prefix="tracksdk-spool-"))
        folder = self._fallback_spool / unique
        _make_private_dir(folder)
        return folder / name

    def beat(self) -> None:
        """Record that the writing process is alive."""
        with self._lock:
            if self._retired:
                return
            with contextlib.suppress(OSError):
                _write_private(self.path / "heartbeat", f"{time.time():.3f}\n")

    def retire(self) -> None:
        """The journal is about to be deleted: stop its heartbeat first."""
        with self._lock:
            self._retired = True
        _untrack(self)

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
        _untrack(self)
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


class _MemoryTail:
    """Records kept in memory once the disk could not take them: one virtual segment."""

    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.base = 0  # index of records[0] in the segment
        self.records: list[bytes] = []
        self.bytes = 0

    @property
    def position(self) -> Position:
        return (self.segment, self.base + len(self.records))

    def append(self, payload: bytes) -> None:
        self.records.append(payload)
        self.bytes += len(payload)

    def trim(self, index: int) -> None:
        drop = min(max(0, index - self.base), len(self.records))
        if drop:
            self.bytes -= sum(len(p) for p in self.records[:drop])
            del self.records[:drop]
            self.base += drop


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
        memory = journal._memory
        if self._memory_position is None:
            if memory is None:
                return self._disk.read(limit, final=final)
            # The disk part ends with a "next segment" marker pointing into memory; it
            # was written by this process and is read as a live journal is.
            if self._disk.position[0] < memory.segment:
                entries = self._disk.read(limit)
                if entries or self._disk.position[0] < memory.segment:
                    return entries
            disk_segment, disk_offset = self._disk.position
            index = disk_offset if disk_segment == memory.segment else 0
            self._memory_position = (memory.segment, index)
            self._disk.close()
        segment, index = self._memory_position
        out: list[Entry] = []
        with journal._lock:
            memory = journal._memory
            if memory is None:
                return out
            first = max(index, memory.base)
            for offset, payload in enumerate(memory.records[first - memory.base :][:limit]):
                out.append(Entry(json.loads(payload), (segment, first + offset + 1)))
        if out:
            self._memory_position = out[-1].end
        return out

    def close(self) -> None:
        """Unmap the current segment."""
        self._disk.close()


# -- live journals of this process: heartbeat and fork --------------------------------

_live: weakref.WeakSet[Journal] = weakref.WeakSet()
_live_lock = threading.Lock()
_heart: threading.Thread | None = None


def _track(journal: Journal) -> None:
    """Keep ``journal``'s heartbeat fresh while this process writes it."""
    global _heart
    with _live_lock:
        _live.add(journal)
        if _heart is None or not _heart.is_alive():
            _heart = threading.Thread(target=_beat_forever, name="tracksdk-heartbeat", daemon=True)
            _heart.start()


def _untrack(journal: Journal) -> None:
    with _live_lock:
        _live.discard(journal)


def _beat_forever() -> None:
    """Refresh every live journal's heartbeat, whatever its sender is doing.

    An offline run has no sender, and a sender may have stopped (a 401) or be stuck in
    a request: the heartbeat tells a sync on another host that the writer lives.
    """
    while True:
        time.sleep(HEARTBEAT_EVERY)
        with _live_lock:
            journals = [j for j in _live if j.durable]
        for journal in journals:
            journal.beat()


def after_fork_in_child() -> None:
    """Drop the parent's journals in a forked child (see tracksdk._fork)."""
    global _heart, _live_lock
    _live_lock = threading.Lock()
    _heart = None
    inherited = list(_live)
    _live.clear()
    for journal in inherited:
        journal.abandon_in_child()


_PUNCH_MIN = 256 << 10
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_fallocate: Any = None


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the disk blocks of a byte range (Linux fallocate); False when unsupported."""
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            function = libc.fallocate
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
            function.restype = ctypes.c_int
            _fallocate = function
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return False
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    return bool(_fallocate(fd, mode, offset, length) == 0)


# -- reading (the sender, a sync) ------------------------------------------------------


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
            fd = os.open(self.path / _segment_name(number), os.O_RDONLY)
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
            if mm is not None and offset + _HEADER.size <= len(mm):
                size, crc = _HEADER.unpack_from(mm, offset)
                # In a final journal, an end marker with no next segment is damage when
                # records follow it (a flipped header); when none do, it is the end.
                if size == _NEXT and not (final and self._next_segment(segment) is None):
                    segment, offset = segment + 1, 0
                    self.position = (segment, offset)
                    continue
                end = offset + _HEADER.size + size
                if size and end <= len(mm):
                    payload = mm[offset + _HEADER.size : end]
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
            if tail.endswith(_HEADER.pack(_NEXT, 0).rstrip(b"\0")):
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
    search = offset + 1 + _HEADER.size
    while True:
        hit = mm.find(_SYNC, search)
        if hit < 0:
            return None
        start = hit - _HEADER.size
        size, crc = _HEADER.unpack_from(mm, start)
        end = hit + size
        plausible = size >= 2 and end <= total and mm[end - 1] == 0x5D  # ends with "]"
        if plausible and zlib.crc32(mm[hit:end]) == crc and decode(mm[hit:end]) is not None:
            return start
        search = hit + 1


def _why_bad(mm: mmap.mmap, offset: int) -> str:
    if offset + _HEADER.size > len(mm):
        return "cut short"
    size, _ = _HEADER.unpack_from(mm, offset)
    if size == 0:
        return "zeroed header"
    if size == _NEXT:
        return "a segment-end marker in the middle of the segment"
    if offset + _HEADER.size + size > len(mm):
        return "bad length or cut short"
    return "bad checksum"


def segment_numbers(path: Path) -> list[int]:
    """The numbers of the segment files in a journal folder, in order."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _SEGMENT.fullmatch(n)))


def read_ack(path: Path) -> Position:
    """The position up to which the store has acknowledged everything."""
    try:
        segment, offset = (path / "ack").read_text().split()[:2]
        position = (int(segment), int(offset))
    except (OSError, ValueError, UnicodeDecodeError):
        return START
    return position if position >= START and position[1] >= 0 else START


def read_ended(path: Path) -> bool:
    """Whether the store acknowledged the run's end (the journal awaits deletion only)."""
    try:
        return (path / "ack").read_text().split()[2:3] == ["ended"]
    except (OSError, UnicodeDecodeError):
        return False


def write_ack(path: Path, position: Position, *, ended: bool = False) -> None:
    """Record that everything before ``position`` reached the store; drop old segments."""
    marker = " ended" if ended else ""
    _write_private(path / "ack", f"{position[0]} {position[1]}{marker}\n")
    for number in segment_numbers(path):
        if number < position[0]:
            with contextlib.suppress(OSError):
                (path / _segment_name(number)).unlink()


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a small JSON file of the journal, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file of the journal, atomically, mode 0600."""
    _write_private(path, json.dumps(data, indent=1))


def append_line(path: Path, text: str) -> None:
    """Append a line to a journal file, created mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
    try:
        os.write(fd, (text.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


# -- the journal's target store ----------------------------------------------------------


def masked_target(uri: str | None) -> str | None:
    """A tracking URI as the journal stores it: without user info (``***@``)."""
    from tracksdk._redact import strip_userinfo

    return strip_userinfo(uri) if isinstance(uri, str) else None


def same_target(stored: Any, uri: str) -> bool:
    """Whether a journal's recorded target is the store at ``uri`` (compared masked).

    Journals of older releases may hold the URI with its credentials: masked as well.
    """
    return isinstance(stored, str) and masked_target(stored) == masked_target(uri)


# -- finding journals ----------------------------------------------------------------


def write_marker(path: Path) -> None:
    """Mark ``path`` as a journal folder that tracksdk created."""
    _write_private(path / MARKER, f"{_MAGIC} {FORMAT}\n")


def is_journal(path: Path) -> bool:
    """Whether ``path`` is a journal folder tracksdk created and can read.

    A folder with a valid marker, or (a journal of the previous release, which wrote no
    marker) one whose meta.json says format 1 with the folder's name as its client id and
    that holds at least one segment file. Anything else is not tracksdk's: left alone.
    """
    try:
        if not path.is_dir() or path.is_symlink():
            return False
        marker = (path / MARKER).read_text(encoding="utf-8")[:100]
    except FileNotFoundError:
        meta = read_json(path / "meta.json")
        return (
            meta is not None
            and meta.get("format") == 1
            and meta.get("client_id") == path.name
            and _CLIENT_ID.fullmatch(path.name) is not None
            and bool(segment_numbers(path))
        )
    except (OSError, UnicodeDecodeError):
        return False
    return marker.strip() == f"{_MAGIC} {FORMAT}"


@dataclass
class Found:
    """A journal on disk, as a sync sees it."""

    path: Path
    meta: dict[str, Any]

    @property
    def client_id(self) -> str:
        """The run's client-side id (the folder's name)."""
        return self.path.name

    def text(self, key: str) -> str | None:
        """A text field of meta.json, or None when it is missing or not text."""
        value = self.meta.get(key)
        return value if isinstance(value, str) else None

    @property
    def created(self) -> float:
        """When the run started (seconds since the epoch), 0 when unknown."""
        value: Any = self.meta.get("created")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and value == value and abs(value) < 1e11:  # not NaN, inf or absurd
            return float(value)
        return 0.0


def find(folder: Path) -> list[Found]:
    """Every journal under ``folder``, oldest first (parents before their children)."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        if not is_journal(path):
            continue
        found.append(Found(path, read_json(path / "meta.json") or {}))
    found.sort(key=lambda f: (f.created, f.path.name))
    return found


HEARTBEAT_STALE = 60.0


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Lock a journal for replay; yields False when its writer (or a sync) still holds it.

    On this host the lock is the truth: the kernel releases it when the writing process
    dies, however it dies. A journal written on another host (a shared spool folder) whose
    heartbeat is older than a minute is treated as dead as well. A sync that gets the lock
    writes its pid into it, so a second sync can say who holds it.
    """
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            meta = read_json(path / "meta.json") or {}
            if meta.get("host") != socket.gethostname() and heartbeat_age(path) > HEARTBEAT_STALE:
                yield True
            else:
                yield False
            return
        # On a shared folder a lock taken on another host may not be visible here: a
        # journal written elsewhere is alive while its heartbeat is fresh.
        meta = read_json(path / "meta.json") or {}
        host = meta.get("host")
        elsewhere = isinstance(host, str) and host != socket.gethostname()
        if elsewhere and heartbeat_age(path) <= HEARTBEAT_STALE:
            yield False
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"sync {os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)


def holder(path: Path, meta: dict[str, Any]) -> str:
    """Who holds a journal's lock, in words, for "skipped" messages."""
    try:
        words = (path / "lock").read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        words = []
    if len(words) >= 3 and words[0] == "sync" and words[1].isdigit():
        syncing = int(words[1])
        if words[2] == socket.gethostname() and _alive(syncing) and syncing != os.getpid():
            return f"another `tracksdk sync` (pid {syncing}) is sending it"
    pid: Any = meta.get("pid")
    host = meta.get("host")
    if _is_int(pid) and host == socket.gethostname() and _alive(pid):
        if pid == os.getpid():
            return "this process is still writing or sending it"
        return f"its process (pid {pid}) is still running"
    if host != socket.gethostname() and isinstance(host, str):
        return f"it was written on host {host!r}, whose heartbeat is less than a minute old"
    return "another process holds its lock (a sync, or a tracked run sending it)"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def heartbeat_age(path: Path) -> float:
    """Seconds since the writer of the journal was last seen alive."""
    try:
        return time.time() - float((path / "heartbeat").read_text().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return float("inf")


def remove(path: Path) -> None:
    """Delete a journal whose every record reached the store (only a folder of ours)."""
    if is_journal(path):
        shutil.rmtree(path, ignore_errors=True)


def kept_dir(path: Path) -> Path:
    """The folder journals set aside from ``path``'s journal dir go to."""
    parent = path.parent
    return parent if parent.name == KEPT else parent / KEPT


def set_aside(path: Path, reason: str, lines: list[str]) -> Path:
    """Move a journal to ``<journal dir>/kept/`` with a note saying why; its new path.

    It is not sent automatically any more, and never deleted without being asked.
    A journal already there keeps its place; its note is rewritten.
    """
    target = kept_dir(path) / path.name
    if target != path:
        _make_private_dir(target.parent)
        if target.exists():
            target = target.with_name(f"{path.name}.{int(time.time())}")
        try:
            os.rename(path, target)
        except OSError:
            target = path  # kept where it is; the note still says why
    note = "\n".join(
        [
            f"tracksdk kept this journal (run {path.name}): {reason}",
            "",
            *lines,
            "",
            "tracksdk does not send it automatically any more. To send what can still be",
            "sent once the cause is fixed, run `tracksdk sync --rejected` in the project.",
            "Delete this folder when you no longer need it.",
            "",
        ]
    )
    with contextlib.suppress(OSError):
        _write_private(target / KEPT_NOTE, note)
    return target


def write_lines(path: Path, lines: list[str]) -> None:
    """Replace a journal file's lines, atomically, mode 0600."""
    _write_private(path, "".join(line.rstrip("\n") + "\n" for line in lines))


def count_lines(path: Path) -> int:
    """Non-empty lines in a file such as ``rejected.jsonl`` (0 when it is missing)."""
    try:
        with open(path, "rb") as lines:
            return sum(1 for line in lines if line.strip())
    except OSError:
        return 0


def distance(a: Position, b: Position) -> int:
    """Bytes of journal between two positions, for progress bars (segments count full)."""
    return max(0, (b[0] - a[0]) * SEGMENT_SIZE + b[1] - a[1])


def journal_dir(explained: Explained) -> Path:
    """Where this project's journals live: TRACKSDK_JOURNAL__DIR, or .tracksdk/journal."""
    configured = explained.settings.journal.dir
    return Path(configured) if configured else explained.root / ".tracksdk" / "journal"
