"""The run users hold: :class:`Run`, and :class:`UntrackedRun`, its null object.

A :class:`Run` checks what it is given (keys, values, secrets, limits) and hands it to
its :class:`~tracksdk._writer.Writer`, which journals it for the sender. It knows nothing
of the lifecycle: :mod:`tracksdk._session` creates it, and ends it through the writer the
session itself made. When tracking is off, users get an :class:`UntrackedRun`, whose
methods do nothing, so the same code runs either way.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracksdk import _context, _redact, _validate
from tracksdk._schema import MAX_PARAM_VALUE, MAX_TAG_VALUE
from tracksdk._validate import Checker, safe_str, shorten

if TYPE_CHECKING:
    from tracksdk._continued import Continued
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection

__all__ = ["Run"]

D = TypeVar("D", int, None)  # what last_step returns for a metric never logged

# Every tracked Run of this process, for the at-fork hook (its lock may be held).
_runs: weakref.WeakSet[Run] = weakref.WeakSet()


class Run(_context.Ending):  # end() is Ending's: the lifecycle, not the run, ends it
    """A tracked run. Its ``log_*`` methods are those of the module-level functions.

    When tracking is off (``TRACKSDK_MODE=disabled``, a non-zero rank, or an offline
    run whose journal cannot be written) the run is an :class:`UntrackedRun`: ``run_id``
    is None and every method does nothing, so the same code runs either way. A store that
    cannot be reached does not make a run untracked: it is journaled and sent later
    (docs/offline.md).

    Attributes:
        run_id: MLflow's run id, or None when untracked, offline, or while the store has
            not yet created it (server down at start).
        name: The run's name: ``run_name=``, else the name MLflow gave it when it created
            the run; None while the run is only journaled (offline, or store not reached).
        client_run_id: tracksdk's own id of the run, known at once, even offline.
        experiment_id: The experiment's id, or None when unknown.
        tracking_uri: Where the run lives (never with credentials), or None.
        status: RUNNING, FINISHED, FAILED, KILLED, or UNTRACKED.
        resumed: The run continues one an earlier process started (``tracked(key=...)``,
            ``tracked(run_id=...)``; docs/resume.md).
        parent: The run this one is nested in, if any.
    """

    def __init__(
        self,
        *,
        conn: Connection | None,
        writer: Writer,
        checker: Checker,
        parent: Run | None = None,
        name: str | None = None,
        experiment_name: str | None = None,
    ) -> None:
        self.parent = parent
        self._name = name
        self.experiment_name = experiment_name
        self.status = "RUNNING"
        self._conn = conn
        self._writer = writer
        self._checker = checker
        self._params: dict[str, str] = {}
        self._latest: dict[str, float] = {}  # last value per metric: latest_metrics
        # Per metric, the highest (step, timestamp) journaled: MLflow's "latest" value is
        # the point with the highest (step, timestamp, value), so a point logged at the
        # same step within the same millisecond as an earlier one gets the next
        # millisecond, and the last value logged stays the latest (not the largest).
        self._last_point: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self.resumed = False
        self._earlier_steps: dict[str, int] = {}  # of the earlier parts, when resumed
        _runs.add(self)

    def __repr__(self) -> str:
        if self.run_id is None:
            return f"Run(client_run_id={self.client_run_id!r}, status={self.status!r}, journaled)"
        return f"Run(run_id={self.run_id!r}, status={self.status!r}, url={self.url!r})"

    @property
    def run_id(self) -> str | None:
        """MLflow's run id; None when untracked, offline, or not yet created in the store."""
        return self._writer.run_id

    @property
    def name(self) -> str | None:
        """``run_name=``, else the name the store gave the run once it created it.

        None while the run is only journaled (offline, or the store not reached yet); an
        offline run gets its name when ``tracksdk sync`` creates it, in the store only.
        """
        if self._name is None:
            sender = self._writer.sender
            created = sender.created if sender is not None else None
            name = created.run_name if created is not None else None
            if isinstance(name, str) and name:
                self._name = name
        return self._name

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id, once the store has created the run."""
        sender = self._writer.sender
        return sender.experiment_id if sender is not None else None

    @property
    def client_run_id(self) -> str | None:
        """The id tracksdk gave the run before any store saw it (tag tracksdk.client_run_id).

        It names the run's journal, and identifies the run when it is synced later.
        """
        return self._writer.client_id

    @property
    def tracking_uri(self) -> str | None:
        """The tracking URI of the store holding this run, without user info."""
        return self._conn.display_uri if self._conn else None

    @property
    def url(self) -> str | None:
        """A link to the run in the MLflow UI, when one is known."""
        if self._conn is None or self._conn.ui_url is None or self.run_id is None:
            return None
        return f"{self._conn.ui_url}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    @property
    def tracked(self) -> bool:
        """Whether this run writes anywhere."""
        return True

    @property
    def latest_metrics(self) -> dict[str, float]:
        """The last value logged for each metric by this process (a copy).

        What a registry gate or ``best=`` compares; it does not read the store.
        """
        return dict(self._latest)

    def ref(self) -> str:
        """A reference to this run for :func:`tracksdk.attach` in a spawned process.

        Short JSON text: the run's ids, experiment and store (masked: never a credential).
        """
        import json

        journal = self._writer.journal
        reference = {
            "v": 1,
            "client_id": self.client_run_id,
            "run_id": self.run_id,
            "experiment": self.experiment_name,
            "run_name": self.name,
            "target": journal.meta.get("target"),
        }
        return json.dumps(reference, separators=(",", ":"))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in the store (see ``tracksdk.flush``)."""
        return self._writer.flush(timeout)

    def last_step(self, key: str, default: D = None) -> int | D:  # type: ignore[assignment]
        """The highest step logged for metric ``key`` so far; ``default`` when it never was.

        In a continued run (``resumed``) it counts the earlier processes' steps too, as
        the store and this machine's journals hold them, so a training loop goes on at
        ``run.last_step("loss", -1) + 1`` (docs/resume.md).
        """
        own = self._last_point.get(key)
        steps = [
            s for s in (own[0] if own else None, self._earlier_steps.get(key)) if s is not None
        ]
        return max(steps) if steps else default

    def _continue_from(self, continued: Continued) -> None:
        """Take on what the run's earlier parts logged (the session, when resuming)."""
        self.resumed = continued.resumed
        self._earlier_steps = dict(continued.last_steps)
        with self._lock:  # an earlier part's param value is the first one: it stays
            for key, value in continued.params.items():
                self._params.setdefault(key, value)

    # -- metrics ---------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log one metric point. Invalid values follow docs/configuration.md."""
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metric points at the same step."""
        writer = self._writer
        timestamp = int(time.time() * 1000)
        points = []
        last_point = self._last_point
        for raw_key, raw_value in metrics.items():
            key = self._checker.key("metric", raw_key)
            if key is None:
                continue
            number = self._checker.metric_value(key, raw_value)
            checked_step = self._checker.step(key, step)
            if number is None or checked_step is None:
                continue
            at = timestamp
            last = last_point.get(key)
            if last is None or checked_step > last[0]:
                last_point[key] = (checked_step, at)
            elif checked_step == last[0]:
                if at <= last[1]:
                    at = last[1] + 1
                last_point[key] = (checked_step, at)
            points.append((key, number, at, checked_step))
        if points:
            for key, number, _, _ in points:
                self._latest[key] = number
            writer.batch(metrics=points)

    # -- params ----------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Log one param. Params are immutable: see docs/configuration.md for conflicts."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params."""
        writer = self._writer
        from tracksdk._params import format_value

        batch: dict[str, str] = {}
        conflicts: dict[str, tuple[str, str]] = {}  # key -> (first value, new value)
        for raw_key, raw_value in params.items():
            key = self._checker.key("param", raw_key)
            if key is None:
                continue
            value = (
                _redact.mask_value(raw_value)
                if _redact.looks_secret(key)
                else self._checker.text("param", key, _redact.redact(format_value(raw_value)))
            )
            # Compared whole: the first value stays, and so does its artifact when long.
            with self._lock:
                previous = self._params.get(key)
                if previous is None:
                    self._params[key] = value
                elif previous != value:
                    conflicts[key] = (previous, value)
                    continue
                else:
                    continue
            batch[key] = self._fit(writer, "param", "params", key, value, MAX_PARAM_VALUE)
        tags: dict[str, str] = {}
        for key, (first, value) in conflicts.items():
            tag = self._checker.key("tag", f"tracksdk.param_conflict.{key}")
            self._checker.problem(
                "param-conflict",
                key,
                f"param {key!r} was already logged as {shorten(first)!r}; params cannot change "
                f"within a run. The first value stays; the new one, {shorten(value)!r}, is kept "
                f"in tag {tag}. Use a metric for values that change, or another key.",
            )
            if tag is not None:
                tags[tag] = self._fit(writer, "tag", "tags", tag, value, MAX_TAG_VALUE)
        if batch or tags:
            writer.batch(params=batch, tags=tags)

    def _fit(self, writer: Writer, kind: str, folder: str, key: str, value: str, limit: int) -> str:
        """Keep a too-long value whole in an artifact and log a pointer to it."""
        if len(value) <= limit:
            return value
        return _validate.fit_long(writer, self._checker, kind, folder, key, value, limit)

    # -- tags ------------------------------------------------------------------------

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (tags can change; the last value wins)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        writer = self._writer
        batch = {}
        for raw_key, raw_value in tags.items():
            key = self._checker.key("tag", raw_key)
            if key is None:
                continue
            value = self._checker.text("tag", key, _redact.redact(safe_str(raw_value)))
            batch[key] = self._fit(writer, "tag", "tags", key, value, MAX_TAG_VALUE)
        if batch:
            writer.batch(tags=batch)

    # -- artifacts -------------------------------------------------------------------

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file (or a folder's contents) into the run's artifacts."""
        if not Path(path).exists():
            self._checker.problem(
                "artifact", str(path), f"artifact {str(path)!r} does not exist: nothing uploaded."
            )
            return
        self._writer.artifact(os.fspath(path), artifact_path)

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload every file under ``local_dir``."""
        self.log_artifact(local_dir, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` to the artifact file ``artifact_file`` (e.g. ``"notes.md"``)."""
        self._writer.text(_redact.redact(text), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Write a dict as JSON or YAML, by ``artifact_file``'s extension."""
        self._writer.dict(_redact.redact_obj(dictionary), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib (or plotly) figure as an image artifact, e.g. ``"roc.png"``."""
        self._writer.figure(figure, artifact_file)

    def log_input(
        self,
        dataset: Any,
        context: str | None = None,
        *,
        name: str | None = None,
        targets: str | None = None,
    ) -> None:
        """Record a pandas DataFrame or numpy array as an input of the run.

        Args:
            dataset: The data. Its digest, schema and profile are recorded, not its rows.
            context: What it was used for: ``"training"``, ``"validation"``, ...
            name: A name to show in the UI.
            targets: For a DataFrame, the name of the target column.
        """
        self._writer.dataset(dataset, context, name, targets)

    def log_checkpoint(self, model: Any, step: int) -> str | None:
        """Log an intermediate state of ``model`` as ``checkpoints/step-<step>``.

        Returns:
            The artifact path, or None when untracked or no plugin owns the model.
        """
        from tracksdk import _outcome

        return _outcome.checkpoint(self._writer, self._checker, model, step)


def after_fork_in_child() -> None:
    """In a forked child: fresh locks (a thread of the parent may have held one)."""
    for run in list(_runs):
        run._lock = threading.Lock()
