"""tracksdk plugin for scikit-learn: ownership, autolog, model saving, evaluation.

Loaded through the ``tracksdk`` entry point ``sklearn``. Importing this module is cheap: it
imports neither scikit-learn, nor MLflow, nor matplotlib; the hooks import them when called.

Ownership: a model is scikit-learn's when the first class of its MRO that comes from a
library is a ``sklearn.*`` class: scikit-learn's estimators, Pipelines and other
meta-estimators, and user classes built on them (``class MyModel(BaseEstimator)``). Classes
of libraries that have their own MLflow flavor (LightGBM, XGBoost, CatBoost, ...) are not
claimed even though they subclass ``BaseEstimator``: ``LGBMClassifier`` is LightGBM's.

A ``Pipeline`` is always scikit-learn's, also when its last step is an ``LGBMClassifier``:
it is saved with the ``sklearn`` flavor (its requirements pin ``lightgbm`` too) and
evaluated with the scikit-learn metrics. Autolog is MLflow's: with sklearn autolog on,
``Pipeline.fit`` is logged by the sklearn integration (pipeline params, training metrics)
and the LGBM step's fit inside it is not logged again, also with lightgbm autolog on (MLflow
does not nest autolog sessions); with only lightgbm autolog on, the LGBM step's fit is
logged by the lightgbm integration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tracksdk.hookspecs import Evaluation, hookimpl
from tracksdk_sklearn.autolog import COMMON_DEFAULTS

__all__ = [
    "AUTOLOG_DEFAULTS",
    "FRAMEWORK",
    "tracksdk_autolog",
    "tracksdk_evaluate",
    "tracksdk_frameworks",
    "tracksdk_model_framework",
    "tracksdk_save_model",
]

FRAMEWORK = "sklearn"

#: Merged under the user's options for ``mlflow.sklearn.autolog``. Besides the common cheap
#: defaults: no post-training metrics (they wrap every ``score``/metric call after fit) and
#: at most 5 child runs for a hyper-parameter search. The tracksdk-only option
#: ``training_plots`` (default False, not passed to MLflow) is explained in
#: ``_skip_training_plots``.
AUTOLOG_DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "log_post_training_metrics": False,
    "max_tuning_runs": 5,
}

# Top-level packages with their own MLflow flavor and tracksdk plugin territory: their
# estimators subclass sklearn's BaseEstimator but are not scikit-learn models.
_FOREIGN = frozenset(
    {"lightgbm", "xgboost", "catboost", "statsmodels", "prophet", "pmdarima", "sktime"}
)

_PICKLE_WARNING = "Saving scikit-learn models in the pickle or cloudpickle format"


@hookimpl
def tracksdk_frameworks() -> list[str]:
    """This plugin handles ``sklearn``."""
    return [FRAMEWORK]


# trylast: more specific plugins (whose estimators may also subclass sklearn's classes) are
# asked first.
@hookimpl(trylast=True)
def tracksdk_model_framework(model: Any) -> str | None:
    """``"sklearn"`` for scikit-learn estimators and Pipelines, else None. Imports nothing."""
    for cls in type(model).__mro__:
        top = cls.__module__.partition(".")[0]
        if top == "sklearn":
            return FRAMEWORK
        if top in _FOREIGN:
            return None
    return None


@hookimpl
def tracksdk_autolog(framework: str, options: Mapping[str, Any]) -> Callable[[], None] | None:
    """``mlflow.sklearn.autolog`` with cheap defaults; returns the restore callable."""
    if framework != FRAMEWORK:
        return None
    from tracksdk_sklearn.autolog import enable_autolog

    options = dict(options)
    training_plots = bool(options.pop("training_plots", False))
    restore_autolog = enable_autolog(FRAMEWORK, "sklearn", AUTOLOG_DEFAULTS, options)
    if training_plots:
        return restore_autolog
    restore_plots = _skip_training_plots()

    def restore() -> None:
        try:
            restore_autolog()
        finally:
            restore_plots()

    return restore


def _skip_training_plots() -> Callable[[], None]:
    """Stop sklearn autolog drawing its training-set plots, until the returned call.

    For every classifier fit, ``mlflow.sklearn.autolog`` draws a confusion matrix, a ROC
    curve and a precision-recall curve of the *training* set with pyplot and logs them: about
    0.3-0.8 s per fit here, 10-30x a small model's fit, and no option turns it off. MLflow
    asks ``mlflow.sklearn.utils._get_classifier_artifacts`` which plots to draw; while a
    tracked run has autolog on, that function returns no plots. Training metrics, params and
    tags are still logged. ``tracksdk.evaluate`` draws the same figures on validation data;
    ``{"training_plots": True}`` in the sklearn autolog options keeps MLflow's plots.
    """
    from mlflow.sklearn import utils

    from tracksdk_sklearn.support import warn

    name = "_get_classifier_artifacts"
    original = getattr(utils, name, None)
    if original is None:  # another MLflow version: nothing to switch off
        warn(f"mlflow.sklearn.utils.{name} is gone: sklearn autolog will draw training plots.")
        return lambda: None

    def no_plots(*args: Any, **kwargs: Any) -> list[Any]:
        return []

    setattr(utils, name, no_plots)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            if getattr(utils, name, None) is no_plots:
                setattr(utils, name, original)

    return restore


@hookimpl
def tracksdk_save_model(
    model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
) -> str | None:
    """Save with ``mlflow.sklearn.save_model``: cloudpickle, signature, pinned requirements."""
    if framework != FRAMEWORK:
        return None
    import mlflow.sklearn

    from tracksdk_sklearn.support import (
        head,
        infer_signature,
        pinned_requirements,
        quiet_logger,
        used_modules,
        warn,
    )

    example = head(input_example)
    # Serialization: cloudpickle, for every estimator. MLflow 3.17 defaults to skops, which
    # refuses to load anything outside its short list of trusted types (RandomForest's
    # sklearn.tree._tree.Tree, GradientBoosting's loss objects, LightGBM steps, custom
    # transformers, FunctionTransformer functions, ...) unless `skops_trusted_types` names
    # them. Computing that list from the model itself would trust whatever the model holds,
    # and MLflow stores the list in the MLmodel file next to the model data, so anyone able
    # to swap the data file can extend the list as well: skops would add no real protection
    # here, only failures and ~2 s per save (skops import, dump, then a test load). cloudpickle
    # handles every estimator, including lambdas and classes defined in __main__; like any
    # pickle it must only be loaded from a trusted store. The requirements pin cloudpickle
    # and scikit-learn to the versions that wrote the file.
    requirements = pinned_requirements(
        ["scikit-learn", "cloudpickle", "numpy", "scipy"],
        modules=used_modules(model),
        example=example,
    )
    with quiet_logger("mlflow.sklearn", _PICKLE_WARNING):
        mlflow.sklearn.save_model(
            model,
            str(path),
            serialization_format="cloudpickle",
            signature=infer_signature(model, example),
            input_example=example,
            pip_requirements=requirements,
        )
    for extra in formats:
        if extra == "onnx":
            _save_onnx(model, Path(path).parent / "onnx", example)
        else:
            warn(f"tracksdk-sklearn cannot save format {extra!r}; supported: 'onnx'.")
    return FRAMEWORK


def _save_onnx(model: Any, folder: Path, example: Any) -> None:
    """An ONNX copy of ``model`` in ``folder/model.onnx``, if skl2onnx is installed."""
    import importlib

    from tracksdk_sklearn.support import warn

    try:
        skl2onnx = importlib.import_module("skl2onnx")
    except ImportError:
        warn("ONNX copy skipped: skl2onnx is not installed (pip install 'tracksdk-sklearn[onnx]').")
        return
    if example is None:
        warn("ONNX copy skipped: it needs an input example to know the input type.")
        return
    import numpy as np

    try:
        numeric = all(dtype.kind in "biuf" for dtype in getattr(example, "dtypes", []))
        if hasattr(example, "dtypes") and not numeric:
            sample = example[:1]  # mixed column types: skl2onnx makes one input per column
        else:
            sample = np.asarray(example, dtype=np.float32)[:1]
        onnx_model = skl2onnx.to_onnx(model, sample)
    except Exception as error:
        warn(f"ONNX copy skipped: skl2onnx could not convert {type(model).__name__}: {error}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())


@hookimpl
def tracksdk_evaluate(model: Any, framework: str, X: Any, y: Any) -> Evaluation | None:
    """Classification or regression metrics and figures (see ``tracksdk_sklearn.evaluation``)."""
    if framework != FRAMEWORK:
        return None
    from tracksdk_sklearn.evaluation import evaluate_estimator, unseen_by_autolog

    with unseen_by_autolog():
        return evaluate_estimator(model, X, y)
