"""The XGBoost plugin's hooks on tiny real models (5 rounds): ownership, saving, evaluation.

Autolog, through tracked runs on a real store: test_xgboost_autolog.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

xgboost = pytest.importorskip("xgboost")
mlflow = pytest.importorskip("mlflow")

import numpy as np  # noqa: E402
import pluggy  # noqa: E402
import tracksdk_xgboost  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from tracksdk import hookspecs  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402

PIN = re.compile(r"^[A-Za-z0-9_.\-]+==[0-9][^\s]*$")
# One thread: on a loaded 2-core machine XGBoost's OpenMP threads wait on each other.
XGB = {"n_estimators": 5, "max_depth": 2, "n_jobs": 1}
X_BIN, Y_BIN = load_breast_cancer(return_X_y=True, as_frame=True)
X_BIN, Y_BIN = X_BIN.iloc[:120], Y_BIN.iloc[:120]
X_IRIS, Y_IRIS = load_iris(return_X_y=True, as_frame=True)
X_REG, Y_REG = load_diabetes(return_X_y=True, as_frame=True)
X_REG, Y_REG = X_REG.iloc[:120], Y_REG.iloc[:120]


def booster(objective: str, X: Any, y: Any, **params: Any) -> Any:
    params = {"objective": objective, "max_depth": 2, "nthread": 1, **params}
    return xgboost.train(params, xgboost.DMatrix(X, y), 5)


def _requirements(path: Path) -> dict[str, str]:
    lines = (path / "requirements.txt").read_text().split()
    assert lines and all(PIN.match(line) for line in lines), lines
    return dict(line.split("==", 1) for line in lines)


# --- discovery and ownership ---


def test_entry_point_loads_the_plugin_and_its_hooks_match_the_specs() -> None:
    """The ``xgboost`` entry point is this module; pluggy accepts every hook against the specs."""
    found = {ep.name: ep for ep in entry_points(group="tracksdk")}
    assert found["xgboost"].load() is tracksdk_xgboost
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(tracksdk_xgboost)
    pm.check_pending()
    assert pm.hook.tracksdk_frameworks() == [["xgboost"]]


def test_import_loads_no_framework() -> None:
    """Importing the plugin module imports neither MLflow nor a framework nor matplotlib."""
    code = (
        "import sys, tracksdk_xgboost\n"
        "heavy = ('mlflow', 'xgboost', 'sklearn', 'matplotlib', 'numpy', 'pandas')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ownership() -> None:
    """XGBoost models are claimed; a DMatrix, scikit-learn models and Pipelines are not."""
    owned = [
        xgboost.XGBClassifier(),
        xgboost.XGBRegressor(),
        xgboost.XGBRanker(),
        xgboost.XGBRFClassifier(),
        booster("binary:logistic", X_BIN, Y_BIN),
    ]
    for model in owned:
        assert tracksdk_xgboost.tracksdk_model_framework(model) == "xgboost"
    not_owned = [
        LogisticRegression(),
        make_pipeline(StandardScaler(), xgboost.XGBClassifier()),
        xgboost.DMatrix(X_BIN, Y_BIN),  # XGBoost's, but not a model
        object(),
    ]
    for model in not_owned:
        assert tracksdk_xgboost.tracksdk_model_framework(model) is None


def test_other_frameworks_are_ignored_by_every_hook(tmp_path: Path) -> None:
    """Hooks return None for another framework's name."""
    assert tracksdk_xgboost.tracksdk_autolog("sklearn", {}, in_store=True) is None
    assert tracksdk_xgboost.tracksdk_save_model(object(), "sklearn", tmp_path, None, ()) is None
    assert tracksdk_xgboost.tracksdk_evaluate(object(), "sklearn", None, None) is None


# --- saving ---


def _fitted(kind: str) -> tuple[Any, Any]:
    if kind == "XGBClassifier":
        return xgboost.XGBClassifier(**XGB).fit(X_BIN, Y_BIN), X_BIN
    if kind == "XGBRegressor":
        return xgboost.XGBRegressor(**XGB).fit(X_REG, Y_REG), X_REG
    return booster("multi:softprob", X_IRIS, Y_IRIS, num_class=3), X_IRIS


@pytest.mark.parametrize("kind", ["XGBClassifier", "XGBRegressor", "Booster"])
def test_save_model_round_trip(kind: str, tmp_path: Path) -> None:
    """The saved model loads with pyfunc, predicts the same, has a signature, pins its deps."""
    from mlflow.models import Model

    model, X = _fitted(kind)
    path = tmp_path / "model"
    assert tracksdk_xgboost.tracksdk_save_model(model, "xgboost", path, X, ()) == "xgboost"

    loaded = mlflow.pyfunc.load_model(str(path))
    expected = model.predict(xgboost.DMatrix(X) if kind == "Booster" else X)
    np.testing.assert_allclose(np.asarray(loaded.predict(X)), expected, rtol=1e-6)
    meta = Model.load(str(path / "MLmodel"))
    assert meta.signature is not None
    assert [c.name for c in meta.signature.inputs.inputs] == list(X.columns)
    if kind == "Booster":  # the DMatrix prediction: one probability per class
        assert meta.signature.outputs.inputs[0].shape == (-1, 3)
    assert (path / "model.ubj").exists()  # XGBoost's own format, no pickle
    reqs = _requirements(path)
    for dist in ("mlflow", "xgboost", "numpy", "scipy", "pandas"):
        assert reqs[dist] == version(dist)
    assert ("scikit-learn" in reqs) is (kind != "Booster")
    assert "cloudpickle" not in reqs


def test_save_without_input_example_and_extra_formats(tmp_path: Path) -> None:
    """No input example: no signature, still loadable. An ONNX copy is not made: a warning."""
    from mlflow.models import Model

    model, X = _fitted("XGBRegressor")
    with pytest.warns(TrackSDKWarning, match="cannot save format 'onnx'"):
        tracksdk_xgboost.tracksdk_save_model(model, "xgboost", tmp_path / "m", None, ("onnx",))
    assert Model.load(str(tmp_path / "m" / "MLmodel")).signature is None
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-6)


# --- evaluation ---


def _png(fig: Any, path: Path) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_classifier(tmp_path: Path) -> None:
    """Binary metrics equal sklearn.metrics; figures include feature importance by gain."""
    model = xgboost.XGBClassifier(**XGB).fit(X_BIN, Y_BIN)
    result = tracksdk_xgboost.tracksdk_evaluate(model, "xgboost", X_BIN, Y_BIN)
    assert result is not None
    pred, proba = model.predict(X_BIN), model.predict_proba(X_BIN)
    assert result.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(Y_BIN, pred),
            "precision": skm.precision_score(Y_BIN, pred),
            "recall": skm.recall_score(Y_BIN, pred),
            "f1": skm.f1_score(Y_BIN, pred),
            "precision_macro": skm.precision_score(Y_BIN, pred, average="macro"),
            "recall_macro": skm.recall_score(Y_BIN, pred, average="macro"),
            "f1_macro": skm.f1_score(Y_BIN, pred, average="macro"),
            "roc_auc": skm.roc_auc_score(Y_BIN, proba[:, 1]),
            "log_loss": skm.log_loss(Y_BIN, proba),
        }
    )
    assert set(result.figures) == {
        "confusion_matrix.png",
        "roc_curve.png",
        "precision_recall_curve.png",
        "feature_importance.png",
    }
    importance = result.figures["feature_importance.png"]
    gain = model.get_booster().get_score(importance_type="gain")
    top = max(gain, key=gain.__getitem__)
    assert importance.axes[0].get_yticklabels()[-1].get_text() == top  # biggest on top
    _png(importance, tmp_path / "feature_importance.png")


def test_evaluate_regressor() -> None:
    """Regression metrics equal sklearn.metrics; residuals and feature importance figures."""
    model = xgboost.XGBRegressor(**XGB).fit(X_REG, Y_REG)
    result = tracksdk_xgboost.tracksdk_evaluate(model, "xgboost", X_REG, Y_REG)
    assert result is not None
    pred = model.predict(X_REG)
    assert result.metrics == pytest.approx(
        {
            "rmse": skm.root_mean_squared_error(Y_REG, pred),
            "mae": skm.mean_absolute_error(Y_REG, pred),
            "r2": skm.r2_score(Y_REG, pred),
        }
    )
    assert set(result.figures) == {"residuals.png", "feature_importance.png"}


def test_evaluate_boosters_by_objective(tmp_path: Path) -> None:
    """Boosters are scored from their objective, also when loaded from a file."""

    def evaluate(model: Any, X: Any, y: Any) -> dict[str, float]:
        result = tracksdk_xgboost.tracksdk_evaluate(model, "xgboost", X, y)
        assert result is not None
        return result.metrics

    binary = booster("binary:logistic", X_BIN, Y_BIN)
    proba = binary.predict(xgboost.DMatrix(X_BIN))
    metrics = evaluate(binary, X_BIN, Y_BIN)
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, proba))
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(Y_BIN, proba >= 0.5))
    binary.save_model(tmp_path / "binary.ubj")
    reloaded = xgboost.Booster(model_file=tmp_path / "binary.ubj")
    assert evaluate(reloaded, X_BIN, Y_BIN) == pytest.approx(metrics)

    margin = booster("binary:logitraw", X_BIN, Y_BIN)
    scores = margin.predict(xgboost.DMatrix(X_BIN))
    metrics = evaluate(margin, X_BIN, Y_BIN)
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, scores))
    assert "log_loss" not in metrics  # margins are not probabilities

    softprob = booster("multi:softprob", X_IRIS, Y_IRIS, num_class=3)
    metrics = evaluate(softprob, X_IRIS, Y_IRIS)
    expected = skm.log_loss(Y_IRIS, softprob.predict(xgboost.DMatrix(X_IRIS)))
    assert metrics["log_loss"] == pytest.approx(expected)

    softmax = booster("multi:softmax", X_IRIS, Y_IRIS, num_class=3)
    metrics = evaluate(softmax, X_IRIS, Y_IRIS)
    labels = softmax.predict(xgboost.DMatrix(X_IRIS))
    assert metrics["f1_macro"] == pytest.approx(skm.f1_score(Y_IRIS, labels, average="macro"))
    assert "roc_auc" not in metrics  # labels only

    regression = booster("reg:squarederror", X_REG, Y_REG)
    metrics = evaluate(regression, X_REG, Y_REG)
    assert set(metrics) == {"rmse", "mae", "r2"}
    predicted = regression.predict(xgboost.DMatrix(X_REG))
    assert metrics["r2"] == pytest.approx(skm.r2_score(Y_REG, predicted))

    linear = xgboost.train({"booster": "gblinear", "nthread": 1}, xgboost.DMatrix(X_REG, Y_REG), 5)
    result = tracksdk_xgboost.tracksdk_evaluate(linear, "xgboost", X_REG, Y_REG)
    assert result is not None
    assert set(result.figures) == {"residuals.png"}  # no importance for a linear model
