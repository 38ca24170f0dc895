"""Provenance captured off the run's critical path.

Git (two subprocesses), the source files and the installed packages take longer than
creating the run itself. A :class:`Capture` collects them in a thread of its own while the
run is created and the body starts, then journals them like any other record: tags the
run does not already have (a tag the user set wins), and the texts as artifacts. The
session joins it before the run ends, so the run holds the same records as if they had
been captured first; a capture still running then (a huge repository) is waited for,
within a bound.

Captures run one after the other on one daemon worker thread per process, started at the
first run: starting a thread costs milliseconds on a busy machine, queueing a capture
microseconds. A forked child gets a worker of its own when it needs one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk._threads import Thread

if TYPE_CHECKING:
    from tracksdk._writer import Writer
    from tracksdk.provenance import Provenance
    from tracksdk.settings import Explained

__all__ = ["Capture"]


class Capture:
    """Collects one run's provenance in the background and journals it.

    Args:
        explained: The run's resolved settings (``capture.*`` says what to collect).
        source_file: The file defining the tracked function, or None.
        writer: The run's writer, where the records go.
        existing_tags: Tags the run was created with: provenance does not override them.
    """

    def __init__(
        self,
        explained: Explained,
        source_file: str | None,
        writer: Writer,
        existing_tags: Collection[str],
    ) -> None:
        self._explained = explained
        self._source_file = source_file
        self._argv = list(sys.argv)  # as it is now: the body may change sys.argv
        self._writer = writer
        self._existing = frozenset(existing_tags)
        self._lock = threading.Lock()
        self._closed = False  # set when the session stops waiting: nothing is written after
        self._done = threading.Event()
        self._pid = os.getpid()
        self.warnings: list[str] = []

    def start(self) -> None:
        """Queue the capture on the process's provenance worker."""
        _submit(self._run)

    def join(self, timeout: float) -> list[str]:
        """Wait for the records to be journaled; return the capture's warnings.

        After ``timeout`` the capture is given up: nothing more is journaled, and a warning
        says what was missed. Safe to call more than once. A forked child (leaving the
        parent's block too) does not wait: the worker thread is not in it, the parent
        journals the capture.
        """
        if os.getpid() != self._pid:
            with self._lock:
                self._closed = True
            return []
        self._done.wait(timeout)
        with self._lock:
            if not self._closed and not self._done.is_set():
                self.warnings.append(
                    f"Provenance (git, source files, packages) took longer than {timeout:.0f} s "
                    "and was not recorded. Turn parts of it off with TRACKSDK_CAPTURE__*."
                )
            self._closed = True
            warnings, self.warnings = self.warnings, []
        return warnings

    def _collect(self) -> Provenance:
        from tracksdk import _redact
        from tracksdk.provenance import CaptureOptions, collect

        argv0 = self._argv[0] if self._argv else ""
        entry = Path(argv0) if argv0 and Path(argv0).is_file() else None
        function_file = Path(self._source_file) if self._source_file else None
        # Datasets are recorded by the run's start (tracksdk/_lineage.py), not here.
        capture = self._explained.settings.capture.model_dump(exclude={"datasets"})
        options = CaptureOptions(**capture)
        return collect(
            options,
            entry_script=entry,
            function_file=function_file,
            argv=self._argv,
            redact=_redact.redact,
        )

    def _run(self) -> None:
        try:
            self._main()
        finally:
            self._done.set()

    def _main(self) -> None:
        # Nothing may escape this thread: collect never raises, and a journal failure is
        # the writer's to report (strict mode raises it in the user's next call instead).
        try:
            provenance = self._collect()
        except Exception as exc:
            with self._lock:
                self.warnings.append(f"Provenance could not be captured: {_describe(exc)}")
            return
        with self._lock:
            if self._closed:
                return
            self.warnings.extend(provenance.warnings)
            tags = {k: v for k, v in provenance.tags.items() if k not in self._existing}
            try:
                if tags:
                    self._writer.batch(tags=tags)
                if provenance.texts:
                    self._writer.texts(provenance.texts)
            except Exception as exc:
                self.warnings.append(f"Provenance could not be journaled: {_describe(exc)}")
            sender = self._writer.sender
            if sender is not None:
                sender.wake()  # sent while the body runs, not at its end


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


# The process's provenance worker: one daemon thread taking captures from a queue.
_lock = threading.Lock()
_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_worker_pid = 0  # the process whose worker is running (0: none yet)


def _submit(job: Callable[[], None]) -> None:
    global _worker_pid
    with _lock:
        if _worker_pid != os.getpid():
            _worker_pid = os.getpid()
            Thread(_work, name="tracksdk-provenance", args=(_queue,)).start()
        _queue.put(job)


def _work(jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
    while True:
        job = jobs.get()
        # A job reports its own failures; the worker must live on whatever happens.
        with contextlib.suppress(BaseException):
            job()


def after_fork_in_child() -> None:
    """In a forked child: no worker (it was the parent's thread), a fresh queue and lock."""
    global _lock, _queue, _worker_pid
    _lock = threading.Lock()
    _queue = queue.SimpleQueue()
    _worker_pid = 0
