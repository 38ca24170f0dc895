"""What a tracked function returned or raised: metrics, a model, the run's end status.

:class:`Outcome` serves one session: a mapping's numbers become metrics, a model is saved
through the plugin that owns it, uploaded as ``model/`` and, with ``register=``,
registered and gated (:mod:`tracksdk.registry`). ``Run.log_checkpoint`` shares the saving
and uploading (:func:`save_and_upload`).
"""

from __future__ import annotations

import numbers
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _redact, _warn
from tracksdk._schema import (
    BEST_RUN_ID_TAG,
    ERROR_MESSAGE_TAG,
    ERROR_TYPE_TAG,
    GATE_REASON_TAG,
    GATE_VERDICT_TAG,
    MODEL_FRAMEWORK_TAG,
    MODEL_REGISTERED_TAG,
    MODEL_URI_TAG,
)
from tracksdk._validate import shorten
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._options import RunOptions
    from tracksdk._run import Run
    from tracksdk._validate import Checker
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection
    from tracksdk.registry import Gate, Register

__all__ = ["Children", "Outcome", "record_error", "save_and_upload", "status_for"]


class Outcome:
    """Logs what one tracked call returned into its run.

    Args:
        run: The session's run.
        writer: The run's writer (the session made both).
        conn: The store's connection, or None offline.
        options: The run's options (``register=``, ``formats=``).
        arguments: The call's arguments: the first that looks like model input becomes
            the logged model's input example.
        plugins: The plugins allowed by the settings (None: every installed one).
        autolog: The ``autolog=`` selection, to say when it missed the model's framework.
        strict: Raise registry failures instead of warning.
    """

    def __init__(
        self,
        run: Run,
        writer: Writer,
        conn: Connection | None,
        options: RunOptions,
        *,
        arguments: Sequence[Any] = (),
        plugins: Sequence[str] | None = None,
        autolog: Mapping[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        self.run = run
        self.writer = writer
        self.conn = conn
        self.options = options
        self.arguments = arguments
        self.plugins = plugins
        self.autolog = autolog or {}
        self.strict = strict
        self._warned = False  # the returned value had entries that are not metrics

    def handle(self, result: Any) -> None:
        """Log ``result``: metrics, and a model through its plugin.

        A mapping's numbers are logged as metrics (bools as 0/1, 0-d arrays as their
        value; other entries are skipped with one warning per run naming them); a model,
        ``(model, metrics)`` or a :class:`~tracksdk.Result` has its model logged (and
        registered with ``register=``); ``(metrics, metrics)`` logs both mappings, in
        order. The value itself is returned to the caller untouched.
        """
        from tracksdk.registry import Result

        model: Any = None
        example: Any = None
        if isinstance(result, Result):
            model, example = result.model, result.input_example
            self.log_metrics(result.metrics)
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
            if isinstance(result[0], Mapping):  # two dicts of metrics, logged in order
                self.log_metrics(result[0])
            else:
                model = result[0]
            self.log_metrics(result[1])
        elif isinstance(result, Mapping):
            self.log_metrics(result)
        elif result is not None:
            model = result
        if model is not None:
            self._log_model(model, example)
        elif self.options.register is not None:
            _warn.warn(
                "tracksdk: register= is set but the function returned no model: nothing "
                "was registered. Return the model, (model, metrics) or tracksdk.Result."
            )

    # -- metrics ---------------------------------------------------------------------

    def log_metrics(self, result: Mapping[Any, Any]) -> None:
        """Log a returned mapping's numbers, but those already logged with that value.

        Returning what ``tracksdk.evaluate`` already logged must not add a second point.
        """
        latest = self.run.latest_metrics
        metrics = self._metrics(result)
        self.run.log_metrics({k: v for k, v in metrics.items() if latest.get(k) != float(v)})

    def _metrics(self, result: Mapping[Any, Any]) -> dict[str, float]:
        """The metrics in a returned mapping; warn once per run about the keys skipped.

        Numbers (numpy scalars too) are kept, bools become 0/1, 0-d arrays and tensors
        their value. Keys that are not strings, and values that are not numbers (None,
        text, arrays, nested dicts), are skipped and named in the warning.
        """
        metrics: dict[str, float] = {}
        skipped: list[str] = []
        for key, value in result.items():
            if not isinstance(key, str):
                skipped.append(f"{shorten(repr(key))} (the key is a {type(key).__name__})")
                continue
            number = _as_number(value)
            if number is None:
                skipped.append(f"{shorten(repr(key))} ({_describe_value(value)})")
                continue
            metrics[key] = number
        if skipped and not self._warned:
            self._warned = True
            _warn.warn(
                "tracksdk: the returned value has entries that are not metrics, so these "
                f"were not logged: {', '.join(skipped)}. A metric needs a string key and a "
                "number (or a bool, logged as 0/1); log other values with "
                "tracksdk.log_param or tracksdk.set_tag."
            )
        return metrics

    # -- models ----------------------------------------------------------------------

    def _log_model(self, model: Any, example: Any) -> None:
        from tracksdk import _plugins
        from tracksdk.registry import input_sample

        pm = _plugins.manager(self.plugins)
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
            self._check_autolog_owner(framework, model)
        if example is None:
            example = next((s for s in map(input_sample, self.arguments) if s is not None), None)
        formats = self.options.formats
        if not save_and_upload(self.writer, pm, model, framework, example, formats, "model"):
            return
        run = self.run
        tags = {MODEL_FRAMEWORK_TAG: framework}
        if run.run_id is not None:  # unknown while the run is only journaled
            tags[MODEL_URI_TAG] = f"runs:/{run.run_id}/model"
        run.set_tags(tags)
        spec = self.options.register
        if spec is None:
            return
        # The version points at the uploaded model: the journal must reach the store
        # first. When it cannot (offline, server down), the registration itself is
        # journaled and done by the sender, or by `tracksdk sync`.
        writer = self.writer
        if writer.offline or not writer.flush() or run.run_id is None:
            writer.register(spec.to_dict(), run.latest_metrics)
            _warn.warn(
                f"tracksdk: the model of run {writer.label} is not in the store yet, so "
                f"{spec.name!r} will be registered when the run's journal is sent "
                "(in the background, or by `tracksdk sync`)."
            )
            return
        self._register_now(spec, run.run_id)

    def _check_autolog_owner(self, framework: str, model: Any) -> None:
        """Say so when autolog was asked for, but not for the framework owning the model."""
        selection = self.autolog
        if selection and "*" not in selection and framework not in selection:
            _warn.warn(
                f"tracksdk: {type(model).__qualname__} belongs to the {framework!r} plugin, "
                f"and autolog={sorted(selection)} does not include it, so its training was "
                f"not autologged. Add {framework!r} to autolog=."
            )

    def _register_now(self, spec: Register, run_id: str) -> None:
        from tracksdk import registry, stores
        from tracksdk.settings import find_project_root

        conn = self.conn
        assert conn is not None
        model_uri = f"runs:/{run_id}/model"
        if not stores.capabilities(conn).registry:
            _warn.warn(
                f"tracksdk: {conn.tracking_uri} has no model registry, so "
                f"{spec.name!r} was not registered. The model is logged in the run: "
                f"{model_uri}."
            )
            self.run.set_tag(MODEL_REGISTERED_TAG, "no registry on this server")
            return
        lock_dir = find_project_root() / ".tracksdk"
        try:
            version, verdict = registry.register_version(
                conn, run_id, model_uri, spec, self.run.latest_metrics, lock_dir
            )
        except TrackingError as exc:
            if self.strict:
                raise
            _warn.warn(f"tracksdk: {exc}. The model is logged in the run but not registered.")
            return
        tags = {MODEL_REGISTERED_TAG: f"{spec.name}/{version}"}
        if verdict is not None:
            tags[GATE_VERDICT_TAG] = "promoted" if verdict.promoted else "rejected"
            tags[GATE_REASON_TAG] = verdict.reason
        self.run.set_tags(tags)


class Children:
    """The finished child runs of a search parent (``best=``): their ids and last metrics.

    Children report from their own threads (a thread pool of trials), hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished: list[tuple[str, dict[str, float]]] = []

    def add(self, run_id: str, metrics: dict[str, float]) -> None:
        """Record a child that finished with ``metrics`` (a failed one is never added)."""
        with self._lock:
            self._finished.append((run_id, metrics))

    def record_best(self, run: Run, gate: Gate) -> None:
        """Log the best child's metric as ``best_<metric>`` and its id as a tag."""
        best: tuple[str, float] | None = None
        with self._lock:
            finished = list(self._finished)
        for run_id, metrics in finished:
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


def save_and_upload(
    writer: Writer,
    pm: Any,
    model: Any,
    framework: str,
    example: Any,
    formats: tuple[str, ...],
    dest: str,
) -> bool:
    """Save ``model`` through its plugin and upload it under ``dest``."""
    import tempfile

    from tracksdk import hookspecs

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


def _describe_value(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and shape != ():
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def status_for(exc: BaseException | None) -> str:
    """The status a run ends with when its body raised ``exc`` (None: returned)."""
    if exc is None:
        return "FINISHED"
    if isinstance(exc, SystemExit):
        return "FINISHED" if exc.code in (0, None) else "FAILED"
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED"
    return "FAILED"


def record_error(run: Run, exc: BaseException) -> None:
    """Tag the run with the error its body raised, and keep the traceback as an artifact."""
    message = _redact.redact(str(exc))
    run.set_tags(
        {
            ERROR_TYPE_TAG: f"{type(exc).__module__}.{type(exc).__qualname__}",
            ERROR_MESSAGE_TAG: message[:1000] if message else "",
        }
    )
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    run.log_text(text, "error/traceback.txt")


def checkpoint(writer: Writer, checker: Checker, model: Any, step: int) -> str | None:
    """``Run.log_checkpoint``: save ``model`` as ``checkpoints/step-<step>`` through its plugin."""
    from tracksdk import _plugins

    pm = _plugins.manager(_plugins.allowed())
    framework = _plugins.framework_of(pm, model)
    if framework is None:
        checker.problem(
            "checkpoint",
            type(model).__qualname__,
            f"no installed plugin knows how to save a {type(model).__qualname__}: "
            "checkpoint not logged.",
        )
        return None
    dest = f"checkpoints/step-{int(step):06d}"
    if save_and_upload(writer, pm, model, framework, None, (), dest):
        return dest
    return None
