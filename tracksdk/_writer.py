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
sent when it ends (:mod:`tracksdk._drainer` says where it is kept, and sends it later).
A forked child's writes go to a journal of its own (:mod:`tracksdk._forked`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _drainer, _forked, _warn
from tracksdk._drainer import STALL_SECONDS
from tracksdk._forked import after_fork_in_child as after_fork_in_child
from tracksdk._forked import after_fork_in_parent as after_fork_in_parent
from tracksdk._journal import layout
from tracksdk._journal.journal import Journal, JournalFull
from tracksdk._journal.records import (
    Create,
    End,
    File,
    Input,
    MetricPoint,
    Metrics,
    Output,
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
        self.input_digests: set[str] = set()  # dataset inputs recorded (by digest)
        self._wake_after = WAKE_AFTER
        self._since_wake = 0
        self.terminated = False
        self.http_timeout = http_timeout
        self.sender: Sender | None = None
        if conn is not None:
            self.sender = Sender(
                journal.path, conn, journal=journal, http_timeout=http_timeout, label=self.label
            )
        self.warned_degraded = False
        # Fork (tracksdk._forked): in a forked child, the parent's journal until the
        # child's first write, the parent's run, and the run the child's journal adds to.
        self.had_children = False  # this process forked while the run was live
        self.child_of: Journal | None = None
        self.parent_run_id: str | None = None
        self.attach_to: str | None = None
        self.exit_hooked = False  # the child's end is hooked to its exit
        _forked.register(self)

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
        if self.child_of is not None:
            _forked.start_child(self)
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
        if self.journal.degraded is not None and not self.warned_degraded:
            self.warn_degraded()
        return True

    def warn_degraded(self) -> None:
        """Say once that this run's journal lives in memory, and why."""
        self.warned_degraded = True
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
        if self.child_of is not None:
            _forked.start_child(self)
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
        return self.input(described, context)

    def input(self, described: Mapping[str, Any], context: str | None) -> bool:
        """Journal a described dataset input, once per digest in a run."""
        if described.get("digest") in self.input_digests:
            return False  # the same data again: an argument's input, then logged by hand
        self.input_digests.add(str(described.get("digest")))
        return self._append(Input(dict(described.items()), context))

    def register(self, spec: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
        """Journal a registration to be done when the run's data reaches the store."""
        return self._append(Register(dict(spec), dict(metrics)))

    def output(self, stream: str, text: str) -> bool:
        """Journal console output (redacted whole lines; :mod:`tracksdk._console`)."""
        return self._append(Output(stream, text))

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
        if self.terminated:
            return True
        self.terminated = True
        if self.child_of is not None:
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
            return _forked.finish_child(self, end)
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
            _forked.drain_children(self, deadline)
        if not sent:
            _drainer.report_unsent(sender, self.journal, self.label, wait)
            assert self.conn is not None
            _drainer.hand_over(
                sender=sender,
                journal=self.journal,
                conn=self.conn,
                http_timeout=self.http_timeout,
                label=self.label,
            )
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
        self.terminated = True
        if self.sender is not None:
            self.sender.stop()
        self.journal.close()
        self.journal.release()


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _split(artifact_file: str) -> tuple[str | None, str]:
    """``"a/b/c.txt"`` -> ``("a/b", "c.txt")``."""
    folder, _, name = artifact_file.replace("\\", "/").rpartition("/")
    return (folder or None), name
