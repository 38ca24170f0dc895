"""The journal dir: finding journals, claiming one for replay, setting one aside.

tracksdk only reads, sends, moves or deletes folders that hold its marker file
(``tracksdk-journal``): anything else under the journal dir is left alone. Journals that
cannot be finished normally are moved to ``<journal dir>/kept/`` with a ``KEPT.txt`` note
saying why (damaged, refused requests, deleted run or experiment).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracksdk._journal.layout import (
    FILE_MODE,
    FORMAT,
    KEPT,
    KEPT_NOTE,
    MAGIC,
    MARKER,
    make_private_dir,
    read_json,
    segment_numbers,
    write_private,
)

_CLIENT_ID = re.compile(r"[0-9a-f]{32}")
_MARKER = re.compile(re.escape(MAGIC) + r" ([1-9][0-9]{0,5})")  # "tracksdk journal <format>"
HEARTBEAT_STALE = 60.0


def journal_format(path: Path) -> int | None:
    """The journal format of folder ``path``, or None when it is not a journal of tracksdk.

    A folder whose marker names a format: that one. A folder without a marker is a
    journal of the release before the marker (format 1) when its meta.json says format 1
    with the folder's name as its client id, and it holds at least one segment file.
    Anything else is not tracksdk's: left alone.
    """
    try:
        if not path.is_dir() or path.is_symlink():
            return None
        marker = (path / MARKER).read_text(encoding="utf-8")[:100]
    except FileNotFoundError:
        meta = read_json(path / "meta.json")
        legacy = (
            meta is not None
            and meta.get("format") == 1
            and meta.get("client_id") == path.name
            and _CLIENT_ID.fullmatch(path.name) is not None
            and bool(segment_numbers(path))
        )
        return 1 if legacy else None
    except (OSError, UnicodeDecodeError):
        return None
    named = _MARKER.fullmatch(marker.strip())
    return int(named.group(1)) if named else None


def is_journal(path: Path) -> bool:
    """Whether ``path`` is a journal folder tracksdk created and this tracksdk reads."""
    return journal_format(path) == FORMAT


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


@dataclass(frozen=True)
class Newer:
    """A journal folder written by a newer tracksdk, in a format this one cannot read.

    It is never read, sent, moved or deleted: a newer tracksdk sends it.
    """

    path: Path
    format: int

    def describe(self) -> str:
        """What it is and what to do, for ``tracksdk sync`` and the automatic sync."""
        return (
            f"journal {self.path} was written by a newer tracksdk (journal format "
            f"{self.format}); this tracksdk reads format {FORMAT}: upgrade tracksdk to "
            "send it"
        )


def scan(folder: Path) -> tuple[list[Found], list[Newer]]:
    """The journals under ``folder``: those this tracksdk reads, and those it cannot.

    The first list is oldest first (parents before their children); the second lists
    the folders a newer tracksdk wrote (see :class:`Newer`), by name.
    """
    found: list[Found] = []
    newer: list[Newer] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return [], []
    for path in entries:
        version = journal_format(path)
        if version == FORMAT:
            found.append(Found(path, read_json(path / "meta.json") or {}))
        elif version is not None and version > FORMAT:
            newer.append(Newer(path, version))
    found.sort(key=lambda f: (f.created, f.path.name))
    newer.sort(key=lambda n: n.path.name)
    return found, newer


def find(folder: Path) -> list[Found]:
    """Every journal under ``folder`` this tracksdk reads, oldest first (see :func:`scan`)."""
    return scan(folder)[0]


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Lock a journal for replay; yields False when its writer (or a sync) still holds it.

    On this host the lock is the truth: the kernel releases it when the writing process
    dies, however it dies. A journal written on another host (a shared spool folder) whose
    heartbeat is older than a minute is treated as dead as well. A sync that gets the lock
    writes its pid into it, so a second sync can say who holds it.
    """
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        make_private_dir(target.parent)
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
        write_private(target / KEPT_NOTE, note)
    return target
