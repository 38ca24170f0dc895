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
yours. A plugin that fails to import, or a hook that raises, produces a warning naming the
plugin; tracking goes on without it. ``TRACKSDK_PLUGINS`` limits which plugins load.
docs/writing-plugins.md walks through a complete plugin.

Plugins import their framework and MLflow's flavor module inside hook functions, never at
module level: tracksdk loads every plugin's module when a run needs one, and must stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

__all__ = ["Evaluation", "hookimpl", "hookspec"]

PROJECT = "tracksdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
def tracksdk_autolog(
    framework: str, options: Mapping[str, Any], in_store: bool
) -> Callable[[], None] | None:
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
