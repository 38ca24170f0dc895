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

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _journal, _warn
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._sender import Sender
    from tracksdk.backends import Connection

MetricPoint = tuple[str, float, int, int]  # key, value, timestamp in ms, step


class Writer:
    """Journals one run's records; its sender sends them (none when offline)."""

    def __init__(
        self,
        journal: _journal.Journal,
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
        self.sender: Sender | None = None
        if conn is not None:
            self.sender = Sender(
                journal.path, conn, journal=journal, http_timeout=http_timeout, label=self.label
            )

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

    def _append(self, record: list[Any], *, droppable: bool = False) -> bool:
        try:
            self.journal.append(record, droppable=droppable)
        except _journal.JournalFull:
            self.dropped_points += len(record[1])
            if self.dropped_points == len(record[1]):
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
        return True

    def create(self, info: Mapping[str, Any]) -> bool:
        """Journal the run's creation: experiment, name, tags, parent, start time."""
        return self._append(["c", dict(info)])

    def batch(
        self,
        metrics: Sequence[MetricPoint] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Journal metrics, params and tags."""
        ok = True
        if params:
            ok = self._append(["p", dict(params)]) and ok
        if tags:
            ok = self._append(["t", dict(tags)]) and ok
        if metrics:
            ok = self._append(["m", [list(p) for p in metrics]], droppable=True) and ok
        return ok

    def _spooled(self, local: Path, artifact_path: str | None) -> bool:
        _journal.make_private(local)
        relative = local.relative_to(self.journal.path / "files").as_posix()
        self.journal.files_bytes += _journal.size_of(local)
        return self._append(["f", relative, artifact_path or None])

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
            local = self.journal.spool(name)
            local.write_text(text, encoding="utf-8")
        except OSError as exc:
            return self._spool_failed(exc, artifact_file)
        return self._spooled(local, folder)

    def texts(self, files: Mapping[str, str]) -> bool:
        """Journal several text artifacts as one upload."""
        if not files:
            return True
        try:
            local = self.journal.spool("texts")
            for artifact_file, text in files.items():
                path = local / artifact_file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
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
        try:
            local = self.journal.spool(source.name or "artifact")
            if move:
                shutil.move(str(source), local)
            elif source.is_dir():
                shutil.copytree(source, local)
            else:
                shutil.copy2(source, local)
        except OSError as exc:
            return self._spool_failed(exc, str(path))
        return self._spooled(local, artifact_path)

    def figure(self, figure: Any, artifact_file: str) -> bool:
        """Journal a matplotlib or plotly figure as an image (or HTML) artifact."""
        folder, name = _split(artifact_file)
        try:
            local = self.journal.spool(name)
            if hasattr(figure, "savefig"):
                figure.savefig(local)
            elif name.endswith(".html") and hasattr(figure, "write_html"):
                figure.write_html(str(local))
            elif hasattr(figure, "write_image"):
                figure.write_image(str(local))
            else:
                raise TypeError(f"{type(figure).__name__} is not a matplotlib or plotly figure")
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
        return self._append(["i", described, context])

    def register(self, spec: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
        """Journal a registration to be done when the run's data reaches the store."""
        return self._append(["r", dict(spec), dict(metrics)])

    # -- waiting ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything journaled so far is in the store (bounded)."""
        if self.sender is None:
            return False
        self.sender.wake()
        return self.sender.flush(self.flush_timeout if timeout is None else timeout)

    def terminate(self, status: str, timeout: float | None = None) -> bool:
        """End the run with ``status``, then wait (bounded) for the journal to drain.

        Returns:
            True when every record reached the store; the journal is then deleted.
        """
        if self._terminated:
            return True
        self._terminated = True
        tags: dict[str, str] = {}
        if self.failures:
            tags["tracksdk.write_failures"] = str(self.failures)
        if self.dropped_points:
            tags["tracksdk.dropped_points"] = str(self.dropped_points)
        self._append(["e", status, int(time.time() * 1000), {"tags": tags}])
        end = self.journal.position
        self.journal.close()
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
        sent = sender.flush(wait, until=end)
        if sent:
            sender.join(5.0)  # it deletes the journal; a sync must not see it half gone
        else:
            self._report_unsent(sender, wait)
        # The lock stays while the sender works, so a sync (here or in another process)
        # leaves the journal to it; the process exiting releases it in any case.
        if not sender.alive:
            self.journal.release()
        if not sent and self.strict:
            raise TrackingError(
                f"run {self.label} could not be sent within {wait:.0f} s; it is kept in "
                f"{self.journal.path} for `tracksdk sync`"
            )
        return sent

    def _report_unsent(self, sender: Sender, wait: float) -> None:
        reason = sender.auth_error or sender.last_error
        because = f" (last error: {reason})" if reason else ""
        if sender.auth_error is not None:
            return  # already said, with the credential to fix
        if sender.stopped:
            _warn.warn(
                f"tracksdk: run {self.label} was not sent{because}. It is kept in "
                f"{self.journal.path}; `tracksdk sync` sends it once the cause is fixed."
            )
            return
        _warn.warn(
            f"tracksdk: run {self.label} was not fully sent within {wait:.0f} s"
            f"{because}. Nothing is lost: it is kept in {self.journal.path}, sent in the "
            "background while this process lives, and by `tracksdk sync` or the next "
            "tracked run in this project. TRACKSDK_FLUSH_TIMEOUT sets the wait."
        )


def _split(artifact_file: str) -> tuple[str | None, str]:
    """``"a/b/c.txt"`` -> ``("a/b", "c.txt")``."""
    folder, _, name = artifact_file.replace("\\", "/").rpartition("/")
    return (folder or None), name
