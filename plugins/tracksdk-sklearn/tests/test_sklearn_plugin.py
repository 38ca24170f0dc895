"""The scikit-learn plugin, on tiny real models and a temporary sqlite store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

sklearn = pytest.importorskip("sklearn")
mlflow = pytest.importorskip("mlflow")

import numpy as np  # noqa: E402
import pluggy  # noqa: E402
import tracksdk_sklearn  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

from tracksdk import hookspecs  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402
from tracksdk.hookspecs import Evaluation  # noqa: E402

PIN = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][^\s]*$")


# --- fixtures (module-local: no conftest.py, so nothing clashes with tests/conftest.py) ---


@pytest.fixture(scope="module")
def experiment_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh sqlite store as the tracking URI, and an experiment whose artifacts stay in tmp."""
    from mlflow.tracking._tracking_service import utils

    folder = tmp_path_factory.mktemp("sklearn-plugin-store")
    old_uri = utils._tracking_uri
    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    try:
        yield mlflow.create_experiment("sklearn-plugin", artifact_location=str(folder / "art"))
    finally:
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@pytest.fixture
def no_autolog() -> Iterator[None]:
    """Whatever a test does, sklearn autolog is off and unconfigured afterwards."""
    import mlflow.sklearn
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = AUTOLOGGING_INTEGRATIONS.get("sklearn")
    yield
    mlflow.sklearn.autolog(disable=True, silent=True)
    if before is None:
        AUTOLOGGING_INTEGRATIONS.pop("sklearn", None)
    else:
        AUTOLOGGING_INTEGRATIONS["sklearn"] = before


def manager(*plugins: Any) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def breast_cancer() -> tuple[Any, Any]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


def run_data(run_id: str) -> Any:
    return mlflow.MlflowClient().get_run(run_id).data


def artifact_paths(run_id: str) -> list[str]:
    return [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]


# --- discovery and import cost ---


def test_entry_points_are_discoverable() -> None:
    """Both plugins are in the ``tracksdk`` entry-point group and load their modules."""
    found = {ep.name: ep for ep in entry_points(group="tracksdk")}
    assert {"sklearn", "lightgbm"} <= set(found)
    assert found["sklearn"].load() is tracksdk_sklearn


def test_import_loads_no_framework() -> None:
    """Importing the plugin modules imports neither MLflow nor a framework nor matplotlib."""
    code = (
        "import sys, tracksdk_sklearn, tracksdk_lightgbm\n"
        "heavy = ('mlflow', 'sklearn', 'lightgbm', 'matplotlib', 'numpy', 'pandas')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hooks_match_the_specs() -> None:
    """pluggy accepts every hook implementation against tracksdk's specifications."""
    pm = manager(tracksdk_sklearn)
    assert pm.hook.tracksdk_frameworks() == [["sklearn"]]


# --- ownership ---


class MyEstimator(sklearn.base.BaseEstimator):  # type: ignore[misc]
    pass


class MyLogistic(LogisticRegression):  # type: ignore[misc]
    pass


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (LogisticRegression(), "sklearn"),
        (make_pipeline(StandardScaler(), LogisticRegression()), "sklearn"),
        (MyEstimator(), "sklearn"),
        (MyLogistic(), "sklearn"),
        (object(), None),
        ("a string", None),
        (np.zeros(3), None),
    ],
    ids=[
        "LogisticRegression",
        "Pipeline",
        "BaseEstimator-subclass",
        "LR-subclass",
        "object",
        "str",
        "ndarray",
    ],
)
def test_ownership(model: Any, expected: str | None) -> None:
    """scikit-learn estimators and Pipelines are claimed, anything else is not."""
    assert tracksdk_sklearn.tracksdk_model_framework(model) == expected


def test_lightgbm_models_are_not_claimed() -> None:
    """An LGBMClassifier subclasses BaseEstimator but is LightGBM's, in any plugin order."""
    lightgbm = pytest.importorskip("lightgbm")
    import tracksdk_lightgbm

    model = lightgbm.LGBMClassifier()
    assert tracksdk_sklearn.tracksdk_model_framework(model) is None
    for order in [(tracksdk_sklearn, tracksdk_lightgbm), (tracksdk_lightgbm, tracksdk_sklearn)]:
        pm = manager(*order)
        assert pm.hook.tracksdk_model_framework(model=model) == "lightgbm"
        pipeline = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier())
        assert pm.hook.tracksdk_model_framework(model=pipeline) == "sklearn"
        assert pm.hook.tracksdk_model_framework(model=object()) is None


def test_ownership_imports_nothing() -> None:
    """Deciding ownership reads class modules only: scikit-learn is never imported."""
    code = (
        "import sys, tracksdk_sklearn\n"
        "Fake = type('LogisticRegression', (), {'__module__': 'sklearn.linear_model._logistic'})\n"
        "print(tracksdk_sklearn.tracksdk_model_framework(Fake()),\n"
        "      tracksdk_sklearn.tracksdk_model_framework(object()), 'sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sklearn", "None", "False"]


def test_other_frameworks_are_ignored_by_every_hook(tmp_path: Path) -> None:
    """Hooks return None for another framework's name."""
    assert tracksdk_sklearn.tracksdk_autolog("lightgbm", {}, in_store=True) is None
    assert tracksdk_sklearn.tracksdk_save_model(object(), "lightgbm", tmp_path, None, ()) is None
    assert tracksdk_sklearn.tracksdk_evaluate(object(), "lightgbm", None, None) is None
    assert not any(tmp_path.iterdir())


# --- saving ---


def _mixed_frame() -> tuple[Any, Any]:
    X, y = breast_cancer()
    return X.iloc[:, :6], y


SAVE_CASES = {
    "LogisticRegression": (lambda: LogisticRegression(solver="liblinear"), "clf"),
    "RandomForestClassifier": (
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        "clf",
    ),
    "GradientBoostingRegressor": (
        lambda: GradientBoostingRegressor(n_estimators=5, random_state=0),
        "reg",
    ),
    "Pipeline(StandardScaler, LogisticRegression)": (
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "clf",
    ),
    "DecisionTreeClassifier": (lambda: DecisionTreeClassifier(max_depth=3), "clf"),
    "HistGradientBoostingClassifier": (
        lambda: HistGradientBoostingClassifier(max_iter=5),
        "clf",
    ),
    "ExtraTreesRegressor": (lambda: ExtraTreesRegressor(n_estimators=5, random_state=0), "reg"),
    "Pipeline(FunctionTransformer(lambda), LinearSVC)": (
        lambda: Pipeline(
            [("log", FunctionTransformer(lambda X: np.log1p(np.abs(X)))), ("svc", LinearSVC())]
        ),
        "clf",
    ),
}


def _data(task: str) -> tuple[Any, Any]:
    if task == "clf":
        return breast_cancer()
    return load_diabetes(return_X_y=True, as_frame=True)


def _requirements(path: Path) -> dict[str, str]:
    lines = (path / "requirements.txt").read_text().split()
    assert lines and all(PIN.match(line) for line in lines), lines
    return dict(line.split("==", 1) for line in lines)


@pytest.mark.parametrize("case", list(SAVE_CASES))
def test_save_model_round_trip(case: str, tmp_path: Path, record_property: Any) -> None:
    """The saved model loads with pyfunc, predicts the same, has a signature, pins its deps."""
    from mlflow.models import Model

    factory, task = SAVE_CASES[case]
    X, y = _data(task)
    model = factory().fit(X, y)
    path = tmp_path / "model"

    start = time.perf_counter()
    flavor = tracksdk_sklearn.tracksdk_save_model(model, "sklearn", path, X, ())
    record_property("save_seconds", time.perf_counter() - start)

    assert flavor == "sklearn"
    loaded = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)).ravel(), model.predict(X))
    meta = Model.load(str(path / "MLmodel"))
    assert meta.signature is not None
    assert [spec.name for spec in meta.signature.inputs.inputs] == list(X.columns)
    assert meta.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    reqs = _requirements(path)
    for dist in ("mlflow", "scikit-learn", "cloudpickle", "numpy", "scipy", "pandas"):
        assert reqs[dist] == version(dist)
    example = mlflow.models.Model.load(str(path)).load_input_example(str(path))
    assert len(example) == 5


def test_save_without_input_example_has_no_signature(tmp_path: Path) -> None:
    """With no input example, the model is saved without signature and without pandas pin."""
    from mlflow.models import Model

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    assert tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "m", None, ()) == (
        "sklearn"
    )
    assert Model.load(str(tmp_path / "m" / "MLmodel")).signature is None
    assert "pandas" not in _requirements(tmp_path / "m")
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_numpy_example_and_string_labels(tmp_path: Path) -> None:
    """A numpy input example and string class labels round-trip too."""
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, labels)
    tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "m", X, ())
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_pipeline_ending_in_lightgbm_pins_lightgbm(tmp_path: Path) -> None:
    """A Pipeline whose last step is LightGBM is saved as sklearn and pins lightgbm too."""
    lightgbm = pytest.importorskip("lightgbm")
    X, y = breast_cancer()
    model = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(n_estimators=5, verbose=-1))
    model.fit(X, y)
    assert tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "m", X, ()) == (
        "sklearn"
    )
    assert _requirements(tmp_path / "m")["lightgbm"] == version("lightgbm")
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_does_not_print_the_pickle_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow's per-save cloudpickle warning is dropped (the choice is documented)."""
    X, y = breast_cancer()
    model = LogisticRegression(solver="liblinear").fit(X, y)
    with caplog.at_level("WARNING", logger="mlflow"):
        tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "m", X, ())
    assert not [r for r in caplog.records if "cloudpickle" in r.getMessage()]
    import logging

    assert not logging.getLogger("mlflow.sklearn").filters


def test_onnx_without_skl2onnx_warns_and_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """formats=("onnx",) without skl2onnx: a warning, the MLflow model, no onnx folder."""
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # makes the import fail
    X, y = breast_cancer()
    model = LogisticRegression(solver="liblinear").fit(X, y)
    with pytest.warns(TrackSDKWarning, match="skl2onnx is not installed"):
        flavor = tracksdk_sklearn.tracksdk_save_model(
            model, "sklearn", tmp_path / "model", X, ("onnx",)
        )
    assert flavor == "sklearn"
    assert (tmp_path / "model" / "MLmodel").exists()
    assert not (tmp_path / "onnx").exists()


def test_onnx_copy_predicts_like_the_model(tmp_path: Path) -> None:
    """With skl2onnx, an ONNX copy goes to ``path.parent / "onnx"`` and predicts the same."""
    import onnxruntime

    X, y = breast_cancer()
    model = LogisticRegression(solver="liblinear").fit(X, y)
    tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "model", X, ("onnx",))
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    name = session.get_inputs()[0].name
    labels = session.run(None, {name: np.asarray(X, dtype=np.float32)})[0]
    np.testing.assert_array_equal(labels, model.predict(X))


def test_unknown_format_warns(tmp_path: Path) -> None:
    """An extra format the plugin does not know is a warning, not a failure."""
    X, y = breast_cancer()
    model = LogisticRegression(solver="liblinear").fit(X, y)
    with pytest.warns(TrackSDKWarning, match="cannot save format 'pmml'"):
        tracksdk_sklearn.tracksdk_save_model(model, "sklearn", tmp_path / "m", X, ("pmml",))


# --- evaluation ---


def _png(fig: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_binary(tmp_path: Path) -> None:
    """Binary metrics equal sklearn.metrics; the three figures save as PNG."""
    X, y = breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
    assert isinstance(result, Evaluation)
    pred, proba = model.predict(X), model.predict_proba(X)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba[:, 1]),
        "log_loss": skm.log_loss(y, proba),
    }
    assert result.metrics == pytest.approx(expected)
    assert all(type(v) is float for v in result.metrics.values())
    assert set(result.figures) == {
        "confusion_matrix.png",
        "roc_curve.png",
        "precision_recall_curve.png",
    }
    for name, fig in result.figures.items():
        _png(fig, tmp_path / name)


def test_evaluate_binary_string_labels() -> None:
    """With string labels the positive class is the model's second class."""
    X, y = breast_cancer()
    labels = np.where(y == 1, "benign", "malignant")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels)
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, labels)
    assert result is not None
    pred = model.predict(X)
    positive = model.classes_[1]
    assert result.metrics["precision"] == pytest.approx(
        skm.precision_score(labels, pred, pos_label=positive)
    )
    assert result.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(labels == positive, model.predict_proba(X)[:, 1])
    )


def test_evaluate_multiclass(tmp_path: Path) -> None:
    """Multiclass: macro metrics, one-vs-rest ROC AUC, log loss; one-vs-rest curves."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
    assert result is not None
    pred, proba = model.predict(X), model.predict_proba(X)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y, proba),
    }
    assert result.metrics == pytest.approx(expected)
    assert set(result.figures) == {
        "confusion_matrix.png",
        "roc_curve.png",
        "precision_recall_curve.png",
    }
    assert len(result.figures["roc_curve.png"].axes[0].get_legend().get_texts()) == 3
    for name, fig in result.figures.items():
        _png(fig, tmp_path / name)


def test_evaluate_classifier_without_probabilities() -> None:
    """No predict_proba: ROC AUC from decision_function, no log loss."""
    X, y = breast_cancer()
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
    assert result is not None
    assert "log_loss" not in result.metrics
    assert result.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, model.decision_function(X))
    )
    assert "roc_curve.png" in result.figures


def test_evaluate_one_class_in_y_leaves_out_undefined_metrics() -> None:
    """A validation set with one class: no ROC AUC, no curves, the rest is there."""
    X, y = breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    only = y == 1
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X[only], y[only])
    assert result is not None
    assert "roc_auc" not in result.metrics
    assert "accuracy" in result.metrics
    assert set(result.figures) == {"confusion_matrix.png"}
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_evaluate_multiclass_with_a_class_missing_from_y() -> None:
    """Multiclass data lacking one of the model's classes: no ROC AUC, no NaN."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    keep = y != 2
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X[keep], y[keep])
    assert result is not None
    assert "roc_auc" not in result.metrics
    assert result.metrics["log_loss"] == pytest.approx(
        skm.log_loss(y[keep], model.predict_proba(X[keep]), labels=[0, 1, 2])
    )
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_evaluate_regression(tmp_path: Path) -> None:
    """Regression: rmse, mae, r2 equal sklearn.metrics; residuals.png."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    result = tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
    assert result is not None
    pred = model.predict(X)
    assert result.metrics == pytest.approx(
        {
            "rmse": skm.root_mean_squared_error(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
        }
    )
    assert set(result.figures) == {"residuals.png"}
    _png(result.figures["residuals.png"], tmp_path / "residuals.png")


def test_evaluate_uses_no_pyplot() -> None:
    """Figures are made without pyplot: pyplot's figure list does not grow."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    X, y = breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
    assert plt.get_fignums() == before


# --- autolog, MLflow's engine (tracksdk's own engine: test_sklearn_engine.py) ---

MLFLOW = {"engine": "mlflow"}


def _fit_in_run(experiment_id: str) -> str:
    X, y = breast_cancer()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    return str(run.info.run_id)


@pytest.mark.usefixtures("no_autolog")
def test_autolog_logs_then_restore_stops_it(experiment_id: str) -> None:
    """Under MLflow's engine a fit logs params and metrics; after restore it logs nothing."""
    import mlflow.sklearn  # noqa: F401 - the integration entry exists once imported
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = dict(AUTOLOGGING_INTEGRATIONS["sklearn"])
    restore = tracksdk_sklearn.tracksdk_autolog("sklearn", MLFLOW, in_store=True)
    assert callable(restore)
    config = AUTOLOGGING_INTEGRATIONS["sklearn"]
    for key, value in tracksdk_sklearn.AUTOLOG_DEFAULTS.items():
        assert config[key] == value
    run_id = _fit_in_run(experiment_id)
    data = run_data(run_id)
    assert "logisticregression__C" in data.params
    assert "training_accuracy_score" in data.metrics
    assert not [p for p in artifact_paths(run_id) if p.endswith(".png")]  # training_plots off
    assert "model" not in artifact_paths(run_id)

    restore()
    restore()  # a second call does nothing
    assert AUTOLOGGING_INTEGRATIONS["sklearn"] == before
    data = run_data(_fit_in_run(experiment_id))
    assert not data.params
    assert not data.metrics


@pytest.mark.usefixtures("no_autolog")
def test_autolog_training_plots_opt_in(experiment_id: str) -> None:
    """training_plots=True keeps MLflow's training-set plots; restore removes the switch."""
    import mlflow.sklearn.utils

    original = mlflow.sklearn.utils._get_classifier_artifacts
    restore = tracksdk_sklearn.tracksdk_autolog(
        "sklearn", {**MLFLOW, "training_plots": True}, in_store=True
    )
    assert restore is not None
    try:
        run_id = _fit_in_run(experiment_id)
    finally:
        restore()
    assert "training_confusion_matrix.png" in artifact_paths(run_id)
    assert mlflow.sklearn.utils._get_classifier_artifacts is original


@pytest.mark.usefixtures("no_autolog")
def test_autolog_user_config_survives(experiment_id: str) -> None:
    """A user's own mlflow.sklearn.autolog(log_models=False) is back after restore.

    With MLflow's sklearn autolog already on, the run uses MLflow's engine (no engine
    option needed) with its own options over the user's.
    """
    import mlflow.sklearn.utils
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    original = mlflow.sklearn.utils._get_classifier_artifacts
    mlflow.sklearn.autolog(log_models=False)
    users = dict(AUTOLOGGING_INTEGRATIONS["sklearn"])
    restore = tracksdk_sklearn.tracksdk_autolog("sklearn", {"max_tuning_runs": 2}, in_store=True)
    assert restore is not None
    assert AUTOLOGGING_INTEGRATIONS["sklearn"]["max_tuning_runs"] == 2
    assert AUTOLOGGING_INTEGRATIONS["sklearn"]["silent"] is True
    restore()
    assert AUTOLOGGING_INTEGRATIONS["sklearn"] == users
    assert mlflow.sklearn.utils._get_classifier_artifacts is original
    run_id = _fit_in_run(experiment_id)
    data = run_data(run_id)
    assert "logisticregression__C" in data.params
    assert "training_accuracy_score" in data.metrics
    assert "training_confusion_matrix.png" in artifact_paths(run_id)  # MLflow's own default


@pytest.mark.usefixtures("no_autolog")
def test_autolog_nested_restores_in_order(experiment_id: str) -> None:
    """Two enables (nested runs) restored innermost first leave the original state."""
    import mlflow.sklearn  # noqa: F401
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = dict(AUTOLOGGING_INTEGRATIONS["sklearn"])
    outer = tracksdk_sklearn.tracksdk_autolog(
        "sklearn", {**MLFLOW, "max_tuning_runs": 3}, in_store=True
    )
    inner = tracksdk_sklearn.tracksdk_autolog(
        "sklearn", {**MLFLOW, "max_tuning_runs": 4}, in_store=True
    )
    assert outer is not None and inner is not None
    inner()
    assert AUTOLOGGING_INTEGRATIONS["sklearn"]["max_tuning_runs"] == 3
    assert run_data(_fit_in_run(experiment_id)).params
    outer()
    assert AUTOLOGGING_INTEGRATIONS["sklearn"] == before
    assert not run_data(_fit_in_run(experiment_id)).params


@pytest.mark.usefixtures("no_autolog")
def test_autolog_drops_registered_model_name_and_unknown_options() -> None:
    """registered_model_name and unknown names are dropped, each with a warning."""
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    with pytest.warns(TrackSDKWarning) as caught:
        restore = tracksdk_sklearn.tracksdk_autolog(
            "sklearn",
            {**MLFLOW, "registered_model_name": "churn", "log_everything": True},
            in_store=True,
        )
    assert restore is not None
    messages = [str(w.message) for w in caught]
    assert any("registered_model_name" in m for m in messages)
    assert any("log_everything" in m for m in messages)
    assert AUTOLOGGING_INTEGRATIONS["sklearn"]["registered_model_name"] is None
    restore()


@pytest.mark.usefixtures("no_autolog")
def test_evaluate_is_not_logged_again_by_post_training_metrics(experiment_id: str) -> None:
    """With the user's log_post_training_metrics=True, evaluate's metrics are not duplicated.

    The option is MLflow's engine's only: it selects that engine by itself.
    """
    X, y = breast_cancer()
    restore = tracksdk_sklearn.tracksdk_autolog(
        "sklearn", {"log_post_training_metrics": True}, in_store=True
    )
    assert restore is not None
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
            tracksdk_sklearn.tracksdk_evaluate(model, "sklearn", X, y)
            skm.f1_score(y, model.predict(X))  # the user's own call is still logged
    finally:
        restore()
    metrics = run_data(run.info.run_id).metrics
    post_training = [m for m in metrics if not m.startswith("training_")]
    assert len(post_training) == 1  # named after the variable: f1_score_X
    assert post_training[0].startswith("f1_score")
