"""tracksdk plugin for XGBoost: ownership, autolog, model saving, evaluation.

Loaded through the ``tracksdk`` entry point ``xgboost``. Importing this module is cheap: it
imports neither XGBoost, nor scikit-learn, nor MLflow; the hooks import them when called.

Ownership: every XGBoost model, i.e. an object with ``predict`` whose class (or a base
class) comes from ``xgboost.*``: ``XGBClassifier``, ``XGBRegressor``, ``XGBRanker``, the
random-forest variants, ``Booster``. Not a ``DMatrix``. A scikit-learn ``Pipeline`` ending
in an XGBoost estimator stays scikit-learn's (see tracksdk_sklearn).

Autolog has two engines (docs/autolog.md): tracksdk's own, the default
(:mod:`tracksdk_xgboost.engine`: params, per-iteration evaluation results, the best
iteration and the fit time through tracksdk's API, importance plots opt-in), and MLflow's
``mlflow.xgboost.autolog`` with cheap defaults (``{"engine": "mlflow"}``, chosen
automatically for MLflow-only options or when MLflow's xgboost autolog is already on).

The hooks are written by :class:`tracksdk.hookspecs.FrameworkHooks`. The autolog
machinery, the model saving and the metric code are tracksdk's public plugin modules
(:mod:`tracksdk.autolog`, :mod:`tracksdk.saving`, :mod:`tracksdk.evaluation`); this
distribution depends on tracksdk only, and works without the other plugins installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk.autolog import COMMON_DEFAULTS, MLFLOW_OPTIONS
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

FRAMEWORK = "xgboost"

#: MLflow's engine: merged under the user's options for ``mlflow.xgboost.autolog``. Besides
#: the common cheap defaults, no importance plots: MLflow draws one with pyplot after every
#: training (``importance_types`` defaults to ``["weight"]``), ~0.3 s on a model that
#: trains in milliseconds. ``{"importance_types": ["weight"]}`` asks for it again.
AUTOLOG_DEFAULTS: dict[str, Any] = {**COMMON_DEFAULTS, "importance_types": []}

#: tracksdk's engine: its options and their defaults (docs/autolog.md). The importance
#: plot costs ~0.3 s per training; datasets digest the data on every fit.
ENGINE_OPTIONS: dict[str, Any] = {
    "log_datasets": False,
    "importance_plots": False,
}

# The option names of mlflow.xgboost.autolog in MLflow 3.17.
_MLFLOW_OPTIONS = (*MLFLOW_OPTIONS, "importance_types", "model_format")

# XGBoost objectives a Booster is evaluated as a classifier for (others: regression).
_BINARY_PROBA = "binary:logistic"
_BINARY_MARGIN = "binary:logitraw"
_BINARY_LABEL = "binary:hinge"
_MULTI_PROBA = "multi:softprob"
_MULTI_LABEL = "multi:softmax"


def _is_xgboost_model(model: Any) -> bool:
    """Whether ``model`` is XGBoost's (its class or a base from ``xgboost``). Imports nothing."""
    for cls in type(model).__mro__:
        if cls.__module__.partition(".")[0] == "xgboost":
            return hasattr(model, "predict")
    return False


def autolog_spec() -> AutologSpec:
    """How xgboost autolog is turned on, under either engine (docs/autolog.md)."""
    from tracksdk.autolog import AutologSpec
    from tracksdk_xgboost.engine import install

    return AutologSpec(
        framework=FRAMEWORK,
        engine_options=ENGINE_OPTIONS,
        install=install,
        mlflow_options=_MLFLOW_OPTIONS,
        mlflow_defaults=AUTOLOG_DEFAULTS,
        mlflow_switches={"log_post_training_metrics": _skip_post_training_metrics},
    )


def _skip_post_training_metrics() -> Callable[[], None]:
    """MLflow's post-training metrics stay off for xgboost models (``tracksdk.autolog``).

    ``{"log_post_training_metrics": True}`` keeps MLflow's behaviour.
    """
    from tracksdk.autolog import skip_post_training_metrics

    return skip_post_training_metrics("xgboost", _is_xgboost_model)


def _save(model: Any, path: Path, input_example: Any, formats: tuple[str, ...]) -> None:
    """Save with ``mlflow.xgboost.save_model``: XGBoost's own format, signature, pinned deps."""
    import xgboost

    from tracksdk.saving import head, import_mlflow, infer_signature, pinned_requirements

    # tracksdk.saving.save_mlflow_model's steps, with the prediction MLflow's pyfunc makes:
    # a Booster predicts on a DMatrix, not on the DataFrame or array of the example. Both
    # kinds are written in XGBoost's own format (model.ubj, no pickle); the scikit-learn
    # API models are rebuilt from their class at load time, which needs scikit-learn.
    distributions = ["xgboost", "numpy", "scipy"]
    predict: Callable[[Any], Any] | None = None
    if isinstance(model, xgboost.Booster):
        booster = model

        def predict(data: Any) -> Any:
            return booster.predict(xgboost.DMatrix(data))

    else:
        distributions.append("scikit-learn")
    example = head(input_example)
    import_mlflow("mlflow.xgboost").save_model(
        model,
        str(path),
        signature=infer_signature(model, example, predict),
        input_example=example,
        pip_requirements=pinned_requirements(distributions, example=example),
    )
    for extra in formats:
        warn(f"tracksdk-xgboost cannot save format {extra!r}; only the MLflow model is saved.")


def _evaluate(model: Any, X: Any, y: Any) -> Evaluation:
    """Metrics and figures as tracksdk-sklearn's, plus ``feature_importance.png`` (gain)."""
    import xgboost

    from tracksdk.evaluation import evaluate_estimator, feature_importance_figure, unseen_by_autolog

    booster = model if isinstance(model, xgboost.Booster) else model.get_booster()
    # The learner's configuration: objective and booster type, also of a loaded model.
    learner = json.loads(booster.save_config())["learner"]
    with unseen_by_autolog():
        if booster is model:
            evaluation = _evaluate_booster(booster, learner, X, y)
        else:
            evaluation = evaluate_estimator(model, X, y)
    # Feature importance is defined for trees only: a gblinear model gets no figure (and
    # only its scores are lists). Features no tree splits on have no score: 0.
    if learner["gradient_booster"]["name"] != "gblinear":
        names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
        scores = booster.get_score(importance_type="gain")
        evaluation.figures["feature_importance.png"] = feature_importance_figure(
            names, [scores.get(name, 0.0) for name in names], "Feature importance (gain)"
        )
    return evaluation


def _evaluate_booster(booster: Any, learner: dict[str, Any], X: Any, y: Any) -> Evaluation:
    """A Booster scored by its objective (``learner``: its configuration's learner part)."""
    import numpy as np
    import xgboost

    from tracksdk.evaluation import classification_evaluation, regression_evaluation

    objective = learner["objective"]["name"]
    # Kept in XGBoost's float32: scikit-learn checks that probabilities sum to one within
    # the precision of their dtype, and float32 softmax rows are one only to float32's.
    output = np.asarray(booster.predict(xgboost.DMatrix(X)))
    if objective == _BINARY_PROBA:
        labels = (output >= 0.5).astype(int)
        return classification_evaluation(y, labels, [0, 1], proba=output)
    if objective == _BINARY_MARGIN:
        labels = (output >= 0.0).astype(int)
        return classification_evaluation(y, labels, [0, 1], scores=output)
    if objective == _BINARY_LABEL:
        return classification_evaluation(y, output.astype(int), [0, 1])
    if objective == _MULTI_PROBA:
        classes = list(range(output.shape[1]))
        return classification_evaluation(y, output.argmax(axis=1), classes, proba=output)
    if objective == _MULTI_LABEL:
        classes = list(range(int(learner["learner_model_param"]["num_class"])))
        return classification_evaluation(y, output.astype(int), classes)
    # Regression objectives (and ranking, survival, counts: scored like a regression).
    return regression_evaluation(y, output)


_hooks = FrameworkHooks(FRAMEWORK)
tracksdk_frameworks = _hooks.frameworks()
tracksdk_model_framework = _hooks.model_framework(_is_xgboost_model)
tracksdk_autolog = _hooks.autolog(autolog_spec)
tracksdk_save_model = _hooks.save_model(_save)
tracksdk_evaluate = _hooks.evaluate(_evaluate)
