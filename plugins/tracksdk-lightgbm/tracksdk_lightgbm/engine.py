"""What tracksdk's autolog engine logs for a LightGBM training (the default engine).

While a tracked run has lightgbm autolog on, ``lightgbm.train`` and ``fit`` of the
scikit-learn API models (``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker`` and
subclasses) are patched. The outermost call in the run's own thread or task logs, through
``tracksdk.log_params`` and ``log_metrics`` (the machinery is tracksdk's
:mod:`tracksdk.autolog`):

- before training: the params, a superset of what ``mlflow.lightgbm.autolog`` logs for
  the same call (a test compares them). ``lightgbm.train``: its ``params`` dict and its
  other arguments as MLflow logs them (``num_boost_round``, ``keep_training_booster``).
  The scikit-learn API: ``get_params()``, then, when ``fit`` calls ``lightgbm.train``, the
  params LightGBM resolved for it (``objective``, ``num_class``, ``metric``,
  ``num_threads``, ...) and ``train``'s arguments, for the keys ``get_params()`` did not
  already give (its value is kept: ``metric="auc"`` stays ``auc``). Tags
  ``estimator_name`` and ``estimator_class`` for the scikit-learn API.
- during training, through a LightGBM callback: every evaluation result of every
  iteration, named as MLflow names them, ``<dataset>-<metric>`` (``valid_0-binary_logloss``,
  ``training-auc``), at step = iteration (0-based), so charts carry over between engines.
- after training: ``fit_time_s``; with early stopping, as MLflow: ``best_iteration``,
  ``stopped_iteration``, and the best iteration's results again at step
  ``stopped_iteration``, so each metric's latest value is the kept model's.

Opt-in: ``importance_plots`` (``feature_importance_{split,gain}.png`` and ``.json``),
``log_datasets`` (the training data as a run input).

LightGBM's distributed Dask models are not patched, nor subclasses defined in
``__main__`` or inside a function (pickles copy those by value, and would carry the
patch; one that calls ``super().fit`` is logged through its parent's ``fit``).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from typing import Any

import tracksdk
from tracksdk.autolog import (
    BoostingLibrary,
    Scope,
    SklearnTrainHook,
    bind_arguments,
    estimator_tags,
    guarded,
    patch_boosting_library,
)

__all__ = ["EvalRecorder", "install", "log_sklearn_fit", "log_train"]

FRAMEWORK = "lightgbm"

# LightGBM runs "after iteration" callbacks in increasing `order`: callbacks the user
# passes get negative orders, LightGBM's own log_evaluation 10, record_evaluation 20,
# early_stopping 30. Between the two, the recorder sees every iteration the user's
# callbacks saw, including the one where early stopping ends training.
_RECORDER_ORDER = 5

# The arguments of lightgbm.train that mlflow.lightgbm.autolog does not log as params (its
# list in MLflow 3.17): the data, callables and the params dict (logged key by key).
_UNLOGGED_TRAIN_ARGS = frozenset(
    {
        "params",
        "train_set",
        "valid_sets",
        "valid_names",
        "fobj",
        "feval",
        "init_model",
        "learning_rates",
        "callbacks",
    }
)

# Set by a logged scikit-learn API ``fit`` while it runs: called with the arguments of the
# ``lightgbm.train`` call that ``fit`` makes, to log the params LightGBM resolved for it.
_on_sklearn_train: contextvars.ContextVar[SklearnTrainHook | None]
_on_sklearn_train = contextvars.ContextVar("tracksdk_lightgbm_sklearn_train", default=None)


def install(add_undo: Callable[[Callable[[], None]], None]) -> None:
    """Patch ``lightgbm.train`` and the scikit-learn API models' ``fit``."""
    import lightgbm
    import lightgbm.engine
    import lightgbm.sklearn

    patch_boosting_library(
        add_undo,
        BoostingLibrary(
            framework=FRAMEWORK,
            train_modules=(lightgbm, lightgbm.engine),
            sklearn_module=lightgbm.sklearn,
            base_class=lightgbm.sklearn.LGBMModel,
            skip_prefix="lightgbm.dask",
            log_train=log_train,
            log_sklearn_fit=log_sklearn_fit,
            sklearn_train_hook=_on_sklearn_train,
        ),
    )


def train_params(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The params MLflow's lightgbm autolog logs for ``lightgbm.train(*args, **kwargs)``.

    The ``params`` dict's entries, then every other argument (defaults included) except
    the data and the callables.
    """
    bound = bind_arguments(original, args, dict(kwargs))
    if bound is None:
        return {}
    bound.apply_defaults()
    found = dict(bound.arguments.get("params") or {})
    for name, value in bound.arguments.items():
        if name not in _UNLOGGED_TRAIN_ARGS and name not in found:
            found[name] = value
    return found


class EvalRecorder:
    """A LightGBM callback that logs each iteration's evaluation results as metrics.

    Attributes:
        results: One ``{"<dataset>-<metric>": value}`` dict per iteration recorded.
    """

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.order = _RECORDER_ORDER
        self.results: list[dict[str, float]] = []

    def __call__(self, env: Any) -> None:
        """Record and log ``env.evaluation_result_list`` at step ``env.iteration``."""

        def record() -> None:
            # (dataset, metric, value, higher-is-better[, stdv]) per result.
            values = {
                f"{item[0]}-{item[1]}": float(item[2]) for item in env.evaluation_result_list or ()
            }
            if values:
                self.results.append(values)
                tracksdk.log_metrics(values, step=int(env.iteration))

        guarded(self.scope, "log evaluation results", record)


def _with_recorder(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], EvalRecorder | None]:
    """The call's arguments with an :class:`EvalRecorder` added to ``callbacks``."""
    bound = bind_arguments(original, args, kwargs)
    if bound is None or "callbacks" not in bound.signature.parameters:
        return args, kwargs, None
    recorder = EvalRecorder(scope)
    # A new list: the user's own list is not changed.
    bound.arguments["callbacks"] = [*(bound.arguments.get("callbacks") or ()), recorder]
    return bound.args, bound.kwargs, recorder


def log_train(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Log one outermost ``lightgbm.train`` call around ``original(*args, **kwargs)``."""
    _, (call_args, call_kwargs, recorder) = _before_training(
        scope,
        "training",
        lambda: train_params(original, args, kwargs),
        lambda: _log_train_set(original, args, kwargs),
        (original, args, kwargs),
    )
    start = time.perf_counter()
    booster = original(*call_args, **call_kwargs)
    elapsed = time.perf_counter() - start
    guarded(
        scope,
        "log the training",
        lambda: _after_training(scope, booster, booster.best_iteration, recorder, elapsed),
    )
    return booster


def log_sklearn_fit(
    scope: Scope, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Log one outermost ``fit`` of a scikit-learn API model around the original call."""
    model = args[0]

    def params() -> dict[str, Any]:
        found = dict(model.get_params())
        found["num_boost_round"] = found.get("n_estimators")
        if found.get("objective") is None:
            del found["objective"]  # logged after training, as chosen by LightGBM
        return found

    tags = estimator_tags(model)
    guarded(scope, "set the estimator tags", lambda: tracksdk.set_tags(tags))
    found, (call_args, call_kwargs, recorder) = _before_training(
        scope,
        "model's",
        params,
        lambda: _log_X(original, args, kwargs),
        (original, args, kwargs),
    )
    logged = set(found or ())

    trained = False

    def on_train(
        train: Callable[..., Any], train_args: tuple[Any, ...], train_kwargs: dict[str, Any]
    ) -> None:
        # Once per fit (the first training it starts): what LightGBM resolved from the
        # model's params (num_class, metric, num_threads, the objective it chose), as
        # MLflow's autolog logs them. A key get_params() gave keeps its value: a param's
        # value cannot change within a run.
        def log() -> None:
            resolved = train_params(train, train_args, train_kwargs)
            new = {k: v for k, v in resolved.items() if k not in logged}
            if new:
                tracksdk.log_params(new)
                logged.update(new)

        nonlocal trained
        if found is not None and not trained:
            trained = True
            guarded(scope, "log the resolved params", log)

    token = _on_sklearn_train.set(on_train)
    try:
        start = time.perf_counter()
        result = original(*call_args, **call_kwargs)
        elapsed = time.perf_counter() - start
    finally:
        _on_sklearn_train.reset(token)

    def after() -> None:
        if found is not None and "objective" not in logged:
            tracksdk.log_params({"objective": model.objective_})
        _after_training(scope, model.booster_, model.best_iteration_, recorder, elapsed)

    guarded(scope, "log the training", after)
    return result


def _before_training(
    scope: Scope,
    whose: str,
    read_params: Callable[[], dict[str, Any]],
    log_data: Callable[[], None],
    call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]],
) -> tuple[dict[str, Any] | None, tuple[tuple[Any, ...], dict[str, Any], EvalRecorder | None]]:
    """Log the params (and, with ``log_datasets``, the data); add the evaluation recorder.

    Returns:
        The params logged (None when they could not be read), and the call's arguments
        with the recorder added (the original arguments, without recorder, if that failed).
    """
    found = guarded(scope, f"read the {whose} params", read_params)
    if found:
        guarded(scope, f"log the {whose} params", lambda: tracksdk.log_params(found))
    if scope.options.get("log_datasets"):
        guarded(scope, "log the training data", log_data)
    original, args, kwargs = call
    added = guarded(
        scope, "add the evaluation callback", lambda: _with_recorder(scope, original, args, kwargs)
    )
    return found, added if added is not None else (args, kwargs, None)


def _after_training(
    scope: Scope, booster: Any, best_iteration: int, recorder: EvalRecorder | None, elapsed: float
) -> None:
    metrics: dict[str, float] = {"fit_time_s": elapsed}
    results = recorder.results if recorder is not None else []
    # LightGBM sets best_iteration (1-based) with early stopping only; MLflow logs these
    # then, and the best iteration's results one step after the last.
    best = int(best_iteration or 0)
    if best > 0 and results:
        metrics["stopped_iteration"] = len(results)
        metrics["best_iteration"] = best
    tracksdk.log_metrics(metrics)
    if best > 0 and 0 < best <= len(results):
        tracksdk.log_metrics(results[best - 1], step=len(results))
    if scope.options.get("importance_plots"):
        guarded(scope, "log feature importance", lambda: _log_importance(booster))


def _log_importance(booster: Any) -> None:
    """``feature_importance_{split,gain}.json`` and ``.png``, MLflow's artifact names."""
    from tracksdk.evaluation import feature_importance_figure

    names = booster.feature_name()
    for kind in ("split", "gain"):
        values = booster.feature_importance(importance_type=kind)
        tracksdk.log_dict(
            {str(n): float(v) for n, v in zip(names, values, strict=True)},
            f"feature_importance_{kind}.json",
        )
        figure = feature_importance_figure(names, values, f"Feature importance ({kind})")
        tracksdk.log_figure(figure, f"feature_importance_{kind}.png")


def _log_train_set(original: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> None:
    bound = bind_arguments(original, args, kwargs)
    train_set = bound.arguments.get("train_set") if bound is not None else None
    data = getattr(train_set, "data", None)
    # A Dataset read from a file, or one already constructed and freed, has no rows here.
    if data is not None and not isinstance(data, str | bytes) and hasattr(data, "shape"):
        tracksdk.log_input(data, "train")


def _log_X(original: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    bound = bind_arguments(original, args, kwargs)
    X = bound.arguments.get("X") if bound is not None else None
    if X is not None:
        tracksdk.log_input(X, "train")
