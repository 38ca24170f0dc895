"""tracksdk plugin for LightGBM: ownership, autolog, model saving, evaluation.

Loaded through the ``tracksdk`` entry point ``lightgbm``. Importing this module is cheap: it
imports neither LightGBM, nor scikit-learn, nor MLflow; the hooks import them when called.

Ownership: every LightGBM model, i.e. an object with ``predict`` whose class (or a base
class) comes from ``lightgbm.*``: ``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``,
``Booster``. A scikit-learn ``Pipeline`` ending in an LGBM estimator stays scikit-learn's
(see tracksdk_sklearn).

The metric code, the autolog save/restore and the requirement pinning are shared with
tracksdk-sklearn, which this distribution depends on (LightGBM's scikit-learn API needs
scikit-learn anyway); only ``tracksdk_sklearn``'s helper modules are imported, never its
hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tracksdk_sklearn.autolog import COMMON_DEFAULTS

from tracksdk.hookspecs import Evaluation, hookimpl

__all__ = [
    "AUTOLOG_DEFAULTS",
    "FRAMEWORK",
    "tracksdk_autolog",
    "tracksdk_evaluate",
    "tracksdk_frameworks",
    "tracksdk_model_framework",
    "tracksdk_save_model",
]

FRAMEWORK = "lightgbm"

#: Merged under the user's options for ``mlflow.lightgbm.autolog``.
AUTOLOG_DEFAULTS: dict[str, Any] = dict(COMMON_DEFAULTS)

# LightGBM objectives whose Booster.predict returns class probabilities.
_BINARY = frozenset({"binary"})
_MULTICLASS = frozenset({"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"})

_PICKLE_WARNING = "Saving the models in the pickle or cloudpickle format"


@hookimpl
def tracksdk_frameworks() -> list[str]:
    """This plugin handles ``lightgbm``."""
    return [FRAMEWORK]


@hookimpl
def tracksdk_model_framework(model: Any) -> str | None:
    """``"lightgbm"`` for LightGBM models, else None. Imports nothing."""
    for cls in type(model).__mro__:
        if cls.__module__.partition(".")[0] == "lightgbm":
            return FRAMEWORK if hasattr(model, "predict") else None
    return None


@hookimpl
def tracksdk_autolog(framework: str, options: Mapping[str, Any]) -> Callable[[], None] | None:
    """``mlflow.lightgbm.autolog`` with cheap defaults; returns the restore callable."""
    if framework != FRAMEWORK:
        return None
    from tracksdk_sklearn.autolog import enable_autolog

    return enable_autolog(FRAMEWORK, "lightgbm", AUTOLOG_DEFAULTS, options)


@hookimpl
def tracksdk_save_model(
    model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
) -> str | None:
    """Save with ``mlflow.lightgbm.save_model``: signature, pinned requirements."""
    if framework != FRAMEWORK:
        return None
    import lightgbm
    import mlflow.lightgbm
    from tracksdk_sklearn.support import (
        head,
        infer_signature,
        pinned_requirements,
        quiet_logger,
        warn,
    )

    example = head(input_example)
    booster = isinstance(model, lightgbm.Booster)
    # A Booster is saved in LightGBM's own text format (no pickle). The scikit-learn API
    # models (LGBMClassifier, ...) are pickled with cloudpickle, for the same reasons as in
    # tracksdk-sklearn: MLflow's skops default costs ~2 s per save and the trusted-type list
    # it needs lives in the MLmodel file next to the data, so it protects nothing here.
    distributions = ["lightgbm", "numpy", "scipy"]
    if not booster:
        distributions += ["scikit-learn", "cloudpickle"]
    with quiet_logger("mlflow.lightgbm", _PICKLE_WARNING):
        mlflow.lightgbm.save_model(
            model,
            str(path),
            serialization_format="cloudpickle",
            signature=infer_signature(model, example),
            input_example=example,
            pip_requirements=pinned_requirements(distributions, example=example),
        )
    for extra in formats:
        warn(f"tracksdk-lightgbm cannot save format {extra!r}; only the MLflow model is saved.")
    return FRAMEWORK


@hookimpl
def tracksdk_evaluate(model: Any, framework: str, X: Any, y: Any) -> Evaluation | None:
    """Metrics and figures as tracksdk-sklearn's, plus ``feature_importance.png`` (gain)."""
    if framework != FRAMEWORK:
        return None
    import lightgbm
    import numpy as np
    from tracksdk_sklearn.evaluation import (
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
