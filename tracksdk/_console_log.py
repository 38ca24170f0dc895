"""The artifact ``logs/console.log``, built by the sender from a journal's Output records.

The sender of a run (live, or ``tracksdk sync`` after a crash) appends each
:class:`~tracksdk._journal.records.Output` record to files in the journal's
``files/console/`` folder, and uploads the assembled log as ``logs/console.log``: about
every ``UPLOAD_EVERY`` seconds while the run prints, and once more at its end. An upload
to the same artifact path replaces the previous one, on the local and HTTP stores alike.

The log is bounded by ``TRACKSDK_CONSOLE_MAX_MB`` (read from the journal's meta.json, so
that ``tracksdk sync`` builds it as the run would have): the first half of it, a line
saying how many bytes were left out, and the last half. The folder holds:

- ``head.log``: the first half, ending at a line's end;
- ``tail.log``: what followed, trimmed to its last half once it grows to twice that;
- ``state.json``: the journal position of the last record added, the files' sizes, the
  bytes trimmed away, and the run the log was last uploaded to. A record at or before
  that position is not added again (a resend after a crash), and bytes appended after
  the state was written are cut off when the folder is opened again;
- ``upload/console.log``: the log as last uploaded.

A continued run (resume) adds to the log its earlier process left: :func:`fetch_previous`
reads it from the store and :meth:`ConsoleLog.adopt` puts it first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk._journal import layout
from tracksdk._journal.layout import START, Position

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal
    from tracksdk.backends import Connection
    from tracksdk.stores import Store

ARTIFACT_DIR = "logs"
ARTIFACT = "logs/console.log"
UPLOAD_EVERY = 30.0  # seconds between two uploads of a log that grows
DEFAULT_MAX_BYTES = 10 << 20  # TRACKSDK_CONSOLE_MAX_MB's default


def _char_start(data: bytes, index: int) -> int:
    """``index``, moved back to the start of the UTF-8 character it falls in."""
    while 0 < index < len(data) and (data[index] & 0xC0) == 0x80:
        index -= 1
    return index


class ConsoleLog:
    """One run's console log being assembled in a folder, and its uploads.

    Args:
        folder: Where its files are.
        max_bytes: The bound of the uploaded log (``TRACKSDK_CONSOLE_MAX_MB``).
        temporary: The folder is a temporary one (the journal lives in memory): it is
            removed after the last upload.
    """

    def __init__(self, folder: Path, max_bytes: int, *, temporary: bool = False) -> None:
        self.folder = folder
        self.temporary = temporary
        self.head_limit = max(1, max_bytes // 2)
        self.tail_limit = max(1, max_bytes - self.head_limit)
        layout.make_private_dir(folder)
        state = layout.read_json(folder / "state.json") or {}
        applied = state.get("applied")
        self.applied: Position = (int(applied[0]), int(applied[1])) if applied else START
        self.head = int(state.get("head", 0))
        self.head_full = bool(state.get("head_full", False))
        self.tail = int(state.get("tail", 0))
        self.trimmed = int(state.get("trimmed", 0))
        self.dirty = bool(state.get("dirty", False))  # added to since the last upload
        self.uploaded_to: str | None = state.get("uploaded_to")
        # The first upload comes after UPLOAD_EVERY: a short run uploads once, at its end.
        self._uploaded_at = time.monotonic()
        self.head = self._reconcile("head.log", self.head)
        self.tail = self._reconcile("tail.log", self.tail)

    @classmethod
    def open(cls, path: Path, journal: Journal | None) -> ConsoleLog:
        """The log of the journal at ``path`` (a live run's ``journal``, or None)."""
        meta = journal.meta if journal is not None else layout.read_json(path / "meta.json")
        max_bytes = int((meta or {}).get("console_max_bytes") or DEFAULT_MAX_BYTES)
        if journal is None or journal.durable:
            with contextlib.suppress(OSError):
                return cls(path / "files" / "console", max_bytes)
        folder = Path(tempfile.mkdtemp(prefix="tracksdk-console-"))
        return cls(folder, max_bytes, temporary=True)

    @classmethod
    def existing(cls, path: Path) -> ConsoleLog | None:
        """The log an earlier process began in the journal at ``path``, if there is one."""
        if not (path / "files" / "console" / "state.json").is_file():
            return None
        return cls.open(path, None)

    def _reconcile(self, name: str, size: int) -> int:
        """Cut off what was appended after the state was written (a crash between)."""
        path = self.folder / name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            actual = 0
        if actual > size:
            os.truncate(path, size)
        elif actual < size:  # a trim replaced the file, its state was not written
            self.trimmed += size - actual
        return min(actual, size)

    def _save(self) -> None:
        layout.write_json(
            self.folder / "state.json",
            {
                "applied": list(self.applied),
                "head": self.head,
                "head_full": self.head_full,
                "tail": self.tail,
                "trimmed": self.trimmed,
                "dirty": self.dirty,
                "uploaded_to": self.uploaded_to,
            },
        )

    def _append(self, name: str, data: bytes) -> None:
        fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, layout.FILE_MODE)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    # -- adding --------------------------------------------------------------------------

    def add(self, text: str, position: Position | None = None) -> None:
        """Add the text of one Output record, which ends at journal ``position``.

        A record at or before the last one added is skipped: it was added before a crash
        or a restart. Records resent from ``rejected.jsonl`` (at ``START``) are added.

        Raises:
            OSError: The folder cannot be written.
        """
        if position is not None and position != START and position <= self.applied:
            return
        data = text.encode("utf-8", "replace")
        if not self.head_full:
            room = self.head_limit - self.head
            cut = len(data)
            if cut > room:  # the head ends at the last line's end that fits
                self.head_full = True
                cut = data.rfind(b"\n", 0, room) + 1
                if cut == 0 and self.head == 0:  # one line longer than the head
                    cut = _char_start(data, room)
            self._append("head.log", data[:cut])
            self.head += cut
            data = data[cut:]
        if data:
            self._append("tail.log", data)
            self.tail += len(data)
            if self.tail > 2 * self.tail_limit:
                self._trim()
        if position is not None and position != START:
            self.applied = position
        self.dirty = True
        self._save()

    def _trim(self) -> None:
        """Keep the last ``tail_limit`` bytes of ``tail.log``, from a line's start."""
        keep_from = self._tail_view_start()
        path = self.folder / "tail.log"
        tmp = self.folder / ".tail.log.tmp"
        with path.open("rb") as source, tmp.open("wb") as target:
            source.seek(keep_from)
            shutil.copyfileobj(source, target)
        os.chmod(tmp, layout.FILE_MODE)
        os.replace(tmp, path)
        self.trimmed += keep_from
        self.tail -= keep_from

    def _tail_view_start(self) -> int:
        """Where the last ``tail_limit`` bytes of ``tail.log`` begin, at a line's start."""
        if self.tail <= self.tail_limit:
            return 0
        start = self.tail - self.tail_limit
        with (self.folder / "tail.log").open("rb") as file:
            file.seek(start)
            window = file.read(self.tail_limit)
        newline = window.find(b"\n")
        if 0 <= newline < len(window) - 1:
            return start + newline + 1
        skip = 0
        while skip < len(window) and (window[skip] & 0xC0) == 0x80:
            skip += 1
        return start + skip

    def adopt(self, previous: str | None, note: str | None = None) -> None:
        """Put the log of an earlier part of the run first (resume), then ``note``.

        Only a log nothing was added to yet adopts: the earlier part is never repeated.
        Nothing happens when there is no earlier log (``previous`` None or empty).
        """
        if not previous or self.head or self.tail or self.applied != START:
            return
        self.add(previous if previous.endswith("\n") else previous + "\n")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.add(note or f"[tracksdk: the run continues here, {stamp}]\n")

    # -- uploading -----------------------------------------------------------------------

    @property
    def left_out(self) -> int:
        """Bytes of output between the head and the tail that the log does not hold."""
        return self.trimmed + self._tail_view_start()

    def build(self) -> Path:
        """Write the log as it is uploaded: head, what was left out, tail."""
        target = self.folder / "upload" / "console.log"
        layout.make_private_dir(target.parent)
        left_out = self.left_out
        with target.open("wb") as out:
            ends_line = True
            if self.head:
                with (self.folder / "head.log").open("rb") as head:
                    shutil.copyfileobj(head, out)
                    head.seek(-1, os.SEEK_END)
                    ends_line = head.read(1) == b"\n"
            if left_out:
                half = self.tail_limit / (1 << 20)
                out.write(
                    f"{'' if ends_line else chr(10)}[tracksdk: {left_out} bytes of console "
                    f"output left out here; logs/console.log keeps the first and the last "
                    f"{half:g} MB (TRACKSDK_CONSOLE_MAX_MB)]\n".encode()
                )
            if self.tail:
                with (self.folder / "tail.log").open("rb") as tail:
                    tail.seek(left_out - self.trimmed)
                    shutil.copyfileobj(tail, out)
        os.chmod(target, layout.FILE_MODE)
        return target

    def due(self) -> bool:
        """Whether the log grew and was last uploaded ``UPLOAD_EVERY`` seconds ago or more."""
        return self.dirty and time.monotonic() - self._uploaded_at >= UPLOAD_EVERY

    def needs_upload(self, run_id: str) -> bool:
        """Whether the run ``run_id`` lacks the log as it is now (its end uploads it)."""
        has_text = bool(self.head or self.tail)
        return has_text and (self.dirty or self.uploaded_to != run_id)

    def upload(self, transport: Store, run_id: str) -> None:
        """Upload the log as ``logs/console.log`` of ``run_id``, replacing the last one.

        Raises:
            StoreError: The store's failure (the caller decides to retry or give up).
            OSError: The folder cannot be read.
        """
        self._uploaded_at = time.monotonic()  # a failure waits as long as a success
        transport.upload(run_id, str(self.build()), ARTIFACT_DIR)
        self.dirty = False
        self.uploaded_to = run_id
        with contextlib.suppress(OSError):
            self._save()

    def discard(self) -> None:
        """Remove a temporary folder once its log is uploaded."""
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def fetch_previous(conn: Connection, run_id: str) -> str | None:
    """The run's ``logs/console.log`` as the store has it; None when it has none.

    For a run continued by a later process (resume): its log goes on after this.

    Raises:
        StoreError: The store could not be asked (the caller retries: a log must not
            be started anew over one that exists).
    """
    from tracksdk import stores

    if not stores.uses_mlflow(conn):
        return None  # the memory store dies with its process: nothing to continue
    from tracksdk.stores._client import classified, mlflow_client

    client = mlflow_client(conn)
    with classified(conn, "Reading the run's logs/console.log", "run"):
        names = {info.path for info in client.list_artifacts(run_id, ARTIFACT_DIR)}
        if ARTIFACT not in names:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, ARTIFACT, tmp)
            return Path(local).read_text(encoding="utf-8", errors="replace")
