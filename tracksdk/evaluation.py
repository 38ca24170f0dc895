"""Metrics and figures of a fitted model, for plugins' ``tracksdk_evaluate`` hooks.

The scikit-learn and LightGBM plugins evaluate through here; a plugin for another library
with scikit-learn's API (``predict``, ``predict_proba``, ``classes_``) can too, and one
without it can pass its predictions to :func:`classification_evaluation` or
:func:`regression_evaluation`. The functions need scikit-learn and matplotlib, which
such a plugin lists in its dependencies; this module imports them only when called.

Classification (a classifier, or anything with ``predict_proba``):

- ``accuracy``; ``precision_macro``, ``recall_macro``, ``f1_macro`` always; with exactly
  two classes also ``precision``, ``recall``, ``f1`` for the positive class, which is the
  second of the model's ``classes_`` (the one ``predict_proba[:, 1]`` scores).
- ``roc_auc``: binary on the positive-class probability (or ``decision_function`` when
  there is no ``predict_proba``); multiclass one-vs-rest, macro average, from
  ``predict_proba`` only. Left out when undefined (e.g. one class in ``y``).
- ``log_loss`` when ``predict_proba`` exists.
- Figures ``confusion_matrix.png``; ``roc_curve.png`` and ``precision_recall_curve.png``
  when there are scores: one curve for two classes, one one-vs-rest curve per class for up
  to :data:`MAX_CURVE_CLASSES` classes; with more classes the curves are left out (a plot
  with dozens of lines says nothing; the ``roc_auc`` metric still summarises them).

Regression: ``rmse``, ``mae``, ``r2`` and the figure ``residuals.png``.

Metric values equal what ``sklearn.metrics`` returns for the same inputs (precision,
recall and F1 use ``zero_division=0``, which is sklearn's value without its warning).

Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas, made without pyplot:
no GUI backend is selected, no global figure list grows, nothing needs ``plt.close``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

from tracksdk.hookspecs import Evaluation

__all__ = [
    "MAX_CURVE_CLASSES",
    "classification_evaluation",
    "evaluate_estimator",
    "feature_importance_figure",
    "is_classifier",
    "regression_evaluation",
    "unseen_by_autolog",
]

#: Above this many classes, ROC and precision-recall figures are not drawn.
MAX_CURVE_CLASSES = 10


def unseen_by_autolog() -> contextlib.AbstractContextManager[Any]:
    """A scope in which MLflow's autolog does not log "post-training metrics".

    With autolog on, MLflow patches ``predict`` and every ``sklearn.metrics`` function and
    logs each metric computed on a model's predictions as ``<metric>_<dataset>`` (e.g.
    ``accuracy_score_unknown_dataset``, plus ``metric_info.json``). The sklearn plugin turns
    that off (``log_post_training_metrics=False``), but ``mlflow.lightgbm.autolog`` always
    turns it on, and a user may too: evaluation would then log every metric twice under
    odd names. This is the switch MLflow itself uses around its own nested calls. MLflow is
    not imported for it: without ``mlflow.sklearn`` loaded, nothing is patched.
    """
    module = sys.modules.get("mlflow.sklearn")
    manager = getattr(module, "_AUTOLOGGING_METRICS_MANAGER", None)
    disable = getattr(manager, "disable_log_post_training_metrics", None)
    if disable is None:
        return contextlib.nullcontext()
    scope: contextlib.AbstractContextManager[Any] = disable()
    return scope


def is_classifier(model: Any) -> bool:
    """True for scikit-learn classifiers (Pipelines included) and anything with probabilities."""
    if hasattr(model, "predict_proba"):
        return True
    try:
        from sklearn.base import (  # type: ignore[import-untyped, unused-ignore]
            is_classifier as sklearn_is_classifier,
        )

        return bool(sklearn_is_classifier(model))
    except Exception:
        return False


def evaluate_estimator(model: Any, X: Any, y: Any) -> Evaluation:
    """Metrics and figures for a fitted model with the scikit-learn API."""
    if not is_classifier(model):
        return regression_evaluation(y, model.predict(X))
    import numpy as np

    y_pred = model.predict(X)
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = np.unique(np.concatenate([np.asarray(y).ravel(), np.asarray(y_pred).ravel()]))
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    scores = None
    if proba is None and len(classes) == 2 and hasattr(model, "decision_function"):
        scores = model.decision_function(X)
    return classification_evaluation(y, y_pred, classes, proba=proba, scores=scores)


def classification_evaluation(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[Any] | Any,
    proba: Any = None,
    scores: Any = None,
) -> Evaluation:
    """Classification metrics and figures.

    Args:
        y_true: True labels.
        y_pred: Predicted labels.
        classes: The model's classes, in the order of ``proba``'s columns.
        proba: Class probabilities, shape ``(n, len(classes))``; for two classes a 1-D
            array is taken as the probability of ``classes[1]``.
        scores: Binary decision scores for ``classes[1]``, used when ``proba`` is None.
    """
    import numpy as np

    skm = _sklearn_metrics()

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    classes = np.asarray(classes)
    binary = len(classes) == 2
    if proba is not None:
        proba = np.asarray(proba)
        if proba.ndim == 1 and binary:
            proba = np.column_stack([1.0 - proba, proba])

    result: dict[str, float] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    if binary:
        positive = classes[1]
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            result[name] = float(fn(y_true, y_pred, pos_label=positive, zero_division=0))
    for name, fn in (
        ("precision_macro", skm.precision_score),
        ("recall_macro", skm.recall_score),
        ("f1_macro", skm.f1_score),
    ):
        result[name] = float(fn(y_true, y_pred, average="macro", zero_division=0))

    # One score per row for the positive class (binary), or the probability matrix.
    binary_score = None
    if binary:
        if proba is not None:
            binary_score = proba[:, 1]
        elif scores is not None:
            binary_score = np.asarray(scores).ravel()
    # ROC AUC is undefined unless every class scored occurs in y_true (sklearn 1.9 returns
    # NaN with a warning for one class, and raises for others): such metrics are left out.
    present = set(np.unique(y_true).tolist())
    with contextlib.suppress(ValueError):
        if binary_score is not None:
            if present >= set(classes.tolist()):
                result["roc_auc"] = float(skm.roc_auc_score(y_true == classes[1], binary_score))
        elif proba is not None and present >= set(classes.tolist()):
            result["roc_auc"] = float(
                skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
            )
    if proba is not None:
        with contextlib.suppress(ValueError):  # e.g. a class missing from `classes`
            result["log_loss"] = float(skm.log_loss(y_true, proba, labels=classes))

    figures: dict[str, Any] = {
        "confusion_matrix.png": _confusion_matrix_figure(
            skm.confusion_matrix(y_true, y_pred, labels=classes), classes
        )
    }
    curves: list[tuple[str, Any, Any]] = []  # (label, is-this-class, score)
    if binary_score is not None:
        curves.append((str(classes[1]), y_true == classes[1], binary_score))
    elif proba is not None and len(classes) <= MAX_CURVE_CLASSES:
        for index, label in enumerate(classes):
            curves.append((str(label), y_true == label, proba[:, index]))
    curves = [c for c in curves if 0 < int(np.sum(c[1])) < len(y_true)]
    if curves:
        figures["roc_curve.png"] = _roc_figure(curves, binary)
        figures["precision_recall_curve.png"] = _precision_recall_figure(curves, binary)
    return Evaluation(metrics=result, figures=figures)


def regression_evaluation(y_true: Any, y_pred: Any) -> Evaluation:
    """``rmse``, ``mae``, ``r2`` and ``residuals.png``."""
    import numpy as np

    skm = _sklearn_metrics()

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    result = {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }
    fig = _figure()
    ax = fig.subplots()
    predicted = y_pred.ravel()
    ax.scatter(predicted, y_true.ravel() - predicted, s=10, alpha=0.6)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Residual (true - predicted)")
    ax.set_title(f"Residuals (RMSE {result['rmse']:.4g}, R² {result['r2']:.3f})")
    return Evaluation(metrics=result, figures={"residuals.png": fig})


def feature_importance_figure(
    names: Sequence[str], importance: Any, title: str, top: int = 20
) -> Any:
    """A horizontal bar chart of the ``top`` most important features."""
    import numpy as np

    values = np.asarray(importance, dtype=float)
    order = np.argsort(values)[::-1][:top][::-1]  # biggest at the top of the chart
    fig = _figure(height=max(3.0, 0.3 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh([str(names[i]) for i in order], values[order])
    ax.set_xlabel("Importance")
    ax.set_title(title)
    return fig


def _sklearn_metrics() -> Any:
    # scikit-learn ships no type information: its functions are Any here.
    from sklearn import metrics  # type: ignore[import-untyped, unused-ignore]

    return metrics


def _figure(width: float = 6.4, height: float = 4.8) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _confusion_matrix_figure(matrix: Any, classes: Any) -> Any:
    size = min(4.0 + 0.4 * len(classes), 14.0)
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, interpolation="nearest", cmap="Blues")
    fig.colorbar(image, ax=ax)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 5 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Confusion matrix")
    if len(labels) <= 30:
        threshold = matrix.max() / 2.0 if matrix.size else 0
        for (row, col), value in _enumerate(matrix):
            ax.text(
                col,
                row,
                str(value),
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
            )
    return fig


def _enumerate(matrix: Any) -> list[tuple[tuple[int, int], int]]:
    return [
        ((row, col), int(matrix[row, col]))
        for row in range(matrix.shape[0])
        for col in range(matrix.shape[1])
    ]


def _roc_figure(curves: list[tuple[str, Any, Any]], binary: bool) -> Any:
    skm = _sklearn_metrics()
    lines = []
    for label, truth, score in curves:
        fpr, tpr, _ = skm.roc_curve(truth, score)
        name = "ROC" if binary else f"class {label}"
        lines.append((fpr, tpr, f"{name} (AUC {skm.auc(fpr, tpr):.3f})"))
    fig, ax = _curves(lines, "False positive rate", "True positive rate", "ROC curve", binary)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.legend(loc="lower right")
    return fig


def _precision_recall_figure(curves: list[tuple[str, Any, Any]], binary: bool) -> Any:
    skm = _sklearn_metrics()
    lines = []
    for label, truth, score in curves:
        precision, recall, _ = skm.precision_recall_curve(truth, score)
        average = skm.average_precision_score(truth, score)
        name = "PR" if binary else f"class {label}"
        lines.append((recall, precision, f"{name} (AP {average:.3f})"))
    fig, ax = _curves(lines, "Recall", "Precision", "Precision-recall curve", binary)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.legend(loc="lower left")
    return fig


def _curves(
    lines: list[tuple[Any, Any, str]], xlabel: str, ylabel: str, title: str, binary: bool
) -> tuple[Any, Any]:
    """A figure with one labelled line per ``(x, y, label)``; returns it and its axes."""
    fig = _figure()
    ax = fig.subplots()
    for x, y, label in lines:
        ax.plot(x, y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("" if binary else " (one-vs-rest)"))
    return fig, ax
