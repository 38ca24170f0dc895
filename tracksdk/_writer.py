"""The one path every write to the store takes: into the journal, then to the store.

Each run has a :class:`Writer`. A write is validated by the run, appended to the run's
on-disk journal (:mod:`tracksdk._journal`) and returns; a background
:class:`~tracksdk._sender.Sender` sends it to the store. Nothing here waits on the
network, except :meth:`Writer.flush` and :meth:`Writer.terminate`, which wait a bounded
time (``TRACKSDK_FLUSH_TIMEOUT``).

Artifacts are copied into the journal first (``files/``): the user's file may change or
vanish after the call returns, and the upload may happen in a later process.

Failure policy: a failure never reaches the user's code. A journal that cannot be
written (disk full) is reported by one warning and counted; in strict mode it raises
:class:`~tracksdk.exceptions.TrackingError`, as does a run whose data could not all be
sent when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._journal import folders, layout
from tracksdk._journal.journal import Journal, JournalFull
from tracksdk._journal.records import (
    Create,
    End,
    File,
    Input,
    MetricPoint,
    Metrics,
    Params,
    Record,
    Register,
    Tags,
)
from tracksdk._schema import DROPPED_POINTS_TAG, WRITE_FAILURES_TAG
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._sender import Sender
    from tracksdk.backends import Connection


# When the store cannot be reached at a run's end, the wait stops after this many seconds
# without progress, instead of the whole TRACKSDK_FLUSH_TIMEOUT.
STALL_SECONDS = 3.0
# A forked child flushes its own points for at most this long when it exits.
CHILD_EXIT_FLUSH = 10.0

# Every writer of this process, for fork handling (see after_fork_in_child).
_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


class Writer:
    """Journals one run's records; its sender sends them (none when offline)."""

    def __init__(
        self,
        journal: Journal,
        conn: Connection | None,
        *,
        strict: bool,
        flush_timeout: float = 30.0,
        http_timeout: float = 30.0,
        label: str = "",
    ) -> None:
        from tracksdk._sender import WAKE_AFTER, Sender

        self.journal = journal
        self.conn = conn
        self.strict = strict
        self.flush_timeout = flush_timeout
        self.label = label or journal.client_id[:8]
        self.failures = 0  # records the journal could not keep (disk full)
        self.dropped_points = 0  # metric points refused over the journal's cap
        self._wake_after = WAKE_AFTER
        self._since_wake = 0
        self._terminated = False
        self.http_timeout = http_timeout
        self.sender: Sender | None = None
        if conn is not None:
            self.sender = Sender(
                journal.path, conn, journal=journal, http_timeout=http_timeout, label=self.label
            )
        self._warned_degraded = False
        self.had_children = False  # this process forked while the run was live
        self._child_of: Journal | None = None  # set in a forked child until it logs
        self._child_exit_hooked = False
        self._parent_run_id: str | None = None
        self.attach_to: str | None = None  # in a forked child: the parent run's client id
        _writers.add(self)

    @property
    def client_id(self) -> str:
        """The run's client-side id (tag ``tracksdk.client_run_id``)."""
        return self.journal.client_id

    @property
    def run_id(self) -> str | None:
        """MLflow's run id, once the store has created the run."""
        return self.sender.run_id if self.sender is not None else None

    @property
    def offline(self) -> bool:
        """Whether this run is only journaled (``TRACKSDK_MODE=offline``)."""
        return self.sender is None

    def start(self) -> None:
        """Start sending in the background."""
        if self.sender is not None:
            self.sender.start()

    # -- appending -------------------------------------------------------------------

    def _append(self, record: Record, *, droppable: bool = False) -> bool:
        if self._child_of is not None:
            self._start_child()
        try:
            self.journal.append(record, droppable=droppable)
        except JournalFull:
            dropped = len(record.points) if isinstance(record, Metrics) else 1
            self.dropped_points += dropped
            if self.dropped_points == dropped:
                _warn.warn(
                    f"tracksdk: the journal of run {self.label} holds more unsent data than "
                    f"TRACKSDK_JOURNAL__MAX_MB ({self.journal.max_bytes >> 20} MB): new metric "
                    "points are dropped and counted in the run's tracksdk.dropped_points tag "
                    "until the store catches up; params, tags, artifacts and the run's status "
                    "are still kept."
                )
            return False
        except (OSError, ValueError, TypeError) as exc:
            if self.strict:
                raise TrackingError(f"Writing to the journal failed: {exc}") from None
            self.failures += 1
            if self.failures == 1:
                _warn.warn(
                    f"tracksdk: writing to the journal of run {self.label} failed: {exc}. "
                    "Your code goes on; records that could not be kept are counted in the "
                    "run's tracksdk.write_failures tag."
                )
            return False
        self._since_wake += 1
        if self._since_wake >= self._wake_after and self.sender is not None:
            self._since_wake = 0
            self.sender.wake()
        if self.journal.degraded is not None and not self._warned_degraded:
            self.warn_degraded()
        return True

    def warn_degraded(self) -> None:
        """Say once that this run's journal lives in memory, and why."""
        self._warned_degraded = True
        _warn.warn(
            f"tracksdk: the journal of run {self.label} cannot be written "
            f"({self.journal.degraded}). Durability is reduced: its records are kept in "
            "memory and sent to the store while this process lives, but whatever is not "
            "sent when the process dies is lost. Free disk space, or set "
            "TRACKSDK_JOURNAL__DIR to a writable folder."
        )

    def create(self, info: Mapping[str, Any] | Create) -> bool:
        """Journal the run's creation: experiment, name, tags, parent, start time.

        ``info`` is the record, or a mapping of its fields (``experiment``, ``start``,
        ``run_name``, ``tags``, ``parent``, ``parent_run_id``).
        """
        if not isinstance(info, Create):
            info = Create(
                experiment=info["experiment"],
                start=info["start"],
                run_name=info.get("run_name"),
                tags=dict(info.get("tags") or {}),
                parent=info.get("parent"),
                parent_run_id=info.get("parent_run_id"),
            )
        return self._append(info)

    def batch(
        self,
        metrics: Sequence[MetricPoint] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Journal metrics, params and tags."""
        ok = True
        if params:
            ok = self._append(Params(dict(params))) and ok
        if tags:
            ok = self._append(Tags(dict(tags))) and ok
        if metrics:
            points = metrics if isinstance(metrics, list) else list(metrics)
            ok = self._append(Metrics(points), droppable=True) and ok
        return ok

    def _spooled(self, local: Path, artifact_path: str | None) -> bool:
        layout.make_private(local)
        try:
            relative = local.relative_to(self.journal.files_root).as_posix()
        except ValueError:  # spooled outside the journal (full disk): an absolute path
            relative = str(local)
        self.journal.files_bytes += layout.size_of(local)
        return self._append(File(relative, artifact_path or None))

    def _spool(self, name: str, write: Callable[[Path], None]) -> Path:
        """Spool an artifact: in the journal, or in a temp folder when the disk is full."""
        if self._child_of is not None:
            self._start_child()
        local = self.journal.spool(name)
        try:
            write(local)
            return local
        except OSError:
            if not local.is_relative_to(self.journal.files_root):
                raise
            shutil.rmtree(local.parent, ignore_errors=True)
        local = self.journal.spool(name, fallback=True)
        write(local)
        return local

    def _spool_failed(self, exc: Exception, what: str) -> bool:
        if self.strict:
            raise TrackingError(f"Keeping {what} in the journal failed: {exc}") from None
        self.failures += 1
        _warn.warn(f"tracksdk: keeping {what} for upload failed: {exc}. It was not logged.")
        return False

    def text(self, text: str, artifact_file: str) -> bool:
        """Journal a text artifact."""
        folder, name = _split(artifact_file)
        try:
            local = self._spool(name, lambda path: _write_text(path, text))
        except OSError as exc:
            return self._spool_failed(exc, artifact_file)
        return self._spooled(local, folder)

    def texts(self, files: Mapping[str, str]) -> bool:
        """Journal several text artifacts as one upload."""
        if not files:
            return True

        def write(local: Path) -> None:
            for artifact_file, text in files.items():
                path = local / artifact_file
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_text(path, text)

        try:
            local = self._spool("texts", write)
        except OSError as exc:
            return self._spool_failed(exc, "provenance files")
        return self._spooled(local, None)

    def dict(self, data: Mapping[str, Any], artifact_file: str) -> bool:
        """Journal a JSON or YAML artifact (by the file's extension, as MLflow does)."""
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(dict(data), default_flow_style=False)
        else:
            import json

            text = json.dumps(dict(data), indent=2, default=str)
        return self.text(text, artifact_file)

    def artifact(self, path: str, artifact_path: str | None, *, move: bool = False) -> bool:
        """Journal a file or folder: copied (or moved, for tracksdk's own temp files)."""
        source = Path(path)

        def write(local: Path) -> None:
            if move:
                shutil.move(str(source), local)
            elif source.is_dir():
                shutil.copytree(source, local)
            else:
                shutil.copy2(source, local)

        try:
            local = self._spool(source.name or "artifact", write)
        except OSError as exc:
            return self._spool_failed(exc, str(path))
        return self._spooled(local, artifact_path)

    def figure(self, figure: Any, artifact_file: str) -> bool:
        """Journal a matplotlib or plotly figure as an image (or HTML) artifact."""
        folder, name = _split(artifact_file)

        def write(local: Path) -> None:
            if hasattr(figure, "savefig"):
                figure.savefig(local)
            elif name.endswith(".html") and hasattr(figure, "write_html"):
                figure.write_html(str(local))
            elif hasattr(figure, "write_image"):
                figure.write_image(str(local))
            else:
                raise TypeError(f"{type(figure).__name__} is not a matplotlib or plotly figure")

        try:
            local = self._spool(name, write)
        except (OSError, TypeError, ValueError) as exc:
            return self._spool_failed(exc, artifact_file)
        return self._spooled(local, folder)

    def dataset(
        self, data: Any, context: str | None, name: str | None, targets: str | None
    ) -> bool:
        """Journal a dataset input: its digest, schema and profile, computed now."""
        from tracksdk import _mlflow

        try:
            described = _mlflow.describe_dataset(data, name=name, targets=targets)
        except TrackingError as exc:
            return self._spool_failed(exc, "a dataset input")
        return self._append(Input(described, context))

    def register(self, spec: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
        """Journal a registration to be done when the run's data reaches the store."""
        return self._append(Register(dict(spec), dict(metrics)))

    # -- waiting ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything journaled so far is in the store (bounded)."""
        if self.sender is None:
            return False
        self.sender.wake()
        return self.sender.flush(self.flush_timeout if timeout is None else timeout)

    def terminate(self, status: str, timeout: float | None = None) -> bool:
        """End the run with ``status``, then wait (bounded) for the journal to drain.

        When the store cannot be reached the wait ends after a few seconds without
        progress (``STALL_SECONDS``) rather than the whole ``TRACKSDK_FLUSH_TIMEOUT``:
        the journal is then handed to this process's one background drainer, so
        threads and open files do not grow with the number of runs.

        Returns:
            True when every record reached the store; the journal is then deleted.
        """
        if self._terminated:
            return True
        self._terminated = True
        if self._child_of is not None:
            return True  # a forked child that never logged: nothing of it exists
        tags: dict[str, str] = {}
        if self.failures:
            tags[WRITE_FAILURES_TAG] = str(self.failures)
        if self.dropped_points:
            tags[DROPPED_POINTS_TAG] = str(self.dropped_points)
        self._append(End(status, int(time.time() * 1000), tags))
        end = self.journal.position
        self.journal.close()
        if self.attach_to is not None:
            return self._finish_child(end)
        sender = self.sender
        if sender is None:
            self.journal.release()
            _warn.warn(
                f"tracksdk: offline run {self.label} is kept in {self.journal.path}. Upload "
                "it with `tracksdk sync`."
            )
            return False
        sender.wake()
        wait = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        sent = sender.flush(wait, until=end, stall=STALL_SECONDS)
        if sent:
            sender.join(5.0)  # it deletes the journal; a sync must not see it half gone
        if self.had_children and sender.run_id is not None:
            self._drain_children(deadline)
        if not sent:
            self._report_unsent(sender, wait)
            self._hand_over(sender)
        elif not sender.alive:
            self.journal.release()
        if not sent and self.strict:
            raise TrackingError(
                f"run {self.label} could not be sent within {wait:.0f} s; it is kept in "
                f"{self.journal.path} for `tracksdk sync`"
            )
        return sent

    def abandon(self) -> None:
        """The run could not start: stop sending; the journal waits for `tracksdk sync`."""
        self._terminated = True
        if self.sender is not None:
            self.sender.stop()
        self.journal.close()
        self.journal.release()

    def _hand_over(self, sender: Sender) -> None:
        """Leave an unsent journal to the process's drainer (or keep its sender)."""
        if not self.journal.durable:
            return  # only this sender knows the records kept in memory: it goes on
        if sender.stopped:
            self.journal.release()  # refused or rejected: `tracksdk sync` after the fix
            return
        assert self.conn is not None
        sender.stop()
        self.journal.release()
        _drainer().add(
            _Leftover(self.journal.path, self.conn, self.http_timeout, self.label, sender)
        )

    def _report_unsent(self, sender: Sender, wait: float) -> None:
        reason = sender.auth_error or sender.last_error
        because = f" (last error: {reason})" if reason else ""
        where = self.journal.path if self.journal.durable else "this process's memory"
        if sender.auth_error is not None:
            return  # already said, with the credential to fix
        if sender.stopped:
            _warn.warn(
                f"tracksdk: run {self.label} was not sent{because}. It is kept in "
                f"{where}; `tracksdk sync` sends it once the cause is fixed."
            )
            return
        if not self.journal.durable:
            _warn.warn(
                f"tracksdk: run {self.label} was not fully sent within {wait:.0f} s"
                f"{because}. It is kept in memory (the journal's disk could not take it) "
                "and sent while this process lives; what is unsent when it exits is lost."
            )
            return
        if sender.in_outage:
            _warn.warn(
                f"tracksdk: the store cannot be reached{because}. Run {self.label} is kept "
                f"in {where}: it is sent in the background while this process lives, and "
                "by `tracksdk sync` or the next tracked run in this project."
            )
            return
        _warn.warn(
            f"tracksdk: run {self.label} was not fully sent within {wait:.0f} s"
            f"{because}. Nothing is lost: it is kept in {where}, sent in the "
            "background while this process lives, and by `tracksdk sync` or the next "
            "tracked run in this project. TRACKSDK_FLUSH_TIMEOUT sets the wait."
        )

    # -- fork ------------------------------------------------------------------------

    def forked(self) -> None:
        """In a forked child: forget the parent's sender; journal anew on the first write.

        Called by :func:`after_fork_in_child` for every writer the parent had. A child
        that never logs leaves no trace: no folder, no record, no warning.
        """
        if self._terminated:
            return
        self._parent_run_id = self.run_id
        self._child_of = self.journal
        self.sender = None
        self.had_children = False

    def _child_of_memory(self, parent: Journal, meta: Mapping[str, Any]) -> None:
        """A forked child of a run on the memory store: its writes cannot reach the store.

        The store lives in the parent process's memory; the child's copy dies with the
        child. One warning says so; the child's records are kept in memory and dropped.
        """
        self.journal = Journal.in_memory(
            parent.path.parent, {**meta}, max_bytes=parent.max_bytes, reason=None
        )
        self.sender = None
        self.conn = None
        _warn.warn(
            f"tracksdk: a forked child process logged to run {self.label}, whose store is "
            "the memory store of the parent process (TRACKSDK_BACKEND=memory, the default of "
            "tracksdk.testing.capture_runs): the child's data cannot reach it and is dropped. "
            "Capture runs with forked workers with capture_runs(store='sqlite')."
        )

    def _start_child(self) -> None:
        """A forked child's first write: its own journal, adding to the parent's run."""
        from tracksdk._sender import Sender

        parent = self._child_of
        assert parent is not None
        self._child_of = None
        meta = {
            "client_id": layout.new_client_id(),
            "target": parent.meta.get("target"),
            "backend": parent.meta.get("backend"),
            "experiment": parent.meta.get("experiment"),
            "run_name": parent.meta.get("run_name"),
            "parent": None,
            "attach_to": parent.client_id,
        }
        folder = parent.path.parent
        from tracksdk import stores

        if self.conn is not None and not stores.uses_mlflow(self.conn):
            self._child_of_memory(parent, meta)
            return
        try:
            journal = Journal.create(
                folder, meta, max_bytes=parent.max_bytes, memory_fallback=self.conn is not None
            )
        except OSError as exc:
            journal = Journal.in_memory(
                folder, meta, max_bytes=parent.max_bytes, reason=f"{exc.strerror or exc}"
            )
        self.journal = journal
        self.failures = self.dropped_points = 0
        self._warned_degraded = False
        self.attach_to = parent.client_id
        create = Create(
            experiment=str(meta["experiment"] or "Default"),  # as a sync would find it
            start=int(time.time() * 1000),
            attach=parent.client_id,
            run_id=self._parent_run_id,
        )
        with contextlib.suppress(OSError):
            journal.append(create)
        if self.conn is not None:
            self.sender = Sender(
                journal.path,
                self.conn,
                journal=journal,
                http_timeout=self.http_timeout,
                label=f"{self.label} (forked child {os.getpid()})",
            )
            self.sender.start()
        self._hook_child_exit()

    def _hook_child_exit(self) -> None:
        """Send the child's points when it exits: atexit, and multiprocessing's exit."""
        if self._child_exit_hooked:
            return
        self._child_exit_hooked = True

        def finish() -> None:
            if not self._terminated:
                with contextlib.suppress(Exception):
                    self.terminate("FINISHED")

        atexit.register(finish)
        # multiprocessing children leave through os._exit: atexit does not run, but
        # multiprocessing's own finalizers do.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, finish, exitpriority=10)

    def _finish_child(self, end: layout.Position) -> bool:
        """The end of a forked child's part: send it (bounded); the rest waits on disk."""
        sender = self.sender
        if sender is None:
            self.journal.release()
            return False
        sender.wake()
        sent = sender.flush(
            min(self.flush_timeout, CHILD_EXIT_FLUSH),
            until=end,
            progress_delay=None,
            stall=STALL_SECONDS,
        )
        if sent:
            sender.join(5.0)
        else:
            sender.stop()
        # The parent's run end (or `tracksdk sync`) sends what is left once we are gone.
        self.journal.release()
        return sent

    def _drain_children(self, deadline: float) -> None:
        """Send what forked children that have exited left of this run, until ``deadline``."""
        from tracksdk._sender import Sender

        assert self.conn is not None
        for found in folders.find(self.journal.path.parent):
            if found.meta.get("attach_to") != self.client_id:
                continue
            leftover = _Leftover(found.path, self.conn, self.http_timeout, self.label)
            if time.monotonic() >= deadline:
                _drainer().add(leftover)  # the end does not wait any longer for them
                continue
            with folders.claim(found.path) as ours:
                if not ours:
                    continue  # the child still runs and sends its own points
                sender = Sender(
                    found.path,
                    self.conn,
                    http_timeout=self.http_timeout,
                    label=f"{self.label} (forked child)",
                )
                sender.start()
                sender.flush(
                    max(0.5, deadline - time.monotonic()), progress_delay=None, stall=STALL_SECONDS
                )
                sender.stop()
                sender.join(max(0.1, deadline - time.monotonic()))
                done = sender.done
            if not done:
                # A request may still be in flight: the drainer waits for it to finish.
                leftover.previous = sender if sender.alive else None
                _drainer().add(leftover)


def after_fork_in_child() -> None:
    """In a forked child: every live writer forgets the parent's journal and sender."""
    global _the_drainer
    _the_drainer = None
    for writer in list(_writers):
        writer.forked()


def after_fork_in_parent() -> None:
    """The parent forked: its live runs look for their children's journals at the end."""
    for writer in list(_writers):
        if not writer._terminated:
            writer.had_children = True


# -- the drainer: unsent journals of ended runs, one thread per process ----------------


class _Leftover:
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


class _Drainer:
    """Sends ended runs' leftover journals from one daemon thread, one at a time.

    While the store is down, a process that runs many short runs would otherwise keep a
    sender thread, a lock and a mapping per run (docs/offline.md, "Store down at the
    end of a run"). Each journal is claimed with the same lock a sync takes, so a
    ``tracksdk sync`` elsewhere can send it too, exactly once.
    """

    ATTEMPT = 60.0  # seconds per journal per round
    MAX_PAUSE = 60.0

    def __init__(self) -> None:
        self._items: list[_Leftover] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, item: _Leftover) -> None:
        with self._lock:
            self._items.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._main, name="tracksdk-drainer", daemon=True
                )
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

    def _attempt(self, item: _Leftover) -> bool:
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


_the_drainer: _Drainer | None = None
_drainer_lock = threading.Lock()


def _drainer() -> _Drainer:
    global _the_drainer
    with _drainer_lock:
        if _the_drainer is None:
            _the_drainer = _Drainer()
        return _the_drainer


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _split(artifact_file: str) -> tuple[str | None, str]:
    """``"a/b/c.txt"`` -> ``("a/b", "c.txt")``."""
    folder, _, name = artifact_file.replace("\\", "/").rpartition("/")
    return (folder or None), name
