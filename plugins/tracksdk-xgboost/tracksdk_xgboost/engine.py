"""What tracksdk's autolog engine logs for an XGBoost training (the default engine).

While a tracked run has xgboost autolog on, ``xgboost.train`` and ``fit`` of the
scikit-learn API models (``XGBClassifier``, ``XGBRegressor``, ``XGBRanker``, the
random-forest variants and subclasses) are patched. The outermost call in the run's own
thread or task logs, through ``tracksdk.log_params`` and ``log_metrics`` (the machinery is
tracksdk's :mod:`tracksdk.autolog`):

- when training starts: the params, a superset of what ``mlflow.xgboost.autolog`` logs
  for the same call, with the same values (a test compares them). ``xgboost.train``: its
  ``params`` (a dict, or a list of pairs: a repeated key's values become a list) and its
  other arguments as MLflow logs them (``num_boost_round``, ``early_stopping_rounds``,
  ``maximize``, ``verbose_eval``, ``custom_metric``). The scikit-learn API: ``get_params()``
  as they are when ``fit`` starts training, overridden by what ``fit`` resolved and passed
  to ``train`` (the ``objective`` a classifier chose for its labels, ``num_class``, a
  random forest's ``num_parallel_tree`` and single round), as MLflow logs them; tags
  ``estimator_name`` and ``estimator_class``.
- during training, through an XGBoost ``TrainingCallback``: every evaluation result of
  every iteration, named as MLflow names them, ``<dataset>-<metric>`` (``validation_0-logloss``
  for the scikit-learn API's ``eval_set``, ``<name>-<metric>`` for ``xgboost.train``'s
  ``evals``; ``@`` becomes ``_at_``: ``eval-ndcg_at_3``), at step = iteration (0-based), so
  charts carry over between engines.
- after training: ``fit_time_s``; with early stopping (``early_stopping_rounds`` or an
  ``EarlyStopping`` callback), as MLflow: ``best_iteration`` (0-based, XGBoost's),
  ``stopped_iteration`` (the last iteration trained, 0-based), and the best iteration's
  results again at step ``stopped_iteration + 1``, so each metric's latest value is the
  kept model's.

Opt-in: ``importance_plots`` (``feature_importance_weight.json`` and ``.png``, MLflow's
names), ``log_datasets`` (the training data as a run input).

Not patched: XGBoost's Dask models (distributed training), ``xgboost.cv``, a ``train``
imported by name before the run started (``from xgboost import train``), and subclasses
defined in ``__main__`` or inside a function (pickles copy those by value, and would carry
the patch; one that calls ``super().fit`` is logged through its parent's ``fit``).

This module imports XGBoost: it is imported when a run turns xgboost autolog on.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import xgboost
import xgboost.sklearn
import xgboost.training
from xgboost.callback import EarlyStopping, TrainingCallback

import tracksdk
from tracksdk.autolog import (
    AddUndo,
    BoostingLibrary,
    Scope,
    SklearnTrainHook,
    bind_arguments,
    estimator_tags,
    guarded,
    patch_boosting_library,
)

__all__ = ["EvalRecorder", "install", "log_sklearn_fit", "log_train", "train_params"]

FRAMEWORK = "xgboost"

# The arguments of xgboost.train that mlflow.xgboost.autolog does not log as params (its
# list in MLflow 3.17): the data, callables, the model to continue and the params (logged
# key by key).
_UNLOGGED_TRAIN_ARGS = frozenset(
    {
        "params",
        "dtrain",
        "evals",
        "obj",
        "feval",
        "evals_result",
        "xgb_model",
        "callbacks",
        "learning_rates",
    }
)

# Set by a logged scikit-learn API ``fit`` while it runs: called with the ``xgboost.train``
# call that ``fit`` makes; logs its params and returns the call's arguments with the
# evaluation recorder added.
_Call = tuple[tuple[Any, ...], dict[str, Any]]
_on_sklearn_train: contextvars.ContextVar[SklearnTrainHook | None]
_on_sklearn_train = contextvars.ContextVar("tracksdk_xgboost_sklearn_train", default=None)


def install(add_undo: AddUndo) -> None:
    """Patch ``xgboost.train`` and the scikit-learn API models' ``fit``."""
    patch_boosting_library(
        add_undo,
        BoostingLibrary(
            framework=FRAMEWORK,
            train_modules=(xgboost, xgboost.training),
            sklearn_module=xgboost.sklearn,
            base_class=xgboost.sklearn.XGBModel,
            skip_prefix="xgboost.dask",
            log_train=log_train,
            log_sklearn_fit=log_sklearn_fit,
            sklearn_train_hook=_on_sklearn_train,
        ),
    )


def train_params(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The params MLflow's xgboost autolog logs for ``xgboost.train(*args, **kwargs)``.

    The ``params``' entries, then every other argument (defaults included) except the
    data, the callables and the model to continue.
    """
    bound = bind_arguments(original, args, dict(kwargs))
    if bound is None:
        return {}
    bound.apply_defaults()
    found = _params_dict(bound.arguments.get("params"))
    for name, value in bound.arguments.items():
        if name not in _UNLOGGED_TRAIN_ARGS and name not in found:
            found[name] = value
    return found


def _params_dict(params: Any) -> dict[str, Any]:
    """XGBoost's params, a dict or a list of pairs (``[("eval_metric", "auc"), ...]``)."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    found: dict[str, Any] = {}
    for key, value in params:
        if key in found:  # a repeated key: XGBoost applies all its values
            previous = found[key]
            found[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            found[key] = value
    return found


class EvalRecorder(TrainingCallback):
    """An XGBoost callback that logs each iteration's evaluation results as metrics.

    Attributes:
        results: One ``{"<dataset>-<metric>": value}`` dict per iteration recorded.
    """

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.scope = scope
        self.results: list[dict[str, float]] = []

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Log the latest value of each ``evals_log`` curve at step ``epoch``; never stop."""

        def record() -> None:
            values = {
                metric_name(dataset, metric): float(history[-1])
                for dataset, metrics in evals_log.items()
                for metric, history in metrics.items()
                if history
            }
            if values:
                self.results.append(values)
                tracksdk.log_metrics(values, step=int(epoch))

        guarded(self.scope, "log evaluation results", record)
        return False


def metric_name(dataset: str, metric: str) -> str:
    """``<dataset>-<metric>`` as MLflow's xgboost autolog names it (``@`` is invalid)."""
    return f"{dataset}-{metric}".replace("@", "_at_")


@dataclass
class _Training:
    """One ``xgboost.train`` call being logged: its recorder and whether it stops early."""

    recorder: EvalRecorder
    early_stopping: bool


def _with_recorder(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], _Training] | None:
    """The ``train`` call's arguments with an :class:`EvalRecorder` first in ``callbacks``.

    First: XGBoost stops asking callbacks once one returns True (early stopping), and the
    recorder must see that last iteration too. It always returns False itself.
    """
    bound = bind_arguments(original, args, kwargs)
    if bound is None or "callbacks" not in bound.signature.parameters:
        return None
    recorder = EvalRecorder(scope)
    callbacks: list[Any] = list(bound.arguments.get("callbacks") or ())
    early = bool(bound.arguments.get("early_stopping_rounds")) or any(
        isinstance(callback, EarlyStopping) for callback in callbacks
    )
    # A new list: the user's own list (or the model's ``callbacks``) is not changed.
    bound.arguments["callbacks"] = [recorder, *callbacks]
    return bound.args, bound.kwargs, _Training(recorder, early)


def _prepare(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], _Training | None]:
    added = guarded(
        scope, "add the evaluation callback", lambda: _with_recorder(scope, original, args, kwargs)
    )
    return added if added is not None else (args, kwargs, None)


def log_train(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Log one outermost ``xgboost.train`` call around ``original(*args, **kwargs)``."""
    found = guarded(scope, "read the training params", lambda: train_params(original, args, kwargs))
    if found:
        guarded(scope, "log the training params", lambda: tracksdk.log_params(found))
    if scope.options.get("log_datasets"):
        guarded(scope, "log the training data", lambda: _log_dtrain(original, args, kwargs))
    call_args, call_kwargs, training = _prepare(scope, original, args, kwargs)
    start = time.perf_counter()
    booster = original(*call_args, **call_kwargs)
    elapsed = time.perf_counter() - start
    guarded(scope, "log the training", lambda: _after_training(scope, booster, training, elapsed))
    return booster


def log_sklearn_fit(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Log one outermost ``fit`` of a scikit-learn API model around the original call."""
    model = args[0]
    tags = estimator_tags(model)
    guarded(scope, "set the estimator tags", lambda: tracksdk.set_tags(tags))
    if scope.options.get("log_datasets"):
        guarded(scope, "log the training data", lambda: _log_X(original, args, kwargs))

    training: _Training | None = None
    asked = False

    def log_params(read: Callable[[], dict[str, Any]]) -> None:
        found = guarded(scope, "read the model's params", read)
        if found:
            guarded(scope, "log the model's params", lambda: tracksdk.log_params(found))

    def on_train(
        train: Callable[..., Any], train_args: tuple[Any, ...], train_kwargs: dict[str, Any]
    ) -> _Call:
        # Once per fit, for the training it starts: the model's params as fit resolved
        # them for XGBoost (a param's value cannot change within a run, so they are
        # logged here rather than before fit changes them), and the recorder.
        nonlocal training, asked
        if asked:
            return train_args, train_kwargs
        asked = True
        log_params(lambda: {**model.get_params(), **train_params(train, train_args, train_kwargs)})
        new_args, new_kwargs, training = _prepare(scope, train, train_args, train_kwargs)
        return new_args, new_kwargs

    token = _on_sklearn_train.set(on_train)
    try:
        start = time.perf_counter()
        result = original(*args, **kwargs)
        elapsed = time.perf_counter() - start
    finally:
        _on_sklearn_train.reset(token)
        if not asked:  # fit failed (or returned) before training: its params still count
            log_params(lambda: dict(model.get_params()))

    def after() -> None:
        _after_training(scope, model.get_booster(), training, elapsed)

    guarded(scope, "log the training", after)
    return result


def _after_training(scope: Scope, booster: Any, training: _Training | None, elapsed: float) -> None:
    metrics: dict[str, float] = {"fit_time_s": elapsed}
    results = training.recorder.results if training is not None else []
    best = None
    if training is not None and training.early_stopping:
        # XGBoost's EarlyStopping keeps the best iteration (0-based) as a model attribute.
        attribute = booster.attr("best_iteration")
        best = int(attribute) if attribute is not None else None
    # As MLflow: the last iteration trained and the best one, then the best iteration's
    # results one step after the last.
    if best is not None and results:
        metrics["stopped_iteration"] = len(results) - 1
        metrics["best_iteration"] = best
    tracksdk.log_metrics(metrics)
    if best is not None and 0 <= best < len(results):
        tracksdk.log_metrics(results[best], step=len(results))
    if scope.options.get("importance_plots"):
        guarded(scope, "log feature importance", lambda: _log_importance(booster))


def _log_importance(booster: Any) -> None:
    """``feature_importance_weight.json`` and ``.png``: MLflow's default importance type."""
    from tracksdk.evaluation import feature_importance_figure

    scores = booster.get_score(importance_type="weight")
    tracksdk.log_dict(dict(scores), "feature_importance_weight.json")
    figure = feature_importance_figure(
        list(scores), [float(v) for v in scores.values()], "Feature importance (weight)"
    )
    tracksdk.log_figure(figure, "feature_importance_weight.png")


def _log_dtrain(original: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> None:
    """The DMatrix's rows (XGBoost keeps them as a sparse matrix), as a dense array."""
    bound = bind_arguments(original, args, kwargs)
    dtrain = bound.arguments.get("dtrain") if bound is not None else None
    if dtrain is not None:
        tracksdk.log_input(dtrain.get_data().toarray(), "train")


def _log_X(original: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    bound = bind_arguments(original, args, kwargs)
    X = bound.arguments.get("X") if bound is not None else None
    if X is not None:
        tracksdk.log_input(X, "train")
