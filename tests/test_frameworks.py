"""scikit-learn and LightGBM through tracksdk, on the local store and on a real server.

Tiny real models (bundled datasets, 5 trees): autolog scoped to the run, the returned
model logged and loadable from the registry by alias, evaluation metrics and figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from core_fixtures import artifact_paths
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import tracksdk
from tracksdk import Gate, Register, _plugins, tracked

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X_TRAIN, X_VAL, Y_TRAIN, Y_VAL = train_test_split(X, y, random_state=0, stratify=y)


@pytest.fixture(autouse=True)
def fresh_plugins() -> Any:
    _plugins.reset()
    yield
    _plugins.reset()


@pytest.fixture(params=["local", pytest.param("server", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client on the backend under test, with tracksdk pointed at it."""
    from mlflow.tracking import MlflowClient

    if request.param == "local":
        uri = f"sqlite:///{project / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("mlflow_server").url
        monkeypatch.setenv("TRACKSDK_BACKEND", "server")
        monkeypatch.setenv("TRACKSDK_SERVER__URI", uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def load(client: Any, uri: str) -> Any:
    import mlflow.pyfunc

    os.environ["MLFLOW_TRACKING_URI"] = client.tracking_uri
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_random_forest_logged_registered_and_loaded_by_alias(store: Any, project: Path) -> None:
    """A returned RandomForest is logged with a signature, registered, promoted, loadable."""
    name = f"rf-{project.parent.name}"[:60]

    @tracked(experiment="frameworks", register=Register(name, gate=Gate("val_roc_auc")))
    def train(X_train: Any, y_train: Any, n_estimators: int = 5) -> Any:
        model = RandomForestClassifier(n_estimators=n_estimators, random_state=0)
        model.fit(X_train, y_train)
        return model, tracksdk.evaluate(model, X_VAL, Y_VAL, prefix="val_")

    model, metrics = train(X_TRAIN, Y_TRAIN)
    assert 0.9 < metrics["val_roc_auc"] <= 1.0
    version = store.get_model_version_by_alias(name, "champion")
    run = store.get_run(version.run_id)
    assert run.data.metrics["val_roc_auc"] == metrics["val_roc_auc"]
    assert run.data.params["n_estimators"] == "5"
    assert run.data.tags["tracksdk.model.framework"] == "sklearn"
    paths = artifact_paths(store, version.run_id)
    for expected in (
        "model/MLmodel",
        "model/requirements.txt",
        "evaluation/val_confusion_matrix.png",
        "evaluation/val_roc_curve.png",
    ):
        assert expected in paths
    loaded = load(store, f"models:/{name}@champion")
    assert loaded.metadata.signature is not None
    np.testing.assert_array_equal(loaded.predict(X_VAL), model.predict(X_VAL))


def test_lightgbm_autolog_is_scoped_to_the_run(store: Any) -> None:
    """autolog=["lightgbm"] logs the fit inside the run; a fit after the run logs nothing."""
    import mlflow

    with tracked(experiment="frameworks", autolog=["lightgbm"]) as run:
        lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X_TRAIN, Y_TRAIN)
    params = store.get_run(run.run_id).data.params
    assert params["num_boost_round"] == "5"  # logged by LightGBM's autolog
    assert mlflow.active_run() is None
    before = len(store.search_runs([run.experiment_id]))
    lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X_TRAIN, Y_TRAIN)  # untracked
    assert len(store.search_runs([run.experiment_id])) == before
    assert mlflow.active_run() is None


def test_sklearn_autolog_scope_keeps_the_users_global_setup(project: Path) -> None:
    """A user's own mlflow.sklearn.autolog survives a run that enabled it with other options."""
    import mlflow
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    mlflow.sklearn.autolog(log_models=False, max_tuning_runs=2, silent=True)
    try:
        before = dict(AUTOLOGGING_INTEGRATIONS["sklearn"])
        with tracked(autolog={"sklearn": {"max_tuning_runs": 3}}):
            assert AUTOLOGGING_INTEGRATIONS["sklearn"]["max_tuning_runs"] == 3
            LogisticRegression(max_iter=5000).fit(X_TRAIN, Y_TRAIN)
        assert dict(AUTOLOGGING_INTEGRATIONS["sklearn"]) == before
    finally:
        mlflow.sklearn.autolog(disable=True)


def test_regression_evaluation(project: Path) -> None:
    """Regression models get RMSE, MAE, R² and a residual plot."""
    from sklearn.metrics import mean_absolute_error

    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    model = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(Xd, yd)
    with tracked() as run:
        metrics = tracksdk.evaluate(model, Xd, yd, prefix="train_")
    assert set(metrics) == {"train_rmse", "train_mae", "train_r2"}
    assert metrics["train_mae"] == pytest.approx(mean_absolute_error(yd, model.predict(Xd)))
    from core_fixtures import local_client

    paths = artifact_paths(local_client(project), str(run.run_id))
    assert "evaluation/train_residuals.png" in paths
    assert "evaluation/train_feature_importance.png" in paths


def test_hyperparameter_search_children_and_best_in_parent(project: Path) -> None:
    """A tracked function in a loop inside a tracked parent: child runs; with best=, the
    parent records the best child's metric and run id."""
    from core_fixtures import all_runs

    @tracked
    def trial(num_leaves: int) -> dict[str, float]:
        model = lgb.LGBMClassifier(n_estimators=5, num_leaves=num_leaves, verbose=-1)
        model.fit(X_TRAIN, Y_TRAIN)
        return tracksdk.evaluate(model, X_VAL, Y_VAL, prefix="val_")

    with tracked(experiment="search", best=Gate("val_log_loss", mode="min")) as parent:
        for leaves in (2, 8, 16):
            trial(leaves)
    runs = all_runs(project)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(kids) == 3
    winner = min(kids, key=lambda r: r.data.metrics["val_log_loss"])
    stored = next(r for r in runs if r.info.run_id == parent.run_id)
    assert stored.data.metrics["best_val_log_loss"] == winner.data.metrics["val_log_loss"]
    assert stored.data.tags["tracksdk.best_run_id"] == winner.info.run_id


def test_onnx_copy_logged_next_to_the_model(project: Path) -> None:
    """formats=["onnx"] also logs model-onnx/model.onnx, which predicts like the model."""
    import onnxruntime
    from core_fixtures import local_client

    @tracked(formats=["onnx"])
    def train(X_train: Any, y_train: Any) -> Any:
        return LogisticRegression(max_iter=5000).fit(X_train, y_train)

    with tracked() as parent:
        model = train(X_TRAIN, Y_TRAIN)
    client = local_client(project)
    (child,) = client.search_runs(
        [parent.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    assert "model-onnx/model.onnx" in artifact_paths(client, child.info.run_id)
    local = client.download_artifacts(child.info.run_id, "model-onnx/model.onnx", str(project))
    session = onnxruntime.InferenceSession(local)
    name = session.get_inputs()[0].name
    labels = session.run(None, {name: np.asarray(X_VAL, dtype=np.float32)})[0]
    np.testing.assert_array_equal(labels, model.predict(X_VAL))
