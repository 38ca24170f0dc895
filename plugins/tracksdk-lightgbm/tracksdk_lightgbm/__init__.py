"""tracksdk plugin for LightGBM: ownership, autolog, model saving, evaluation.

Loaded through the ``tracksdk`` entry point ``lightgbm``. Importing this module is cheap: it
imports neither LightGBM, nor scikit-learn, nor MLflow; the hooks import them when called.

Ownership: every LightGBM model, i.e. an object with ``predict`` whose class (or a base
class) comes from ``lightgbm.*``: ``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``,
``Booster``. A scikit-learn ``Pipeline`` ending in an LGBM estimator stays scikit-learn's
(see tracksdk_sklearn).

Autolog has two engines (docs/autolog.md): tracksdk's own, the default
(:mod:`tracksdk_lightgbm.engine`: params, per-iteration evaluation results and the fit
time through tracksdk's API, importance plots opt-in), and MLflow's
``mlflow.lightgbm.autolog`` with cheap defaults (``{"engine": "mlflow"}``, chosen
automatically for MLflow-only options or when MLflow's lightgbm autolog is already on).

The hooks are written by :class:`tracksdk.hookspecs.FrameworkHooks`. The autolog
machinery, the model saving and the metric code are tracksdk's public plugin modules
(:mod:`tracksdk.autolog`, :mod:`tracksdk.saving`, :mod:`tracksdk.evaluation`), shared with
tracksdk-sklearn; this distribution depends on tracksdk only, and works without
tracksdk-sklearn installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk.autolog import COMMON_DEFAULTS
from tracksdk.hookspecs import Evaluation, FrameworkHooks, warn

if TYPE_CHECKING:
    from tracksdk.autolog import AutologSpec

__all__ = [
    "AUTOLOG_DEFAULTS",
    "ENGINE_OPTIONS",
    "FRAMEWORK",
    "autolog_spec",
    "tracksdk_autolog",
    "tracksdk_evaluate",
    "tracksdk_frameworks",
    "tracksdk_model_framework",
    "tracksdk_save_model",
]

FRAMEWORK = "lightgbm"

#: MLflow's engine: merged under the user's options for ``mlflow.lightgbm.autolog``.
AUTOLOG_DEFAULTS: dict[str, Any] = dict(COMMON_DEFAULTS)

#: tracksdk's engine: its options and their defaults (docs/autolog.md). The importance
#: plots cost ~0.5 s per training; datasets digest the data on every fit.
ENGINE_OPTIONS: dict[str, Any] = {
    "log_datasets": False,
    "importance_plots": False,
}

# LightGBM objectives whose Booster.predict returns class probabilities.
_BINARY = frozenset({"binary"})
_MULTICLASS = frozenset({"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"})

_PICKLE_WARNING = "Saving the models in the pickle or cloudpickle format"


def _is_lightgbm_model(model: Any) -> bool:
    """Whether ``model`` is LightGBM's (its class or a base from ``lightgbm``). Imports nothing."""
    for cls in type(model).__mro__:
        if cls.__module__.partition(".")[0] == "lightgbm":
            return hasattr(model, "predict")
    return False


def autolog_spec() -> AutologSpec:
    """How lightgbm autolog is turned on, under either engine (docs/autolog.md)."""
    from tracksdk.autolog import AutologSpec
    from tracksdk_lightgbm.engine import install

    return AutologSpec(
        framework=FRAMEWORK,  # mlflow.lightgbm.autolog takes the common options only
        engine_options=ENGINE_OPTIONS,
        install=install,
        mlflow_defaults=AUTOLOG_DEFAULTS,
        mlflow_switches={"log_post_training_metrics": _skip_post_training_metrics},
        mlflow_always={
            "importance_plots": "feature_importance_{split,gain}.png and .json after every "
            "training",
        },
    )


def _skip_post_training_metrics() -> Callable[[], None]:
    """MLflow's post-training metrics stay off for lightgbm models (``tracksdk.autolog``).

    ``{"log_post_training_metrics": True}`` keeps MLflow's behaviour.
    """
    from tracksdk.autolog import skip_post_training_metrics

    return skip_post_training_metrics("lightgbm", _is_lightgbm_model)


def _save(model: Any, path: Path, input_example: Any, formats: tuple[str, ...]) -> None:
    """Save with ``mlflow.lightgbm.save_model``: signature, pinned requirements."""
    import lightgbm

    from tracksdk.saving import save_mlflow_model

    # A Booster is saved in LightGBM's own text format (no pickle). The scikit-learn API
    # models (LGBMClassifier, ...) are pickled with cloudpickle, for the same reasons as in
    # tracksdk-sklearn: MLflow's skops default costs ~2 s per save and the trusted-type list
    # it needs lives in the MLmodel file next to the data, so it protects nothing here.
    distributions = ["lightgbm", "numpy", "scipy"]
    if not isinstance(model, lightgbm.Booster):
        distributions += ["scikit-learn", "cloudpickle"]
    save_mlflow_model(
        "lightgbm", model, path, input_example, distributions, quiet=(_PICKLE_WARNING,)
    )
    for extra in formats:
        warn(f"tracksdk-lightgbm cannot save format {extra!r}; only the MLflow model is saved.")


def _evaluate(model: Any, X: Any, y: Any) -> Evaluation:
    """Metrics and figures as tracksdk-sklearn's, plus ``feature_importance.png`` (gain)."""
    import lightgbm
    import numpy as np

    from tracksdk.evaluation import (
        classification_evaluation,
        evaluate_estimator,
        feature_importance_figure,
        regression_evaluation,
        unseen_by_autolog,
    )

    with unseen_by_autolog():
        if isinstance(model, lightgbm.Booster):
            booster = model
            objective = _objective(booster)
            output = booster.predict(X)
            if objective in _BINARY:
                proba = np.asarray(output, dtype=float)
                labels = (proba >= 0.5).astype(int)
                evaluation = classification_evaluation(y, labels, [0, 1], proba=proba)
            elif objective in _MULTICLASS:
                proba = np.asarray(output, dtype=float)
                labels = proba.argmax(axis=1)
                classes = list(range(proba.shape[1]))
                evaluation = classification_evaluation(y, labels, classes, proba=proba)
            else:  # regression objectives (and ranking, scored like a regression)
                evaluation = regression_evaluation(y, output)
        else:
            booster = model.booster_
            evaluation = evaluate_estimator(model, X, y)
    evaluation.figures["feature_importance.png"] = feature_importance_figure(
        booster.feature_name(),
        booster.feature_importance(importance_type="gain"),
        "Feature importance (gain)",
    )
    return evaluation


def _objective(booster: Any) -> str:
    """The objective of a Booster, also one loaded from a file (empty ``params``)."""
    objective = booster.params.get("objective")
    if objective is None:
        # The model header only: starting after the last iteration, no tree is written.
        header = booster.model_to_string(
            num_iteration=1, start_iteration=booster.current_iteration()
        )
        for line in header.splitlines():
            if line.startswith("objective="):
                objective = line.partition("=")[2].split()[0]
                break
    return str(objective or "regression")


_hooks = FrameworkHooks(FRAMEWORK)
tracksdk_frameworks = _hooks.frameworks()
tracksdk_model_framework = _hooks.model_framework(_is_lightgbm_model)
tracksdk_autolog = _hooks.autolog(autolog_spec)
tracksdk_save_model = _hooks.save_model(_save)
tracksdk_evaluate = _hooks.evaluate(_evaluate)
