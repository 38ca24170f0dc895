"""A run's end when the store has not taken everything: the warning, and the drainer.

When the store cannot take a run's last records within the run's end wait
(``TRACKSDK_FLUSH_TIMEOUT``, or a few seconds without progress while the store cannot be
reached), one warning says where they are kept, and the journal is handed to this
process's one drainer: a daemon thread that sends ended runs' leftover journals one at a
time (docs/offline.md, "Store down at the end of a run").
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk import _warn
from tracksdk._journal import folders
from tracksdk._threads import Thread

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal
    from tracksdk._sender import Sender
    from tracksdk.backends import Connection

# When the store cannot be reached at a run's end, the wait stops after this many seconds
# without progress, instead of the whole TRACKSDK_FLUSH_TIMEOUT.
STALL_SECONDS = 3.0


def report_unsent(sender: Sender, journal: Journal, label: str, wait: float) -> None:
    """Say once why a run's journal was not sent in full at its end, and where it is."""
    reason = sender.auth_error or sender.last_error
    because = f" (last error: {reason})" if reason else ""
    where = journal.path if journal.durable else "this process's memory"
    if sender.auth_error is not None:
        return  # already said, with the credential to fix
    if sender.stopped:
        _warn.warn(
            f"tracksdk: run {label} was not sent{because}. It is kept in "
            f"{where}; `tracksdk sync` sends it once the cause is fixed."
        )
        return
    if not journal.durable:
        _warn.warn(
            f"tracksdk: run {label} was not fully sent within {wait:.0f} s"
            f"{because}. It is kept in memory (the journal's disk could not take it) "
            "and sent while this process lives; what is unsent when it exits is lost."
        )
        return
    if sender.in_outage:
        _warn.warn(
            f"tracksdk: the store cannot be reached{because}. Run {label} is kept "
            f"in {where}: it is sent in the background while this process lives, and "
            "by `tracksdk sync` or the next tracked run in this project."
        )
        return
    _warn.warn(
        f"tracksdk: run {label} was not fully sent within {wait:.0f} s"
        f"{because}. Nothing is lost: it is kept in {where}, sent in the "
        "background while this process lives, and by `tracksdk sync` or the next "
        "tracked run in this project. TRACKSDK_FLUSH_TIMEOUT sets the wait."
    )


def hand_over(
    journal: Journal, sender: Sender, conn: Connection, http_timeout: float, label: str
) -> None:
    """Leave an ended run's unsent journal to the process's drainer (or keep its sender)."""
    if not journal.durable:
        return  # only this sender knows the records kept in memory: it goes on
    if sender.stopped:
        journal.release()  # refused or rejected: `tracksdk sync` after the fix
        return
    sender.stop()
    journal.release()
    drainer().add(Leftover(journal.path, conn, http_timeout, label, sender))


class Leftover:
    """An ended run's journal the store did not take in time."""

    def __init__(
        self,
        path: Path,
        conn: Connection,
        http_timeout: float,
        label: str,
        sender: Sender | None = None,
    ) -> None:
        self.path = path
        self.conn = conn
        self.http_timeout = http_timeout
        self.label = label
        self.previous = sender  # the run's own sender, stopping: wait until it is gone


class Drainer:
    """Sends ended runs' leftover journals from one daemon thread, one at a time.

    While the store is down, a process that runs many short runs would otherwise keep a
    sender thread, a lock and a mapping per run (docs/offline.md, "Store down at the
    end of a run"). Each journal is claimed with the same lock a sync takes, so a
    ``tracksdk sync`` elsewhere can send it too, exactly once.
    """

    ATTEMPT = 60.0  # seconds per journal per round
    MAX_PAUSE = 60.0

    def __init__(self) -> None:
        self._items: list[Leftover] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, item: Leftover) -> None:
        """Send ``item`` from the drainer's thread (started when it is not running)."""
        with self._lock:
            self._items.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = Thread(self._main, name="tracksdk-drainer")
                self._thread.start()
        self._wake.set()

    def _main(self) -> None:
        pause = 1.0
        while True:
            with self._lock:
                items = list(self._items)
                if not items:
                    self._thread = None
                    return
            progressed = False
            for item in items:
                try:
                    finished = self._attempt(item)
                except Exception:  # never let one journal stop the others
                    finished = False
                if finished:
                    progressed = True
                    with self._lock:
                        self._items.remove(item)
            pause = 1.0 if progressed else min(pause * 2, self.MAX_PAUSE)
            self._wake.wait(pause)
            self._wake.clear()

    def _attempt(self, item: Leftover) -> bool:
        """Try to send one journal; True when it is gone (sent, or taken elsewhere)."""
        from tracksdk._sender import Sender

        previous = item.previous
        if previous is not None and previous.alive:
            return False  # finishing its last request
        if not item.path.exists():
            return True
        with folders.claim(item.path) as ours:
            if not ours:
                return False
            sender = Sender(item.path, item.conn, http_timeout=item.http_timeout, label=item.label)
            sender.start()
            sender.flush(self.ATTEMPT, progress_delay=None, stall=STALL_SECONDS)
            # Refused (credentials, a rejected create): left for `tracksdk sync`.
            gave_up = sender.stopped
            sender.stop()
            sender.join(item.http_timeout + 1)
            return sender.done or gave_up


_the_drainer: Drainer | None = None
_drainer_lock = threading.Lock()


def drainer() -> Drainer:
    """This process's drainer (started at its first journal)."""
    global _the_drainer
    with _drainer_lock:
        if _the_drainer is None:
            _the_drainer = Drainer()
        return _the_drainer


def after_fork_in_child() -> None:
    """In a forked child: the parent's drainer does not run here (see tracksdk._fork)."""
    global _the_drainer, _drainer_lock
    _drainer_lock = threading.Lock()
    _the_drainer = None
