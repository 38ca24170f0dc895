"""The run's lifecycle: one implementation behind ``@tracked`` and ``with tracked():``.

A :class:`Session` is one execution of a tracked block. ``start()`` resolves settings and
the backend, creates the run (a child of the current tracked run when there is one),
records params and provenance, and makes the run MLflow's active run so autolog and
``mlflow.log_*`` write to it. ``finish()`` ends it FINISHED, FAILED or KILLED and puts
MLflow's global state back as it found it.
"""

from __future__ import annotations

import contextvars
import numbers
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tracksdk import _redact, _warn
from tracksdk._context import active_run
from tracksdk._context import current as _current
from tracksdk._options import RunOptions
from tracksdk._validate import MAX_PARAM_VALUE, MAX_TAG_VALUE, Checker
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._mlflow import SavedState
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

__all__ = ["Run", "RunOptions", "Session", "active_run"]


class Run:
    """A tracked run. Its ``log_*`` methods are those of the module-level functions.

    When tracking is off (``TRACKSDK_MODE=disabled``, a non-zero rank, or a store that
    could not be reached) the run is *untracked*: ``run_id`` is None and every method
    does nothing, so the same code runs either way.

    Attributes:
        run_id: MLflow's run id, or None when untracked.
        experiment_id: The experiment's id, or None when untracked.
        tracking_uri: Where the run lives (never with credentials), or None.
        status: RUNNING, FINISHED, FAILED, KILLED, or UNTRACKED.
        parent: The run this one is nested in, if any.
    """

    def __init__(
        self,
        *,
        run_id: str | None = None,
        experiment_id: str | None = None,
        conn: Connection | None = None,
        writer: Writer | None = None,
        checker: Checker | None = None,
        parent: Run | None = None,
        name: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.parent = parent
        self.name = name
        self.status = "RUNNING" if writer is not None else "UNTRACKED"
        self._conn = conn
        self._writer = writer
        self._checker = checker or Checker(strict=False)
        self._params: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        if self.run_id is None:
            return "Run(untracked)"
        return f"Run(run_id={self.run_id!r}, status={self.status!r}, url={self.url!r})"

    @property
    def tracking_uri(self) -> str | None:
        """The tracking URI of the store holding this run."""
        return self._conn.tracking_uri if self._conn else None

    @property
    def url(self) -> str | None:
        """A link to the run in the MLflow UI, when one is known."""
        if self._conn is None or self._conn.ui_url is None or self.run_id is None:
            return None
        return f"{self._conn.ui_url}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    @property
    def tracked(self) -> bool:
        """Whether this run writes anywhere."""
        return self._writer is not None

    # -- metrics ---------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Log one metric point. Invalid values follow docs/configuration.md."""
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metric points at the same step."""
        writer = self._writer
        if writer is None:
            return
        timestamp = int(time.time() * 1000)
        points = []
        for raw_key, raw_value in metrics.items():
            key = self._checker.key("metric", raw_key)
            if key is None:
                continue
            number = self._checker.metric_value(key, raw_value)
            checked_step = self._checker.step(key, step)
            if number is None or checked_step is None:
                continue
            points.append((key, number, timestamp, checked_step))
        if points:
            writer.batch(metrics=points)

    # -- params ----------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Log one param. Params are immutable: see docs/configuration.md for conflicts."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params."""
        writer = self._writer
        if writer is None:
            return
        from tracksdk._params import format_value

        batch: dict[str, str] = {}
        conflicts: dict[str, str] = {}
        for raw_key, raw_value in params.items():
            key = self._checker.key("param", raw_key)
            if key is None:
                continue
            value = (
                _redact.MASK
                if _redact.looks_secret(key)
                else _redact.redact(format_value(raw_value))
            )
            value = self._fit(writer, "param", "params", key, value, MAX_PARAM_VALUE)
            with self._lock:
                previous = self._params.get(key)
                if previous is None:
                    self._params[key] = value
                    batch[key] = value
                elif previous != value:
                    conflicts[key] = value
        for key, value in conflicts.items():
            self._checker.problem(
                "param-conflict",
                key,
                f"param {key!r} was already logged as {self._params[key]!r}; params cannot "
                f"change within a run. The first value stays; the new one, {value!r}, is "
                f"kept in tag tracksdk.param_conflict.{key}. Use a metric for values that "
                "change, or another key.",
            )
        tags = {f"tracksdk.param_conflict.{k}": v for k, v in conflicts.items()}
        if batch or tags:
            writer.batch(params=batch, tags=tags)

    def _fit(self, writer: Writer, kind: str, folder: str, key: str, value: str, limit: int) -> str:
        """Keep a too-long value whole in an artifact and log a pointer to it."""
        if len(value) <= limit:
            return value
        artifact = f"{folder}/{key.replace('/', '_')}.txt"
        self._checker.problem(
            f"long-{kind}",
            key,
            f"{kind} {key!r} is {len(value)} characters, over MLflow's limit of {limit}: the "
            f"full value is in artifact {artifact} and the {kind} points to it.",
        )
        writer.text(value, artifact)
        return f"{value[:200]}… [{len(value)} characters; full value in artifact {artifact}]"

    # -- tags ------------------------------------------------------------------------

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (tags can change; the last value wins)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        writer = self._writer
        if writer is None:
            return
        batch = {}
        for raw_key, raw_value in tags.items():
            key = self._checker.key("tag", raw_key)
            if key is None:
                continue
            value = _redact.redact(str(raw_value))
            batch[key] = self._fit(writer, "tag", "tags", key, value, MAX_TAG_VALUE)
        if batch:
            writer.batch(tags=batch)

    # -- artifacts -------------------------------------------------------------------

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload a file (or a folder's contents) into the run's artifacts."""
        if self._writer is None:
            return
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
        if self._writer is not None:
            self._writer.text(_redact.redact(text), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Write a dict as JSON or YAML, by ``artifact_file``'s extension."""
        if self._writer is not None:
            self._writer.dict(_redact.redact_obj(dictionary), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Save a matplotlib (or plotly) figure as an image artifact, e.g. ``"roc.png"``."""
        if self._writer is not None:
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
        if self._writer is not None:
            self._writer.dataset(dataset, context, name, targets)

    # -- results ---------------------------------------------------------------------

    def _handle_result(self, result: Any) -> None:
        """Log what the tracked function returned. A mapping of numbers becomes metrics.

        This is the one place where returned values are interpreted; framework plugins
        hook model handling in here.
        """
        if self._writer is None:
            return
        if (
            isinstance(result, Mapping)
            and result
            and all(isinstance(k, str) and _is_number(v) for k, v in result.items())
        ):
            self.log_metrics(result)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# -- the lifecycle ---------------------------------------------------------------------

# Re-entrant: the SIGTERM handler runs on the main thread, which may hold it already.
_live_lock = threading.RLock()
_live: list[Session] = []


def _rank() -> int:
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _is_multiprocess() -> bool:
    return any(v in os.environ for v in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


class Session:
    """One execution of a tracked function or block."""

    def __init__(
        self,
        options: RunOptions,
        *,
        function: Callable[..., Any] | None = None,
        params: Mapping[str, str] | None = None,
        source_file: str | None = None,
    ) -> None:
        self.options = options
        self.function = function
        self.params = params or {}
        self.source_file = source_file
        self.run = Run()
        self._saved: SavedState | None = None
        self._token: contextvars.Token[tuple[Run, ...]] | None = None
        self._previous_sigterm: Any = None
        self._finished = False

    # -- start -----------------------------------------------------------------------

    def start(self) -> Run:
        """Create the run; return an untracked Run when tracking is off or failed."""
        from tracksdk import _config

        parent = active_run() if self.options.nested is not False else None
        overrides = self.options.overrides()
        explained = _config.resolve(overrides)
        settings = explained.settings
        if settings.mode == "disabled":
            return self._push(self.run)
        if _is_multiprocess() and _rank() != 0 and not settings.track_all_ranks:
            return self._push(self.run)
        if parent is not None and parent.tracked and parent._conn is not None:
            conn = parent._conn
        else:
            parent = None
            explained, conn = _config.resolve_with_connection(overrides)
        strict = settings.strict
        try:
            run = self._create(explained, conn, parent)
        except TrackingError as exc:
            self._restore_mlflow()
            if strict:
                raise
            _warn.warn(
                f"tracksdk: {exc}. The function runs untracked; nothing of this run is "
                "stored. Check the backend with `tracksdk doctor`."
            )
            return self._push(self.run)
        self.run = run
        with _live_lock:
            _live.append(self)
        self._install_sigterm()
        return self._push(run)

    def _push(self, run: Run) -> Run:
        self._token = _current.set((*_current.get(), run))
        return run

    def _create(self, explained: Explained, conn: Connection, parent: Run | None) -> Run:
        from tracksdk import _mlflow
        from tracksdk._writer import Writer

        settings = explained.settings
        if parent is None:
            self._saved = _mlflow.activate(
                conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
            )
        if parent is not None and self.options.experiment is None:
            experiment_id = str(parent.experiment_id)
        else:
            name = settings.experiment or explained.root.name
            experiment_id = _mlflow.ensure_experiment(conn, name)

        provenance = self._provenance(explained)
        tags: dict[str, str] = dict(provenance.tags)
        tags["mlflow.user"] = _user()
        if self.function is not None:
            tags["tracksdk.function"] = f"{self.function.__module__}.{self.function.__qualname__}"
        checker = Checker(strict=settings.strict)
        for raw_key, value in (self.options.tags or {}).items():
            key = checker.key("tag", raw_key)
            if key is not None:
                tags[key] = _redact.redact(str(value))[:MAX_TAG_VALUE]
        if parent is not None:
            tags["mlflow.parentRunId"] = str(parent.run_id)
        created = _mlflow.create_run(conn, experiment_id, self.options.run_name, tags)
        _mlflow.push_active(created)
        writer = Writer(conn, created.run_id, strict=settings.strict)
        run = Run(
            run_id=created.run_id,
            experiment_id=created.experiment_id,
            conn=conn,
            writer=writer,
            checker=checker,
            parent=parent,
            name=self.options.run_name,
        )
        if self.params:
            run.log_params(self.params)
        writer.texts(provenance.texts)
        for message in provenance.warnings:
            _warn.warn(f"tracksdk: {message}")
        return run

    def _provenance(self, explained: Explained) -> Any:
        from tracksdk.provenance import CaptureOptions, collect

        capture = explained.settings.capture
        argv0 = sys.argv[0] if sys.argv else ""
        entry = Path(argv0) if argv0 and Path(argv0).is_file() else None
        function_file = Path(self.source_file) if self.source_file else None
        options = CaptureOptions(**capture.model_dump())
        return collect(
            options,
            entry_script=entry,
            function_file=function_file,
            argv=list(sys.argv),
            redact=_redact.redact,
        )

    # -- finish ----------------------------------------------------------------------

    def finish(self, exc: BaseException | None) -> None:
        """End the run with the status ``exc`` implies; restore global state.

        Never raises on a store failure unless strict, and never replaces ``exc``.
        """
        if self._finished:
            return
        self._finished = True
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # finished in another context (a generator, a thread)
                _current.set(tuple(r for r in _current.get() if r is not self.run))
        run = self.run
        writer = run._writer
        if writer is None:
            return
        try:
            status = self._status_for(exc)
            if status == "FAILED" and exc is not None and not isinstance(exc, SystemExit):
                self._record_error(run, exc)
            elif isinstance(exc, SystemExit):
                run.set_tag("tracksdk.exit_code", str(exc.code))
            self._end(status)
        except TrackingError:
            if exc is None:
                raise  # strict mode, and the function itself succeeded
        finally:
            self._cleanup()

    @staticmethod
    def _status_for(exc: BaseException | None) -> str:
        if exc is None:
            return "FINISHED"
        if isinstance(exc, SystemExit):
            return "FINISHED" if exc.code in (0, None) else "FAILED"
        if isinstance(exc, KeyboardInterrupt):
            return "KILLED"
        return "FAILED"

    @staticmethod
    def _record_error(run: Run, exc: BaseException) -> None:
        message = _redact.redact(str(exc))
        run.set_tags(
            {
                "tracksdk.error.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "tracksdk.error.message": message[:1000] if message else "",
            }
        )
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        run.log_text(text, "error/traceback.txt")

    def _end(self, status: str) -> None:
        from tracksdk import _mlflow

        run = self.run
        if run.run_id is not None:
            _mlflow.pop_active(run.run_id)
        if run._writer is not None:
            run._writer.terminate(status)
        run.status = status

    def _cleanup(self) -> None:
        with _live_lock:
            if self in _live:
                _live.remove(self)
        self._restore_sigterm()
        self._restore_mlflow()

    def _restore_mlflow(self) -> None:
        if self._saved is not None:
            from tracksdk import _mlflow

            _mlflow.restore(self._saved)
            self._saved = None

    def handle_result(self, result: Any) -> None:
        """Log the tracked function's return value (see :meth:`Run._handle_result`)."""
        self.run._handle_result(result)

    # -- SIGTERM ---------------------------------------------------------------------

    def _install_sigterm(self) -> None:
        """End the run KILLED on SIGTERM, then let the previous handler act.

        Only the outermost run in the main thread installs the handler, and never over
        SIG_IGN: a process that ignores SIGTERM keeps ignoring it.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is _on_sigterm:
            return
        self._previous_sigterm = previous
        signal.signal(signal.SIGTERM, _on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End every live run KILLED, restore the previous handler, and re-deliver."""
    with _live_lock:
        sessions = list(reversed(_live))
    previous: Any = signal.SIG_DFL
    for session in sessions:
        if session._previous_sigterm is not None:
            previous = session._previous_sigterm
        try:
            session._finished = True
            session._end("KILLED")
        except Exception:  # the process is going down; never block it
            pass
        finally:
            session._cleanup()
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"
