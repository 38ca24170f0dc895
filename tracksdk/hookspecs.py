"""The hooks a framework plugin implements: the plugin author's reference.

A plugin is a distribution with an entry point in the ``tracksdk`` group naming a module
or object whose functions carry the :data:`hookimpl` marker::

    # pyproject.toml
    [project.entry-points.tracksdk]
    xgboost = "tracksdk_xgboost"

    # tracksdk_xgboost/__init__.py
    from tracksdk.hookspecs import hookimpl

    @hookimpl
    def tracksdk_frameworks():
        return ["xgboost"]

    @hookimpl
    def tracksdk_model_framework(model):
        return "xgboost" if type(model).__module__.startswith("xgboost") else None

A plugin implements only the hooks it needs. Hooks marked *first result* stop at the first
plugin that returns something other than None: return None for objects that are not
yours. A plugin that fails to import, or a hook that raises or returns the wrong type,
produces a warning naming the plugin; tracking goes on without it. ``TRACKSDK_PLUGINS``
limits which plugins load. docs/writing-plugins.md walks through a complete plugin.

A plugin for one framework can let :class:`FrameworkHooks` write its hooks' common part
(answer only for its own framework). Its building blocks are public modules of tracksdk:
:mod:`tracksdk.autolog` (autolog engines, patched training calls), :mod:`tracksdk.saving`
(fast MLflow model saving, pinned requirements) and :mod:`tracksdk.evaluation` (metrics
and figures of scikit-learn-API models). :func:`warn` points a plugin's warning at the
user's line.

Plugins import their framework and MLflow's flavor module inside hook functions, never at
module level: tracksdk loads every plugin's module when a run needs one, and must stay fast.

tracksdk's own code calls the hooks through the typed ``call_*`` functions at the end of
this module, one per hook, which isolate each plugin's failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from tracksdk._warn import warn

if TYPE_CHECKING:
    from tracksdk.autolog import AutologSpec

__all__ = [
    "Evaluation",
    "FrameworkHooks",
    "call_autolog",
    "call_each",
    "call_evaluate",
    "call_frameworks",
    "call_model_framework",
    "call_save_model",
    "hookimpl",
    "hookspec",
    "warn",
]

PROJECT = "tracksdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])
#: The restore callable a ``tracksdk_autolog`` implementation returns.
Restore = Callable[[], None]


@dataclass
class Evaluation:
    """What ``tracksdk_evaluate`` returns.

    Attributes:
        metrics: Metric name (without the caller's prefix) to value.
        figures: Artifact file name (e.g. ``"confusion_matrix.png"``) to a matplotlib
            figure; tracksdk saves and closes each one.
    """

    metrics: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)


@hookspec
def tracksdk_frameworks() -> list[str]:  # type: ignore[empty-body]
    """Return the names of the frameworks this plugin handles, e.g. ``["sklearn"]``.

    These are the names users pass to ``tracked(autolog=[...])`` and ``TRACKSDK_AUTOLOG``.
    """


@hookspec(firstresult=True)
def tracksdk_model_framework(model: Any) -> str | None:
    """Return your framework's name if ``model`` belongs to it, else None (first result).

    Decide by type, cheaply, without importing the framework when ``model`` cannot be
    yours (check ``type(model).__module__`` first).
    """


@hookspec(firstresult=True)
def tracksdk_autolog(framework: str, options: Mapping[str, Any], in_store: bool) -> Restore | None:
    """Turn on autolog for ``framework`` with ``options``; return how to turn it off.

    Called when a tracked run starts with ``framework`` in its autolog selection, in the
    thread (or asyncio task) that runs the body, before its first line. Return None when
    ``framework`` is not yours. The returned callable is called when the run ends and must
    restore whatever autolog state was there before (a user's own global
    ``mlflow.<flavor>.autolog(...)`` must survive the run). Keep defaults cheap: costly
    extras (model logging, dataset logging, plots) are opt-in through ``options``, and
    never register a model per tuning trial.

    ``in_store`` is False when the run exists only in tracksdk's journal (offline mode, or
    the store did not answer at start). MLflow's own autolog writes to MLflow's active run
    and would then create runs of its own: log through ``tracksdk.log_*`` instead, which
    is journaled. Declaring the argument is optional (pluggy passes only the arguments an
    implementation names).
    """


@hookspec(firstresult=True)
def tracksdk_save_model(
    model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
) -> str | None:
    """Save ``model`` as an MLflow model in the new folder ``path``; return the flavor name.

    Return None when ``framework`` is not yours. Save with a signature inferred from
    ``input_example`` (a small sample of the training input, may be None) and with pip
    requirements pinned from the installed versions, not MLflow's slow inference. The
    saved model must load with ``mlflow.pyfunc.load_model`` and predict like ``model``.
    ``formats`` may ask for extra copies (e.g. ``"onnx"``), saved under ``path``'s parent.
    """


@hookspec(firstresult=True)
def tracksdk_evaluate(model: Any, framework: str, X: Any, y: Any) -> Evaluation | None:
    """Evaluate ``model`` on ``X``, ``y``: metrics and figures (first result).

    Return None when ``framework`` is not yours. Classification: accuracy, precision,
    recall, F1 (binary and macro), ROC AUC and log loss where defined, and a confusion
    matrix, ROC curve and precision-recall curve. Regression: RMSE, MAE, R² and a
    residual plot.
    """


def registered_hooks() -> tuple[Callable[..., Any], ...]:
    """Every hook specification in this module."""
    return (
        tracksdk_frameworks,
        tracksdk_model_framework,
        tracksdk_autolog,
        tracksdk_save_model,
        tracksdk_evaluate,
    )


# --- the hook skeleton of a one-framework plugin ---


class FrameworkHooks:
    """Writes the hooks of a plugin for one framework around the plugin's own functions.

    Every hook of such a plugin starts the same way: return None unless the call is about
    its framework. Each method here returns a complete hook implementation (marked with
    :data:`hookimpl`) that does that part and calls the plugin's function for the rest.
    Bind each one to the hook's name at module level, where pluggy looks for it::

        hooks = FrameworkHooks("xgboost")
        tracksdk_frameworks = hooks.frameworks()
        tracksdk_model_framework = hooks.model_framework(is_xgboost_model)
        tracksdk_autolog = hooks.autolog(autolog_spec)


        @hooks.save_model
        def tracksdk_save_model(model, path, input_example, formats) -> None: ...


        @hooks.evaluate
        def tracksdk_evaluate(model, X, y) -> Evaluation: ...

    Args:
        framework: The framework's name, as users write it in ``autolog=[...]``.
    """

    def __init__(self, framework: str) -> None:
        self.framework = framework

    def frameworks(self) -> Callable[[], list[str]]:
        """``tracksdk_frameworks``: this plugin's one framework."""
        framework = self.framework

        def tracksdk_frameworks() -> list[str]:
            return [framework]

        return _implementation(tracksdk_frameworks, f"Returns ``[{framework!r}]``.")

    def model_framework(
        self, owns: Callable[[Any], bool], *, trylast: bool = False
    ) -> Callable[[Any], str | None]:
        """``tracksdk_model_framework`` from ``owns(model)``, which must import nothing.

        Args:
            owns: Whether ``model`` is this framework's.
            trylast: Be asked after the other plugins, for a framework whose classes
                other frameworks subclass (scikit-learn's ``BaseEstimator``).
        """
        framework = self.framework

        def tracksdk_model_framework(model: Any) -> str | None:
            return framework if owns(model) else None

        return _implementation(tracksdk_model_framework, owns.__doc__, trylast=trylast)

    def autolog(
        self, spec: Callable[[], AutologSpec]
    ) -> Callable[[str, Mapping[str, Any], bool], Restore | None]:
        """``tracksdk_autolog`` through :func:`tracksdk.autolog.start_autolog`.

        Args:
            spec: Returns the framework's :class:`tracksdk.autolog.AutologSpec`; called
                when a run turns autolog on, so the plugin module imports nothing for it.
        """
        mine = self.framework

        def tracksdk_autolog(
            framework: str, options: Mapping[str, Any], in_store: bool
        ) -> Restore | None:
            if framework != mine:
                return None
            from tracksdk.autolog import start_autolog

            return start_autolog(spec(), options, in_store=in_store)

        doc = f"{mine} autolog, tracksdk's engine or MLflow's; returns the restore callable."
        return _implementation(tracksdk_autolog, doc)

    def save_model(
        self, save: Callable[[Any, Path, Any, tuple[str, ...]], None]
    ) -> Callable[[Any, str, Path, Any, tuple[str, ...]], str | None]:
        """``tracksdk_save_model`` from ``save(model, path, input_example, formats)``.

        The flavor returned is the framework's name.
        """
        mine = self.framework

        def tracksdk_save_model(
            model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
        ) -> str | None:
            if framework != mine:
                return None
            save(model, path, input_example, formats)
            return mine

        return _implementation(tracksdk_save_model, save.__doc__)

    def evaluate(
        self, evaluate: Callable[[Any, Any, Any], Evaluation]
    ) -> Callable[[Any, str, Any, Any], Evaluation | None]:
        """``tracksdk_evaluate`` from ``evaluate(model, X, y)``."""
        mine = self.framework

        def tracksdk_evaluate(model: Any, framework: str, X: Any, y: Any) -> Evaluation | None:
            if framework != mine:
                return None
            return evaluate(model, X, y)

        return _implementation(tracksdk_evaluate, evaluate.__doc__)


def _implementation(function: F, doc: str | None, *, trylast: bool = False) -> F:
    # Not functools.wraps: pluggy reads the argument names through __wrapped__, and the
    # hook's are not the plugin function's.
    function.__doc__ = doc
    return hookimpl(trylast=trylast)(function)


# --- calling the hooks: tracksdk's side ---


def call_frameworks(pm: pluggy.PluginManager) -> dict[str, str]:
    """``tracksdk_frameworks`` of every plugin: framework name to the plugin providing it."""
    found: dict[str, str] = {}
    for plugin, names in _results(pm, "tracksdk_frameworks", {}, list, "a list of names"):
        for name in names:
            found.setdefault(str(name), plugin)
    return found


def call_model_framework(pm: pluggy.PluginManager, model: Any) -> str | None:
    """``tracksdk_model_framework``: the framework owning ``model``, or None."""
    for _, name in _results(pm, "tracksdk_model_framework", {"model": model}, str, "a name"):
        return name
    return None


def call_autolog(
    pm: pluggy.PluginManager, framework: str, options: Mapping[str, Any], in_store: bool
) -> Restore | None:
    """``tracksdk_autolog``: turn ``framework``'s autolog on; the callable turning it off."""
    kwargs = {"framework": framework, "options": options, "in_store": in_store}
    for plugin, off in _results(pm, "tracksdk_autolog", kwargs, object, "a callable"):
        if callable(off):
            return cast(Restore, off)
        _wrong_type(plugin, "tracksdk_autolog", off, "a callable")
    return None


def call_save_model(
    pm: pluggy.PluginManager,
    model: Any,
    framework: str,
    path: Path,
    input_example: Any,
    formats: tuple[str, ...],
) -> str | None:
    """``tracksdk_save_model``: save ``model`` into ``path``; the flavor, or None."""
    kwargs = {
        "model": model,
        "framework": framework,
        "path": path,
        "input_example": input_example,
        "formats": formats,
    }
    for _, flavor in _results(pm, "tracksdk_save_model", kwargs, str, "a flavor name"):
        return flavor
    return None


def call_evaluate(
    pm: pluggy.PluginManager, model: Any, framework: str, X: Any, y: Any
) -> Evaluation | None:
    """``tracksdk_evaluate``: ``model``'s metrics and figures on ``X``, ``y``, or None."""
    kwargs = {"model": model, "framework": framework, "X": X, "y": y}
    for _, found in _results(pm, "tracksdk_evaluate", kwargs, Evaluation, "an Evaluation"):
        return found
    return None


def call_each(
    pm: pluggy.PluginManager, hook: str, kwargs: Mapping[str, Any]
) -> Iterator[tuple[str, Any]]:
    """Yield ``(plugin name, result)`` plugin by plugin, skipping a raising plugin.

    Unlike pluggy's own call, one plugin's exception does not abort the others: it is
    reported as a warning naming the plugin. None results are skipped. The typed
    ``call_*`` functions above are built on this; prefer them.
    """
    caller = getattr(pm.hook, hook)
    # pluggy calls the last registered first; keep that order.
    for impl in reversed(caller.get_hookimpls()):
        try:
            result = impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception as exc:
            warn(
                f"tracksdk: plugin {impl.plugin_name!r} failed in {hook}: "
                f"{type(exc).__name__}: {exc}. It is skipped for this call."
            )
            continue
        if result is not None:
            yield impl.plugin_name, result


def _results(
    pm: pluggy.PluginManager, hook: str, kwargs: Mapping[str, Any], kind: type[T], what: str
) -> Iterator[tuple[str, T]]:
    """:func:`call_each`, keeping the results of type ``kind``; others are warnings."""
    for plugin, result in call_each(pm, hook, kwargs):
        if isinstance(result, kind):
            yield plugin, result
        else:
            _wrong_type(plugin, hook, result, what)


def _wrong_type(plugin: str, hook: str, result: object, what: str) -> None:
    warn(
        f"tracksdk: plugin {plugin!r} returned a {type(result).__name__} from {hook}, "
        f"not {what}. It is skipped for this call."
    )
