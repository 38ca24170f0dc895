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
evaluated with the scikit-learn metrics. With sklearn autolog on, ``Pipeline.fit`` is logged
as one fit (the pipeline's params) and the LGBM step's fit inside it is not logged again,
also with lightgbm autolog on (only the outermost fit is logged, under either engine); with
only lightgbm autolog on, the LGBM step's fit is logged by the lightgbm plugin.

Autolog has two engines (docs/autolog.md): tracksdk's own, the default
(:mod:`tracksdk_sklearn.sklearn_engine`: params, tags and the fit time through tracksdk's
API, costly extras opt-in), and MLflow's ``mlflow.sklearn.autolog`` with cheap defaults
(``{"engine": "mlflow"}``, chosen automatically for MLflow-only options or when MLflow's
sklearn autolog is already on).

The hooks are written by :class:`tracksdk.hookspecs.FrameworkHooks`; the machinery is
tracksdk's public plugin modules: :mod:`tracksdk.autolog`, :mod:`tracksdk.saving`,
:mod:`tracksdk.evaluation`.
"""

from __future__ import annotations

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
    "is_sklearn_class",
    "tracksdk_autolog",
    "tracksdk_evaluate",
    "tracksdk_frameworks",
    "tracksdk_model_framework",
    "tracksdk_save_model",
]

FRAMEWORK = "sklearn"

#: MLflow's engine: merged under the user's options for ``mlflow.sklearn.autolog``.
#: Besides the common cheap defaults: no post-training metrics (they wrap every
#: ``score``/metric call after fit) and at most 5 child runs for a hyper-parameter search.
#: The tracksdk-only option ``training_plots`` (default False, not passed to MLflow) is
#: explained in ``_skip_training_plots``.
AUTOLOG_DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "log_post_training_metrics": False,
    "max_tuning_runs": 5,
}

#: tracksdk's engine: its options and their defaults (docs/autolog.md). Everything costly
#: is off: training-set metrics re-predict the training set, plots draw figures, the HTML
#: renders the estimator, datasets digest the data.
ENGINE_OPTIONS: dict[str, Any] = {
    "log_datasets": False,
    "max_tuning_runs": 5,
    "training_metrics": False,
    "training_plots": False,
    "estimator_html": False,
    "pos_label": None,
}

# The option names of mlflow.sklearn.autolog in MLflow 3.17.
_MLFLOW_OPTIONS = (
    *MLFLOW_OPTIONS,
    "max_tuning_runs",
    "log_post_training_metrics",
    "serialization_format",
    "pos_label",
)

# Top-level packages with their own MLflow flavor and tracksdk plugin territory: their
# estimators subclass sklearn's BaseEstimator but are not scikit-learn models.
_FOREIGN = frozenset(
    {"lightgbm", "xgboost", "catboost", "statsmodels", "prophet", "pmdarima", "sktime"}
)

_PICKLE_WARNING = "Saving scikit-learn models in the pickle or cloudpickle format"


def is_sklearn_class(cls: type) -> bool:
    """Whether instances of ``cls`` are scikit-learn's (see the module doc). Imports nothing."""
    for klass in cls.__mro__:
        top = klass.__module__.partition(".")[0]
        if top == "sklearn":
            return True
        if top in _FOREIGN:
            return False
    return False


def _is_sklearn_model(model: Any) -> bool:
    """Whether ``model`` is scikit-learn's: estimators, Pipelines, ... Imports nothing."""
    return is_sklearn_class(type(model))


def autolog_spec() -> AutologSpec:
    """How sklearn autolog is turned on, under either engine (docs/autolog.md)."""
    from tracksdk.autolog import AutologSpec
    from tracksdk_sklearn.sklearn_engine import install

    return AutologSpec(
        framework=FRAMEWORK,
        engine_options=ENGINE_OPTIONS,
        install=install,
        mlflow_options=_MLFLOW_OPTIONS,
        mlflow_defaults=AUTOLOG_DEFAULTS,
        mlflow_switches={"training_plots": _skip_training_plots},
        mlflow_always={
            "training_metrics": "training_* metrics on the training set",
            "estimator_html": "the estimator.html artifact",
        },
    )


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

    from tracksdk.autolog import once

    name = "_get_classifier_artifacts"
    original = getattr(utils, name, None)
    if original is None:  # another MLflow version: nothing to switch off
        warn(f"mlflow.sklearn.utils.{name} is gone: sklearn autolog will draw training plots.")
        return lambda: None

    def no_plots(*args: Any, **kwargs: Any) -> list[Any]:
        return []

    setattr(utils, name, no_plots)

    @once
    def restore() -> None:
        if getattr(utils, name, None) is no_plots:
            setattr(utils, name, original)

    return restore


def _save(model: Any, path: Path, input_example: Any, formats: tuple[str, ...]) -> None:
    """Save with ``mlflow.sklearn.save_model``: cloudpickle, signature, pinned requirements."""
    from tracksdk.saving import save_mlflow_model, used_modules

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
    example = save_mlflow_model(
        "sklearn",
        model,
        path,
        input_example,
        ["scikit-learn", "cloudpickle", "numpy", "scipy"],
        modules=used_modules(model),
        quiet=(_PICKLE_WARNING,),
    )
    for extra in formats:
        if extra == "onnx":
            _save_onnx(model, Path(path).parent / "onnx", example)
        else:
            warn(f"tracksdk-sklearn cannot save format {extra!r}; supported: 'onnx'.")


def _save_onnx(model: Any, folder: Path, example: Any) -> None:
    """An ONNX copy of ``model`` in ``folder/model.onnx``, if skl2onnx is installed."""
    import importlib

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


def _evaluate(model: Any, X: Any, y: Any) -> Evaluation:
    """Classification or regression metrics and figures (see ``tracksdk.evaluation``)."""
    from tracksdk.evaluation import evaluate_estimator, unseen_by_autolog

    with unseen_by_autolog():
        return evaluate_estimator(model, X, y)


_hooks = FrameworkHooks(FRAMEWORK)
tracksdk_frameworks = _hooks.frameworks()
# trylast: more specific plugins (whose estimators may also subclass sklearn's classes) are
# asked first.
tracksdk_model_framework = _hooks.model_framework(_is_sklearn_model, trylast=True)
tracksdk_autolog = _hooks.autolog(autolog_spec)
tracksdk_save_model = _hooks.save_model(_save)
tracksdk_evaluate = _hooks.evaluate(_evaluate)
