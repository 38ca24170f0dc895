"""What tracksdk's autolog engine logs for a scikit-learn fit (the default engine).

While a tracked run has sklearn autolog on, ``fit`` (and ``fit_transform``,
``fit_predict`` where a class defines them as plain methods) of scikit-learn's estimators
and of your estimator classes is patched. The outermost call of a fit in the run's own
thread or task logs, through ``tracksdk.log_params``, ``set_tags`` and ``log_metrics``:

- before training: the estimator's params, ``get_params(deep=True)`` with nested
  estimators' params prefixed as scikit-learn does (``logisticregression__C``); a
  hyper-parameter search's own params only (``deep=False``: its seed estimator's params
  are not the ones it tuned). A value that holds estimators (a Pipeline's ``steps``, a
  search's ``estimator``) is their one-line repr. Tags ``estimator_name`` and
  ``estimator_class``. Names and values as ``mlflow.sklearn.autolog`` logs them, so runs of
  both engines compare side by side.
- after training: the metric ``fit_time_s``. A search also logs ``best_cv_score``,
  ``best_<param>`` params, ``cv_results.csv`` and, for its best ``max_tuning_runs``
  candidates, child runs with the candidate's params and its ``mean_*``, ``std_*`` and
  ``rank_*`` results (no model, never registered).

Opt-in, each with its cost (docs/autolog.md): ``training_metrics`` (MLflow's
``training_*`` metrics: re-predicts the training set), ``training_plots`` (confusion
matrix, ROC and precision-recall curves of the training set), ``estimator_html``
(``estimator.html``), ``log_datasets`` (the training data as a run input).

Classes whose instances cloudpickle would copy by value (defined in ``__main__`` or inside a
function) are not patched, as in MLflow: their pickles would otherwise carry the patch. A
subclass that calls ``super().fit`` is still logged through its parent's ``fit``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import tracksdk
from tracksdk.autolog import (
    Scope,
    bind_arguments,
    estimator_tags,
    guarded,
    patch_attribute,
    patched_call,
    pickles_by_reference,
)

__all__ = ["install", "log_fit"]

FRAMEWORK = "sklearn"

# The training methods patched where a class defines them. Mixins' fit_transform and
# fit_predict (not BaseEstimator subclasses) call the patched fit.
_METHODS = ("fit", "fit_transform", "fit_predict")

# A param value holding estimators is logged as its repr on one line, cut here.
_MAX_REPR = 250

# Child runs of a search: no provenance of their own (the parent run has it).
_CHILD_SETTINGS: dict[str, Any] = {
    "capture": {
        "git": False,
        "diff": False,
        "untracked": False,
        "source": False,
        "command": False,
        "environment": False,
        "requirements": False,
        "ci": False,
    }
}


def install(add_undo: Callable[[Callable[[], None]], None]) -> None:
    """Patch every scikit-learn estimator class defined now, and those defined later.

    Classes are found through ``BaseEstimator.__subclasses__()`` (imported ones only: no
    module is imported to find more, unlike MLflow, which imports all of scikit-learn and
    takes seconds the first time). Classes created while the patches are in place (a
    scikit-learn module imported inside the run, your class defined there) are patched
    through a ``BaseEstimator.__init_subclass__`` hook.
    """
    from sklearn.base import BaseEstimator

    def patch_class(cls: type, *, new: bool = False) -> None:
        if not _patchable(cls, new=new):
            return
        for name in _METHODS:
            undo = patch_attribute(cls, name, _patch)
            if undo is not None:
                add_undo(undo)

    seen: set[type] = set()
    stack: list[type] = [BaseEstimator]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        patch_class(cls)
        stack.extend(cls.__subclasses__())
    add_undo(_hook_new_classes(BaseEstimator, functools.partial(patch_class, new=True)))


def _patchable(cls: type, *, new: bool = False) -> bool:
    """A scikit-learn class that pickles by reference (see the module doc)."""
    from tracksdk_sklearn import is_sklearn_class

    return is_sklearn_class(cls) and pickles_by_reference(cls, new=new)


def _hook_new_classes(base: Any, on_class: Callable[[type], None]) -> Callable[[], None]:
    """Call ``on_class`` for each subclass of ``base`` created from now; return the undo."""
    previous = base.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: Any, /, **kwargs: Any) -> None:
        if previous is not None:
            previous.__get__(None, cls)(**kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)
        with contextlib.suppress(Exception):  # never break a class definition
            on_class(cls)

    hook: Any = classmethod(__init_subclass__)
    type.__setattr__(base, "__init_subclass__", hook)

    def undo() -> None:
        if base.__dict__.get("__init_subclass__") is hook:
            if previous is None:
                type.__delattr__(base, "__init_subclass__")
            else:
                type.__setattr__(base, "__init_subclass__", previous)

    return undo


def _patch(original: Callable[..., Any]) -> Callable[..., Any]:
    return patched_call(FRAMEWORK, original, log_fit, _applies)


# Ownership per class, decided once: the check runs on every patched call in a scope.
_owned: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _applies(args: tuple[Any, ...]) -> bool:
    if not args:
        return False
    cls = type(args[0])
    owned = _owned.get(cls)
    if owned is None:
        from tracksdk_sklearn import is_sklearn_class

        owned = _owned[cls] = is_sklearn_class(cls)
    return owned


def log_fit(
    scope: Scope,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Log one outermost fit of ``args[0]`` around ``original(*args, **kwargs)``."""
    estimator = args[0]
    options = scope.options
    described = guarded(scope, "read the estimator's params", lambda: _describe(estimator))
    if described is not None:
        params, tags = described
        guarded(scope, "log the estimator's params", lambda: tracksdk.log_params(params))
        guarded(scope, "set the estimator tags", lambda: tracksdk.set_tags(tags))
    if options.get("log_datasets"):
        guarded(scope, "log the training data", lambda: _log_dataset(original, args, kwargs))
    start = time.perf_counter()
    result = original(*args, **kwargs)
    elapsed = time.perf_counter() - start
    guarded(scope, "log the fit", lambda: _after_fit(scope, original, args, kwargs, elapsed))
    return result


def _describe(estimator: Any) -> tuple[dict[str, Any], dict[str, str]]:
    raw = estimator.get_params(deep=not is_search(estimator))
    params = {str(key): readable(value) for key, value in raw.items()}
    return params, estimator_tags(estimator)


def readable(value: Any) -> Any:
    """A param value as logged: a one-line repr for values holding estimators.

    Anything else is left to tracksdk, which logs scalars as they are and other objects
    as a short repr (a function as ``module.name``, an array as its shape).
    """
    if _holds_estimator(value, depth=3):
        text = " ".join(repr(value).split())
        return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…"
    return value


def _holds_estimator(value: Any, depth: int) -> bool:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return True
    if depth <= 0:
        return False
    if isinstance(value, list | tuple):
        return any(_holds_estimator(item, depth - 1) for item in value)
    if isinstance(value, dict):
        return any(_holds_estimator(item, depth - 1) for item in value.values())
    return False


def is_search(estimator: Any) -> bool:
    """Whether ``estimator`` is a hyper-parameter search (``GridSearchCV``, ...)."""
    # Not imported here: without that module loaded, no instance of it can exist (and
    # importing it would cost the first fit a tenth of a second). A scikit-learn without
    # that private base is recognised by the params, as third-party searches are.
    module = sys.modules.get("sklearn.model_selection._search")
    base = getattr(module, "BaseSearchCV", None)
    if isinstance(base, type) and isinstance(estimator, base):
        return True
    return hasattr(estimator, "estimator") and any(
        hasattr(estimator, name) for name in ("param_grid", "param_distributions")
    )


def _after_fit(
    scope: Scope,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    elapsed: float,
) -> None:
    estimator = args[0]
    options = scope.options
    metrics: dict[str, float] = {"fit_time_s": elapsed}
    search = is_search(estimator)
    if search and hasattr(estimator, "best_score_"):
        metrics["best_cv_score"] = float(estimator.best_score_)
    wants_data = options.get("training_metrics") or options.get("training_plots")
    X, y, weight = _training_data(original, args, kwargs) if wants_data else (None, None, None)
    if options.get("training_metrics") and y is not None:
        found = guarded(
            scope,
            "compute training metrics",
            lambda: training_metrics(estimator, X, y, weight, options.get("pos_label")),
        )
        metrics.update(found or {})
    guarded(scope, "log the fit's metrics", lambda: tracksdk.log_metrics(metrics))
    if search:
        guarded(scope, "log the search's results", lambda: _log_search(scope, estimator))
    if options.get("training_plots") and y is not None:
        guarded(scope, "draw training plots", lambda: _log_training_plots(estimator, X, y))
    if options.get("estimator_html"):
        guarded(scope, "write estimator.html", lambda: _log_estimator_html(estimator))


def _training_data(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, Any, Any]:
    """``(X, y, sample_weight)`` of a fit call: its first two arguments after ``self``."""
    bound = bind_arguments(original, args, kwargs)
    if bound is None:
        return None, None, None
    positional = [
        name
        for name, param in bound.signature.parameters.items()
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
    ][1:]  # after self
    found = [bound.arguments.get(name) for name in positional[:2]]
    X, y = [*found, None, None][:2]
    weight = bound.arguments.get("sample_weight")
    for name, param in bound.signature.parameters.items():
        if param.kind is param.VAR_KEYWORD and weight is None:
            weight = bound.arguments.get(name, {}).get("sample_weight")
    return X, y, weight


def _log_dataset(original: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> None:
    X, _, _ = _training_data(original, args, kwargs)
    if X is not None:
        tracksdk.log_input(X, "train")


def training_metrics(
    estimator: Any, X: Any, y: Any, sample_weight: Any = None, pos_label: Any = None
) -> dict[str, float]:
    """MLflow's ``training_*`` metrics, with its names and definitions.

    Classifiers: ``training_precision_score``, ``training_recall_score``,
    ``training_f1_score`` (weighted average, or binary for ``pos_label``),
    ``training_accuracy_score``, with ``predict_proba`` also ``training_log_loss`` and
    ``training_roc_auc`` (weighted, one-vs-one); regressors: ``training_mean_squared_error``,
    ``training_root_mean_squared_error``, ``training_mean_absolute_error``,
    ``training_r2_score``; both: ``training_score`` (``estimator.score``). A metric that
    fails on this model or data is left out.
    """
    from sklearn import metrics as skm
    from sklearn.base import is_classifier, is_regressor

    from tracksdk.evaluation import unseen_by_autolog

    out: dict[str, float] = {}
    weight = {"sample_weight": sample_weight}

    def add(name: str, compute: Callable[[], Any]) -> None:
        with contextlib.suppress(Exception):
            out[f"training_{name}"] = float(compute())

    # MLflow's post-training-metric patches, if the user has them on, must not see these.
    with unseen_by_autolog():
        if is_classifier(estimator):
            y_pred = estimator.predict(X)
            average = "weighted" if pos_label is None else "binary"
            labels = {} if pos_label is None else {"pos_label": pos_label}
            for name, fn in (
                ("precision_score", skm.precision_score),
                ("recall_score", skm.recall_score),
                ("f1_score", skm.f1_score),
            ):
                add(
                    name,
                    functools.partial(
                        fn, y, y_pred, average=average, zero_division=0, **labels, **weight
                    ),
                )
            add("accuracy_score", lambda: skm.accuracy_score(y, y_pred, **weight))
            if hasattr(estimator, "predict_proba"):
                proba = estimator.predict_proba(X)
                add("log_loss", lambda: skm.log_loss(y, proba, **weight))
                score = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba
                add(
                    "roc_auc",
                    lambda: skm.roc_auc_score(
                        y, score, average="weighted", multi_class="ovo", **weight
                    ),
                )
        elif is_regressor(estimator):
            y_pred = estimator.predict(X)
            mse = skm.mean_squared_error(y, y_pred, **weight)
            add("mean_squared_error", lambda: mse)
            add("root_mean_squared_error", lambda: math.sqrt(mse))
            add("mean_absolute_error", lambda: skm.mean_absolute_error(y, y_pred, **weight))
            add("r2_score", lambda: skm.r2_score(y, y_pred, **weight))
        if hasattr(estimator, "score"):
            accepts_weight = "sample_weight" in inspect.signature(estimator.score).parameters
            extra = weight if accepts_weight and sample_weight is not None else {}
            add("score", lambda: estimator.score(X, y, **extra))
    return out


def _log_training_plots(estimator: Any, X: Any, y: Any) -> None:
    from tracksdk.evaluation import evaluate_estimator, unseen_by_autolog

    with unseen_by_autolog():
        figures = evaluate_estimator(estimator, X, y).figures
    for name, figure in figures.items():
        tracksdk.log_figure(figure, f"training_{name}")


def _log_estimator_html(estimator: Any) -> None:
    from sklearn.utils import estimator_html_repr

    # The charset keeps the toggle arrows of scikit-learn's HTML readable.
    html = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="UTF-8"/></head>\n'
        f"<body>\n{estimator_html_repr(estimator)}\n</body>\n</html>\n"
    )
    tracksdk.log_text(html, "estimator.html")


def _log_search(scope: Scope, search: Any) -> None:
    """A search's best params, ``cv_results.csv`` and child runs for its best candidates."""
    best = getattr(search, "best_params_", None)
    if best:
        tracksdk.log_params({f"best_{key}": readable(value) for key, value in best.items()})
    results = getattr(search, "cv_results_", None)
    if not results:
        return
    guarded(scope, "write cv_results.csv", lambda: _log_cv_results(results))
    limit = scope.options.get("max_tuning_runs", 5)
    if limit == 0:
        return
    candidates = list(range(len(results["params"])))
    rank = "rank_test_score" if "rank_test_score" in results else None
    if rank is None:  # several scorers: the first ranking, as MLflow does
        rank = next((key for key in results if key.startswith("rank_test_")), None)
    if rank is not None:
        candidates.sort(key=lambda index: results[rank][index])
    if limit is not None:
        candidates = candidates[: int(limit)]
    seed = getattr(search, "estimator", None)
    tags = estimator_tags(seed) if seed is not None else {}
    for index in candidates:
        guarded(
            scope,
            "log a search candidate as a child run",
            functools.partial(_log_candidate, results, index, tags),
        )


def _log_cv_results(results: Mapping[str, Any]) -> None:
    import pandas as pd

    tracksdk.log_text(pd.DataFrame(dict(results)).to_csv(index=False), "cv_results.csv")


def _log_candidate(results: Mapping[str, Any], index: int, tags: Mapping[str, str]) -> None:
    params = {str(k): readable(v) for k, v in results["params"][index].items()}
    metrics: dict[str, float] = {}
    for key, values in results.items():
        if key.startswith(("param", "split")):
            continue  # params are logged from "params"; per-split scores are too verbose
        value = values[index]
        if isinstance(value, int | float) or getattr(value, "dtype", None) is not None:
            with contextlib.suppress(TypeError, ValueError):
                metrics[key] = float(value)
    with tracksdk.tracked(
        run_name=f"candidate-{index}", tags=tags, autolog=False, settings=_CHILD_SETTINGS
    ) as child:
        child.log_params(params)
        child.log_metrics(metrics)
