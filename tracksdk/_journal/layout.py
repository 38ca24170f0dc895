"""The files of a journal folder: names, modes, the ack and the small JSON files.

Everything here is about bytes on disk, shared by the writing side
(:mod:`tracksdk._journal.journal`), the readers (:mod:`tracksdk._journal.reader`) and the
code that finds and moves journal folders (:mod:`tracksdk._journal.folders`). The layout
of a folder is described in :mod:`tracksdk._journal`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk.settings import Explained

# -- the format ----------------------------------------------------------------------

SEGMENT_SIZE = 4 << 20
# Each record is framed as <length u32><crc32 u32> then the payload; a length of NEXT
# means "continued in the next segment".
HEADER = struct.Struct("<II")
NEXT = 0xFFFFFFFF
SYNC = b'["'  # every payload starts with it: the reader resynchronises on it
DIR_MODE = 0o700
FILE_MODE = 0o600

Position = tuple[int, int]  # (segment number, byte offset)
START: Position = (1, 0)

FORMAT = 1  # the journal format this tracksdk writes and reads (in the marker file)
MARKER = "tracksdk-journal"
MAGIC = "tracksdk journal"
KEPT = "kept"  # journals set aside: damaged, refused requests, deleted run or experiment
KEPT_NOTE = "KEPT.txt"
_SEGMENT = re.compile(r"seg-(\d{6})\.log")


def new_client_id() -> str:
    """A run id chosen by the client, so a retried or replayed create is recognised."""
    return uuid.uuid4().hex


def segment_name(number: int) -> str:
    """``seg-000001.log``: the file of segment ``number``."""
    return f"seg-{number:06d}.log"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def make_private_dir(path: Path) -> None:
    """Create a folder (and its parents), mode 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask, and exist_ok leaves an older folder as it was.
    with contextlib.suppress(OSError):
        os.chmod(path, DIR_MODE)


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
            os.chmod(item, DIR_MODE if item.is_dir() else FILE_MODE)


# -- freeing disk space ----------------------------------------------------------------

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_fallocate: Any = None


def punch_hole(fd: int, offset: int, length: int) -> bool:
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


# -- the files of a journal folder -------------------------------------------------------


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
    write_private(path / "ack", f"{position[0]} {position[1]}{marker}\n")
    for number in segment_numbers(path):
        if number < position[0]:
            with contextlib.suppress(OSError):
                (path / segment_name(number)).unlink()


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a small JSON file of the journal, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file of the journal, atomically, mode 0600."""
    write_private(path, json.dumps(data, indent=1))


def append_line(path: Path, text: str) -> None:
    """Append a line to a journal file, created mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
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


def write_marker(path: Path) -> None:
    """Mark ``path`` as a journal folder that tracksdk created."""
    write_private(path / MARKER, f"{MAGIC} {FORMAT}\n")


def write_lines(path: Path, lines: list[str]) -> None:
    """Replace a journal file's lines, atomically, mode 0600."""
    write_private(path, "".join(line.rstrip("\n") + "\n" for line in lines))


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
