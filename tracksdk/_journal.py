"""The on-disk journal: every record of a run, kept until the store has acknowledged it.

One folder per run, ``<journal dir>/<client run id>/`` (mode 0700, files 0600)::

    meta.json        who wrote it: client run id, pid, host, target store, start time
    lock             flock-ed by the process writing the run, or by a sync replaying it
    heartbeat        the time the writer was last seen alive (for journals on other hosts)
    seg-000001.log   the records, appended in order (see below)
    ack              "<segment> <offset>": everything before it reached the store
    created.json     the store and MLflow run id the run was created as
    files/           artifacts waiting to be uploaded (copies: the user's file may change)

Records are JSON arrays in segment files that are preallocated and memory-mapped. An
append is a copy into the mapping: no system call, so the training thread never gives up
the GIL and never waits on the disk. The pages belong to the kernel, so a record survives
the process being killed (SIGKILL, a crash, the OOM killer); it does not survive a power
cut before the kernel writes it back. Each record is framed as ``<length u32><crc32 u32>``
then the payload. The payload is written before its header, so a reader sees either the
whole record or nothing; a torn or zero header ends the segment. A header of
``0xFFFFFFFF`` means "continued in the next segment". docs/offline.md explains why this
format rather than sqlite.

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
from typing import Any

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
        cls, folder: Path, meta: dict[str, Any], *, max_bytes: int, reason: str
    ) -> Journal:
        """A journal that keeps its records in memory: the disk cannot take them.

        The run is still delivered while the process lives; what the store has not taken
        when the process dies is lost, so the caller warns once.
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
        with contextlib.suppress(OSError):
            _write_private(self.path / "heartbeat", f"{time.time():.3f}\n")

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

    def read(self, limit: int = 1000) -> list[Entry]:
        """Return up to ``limit`` records after the current position."""
        journal = self._journal
        memory = journal._memory
        if self._memory_position is None:
            if memory is None or self._disk.position[0] < memory.segment:
                entries = self._disk.read(limit)
                if entries or memory is None or self._disk.position[0] < memory.segment:
                    return entries
            self._memory_position = (memory.segment, 0)
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


def after_fork_in_child() -> list[Journal]:
    """Drop the parent's journals in a forked child; return them (the runs they hold)."""
    global _heart, _live_lock
    _live_lock = threading.Lock()
    _heart = None
    inherited = list(_live)
    _live.clear()
    for journal in inherited:
        journal.abandon_in_child()
    return inherited


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


class Reader:
    """Reads records in order from a journal folder, live or after its writer died."""

    def __init__(self, path: Path, start: Position = START) -> None:
        self.path = path
        self.position = start
        self._mm: mmap.mmap | None = None
        self._mapped = 0
        self.torn = False  # a record that failed its checksum ended the journal

    def _map(self, number: int) -> mmap.mmap | None:
        if self._mm is not None and self._mapped == number:
            return self._mm
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        try:
            fd = os.open(self.path / _segment_name(number), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_size == 0:
                return None
            self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self._mapped = number
        return self._mm

    def read(self, limit: int = 1000) -> list[Entry]:
        """Return up to ``limit`` complete records after the current position."""
        out: list[Entry] = []
        segment, offset = self.position
        while len(out) < limit:
            mm = self._map(segment)
            if mm is None or offset + _HEADER.size > len(mm):
                break
            size, crc = _HEADER.unpack_from(mm, offset)
            if size == _NEXT:
                segment, offset = segment + 1, 0
                self.position = (segment, offset)
                continue
            if size == 0 or offset + _HEADER.size + size > len(mm):
                break
            payload = mm[offset + _HEADER.size : offset + _HEADER.size + size]
            if zlib.crc32(payload) != crc:
                self.torn = True
                break
            offset += _HEADER.size + size
            self.position = (segment, offset)
            out.append(Entry(json.loads(payload), self.position))
        return out

    def close(self) -> None:
        """Unmap the current segment."""
        if self._mm is not None:
            self._mm.close()
            self._mm = None


def read_ack(path: Path) -> Position:
    """The position up to which the store has acknowledged everything."""
    try:
        segment, offset = (path / "ack").read_text().split()[:2]
        return (int(segment), int(offset))
    except (OSError, ValueError):
        return START


def read_ended(path: Path) -> bool:
    """Whether the store acknowledged the run's end (the journal awaits deletion only)."""
    try:
        return (path / "ack").read_text().split()[2:3] == ["ended"]
    except OSError:
        return False


def write_ack(path: Path, position: Position, *, ended: bool = False) -> None:
    """Record that everything before ``position`` reached the store; drop old segments."""
    marker = " ended" if ended else ""
    _write_private(path / "ack", f"{position[0]} {position[1]}{marker}\n")
    for old in path.glob("seg-*.log"):
        try:
            number = int(old.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        if number < position[0]:
            with contextlib.suppress(OSError):
                old.unlink()


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a small JSON file of the journal, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file of the journal, atomically, mode 0600."""
    _write_private(path, json.dumps(data, indent=1))


# -- finding journals ----------------------------------------------------------------


@dataclass
class Found:
    """A journal on disk, as a sync sees it."""

    path: Path
    meta: dict[str, Any]

    @property
    def client_id(self) -> str:
        """The run's client-side id."""
        return str(self.meta.get("client_id", self.path.name))


def find(folder: Path) -> list[Found]:
    """Every journal under ``folder``, oldest first (parents before their children)."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        meta = read_json(path / "meta.json")
        if meta is None or not path.is_dir():
            continue
        found.append(Found(path, meta))
    found.sort(key=lambda f: (float(f.meta.get("created", 0.0)), f.path.name))
    return found


HEARTBEAT_STALE = 60.0


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Lock a journal for replay; yields False when its writer (or a sync) still holds it.

    On this host the lock is the truth: the kernel releases it when the writing process
    dies, however it dies. A journal written on another host (a shared spool folder) whose
    heartbeat is older than a minute is treated as dead as well.
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
        yield True
    finally:
        os.close(fd)


def heartbeat_age(path: Path) -> float:
    """Seconds since the writer of the journal was last seen alive."""
    try:
        return time.time() - float((path / "heartbeat").read_text().strip())
    except (OSError, ValueError):
        return float("inf")


def remove(path: Path) -> None:
    """Delete a journal whose every record reached the store."""
    shutil.rmtree(path, ignore_errors=True)
