"""The LightGBM plugin, on tiny real models (5 trees) and a temporary sqlite store."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

lightgbm = pytest.importorskip("lightgbm")
mlflow = pytest.importorskip("mlflow")

import numpy as np  # noqa: E402
import pluggy  # noqa: E402
import tracksdk_lightgbm  # noqa: E402
import tracksdk_sklearn  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from tracksdk import hookspecs  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402

PIN = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][^\s]*$")
LGB = {"n_estimators": 5, "verbose": -1}


@pytest.fixture(scope="module")
def experiment_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh sqlite store as the tracking URI, and an experiment whose artifacts stay in tmp."""
    from mlflow.tracking._tracking_service import utils

    folder = tmp_path_factory.mktemp("lightgbm-plugin-store")
    old_uri = utils._tracking_uri
    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    try:
        yield mlflow.create_experiment("lightgbm-plugin", artifact_location=str(folder / "art"))
    finally:
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@pytest.fixture
def no_autolog() -> Iterator[None]:
    """Whatever a test does, lightgbm autolog is off and unconfigured afterwards."""
    import mlflow.lightgbm
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = AUTOLOGGING_INTEGRATIONS.get("lightgbm")
    yield
    mlflow.lightgbm.autolog(disable=True, silent=True)
    if before is None:
        AUTOLOGGING_INTEGRATIONS.pop("lightgbm", None)
    else:
        AUTOLOGGING_INTEGRATIONS["lightgbm"] = before


def binary() -> tuple[Any, Any]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


def booster(objective: str, X: Any, y: Any, **params: Any) -> Any:
    data = lightgbm.Dataset(X, y)
    return lightgbm.train({"objective": objective, "verbose": -1, **params}, data, 5)


def _requirements(path: Path) -> dict[str, str]:
    lines = (path / "requirements.txt").read_text().split()
    assert lines and all(PIN.match(line) for line in lines), lines
    return dict(line.split("==", 1) for line in lines)


# --- discovery and ownership ---


def test_entry_point_is_discoverable() -> None:
    """The ``lightgbm`` entry point loads this plugin's module."""
    found = {ep.name: ep for ep in entry_points(group="tracksdk")}
    assert {"sklearn", "lightgbm"} <= set(found)
    assert found["lightgbm"].load() is tracksdk_lightgbm


def test_hooks_match_the_specs() -> None:
    """pluggy accepts every hook implementation against tracksdk's specifications."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(tracksdk_lightgbm)
    pm.check_pending()
    assert pm.hook.tracksdk_frameworks() == [["lightgbm"]]


def test_ownership() -> None:
    """LightGBM models are claimed; scikit-learn models, Pipelines and others are not."""
    X, y = binary()
    owned = [
        lightgbm.LGBMClassifier(),
        lightgbm.LGBMRegressor(),
        lightgbm.LGBMRanker(),
        booster("binary", X, y),
    ]
    for model in owned:
        assert tracksdk_lightgbm.tracksdk_model_framework(model) == "lightgbm"
        assert tracksdk_sklearn.tracksdk_model_framework(model) is None
    not_owned = [
        LogisticRegression(),
        make_pipeline(StandardScaler(), lightgbm.LGBMClassifier()),
        lightgbm.Dataset(X, y),  # LightGBM's, but not a model
        object(),
    ]
    for model in not_owned:
        assert tracksdk_lightgbm.tracksdk_model_framework(model) is None
    assert tracksdk_sklearn.tracksdk_model_framework(LogisticRegression()) == "sklearn"


def test_other_frameworks_are_ignored_by_every_hook(tmp_path: Path) -> None:
    """Hooks return None for another framework's name."""
    assert tracksdk_lightgbm.tracksdk_autolog("sklearn", {}, in_store=True) is None
    assert tracksdk_lightgbm.tracksdk_save_model(object(), "sklearn", tmp_path, None, ()) is None
    assert tracksdk_lightgbm.tracksdk_evaluate(object(), "sklearn", None, None) is None


# --- saving ---


def _fitted(kind: str) -> tuple[Any, Any]:
    if kind == "LGBMClassifier":
        X, y = binary()
        return lightgbm.LGBMClassifier(**LGB).fit(X, y), X
    if kind == "LGBMClassifier(multiclass)":
        X, y = load_iris(return_X_y=True, as_frame=True)
        return lightgbm.LGBMClassifier(**LGB).fit(X, y), X
    if kind == "LGBMRegressor":
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        return lightgbm.LGBMRegressor(**LGB).fit(X, y), X
    X, y = binary()
    return booster("binary", X, y), X


@pytest.mark.parametrize(
    "kind", ["LGBMClassifier", "LGBMClassifier(multiclass)", "LGBMRegressor", "Booster"]
)
def test_save_model_round_trip(kind: str, tmp_path: Path, record_property: Any) -> None:
    """The saved model loads with pyfunc, predicts the same, has a signature, pins its deps."""
    from mlflow.models import Model

    model, X = _fitted(kind)
    path = tmp_path / "model"
    start = time.perf_counter()
    flavor = tracksdk_lightgbm.tracksdk_save_model(model, "lightgbm", path, X, ())
    record_property("save_seconds", time.perf_counter() - start)

    assert flavor == "lightgbm"
    loaded = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), model.predict(X))
    meta = Model.load(str(path / "MLmodel"))
    assert meta.signature is not None
    reqs = _requirements(path)
    for dist in ("mlflow", "lightgbm", "numpy", "scipy", "pandas"):
        assert reqs[dist] == version(dist)
    if kind == "Booster":
        assert "cloudpickle" not in reqs  # LightGBM's own text format
        assert (path / "model.lgb").exists()
    else:
        assert reqs["scikit-learn"] == version("scikit-learn")
        assert reqs["cloudpickle"] == version("cloudpickle")
        assert meta.flavors["lightgbm"]["serialization_format"] == "cloudpickle"


def test_save_without_input_example(tmp_path: Path) -> None:
    """No input example: no signature, still loadable."""
    from mlflow.models import Model

    model, X = _fitted("LGBMClassifier")
    tracksdk_lightgbm.tracksdk_save_model(model, "lightgbm", tmp_path / "m", None, ())
    assert Model.load(str(tmp_path / "m" / "MLmodel")).signature is None
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_extra_formats_warn(tmp_path: Path) -> None:
    """An ONNX copy is not made for LightGBM: a warning, and the MLflow model is saved."""
    model, X = _fitted("LGBMRegressor")
    with pytest.warns(TrackSDKWarning, match="cannot save format 'onnx'"):
        tracksdk_lightgbm.tracksdk_save_model(model, "lightgbm", tmp_path / "m", X, ("onnx",))
    assert (tmp_path / "m" / "MLmodel").exists()


# --- evaluation ---


def _png(fig: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_binary(tmp_path: Path) -> None:
    """Binary metrics equal sklearn.metrics; figures include feature importance."""
    X, y = binary()
    model = lightgbm.LGBMClassifier(**LGB).fit(X, y)
    result = tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y)
    assert result is not None
    pred, proba = model.predict(X), model.predict_proba(X)
    assert result.metrics == pytest.approx(
        {
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
    )
    assert set(result.figures) == {
        "confusion_matrix.png",
        "roc_curve.png",
        "precision_recall_curve.png",
        "feature_importance.png",
    }
    for name, fig in result.figures.items():
        _png(fig, tmp_path / name)


def test_evaluate_multiclass(tmp_path: Path) -> None:
    """Multiclass metrics equal sklearn.metrics (one-vs-rest macro ROC AUC)."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = lightgbm.LGBMClassifier(**LGB).fit(X, y)
    result = tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y)
    assert result is not None
    pred, proba = model.predict(X), model.predict_proba(X)
    assert result.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y, pred),
            "precision_macro": skm.precision_score(y, pred, average="macro"),
            "recall_macro": skm.recall_score(y, pred, average="macro"),
            "f1_macro": skm.f1_score(y, pred, average="macro"),
            "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr"),
            "log_loss": skm.log_loss(y, proba),
        }
    )
    assert "feature_importance.png" in result.figures
    for name, fig in result.figures.items():
        _png(fig, tmp_path / name)


def test_evaluate_regression(tmp_path: Path) -> None:
    """Regression metrics equal sklearn.metrics; residuals and feature importance figures."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = lightgbm.LGBMRegressor(**LGB).fit(X, y)
    result = tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y)
    assert result is not None
    pred = model.predict(X)
    assert result.metrics == pytest.approx(
        {
            "rmse": skm.root_mean_squared_error(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
        }
    )
    assert set(result.figures) == {"residuals.png", "feature_importance.png"}
    for name, fig in result.figures.items():
        _png(fig, tmp_path / name)


def test_evaluate_boosters() -> None:
    """Boosters: binary and multiclass scored as classifiers, others as regressions."""
    X, y = binary()
    model = booster("binary", X, y)
    result = tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y)
    assert result is not None
    proba = model.predict(X)
    assert result.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba))
    assert result.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, proba >= 0.5))

    # Loaded from text, params are empty: the objective comes from the model header.
    reloaded = lightgbm.Booster(model_str=model.model_to_string())
    again = tracksdk_lightgbm.tracksdk_evaluate(reloaded, "lightgbm", X, y)
    assert again is not None
    assert again.metrics == pytest.approx(result.metrics)

    Xi, yi = load_iris(return_X_y=True, as_frame=True)
    multi = booster("multiclass", Xi, yi, num_class=3)
    result = tracksdk_lightgbm.tracksdk_evaluate(multi, "lightgbm", Xi, yi)
    assert result is not None
    assert result.metrics["log_loss"] == pytest.approx(skm.log_loss(yi, multi.predict(Xi)))

    Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    reg = booster("regression", Xr, yr)
    result = tracksdk_lightgbm.tracksdk_evaluate(reg, "lightgbm", Xr, yr)
    assert result is not None
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    assert result.metrics["r2"] == pytest.approx(skm.r2_score(yr, reg.predict(Xr)))


# --- autolog, MLflow's engine (tracksdk's own engine: test_lightgbm_engine.py) ---

MLFLOW = {"engine": "mlflow"}


def _fit_in_run(experiment_id: str) -> str:
    X, y = binary()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        lightgbm.LGBMClassifier(**LGB).fit(X, y)
    return str(run.info.run_id)


def _params(run_id: str) -> dict[str, str]:
    return dict(mlflow.MlflowClient().get_run(run_id).data.params)


@pytest.mark.usefixtures("no_autolog")
def test_autolog_logs_then_restore_stops_it(experiment_id: str) -> None:
    """Under MLflow's engine a fit logs params and importances; after restore nothing."""
    import mlflow.lightgbm
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = dict(AUTOLOGGING_INTEGRATIONS["lightgbm"])
    restore = tracksdk_lightgbm.tracksdk_autolog("lightgbm", MLFLOW, in_store=True)
    assert restore is not None
    for key, value in tracksdk_lightgbm.AUTOLOG_DEFAULTS.items():
        assert AUTOLOGGING_INTEGRATIONS["lightgbm"][key] == value
    run_id = _fit_in_run(experiment_id)
    params = _params(run_id)
    assert params["objective"] == "binary"
    assert params["num_boost_round"] == "5"
    paths = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]
    assert "feature_importance_gain.json" in paths
    assert "model" not in paths

    restore()
    assert AUTOLOGGING_INTEGRATIONS["lightgbm"] == before
    assert _params(_fit_in_run(experiment_id)) == {}


@pytest.mark.usefixtures("no_autolog")
def test_autolog_user_config_survives(experiment_id: str) -> None:
    """A user's own mlflow.lightgbm.autolog(log_models=False) is back after restore.

    With MLflow's lightgbm autolog already on, the run uses MLflow's engine.
    """
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    mlflow.lightgbm.autolog(log_models=False)
    users = dict(AUTOLOGGING_INTEGRATIONS["lightgbm"])
    restore = tracksdk_lightgbm.tracksdk_autolog("lightgbm", {"log_datasets": True}, in_store=True)
    assert restore is not None
    assert AUTOLOGGING_INTEGRATIONS["lightgbm"]["log_datasets"] is True
    restore()
    assert AUTOLOGGING_INTEGRATIONS["lightgbm"] == users
    assert _params(_fit_in_run(experiment_id))["objective"] == "binary"


@pytest.mark.usefixtures("no_autolog")
def test_autolog_drops_registered_model_name() -> None:
    """registered_model_name is never passed to MLflow's autolog."""
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    with pytest.warns(TrackSDKWarning, match="registered_model_name"):
        restore = tracksdk_lightgbm.tracksdk_autolog(
            "lightgbm", {**MLFLOW, "registered_model_name": "m"}, in_store=True
        )
    assert restore is not None
    assert AUTOLOGGING_INTEGRATIONS["lightgbm"]["registered_model_name"] is None
    restore()


@pytest.mark.usefixtures("no_autolog")
def test_pipeline_ending_in_lgbm_is_autologged_once_by_sklearn(experiment_id: str) -> None:
    """Both MLflow autologs on: a Pipeline with an LGBM step is logged by sklearn, once."""
    X, y = binary()
    restore_sklearn = tracksdk_sklearn.tracksdk_autolog("sklearn", MLFLOW, in_store=True)
    restore_lightgbm = tracksdk_lightgbm.tracksdk_autolog("lightgbm", MLFLOW, in_store=True)
    assert restore_sklearn is not None and restore_lightgbm is not None
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(**LGB)).fit(X, y)
    finally:
        restore_lightgbm()
        restore_sklearn()
    params = _params(run.info.run_id)
    assert params["lgbmclassifier__n_estimators"] == "5"  # sklearn's pipeline params
    assert "num_boost_round" not in params  # no lightgbm autolog inside


@pytest.mark.usefixtures("no_autolog")
def test_mlflow_engine_logs_no_post_training_metrics_by_default(experiment_id: str) -> None:
    """MLflow's lightgbm autolog forces post-training metrics on; the plugin turns them off.

    Neither evaluate's metrics nor the user's own metric call on the predictions are
    logged again as ``accuracy_score_X`` (and no metric_info.json).
    """
    X, y = binary()
    restore = tracksdk_lightgbm.tracksdk_autolog("lightgbm", MLFLOW, in_store=True)
    assert restore is not None
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            model = lightgbm.LGBMClassifier(**LGB).fit(X, y)
            assert tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y) is not None
            skm.accuracy_score(y, model.predict(X))
    finally:
        restore()
    client = mlflow.MlflowClient()
    assert client.get_run(run.info.run_id).data.metrics == {}
    paths = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "metric_info.json" not in paths
    assert "feature_importance_gain.json" in paths  # MLflow's engine did run


@pytest.mark.usefixtures("no_autolog")
def test_evaluate_under_autolog_logs_no_duplicate_metrics(experiment_id: str) -> None:
    """Post-training metrics asked for: the user's own call is logged, evaluate's are not."""
    X, y = binary()
    restore = tracksdk_lightgbm.tracksdk_autolog(
        "lightgbm", {"log_post_training_metrics": True}, in_store=True
    )
    assert restore is not None
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            model = lightgbm.LGBMClassifier(**LGB).fit(X, y)
            result = tracksdk_lightgbm.tracksdk_evaluate(model, "lightgbm", X, y)
            assert result is not None
            skm.accuracy_score(y, model.predict(X))  # the user's own call is still logged
    finally:
        restore()
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    assert len(metrics) == 1  # named after the variable: accuracy_score_X
    assert next(iter(metrics)).startswith("accuracy_score")
