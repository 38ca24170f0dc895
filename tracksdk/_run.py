"""The run's lifecycle: one implementation behind ``@tracked`` and ``with tracked():``.

A :class:`Session` is one execution of a tracked block. ``start()`` resolves settings and
the backend, creates the run (a child of the current tracked run when there is one),
records params and provenance, and makes the run MLflow's active run so autolog and
``mlflow.log_*`` write to it. ``finish()`` ends it FINISHED, FAILED or KILLED and puts
MLflow's global state back as it found it.
"""

from __future__ import annotations

import contextlib
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

from tracksdk import _context, _redact, _warn, stores
from tracksdk._context import active_run
from tracksdk._context import current as _current
from tracksdk._options import RunOptions
from tracksdk._schema import (
    BEST_RUN_ID_TAG,
    CLIENT_RUN_ID_TAG,
    ERROR_MESSAGE_TAG,
    ERROR_TYPE_TAG,
    EXIT_CODE_TAG,
    FUNCTION_TAG,
    GATE_REASON_TAG,
    GATE_VERDICT_TAG,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    MODEL_FRAMEWORK_TAG,
    MODEL_REGISTERED_TAG,
    MODEL_URI_TAG,
    RUN_NAME_TAG,
    USER_TAG,
)
from tracksdk._validate import Checker, safe_str
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._mlflow import SavedState
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

__all__ = ["Run", "RunOptions", "Session", "active_run"]


class Run:
    """A tracked run. Its ``log_*`` methods are those of the module-level functions.

    When tracking is off (``TRACKSDK_MODE=disabled``, a non-zero rank, or an offline
    run whose journal cannot be written) the run is *untracked*: ``run_id`` is None and
    every method does nothing, so the same code runs either way. A store that cannot be
    reached does not make a run untracked: it is journaled and sent later
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
        parent: The run this one is nested in, if any.
    """

    def __init__(
        self,
        *,
        conn: Connection | None = None,
        writer: Writer | None = None,
        checker: Checker | None = None,
        parent: Run | None = None,
        name: str | None = None,
        experiment_name: str | None = None,
    ) -> None:
        self.parent = parent
        self._name = name
        self.experiment_name = experiment_name
        self.status = "RUNNING" if writer is not None else "UNTRACKED"
        self._conn = conn
        self._writer = writer
        self._checker = checker or Checker(strict=False)
        self._params: dict[str, str] = {}
        self._latest: dict[str, float] = {}  # last value per metric, for registry gates
        # Per metric, the highest (step, timestamp) journaled: MLflow's "latest" value is
        # the point with the highest (step, timestamp, value), so a point logged at the
        # same step within the same millisecond as an earlier one gets the next
        # millisecond, and the last value logged stays the latest (not the largest).
        self._last_point: dict[str, tuple[int, int]] = {}
        self._orphans = 0  # calls from threads without a run, dropped while this run was open
        self._warned_result = False  # the returned value had entries that are not metrics
        self._children: list[tuple[str, dict[str, float]]] = []  # finished child runs
        self.registered: tuple[str, str, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        if self._writer is None:
            return "Run(untracked)"
        if self.run_id is None:
            return f"Run(client_run_id={self.client_run_id!r}, status={self.status!r}, journaled)"
        return f"Run(run_id={self.run_id!r}, status={self.status!r}, url={self.url!r})"

    @property
    def run_id(self) -> str | None:
        """MLflow's run id; None when untracked, offline, or not yet created in the store."""
        return self._writer.run_id if self._writer is not None else None

    @property
    def name(self) -> str | None:
        """``run_name=``, else the name the store gave the run once it created it.

        None while the run is only journaled (offline, or the store not reached yet); an
        offline run gets its name when ``tracksdk sync`` creates it, in the store only.
        """
        if self._name is not None:
            return self._name
        writer = self._writer
        created = writer.sender.created if writer is not None and writer.sender else None
        if created is None:
            return None
        name = created.run_name
        if isinstance(name, str) and name:
            self._name = name
        return self._name

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id, once the store has created the run."""
        writer = self._writer
        if writer is None or writer.sender is None:
            return None
        return writer.sender.experiment_id

    @property
    def client_run_id(self) -> str | None:
        """The id tracksdk gave the run before any store saw it (tag tracksdk.client_run_id).

        It names the run's journal, and identifies the run when it is synced later.
        """
        return self._writer.client_id if self._writer is not None else None

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
        return self._writer is not None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in the store (see ``tracksdk.flush``)."""
        if self._writer is None:
            return False
        return self._writer.flush(timeout)

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
        if writer is None:
            return
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
                f"param {key!r} was already logged as {_cut(first)!r}; params cannot change "
                f"within a run. The first value stays; the new one, {_cut(value)!r}, is kept "
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
        from tracksdk._validate import artifact_name

        artifact = f"{folder}/{artifact_name(key)}.txt"
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
            value = self._checker.text("tag", key, _redact.redact(safe_str(raw_value)))
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

    # -- models ----------------------------------------------------------------------

    def _save_and_upload(
        self, pm: Any, model: Any, framework: str, example: Any, formats: tuple[str, ...], dest: str
    ) -> bool:
        """Save ``model`` through its plugin and upload it under ``dest``."""
        import tempfile

        from tracksdk import hookspecs

        writer = self._writer
        assert writer is not None
        with tempfile.TemporaryDirectory(prefix="tracksdk-model-") as tmp:
            path = Path(tmp) / "model"
            flavor = hookspecs.call_save_model(pm, model, framework, path, example, formats)
            if flavor is None or not path.exists():
                _warn.warn(f"tracksdk: the {framework!r} plugin did not save the model.")
                return False
            ok = writer.artifact(str(path), dest, move=True)
            for extra in sorted(Path(tmp).iterdir()):
                if extra.name != "model" and extra.is_dir():
                    ok = writer.artifact(str(extra), f"{dest}-{extra.name}", move=True) and ok
        return ok

    def _log_model(
        self, pm: Any, model: Any, framework: str, example: Any, options: RunOptions
    ) -> None:
        """Log the returned model as ``model/``; register and gate it when asked."""
        writer = self._writer
        if writer is None:
            return
        if not self._save_and_upload(pm, model, framework, example, options.formats, "model"):
            return
        tags = {MODEL_FRAMEWORK_TAG: framework}
        if self.run_id is not None:  # unknown while the run is only journaled
            tags[MODEL_URI_TAG] = f"runs:/{self.run_id}/model"
        self.set_tags(tags)
        spec = options.register
        if spec is None:
            return
        # The version points at the uploaded model: the journal must reach the store
        # first. When it cannot (offline, server down), the registration itself is
        # journaled and done by the sender, or by `tracksdk sync`.
        if writer.offline or not writer.flush() or self.run_id is None:
            writer.register(spec.to_dict(), dict(self._latest))
            _warn.warn(
                f"tracksdk: the model of run {writer.label} is not in the store yet, so "
                f"{spec.name!r} will be registered when the run's journal is sent "
                "(in the background, or by `tracksdk sync`)."
            )
            return
        self._register_now(spec)

    def _register_now(self, spec: Any) -> None:
        from tracksdk import registry, stores
        from tracksdk.settings import find_project_root

        assert self._conn is not None and self.run_id is not None
        model_uri = f"runs:/{self.run_id}/model"
        if not stores.capabilities(self._conn).registry:
            _warn.warn(
                f"tracksdk: {self._conn.tracking_uri} has no model registry, so "
                f"{spec.name!r} was not registered. The model is logged in the run: "
                f"{model_uri}."
            )
            self.set_tag(MODEL_REGISTERED_TAG, "no registry on this server")
            return
        lock_dir = find_project_root() / ".tracksdk"
        try:
            version, verdict = registry.register_version(
                self._conn, self.run_id, model_uri, spec, dict(self._latest), lock_dir
            )
        except TrackingError as exc:
            if self._checker.strict:
                raise
            _warn.warn(f"tracksdk: {exc}. The model is logged in the run but not registered.")
            return
        tags = {MODEL_REGISTERED_TAG: f"{spec.name}/{version}"}
        if verdict is not None:
            tags[GATE_VERDICT_TAG] = "promoted" if verdict.promoted else "rejected"
            tags[GATE_REASON_TAG] = verdict.reason
        self.set_tags(tags)
        self.registered = (spec.name, version, verdict)

    def log_checkpoint(self, model: Any, step: int) -> str | None:
        """Log an intermediate state of ``model`` as ``checkpoints/step-<step>``.

        Returns:
            The artifact path, or None when untracked or no plugin owns the model.
        """
        if self._writer is None:
            return None
        from tracksdk import _plugins

        pm = _plugins.manager(_plugins.allowed())
        framework = _plugins.framework_of(pm, model)
        if framework is None:
            self._checker.problem(
                "checkpoint",
                type(model).__qualname__,
                f"no installed plugin knows how to save a {type(model).__qualname__}: "
                "checkpoint not logged.",
            )
            return None
        dest = f"checkpoints/step-{int(step):06d}"
        if self._save_and_upload(pm, model, framework, None, (), dest):
            return dest
        return None

    # -- results ---------------------------------------------------------------------

    def _handle_result(self, result: Any) -> None:
        """Log a returned mapping's numbers as metrics (models: Session.handle_result)."""
        if self._writer is None or not isinstance(result, Mapping):
            return
        self.log_metrics(self._not_yet_logged(self._result_metrics(result)))

    def _result_metrics(self, result: Mapping[Any, Any]) -> dict[str, float]:
        """The metrics in a returned mapping; warn once per run about the keys skipped.

        Numbers (numpy scalars too) are kept, bools become 0/1, 0-d arrays and tensors
        their value. Keys that are not strings, and values that are not numbers (None,
        text, arrays, nested dicts), are skipped and named in the warning.
        """
        metrics: dict[str, float] = {}
        skipped: list[str] = []
        for key, value in result.items():
            if not isinstance(key, str):
                skipped.append(f"{_cut(repr(key))} (the key is a {type(key).__name__})")
                continue
            number = _as_number(value)
            if number is None:
                skipped.append(f"{_cut(repr(key))} ({_describe_value(value)})")
                continue
            metrics[key] = number
        if skipped and not self._warned_result:
            self._warned_result = True
            _warn.warn(
                "tracksdk: the returned value has entries that are not metrics, so these "
                f"were not logged: {', '.join(skipped)}. A metric needs a string key and a "
                "number (or a bool, logged as 0/1); log other values with "
                "tracksdk.log_param or tracksdk.set_tag."
            )
        return metrics

    def _not_yet_logged(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Metrics whose value differs from the last one logged under that key.

        Returning what ``tracksdk.evaluate`` already logged must not add a second point.
        """
        return {k: v for k, v in metrics.items() if self._latest.get(k) != float(v)}


def _cut(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _as_number(value: Any) -> float | None:
    """A returned value as a metric: a real number, a bool (0/1), a 0-d array's value."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return value  # type: ignore[return-value]  # the checker converts and validates
    if getattr(value, "ndim", None) == 0:
        item = getattr(value, "item", None)  # numpy scalars and 0-d arrays, torch 0-d tensors
        if callable(item):
            try:
                inner = item()
            except (TypeError, ValueError):
                return None
            if isinstance(inner, bool):
                return float(inner)
            if isinstance(inner, numbers.Real):
                return inner  # type: ignore[return-value]
    return None


def _function_name(func: Any) -> str:
    """``module.qualname`` of a tracked callable, for the ``tracksdk.function`` tag.

    A ``functools.partial`` is named after the function it wraps, as
    ``functools.partial(module.name)``; a callable instance as ``module.Class.__call__``.
    """
    import functools

    if isinstance(func, functools.partial):
        return f"functools.partial({_function_name(func.func)})"
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str):
        cls = type(func)
        qualname, module = f"{cls.__qualname__}.__call__", cls.__module__
    return f"{module}.{qualname}" if module else qualname


def _describe_value(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and shape != ():
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def _autolog_selection(value: Any) -> dict[str, dict[str, Any]]:
    """Normalise ``autolog=`` to framework name -> options (``"*"``: every framework)."""
    if value is None or value is False:
        return {}
    if value is True:
        return {"*": {}}
    if isinstance(value, Mapping):
        return {str(k): dict(v or {}) for k, v in value.items()}
    if isinstance(value, str):
        value = [value]
    return {str(name): {} for name in value}


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
        arguments: tuple[Any, ...] = (),
    ) -> None:
        self.options = options
        self.function = function
        self.params = params or {}
        self.source_file = source_file
        self.arguments = arguments
        self.explained: Explained | None = None
        self._conn: Connection | None = None
        self._autolog_off: list[Callable[[], None]] = []
        self.run = Run()
        self._saved: SavedState | None = None
        self._token: contextvars.Token[tuple[Run, ...]] | None = None
        self._previous_sigterm: Any = None
        self._finished = False
        self._pushed: str | None = None  # the run id put on MLflow's active-run stack

    # -- start -----------------------------------------------------------------------

    def start(self) -> Run:
        """Create the run; return an untracked Run when tracking is off or failed."""
        from tracksdk import _config, _fork

        _fork.install()
        parent = active_run() if self.options.nested is not False else None
        overrides = self.options.overrides()
        explained = _config.resolve(overrides)
        settings = explained.settings
        if settings.mode == "disabled":
            return self._push(self.run)
        if _is_multiprocess() and _rank() != 0 and not settings.track_all_ranks:
            return self._push(self.run)
        conn: Connection | None
        if parent is not None and parent.tracked:
            conn = parent._conn  # None: the parent is offline, and so is its child
        elif settings.mode == "offline":
            parent, conn = None, None  # no backend is contacted, nor resolved
        else:
            parent = None
            explained, conn = _config.resolve_with_connection(overrides)
            self._sync_leftovers(explained, conn)
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
        _context.opened(run)  # for threads without a run of their own (docs/quickstart.md)
        return run

    def _create(self, explained: Explained, conn: Connection | None, parent: Run | None) -> Run:
        from tracksdk import _journal
        from tracksdk._writer import Writer

        settings = explained.settings
        self._conn = conn
        if parent is None and conn is not None and stores.uses_mlflow(conn):
            from tracksdk import _mlflow

            self._saved = _mlflow.activate(
                conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
            )
        if parent is not None and self.options.experiment is None:
            experiment = parent.experiment_name or explained.root.name
        else:
            experiment = settings.experiment or self._mlflow_experiment() or explained.root.name

        provenance = self._provenance(explained)
        tags: dict[str, str] = dict(provenance.tags)
        tags[USER_TAG] = _user()
        if self.function is not None:
            tags[FUNCTION_TAG] = _function_name(self.function)
        checker = Checker(strict=settings.strict)
        long_tags: dict[str, str] = {}  # set after creation: kept whole in an artifact
        for raw_key, value in (self.options.tags or {}).items():
            key = checker.key("tag", raw_key)
            if key is not None:
                text = checker.text("tag", key, _redact.redact(safe_str(value)))
                if len(text) > MAX_TAG_VALUE:
                    long_tags[key] = text
                else:
                    tags[key] = text
        client_id = _journal.new_client_id()
        tags[CLIENT_RUN_ID_TAG] = client_id
        if self.options.run_name:
            tags[RUN_NAME_TAG] = self.options.run_name
        folder = _journal.journal_dir(explained)
        meta = {
            "client_id": client_id,
            "target": _journal.masked_target(conn.tracking_uri) if conn else None,
            "backend": conn.backend if conn is not None else None,
            "experiment": experiment,
            "run_name": self.options.run_name,
            "parent": parent.client_run_id if parent is not None else None,
        }
        max_bytes = settings.journal.max_mb << 20
        try:
            if conn is not None and not stores.uses_mlflow(conn):
                # The memory store dies with the process: a journal on disk would outlive it.
                journal = _journal.Journal.in_memory(folder, meta, max_bytes=max_bytes, reason=None)
            else:
                journal = _journal.Journal.create(
                    folder, meta, max_bytes=max_bytes, memory_fallback=conn is not None
                )
        except OSError as exc:
            if conn is None:  # offline: memory would die with the process
                raise TrackingError(
                    f"The journal cannot be written in {folder} ({exc}); set "
                    "TRACKSDK_JOURNAL__DIR to a writable folder"
                ) from None
            # The store can still take the run: keep its records in memory meanwhile.
            journal = _journal.Journal.in_memory(
                folder, meta, max_bytes=max_bytes, reason=f"{exc.strerror or exc} in {folder}"
            )
        label = self.options.run_name or client_id[:8]
        writer = Writer(
            journal,
            conn,
            strict=settings.strict,
            flush_timeout=settings.flush_timeout,
            http_timeout=settings.http_timeout,
            label=label,
        )
        try:
            writer.create(
                {
                    "experiment": experiment,
                    "run_name": self.options.run_name,
                    "tags": tags,
                    "parent": parent.client_run_id if parent is not None else None,
                    "parent_run_id": parent.run_id if parent is not None else None,
                    "start": int(time.time() * 1000),
                }
            )
            run = Run(
                conn=conn,
                writer=writer,
                checker=checker,
                parent=parent,
                name=self.options.run_name,
                experiment_name=experiment,
            )
            if self.params:
                run.log_params(self.params)
            if long_tags:
                run.set_tags(long_tags)
            writer.texts(provenance.texts)
            for message in provenance.warnings:
                _warn.warn(f"tracksdk: {message}")
            self.explained = explained
            if journal.degraded is not None:
                writer.warn_degraded()
            writer.start()
            self._wait_created(writer, settings)
            self._enable_autolog(settings, run)
        except BaseException:
            # The function will run untracked (or the error reaches the caller in strict
            # mode): the sender stops and what was journaled waits for `tracksdk sync`.
            writer.abandon()
            raise
        return run

    def _mlflow_experiment(self) -> str | None:
        """MLflow's active experiment (``mlflow.set_experiment``), when tracksdk names none."""
        in_mlflow = self._conn is None or stores.uses_mlflow(self._conn)
        if self._saved is None and ("mlflow" not in sys.modules or not in_mlflow):
            return os.environ.get("MLFLOW_EXPERIMENT_NAME") or None  # MLflow never ran here
        from tracksdk import _mlflow

        try:
            return _mlflow.active_experiment(self._saved, self._conn)
        except Exception:  # a best-effort reading: the default experiment then
            return None

    def _wait_created(self, writer: Writer, settings: Any) -> None:
        """Wait (bounded) for the store to create the run, so its id is known at once.

        MLflow's own APIs (``mlflow.log_*``, MLflow's autolog) need the run in the store;
        tracksdk's do not. When the store does not answer, the run goes on journaled.
        """
        sender = writer.sender
        conn = self._conn
        if sender is None or conn is None:
            return
        # A local store has no network to wait for, only a disk (and a first creation).
        wait = settings.start_timeout if conn.is_remote else max(settings.start_timeout, 120.0)
        sender.start_watched = True
        created = sender.wait_created(wait)
        sender.start_watched = False
        if created and sender.created is not None:
            if not stores.uses_mlflow(conn):
                return  # no MLflow state to hand the run to
            from tracksdk import _mlflow

            _mlflow.push_active(sender.created)
            self._pushed = sender.created.run_id
            return
        reason = sender.auth_error or sender.last_error
        because = f": {reason}" if reason else f" within {wait:.0f} s"
        if settings.strict:
            sender.stop()
            raise TrackingError(f"The store at {conn.tracking_uri} did not create the run{because}")
        sender._warned_outage = True  # this warning says it all
        if sender.auth_error is not None:
            return  # the sender said which credential to fix
        if sender.stopped:
            _warn.warn(
                f"tracksdk: the store at {conn.tracking_uri} refused to create run "
                f"{writer.label}{because}. The function runs; everything it logs is kept in "
                f"the journal ({writer.journal.path}). Fix the cause (`tracksdk doctor`), "
                "then run `tracksdk sync`."
            )
            return
        _warn.warn(
            f"tracksdk: the store at {conn.tracking_uri} did not create run {writer.label}"
            f"{because}. The function runs; everything it logs is kept in the journal "
            f"({writer.journal.path}) and sent when the store answers. If this process ends "
            "first, `tracksdk sync` (or the next tracked run here) sends it."
        )

    def _sync_leftovers(self, explained: Explained, conn: Connection) -> None:
        """Send, in the background, runs an earlier process left in the journal."""
        if active_run() is not None or not stores.uses_mlflow(conn):
            return  # the memory store lives in this process: earlier runs are not its own
        from tracksdk import _journal, _sync

        _sync.in_background(_journal.journal_dir(explained), conn, explained.settings.http_timeout)

    # -- plugins ---------------------------------------------------------------------

    def _enable_autolog(self, settings: Any, run: Run) -> None:
        """Turn on the selected frameworks' autolog for this run only."""
        from tracksdk import _plugins, hookspecs

        selection = _autolog_selection(settings.autolog)
        if not selection:
            return
        pm = _plugins.manager(settings.plugins)
        available = _plugins.frameworks(pm)
        if selection == {"*": {}}:
            selection = {name: {} for name in available}
        for name, options in selection.items():
            if name not in available:
                known = ", ".join(sorted(available)) or "none installed"
                _warn.warn(
                    f"tracksdk: no plugin provides autolog for {name!r} (available: "
                    f"{known}). Install its plugin, or fix the name in autolog=."
                )
                continue
            # MLflow's own autolog writes to MLflow's active run: only where tracksdk made
            # one (not on the memory store, which MLflow cannot reach).
            in_store = run.run_id is not None and (
                self._conn is None or stores.uses_mlflow(self._conn)
            )
            if in_store and options.get("log_models") and not self._server_logs_models():
                options = {**options, "log_models": False}
                _warn.warn(
                    f"tracksdk: the server has no logged-model endpoints (MLflow 2.x); "
                    f"autolog for {name!r} runs with log_models=False, since MLflow would "
                    "otherwise drop the metrics too. Return the model to log it instead."
                )
            off = hookspecs.call_autolog(pm, name, options, in_store)
            if off is not None:
                self._autolog_off.append(off)

    def _server_logs_models(self) -> bool:
        from tracksdk import stores

        conn = self._conn
        return conn is None or stores.capabilities(conn).logged_models

    def _disable_autolog(self) -> None:
        while self._autolog_off:
            off = self._autolog_off.pop()
            try:
                off()
            except Exception as exc:  # a plugin's bug must not hide the run's status
                _warn.warn(f"tracksdk: turning autolog off failed: {type(exc).__name__}: {exc}")

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
        _context.closed(self.run)
        run = self.run
        writer = run._writer
        if writer is None:
            return
        try:
            status = self._status_for(exc)
            if status == "FINISHED":  # a failed trial is never a search's best
                self._report_to_parent()
            self._record_best()
            if status == "FAILED" and exc is not None and not isinstance(exc, SystemExit):
                self._record_error(run, exc)
            elif isinstance(exc, SystemExit):
                run.set_tag(EXIT_CODE_TAG, str(exc.code))
            self._end(status)
        except TrackingError:
            if exc is None:
                raise  # strict mode, and the function itself succeeded
        finally:
            self._cleanup()

    def _report_to_parent(self) -> None:
        run = self.run
        run_id = run.run_id or run.client_run_id
        if run.parent is not None and run_id is not None:
            with run.parent._lock:
                run.parent._children.append((run_id, dict(run._latest)))

    def _record_best(self) -> None:
        """For a search parent: log the best child's metric and run id (``best=``)."""
        gate = self.options.best
        run = self.run
        if gate is None:
            return
        best: tuple[str, float] | None = None
        for run_id, metrics in run._children:
            value = metrics.get(gate.metric)
            if value is not None and gate.beats(value, best[1] if best else None):
                best = (run_id, value)
        if best is None:
            _warn.warn(
                f"tracksdk: best={gate.metric!r} but no child run logged that metric: "
                "nothing recorded."
            )
            return
        run.log_metric(f"best_{gate.metric}", best[1])
        run.set_tag(BEST_RUN_ID_TAG, best[0])

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
                ERROR_TYPE_TAG: f"{type(exc).__module__}.{type(exc).__qualname__}",
                ERROR_MESSAGE_TAG: message[:1000] if message else "",
            }
        )
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        run.log_text(text, "error/traceback.txt")

    def _end(self, status: str, timeout: float | None = None) -> None:
        run = self.run
        self._disable_autolog()
        if self._pushed is not None:
            from tracksdk import _mlflow

            _mlflow.pop_active(self._pushed)
            self._pushed = None
        run.status = status
        if run._writer is not None:
            run._writer.terminate(status, timeout)

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
        """Log what the tracked function returned: metrics, and a model through its plugin.

        A mapping's numbers are logged as metrics (bools as 0/1, 0-d arrays as their
        value; other entries are skipped with one warning per run naming them); a model,
        ``(model, metrics)`` or a :class:`~tracksdk.Result` has its model logged (and
        registered with ``register=``); ``(metrics, metrics)`` logs both mappings, in
        order. The value itself is returned to the caller untouched.
        """
        run = self.run
        if run._writer is None:
            return
        from tracksdk.registry import Result

        model: Any = None
        example: Any = None
        if isinstance(result, Result):
            model, example = result.model, result.input_example
            run.log_metrics(run._not_yet_logged(run._result_metrics(result.metrics)))
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
            if isinstance(result[0], Mapping):  # two dicts of metrics, logged in order
                run._handle_result(result[0])
            else:
                model = result[0]
            run._handle_result(result[1])
        elif isinstance(result, Mapping):
            run._handle_result(result)
        elif result is not None:
            model = result
        if model is not None:
            self._log_model(model, example)
        elif self.options.register is not None:
            _warn.warn(
                "tracksdk: register= is set but the function returned no model: nothing "
                "was registered. Return the model, (model, metrics) or tracksdk.Result."
            )

    def _log_model(self, model: Any, example: Any) -> None:
        from tracksdk import _plugins
        from tracksdk.registry import input_sample

        settings = self.explained.settings if self.explained else None
        pm = _plugins.manager(settings.plugins if settings else None)
        framework = _plugins.framework_of(pm, model)
        if framework is None:
            if self.options.register is not None:
                _warn.warn(
                    f"tracksdk: no installed plugin knows how to log a "
                    f"{type(model).__module__}.{type(model).__qualname__}, so it was not "
                    "logged or registered. Install the framework's tracksdk plugin."
                )
            return
        if framework in _plugins.frameworks(pm):  # not "pyfunc": nothing to autolog
            self._check_autolog_owner(framework, model, settings)
        if example is None:
            example = next((s for s in map(input_sample, self.arguments) if s is not None), None)
        self.run._log_model(pm, model, framework, example, self.options)

    def _check_autolog_owner(self, framework: str, model: Any, settings: Any) -> None:
        """Say so when autolog was asked for, but not for the framework owning the model."""
        if settings is None:
            return
        selection = _autolog_selection(settings.autolog)
        if selection and "*" not in selection and framework not in selection:
            _warn.warn(
                f"tracksdk: {type(model).__qualname__} belongs to the {framework!r} plugin, "
                f"and autolog={sorted(selection)} does not include it, so its training was "
                f"not autologged. Add {framework!r} to autolog=."
            )

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
        global _sigterm_pid
        _sigterm_pid = os.getpid()
        signal.signal(signal.SIGTERM, _on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


_sigterm_pid = 0  # the process that installed _on_sigterm


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End every live run KILLED, restore the previous handler, and re-deliver."""
    if os.getpid() != _sigterm_pid:  # a forked child the at-fork hook did not reach
        _restore_inherited_sigterm()
        os.kill(os.getpid(), signum)
        return
    with _live_lock:
        sessions = list(reversed(_live))
    previous: Any = signal.SIG_DFL
    for session in sessions:
        if session._previous_sigterm is not None:
            previous = session._previous_sigterm
        try:
            session._finished = True
            settings = session.explained.settings if session.explained else None
            session._end("KILLED", settings.sigterm_timeout if settings else 10.0)
        except Exception:  # the process is going down; never block it
            pass
        finally:
            session._cleanup()
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def _restore_inherited_sigterm() -> None:
    """Put back the SIGTERM handler the process had before the outermost run."""
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        return
    previous: Any = signal.SIG_DFL
    for session in _live:
        if session._previous_sigterm is not None:
            previous = session._previous_sigterm
            break
    with contextlib.suppress(ValueError):  # not the main thread: nothing to undo there
        signal.signal(signal.SIGTERM, previous)


def after_fork_in_child() -> None:
    """In a forked child: none of the parent's runs live here.

    The child keeps its view of the current run (``tracksdk.log_*`` writes to the
    parent's run through a journal of its own), but it must not end those runs: no
    SIGTERM handler of the parent's, no live sessions, fresh locks.
    """
    global _live_lock
    _restore_inherited_sigterm()
    for session in _live:
        session._previous_sigterm = None
        session.run._lock = threading.Lock()
    _live.clear()
    _live_lock = threading.RLock()


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"
