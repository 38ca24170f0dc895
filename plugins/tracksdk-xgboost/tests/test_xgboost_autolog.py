"""xgboost autolog, both engines, through real tracked runs on a real local store.

Tiny real models (5 rounds, or early stopping within a few) trained inside
``tracksdk.tracked`` runs; what was logged is read back with ``MlflowClient`` from the
store, as a user would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

xgboost = pytest.importorskip("xgboost")
mlflow = pytest.importorskip("mlflow")

import tracksdk_xgboost  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from tracksdk_xgboost import engine  # noqa: E402

import tracksdk  # noqa: E402
from tracksdk import tracked  # noqa: E402
from tracksdk.autolog import choose_engine  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402
from tracksdk.testing import NO_PROVENANCE, capture_runs  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True, as_frame=True)
X_TRAIN, Y_TRAIN, X_VAL, Y_VAL = X.iloc[:80], Y.iloc[:80], X.iloc[80:140], Y.iloc[80:140]
# One thread: on a loaded 2-core machine XGBoost's OpenMP threads wait on each other.
XGB = {"n_estimators": 5, "max_depth": 2, "n_jobs": 1}
PROVENANCE = ("environment/", "source/")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local store for the module: MLflow's schema migration takes seconds."""
    return tmp_path_factory.mktemp("xgboost-autolog")


@pytest.fixture
def client(store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracked runs go to ``store`` (no provenance, for speed); yields a client on it."""
    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_TRACKING", "MLFLOW_RUN_ID", "MLFLOW_EXP")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(store)
    tracksdk.reset()
    with capture_runs(store):
        tracksdk.configure(capture=NO_PROVENANCE)
        yield mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    tracksdk.reset()


@pytest.fixture(autouse=True)
def no_mlflow_autolog() -> Iterator[None]:
    """Whatever a test does, MLflow's xgboost and sklearn autolog are off afterwards."""
    import mlflow.sklearn
    import mlflow.xgboost
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = {k: AUTOLOGGING_INTEGRATIONS.get(k) for k in ("xgboost", "sklearn")}
    yield
    mlflow.xgboost.autolog(disable=True, silent=True)
    mlflow.sklearn.autolog(disable=True, silent=True)
    for key, value in before.items():
        if value is None:
            AUTOLOGGING_INTEGRATIONS.pop(key, None)
        else:
            AUTOLOGGING_INTEGRATIONS[key] = value


def data(client: Any, run: Any) -> Any:
    return client.get_run(run.run_id).data


def artifacts(client: Any, run: Any) -> list[str]:
    return sorted(
        a.path for a in client.list_artifacts(run.run_id) if not a.path.startswith(PROVENANCE)
    )


def history(client: Any, run: Any, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.run_id, key)]


def curves(evals_result: dict[str, dict[str, list[float]]]) -> dict[str, list[float]]:
    """XGBoost's evaluation history under the names both engines log it with."""
    return {
        engine.metric_name(dataset, metric): values
        for dataset, results in evals_result.items()
        for metric, values in results.items()
    }


# --- what the default engine logs ---


def test_sklearn_api_params_tags_curves_and_fit_time(client: Any) -> None:
    """get_params with train's arguments, tags, each eval set's curve per iteration."""
    model = xgboost.XGBClassifier(eval_metric=["logloss", "auc"], **XGB)
    with tracked(autolog=["xgboost"]) as run:
        model.fit(X_TRAIN, Y_TRAIN, eval_set=[(X_TRAIN, Y_TRAIN), (X_VAL, Y_VAL)], verbose=False)
    logged = data(client, run)
    params = {k: str(v) for k, v in model.get_params().items()}
    assert logged.params == {
        **params,
        "num_boost_round": "5",
        "early_stopping_rounds": "None",
        "maximize": "None",
        "verbose_eval": "False",
        "custom_metric": "None",
    }
    assert logged.tags["estimator_name"] == "XGBClassifier"
    assert logged.tags["estimator_class"] == "xgboost.sklearn.XGBClassifier"
    expected = curves(model.evals_result())
    assert set(expected) == {
        "validation_0-logloss",
        "validation_0-auc",
        "validation_1-logloss",
        "validation_1-auc",
    }
    assert set(logged.metrics) == {"fit_time_s", *expected}
    for key, values in expected.items():
        points = history(client, run, key)
        assert [step for step, _ in points] == list(range(5))
        assert [value for _, value in points] == pytest.approx(values)
    assert artifacts(client, run) == []  # no importance plot by default


def test_early_stopping_logs_the_best_iteration_as_mlflow_does(client: Any) -> None:
    """best_iteration, stopped_iteration (0-based), the best results one step after the last."""
    model = xgboost.XGBClassifier(
        n_estimators=50, learning_rate=1.0, early_stopping_rounds=2, n_jobs=1
    )
    with tracked(autolog=["xgboost"]) as run:
        model.fit(X_TRAIN, Y_TRAIN, eval_set=[(X_VAL, Y_VAL)], verbose=False)
    logged = data(client, run)
    curve = model.evals_result()["validation_0"]["logloss"]
    stopped = len(curve) - 1
    assert stopped < 49  # it did stop early
    assert logged.metrics["best_iteration"] == model.best_iteration
    assert logged.metrics["stopped_iteration"] == stopped
    assert logged.params["early_stopping_rounds"] == "2"
    points = history(client, run, "validation_0-logloss")
    assert [step for step, _ in points] == [*range(stopped + 1), stopped + 1]
    assert points[-1][1] == pytest.approx(curve[model.best_iteration])
    assert logged.metrics["validation_0-logloss"] == pytest.approx(min(curve))


def test_train_logs_params_and_curves_and_keeps_the_users_callbacks(client: Any) -> None:
    """xgboost.train: params and train's other arguments, ``<evals name>-<metric>`` curves
    (``@`` as ``_at_``), an EarlyStopping callback's best iteration; the user's list intact."""
    recorded: dict[str, Any] = {}
    callbacks = [xgboost.callback.EarlyStopping(rounds=2)]
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["error@0.7", "logloss"],
        "learning_rate": 1.0,
        "nthread": 1,
    }
    dtrain = xgboost.DMatrix(X_TRAIN, Y_TRAIN)
    dval = xgboost.DMatrix(X_VAL, Y_VAL)
    with tracked(autolog=["xgboost"]) as run:
        booster = xgboost.train(
            params,
            dtrain,
            num_boost_round=50,
            evals=[(dtrain, "train"), (dval, "eval")],
            evals_result=recorded,
            verbose_eval=False,
            callbacks=callbacks,
        )
    assert len(callbacks) == 1
    logged = data(client, run)
    assert logged.params == {
        "objective": "binary:logistic",
        "eval_metric": "['error@0.7', 'logloss']",
        "learning_rate": "1.0",
        "nthread": "1",
        "num_boost_round": "50",
        "early_stopping_rounds": "None",
        "maximize": "None",
        "verbose_eval": "False",
        "custom_metric": "None",
    }
    expected = curves(recorded)
    assert set(expected) == {
        "train-error_at_0.7",
        "train-logloss",
        "eval-error_at_0.7",
        "eval-logloss",
    }
    stopped = len(recorded["eval"]["logloss"]) - 1
    assert stopped < 49
    for key, values in expected.items():
        points = history(client, run, key)
        assert [value for _, value in points[:-1]] == pytest.approx(values)
        assert points[-1] == (stopped + 1, pytest.approx(values[booster.best_iteration]))
    assert logged.metrics["best_iteration"] == booster.best_iteration
    assert "estimator_name" not in logged.tags


def test_random_forest_logs_what_fit_resolved(client: Any) -> None:
    """A random forest trains one round of n_estimators parallel trees: logged as trained.

    (MLflow's xgboost autolog logs no params for the random-forest models.)
    """
    with tracked(autolog=["xgboost"]) as run:
        xgboost.XGBRFClassifier(n_estimators=3, n_jobs=1).fit(X_TRAIN, Y_TRAIN)
    params = data(client, run).params
    assert params["n_estimators"] == "3"
    assert params["num_parallel_tree"] == "3"  # None in get_params()
    assert params["num_boost_round"] == "1"
    assert data(client, run).tags["estimator_name"] == "XGBRFClassifier"


def test_params_as_a_list_of_pairs() -> None:
    """XGBoost's params may be pairs with a repeated key: its values are logged as a list."""
    pairs = [("eval_metric", "auc"), ("eval_metric", "logloss"), ("max_depth", 2)]
    found = engine.train_params(xgboost.train, (pairs, None), {"num_boost_round": 3})
    assert found["eval_metric"] == ["auc", "logloss"]
    assert found["max_depth"] == 2
    assert found["num_boost_round"] == 3


def test_importance_plots_and_log_datasets_opt_in(client: Any) -> None:
    """importance_plots: MLflow's feature_importance_weight.json and .png; log_datasets:
    the training data as a run input, for the scikit-learn API and xgboost.train."""
    options = {"xgboost": {"importance_plots": True, "log_datasets": True}}
    model = xgboost.XGBClassifier(**XGB)
    with tracked(autolog=options) as run:
        model.fit(X_TRAIN, Y_TRAIN)
    assert artifacts(client, run) == [
        "feature_importance_weight.json",
        "feature_importance_weight.png",
    ]
    path = client.download_artifacts(run.run_id, "feature_importance_weight.json")
    weights = json.loads(Path(path).read_text())
    assert weights == model.get_booster().get_score(importance_type="weight")
    with tracked(autolog={"xgboost": {"log_datasets": True}}) as native:
        xgboost.train({"nthread": 1}, xgboost.DMatrix(X_TRAIN, Y_TRAIN), 2)
    for each in (run, native):
        inputs = client.get_run(each.run_id).inputs.dataset_inputs
        contexts = [t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"]
        assert contexts == ["train"]


# --- scope ---


def test_scope_ends_with_the_run(client: Any) -> None:
    """After the run xgboost.train and fit are XGBoost's own again; a fit logs nothing."""
    train, fit = xgboost.train, xgboost.XGBClassifier.fit
    sklearn_train = xgboost.sklearn.train
    experiments = [e.experiment_id for e in client.search_experiments()]
    before = len(client.search_runs(experiments))
    with tracked(autolog=["xgboost"]):
        assert xgboost.train is not train
        assert xgboost.XGBClassifier.fit is not fit
    assert xgboost.train is train
    assert xgboost.training.train is train
    assert xgboost.sklearn.train is sklearn_train
    assert xgboost.XGBClassifier.fit is fit
    xgboost.XGBClassifier(**XGB).fit(X_TRAIN, Y_TRAIN)
    xgboost.train({"nthread": 1}, xgboost.DMatrix(X_TRAIN, Y_TRAIN), 2)
    assert len(client.search_runs(experiments)) == before + 1


def test_pipeline_with_both_engines_is_logged_once_by_sklearn(client: Any) -> None:
    """sklearn and xgboost autolog on: the Pipeline is one fit; the XGBoost step not again."""
    pipeline = make_pipeline(StandardScaler(), xgboost.XGBClassifier(**XGB))
    with tracked(autolog=["sklearn", "xgboost"]) as run:
        pipeline.fit(X_TRAIN, Y_TRAIN)
    logged = data(client, run)
    assert logged.params["xgbclassifier__n_estimators"] == "5"
    assert "num_boost_round" not in logged.params
    assert logged.tags["estimator_name"] == "Pipeline"


def test_a_failing_metric_key_does_not_stop_training(client: Any) -> None:
    """In strict mode an invalid metric name raises inside tracksdk: one warning, and
    XGBoost trains every round."""
    dtrain = xgboost.DMatrix(X_TRAIN, Y_TRAIN)
    with (
        pytest.warns(TrackSDKWarning, match="could not log evaluation results") as caught,
        tracked(autolog=["xgboost"], strict=True) as run,
    ):
        booster = xgboost.train(
            {"nthread": 1}, dtrain, 5, evals=[(dtrain, "val#1")], verbose_eval=False
        )
    assert booster.num_boosted_rounds() == 5
    assert len([w for w in caught if "could not" in str(w.message)]) == 1
    assert "fit_time_s" in data(client, run).metrics


# --- MLflow's engine ---


def test_mlflow_engine_opt_in_is_cheap_and_restored(client: Any) -> None:
    """engine='mlflow': MLflow's xgboost autolog logs the params and curves, with no
    importance plot and no post-training metrics by default; MLflow is as it was after."""
    import mlflow.sklearn
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    # Looked up at call time: MLflow patches the module's attribute when autolog starts.
    from sklearn import metrics

    before = AUTOLOGGING_INTEGRATIONS.get("xgboost")
    with tracked(autolog={"xgboost": {"engine": "mlflow"}}) as run:
        model = xgboost.XGBClassifier(**XGB).fit(
            X_TRAIN, Y_TRAIN, eval_set=[(X_VAL, Y_VAL)], verbose=False
        )
        metrics.accuracy_score(Y_VAL, model.predict(X_VAL))  # MLflow would log this
    logged = data(client, run)
    assert logged.params["num_boost_round"] == "5"
    assert set(logged.metrics) == {"validation_0-logloss"}  # MLflow's name, as ours
    assert artifacts(client, run) == []
    assert AUTOLOGGING_INTEGRATIONS.get("xgboost") == before
    assert "register_model" not in vars(mlflow.sklearn._AUTOLOGGING_METRICS_MANAGER)


def test_mlflow_engine_nested_restores_the_post_training_switch() -> None:
    """Two MLflow-engine scopes (nested runs), restored innermost first, leave MLflow as it was."""
    import mlflow.sklearn

    manager = mlflow.sklearn._AUTOLOGGING_METRICS_MANAGER
    assert "register_model" not in vars(manager)
    outer = tracksdk_xgboost.tracksdk_autolog("xgboost", {"engine": "mlflow"}, in_store=True)
    outer_switch = vars(manager)["register_model"]
    inner = tracksdk_xgboost.tracksdk_autolog("xgboost", {"engine": "mlflow"}, in_store=True)
    assert outer is not None and inner is not None
    assert vars(manager)["register_model"] is not outer_switch
    inner()
    assert vars(manager)["register_model"] is outer_switch
    outer()
    assert "register_model" not in vars(manager)


def test_engine_choice() -> None:
    """tracksdk's engine by default; MLflow-only options select MLflow's, with its options."""
    spec = tracksdk_xgboost.autolog_spec()
    assert choose_engine(spec, {}) == ("tracksdk", tracksdk_xgboost.ENGINE_OPTIONS)
    assert choose_engine(spec, {"log_models": True, "model_format": "json"}) == (
        "mlflow",
        {"log_models": True, "model_format": "json"},
    )


# --- the same params as MLflow's xgboost autolog ---


def _iris() -> tuple[Any, Any]:
    return load_iris(return_X_y=True, as_frame=True)


def _fit_binary_early_stopping() -> None:
    model = xgboost.XGBClassifier(early_stopping_rounds=2, **XGB)
    model.fit(X_TRAIN, Y_TRAIN, eval_set=[(X_VAL, Y_VAL)], verbose=False)


def _fit_multiclass() -> None:
    xgboost.XGBClassifier(**XGB).fit(*_iris())


def _fit_regressor() -> None:
    xgboost.XGBRegressor(**XGB).fit(X_TRAIN, Y_TRAIN)


def _train_native() -> None:
    X_iris, y_iris = _iris()
    params = {"objective": "multi:softprob", "num_class": 3, "eta": 0.2, "nthread": 1}
    dtrain = xgboost.DMatrix(X_iris, y_iris)
    xgboost.train(params, dtrain, num_boost_round=3, evals=[(dtrain, "train")], verbose_eval=False)


@pytest.mark.parametrize(
    "fit",
    [_fit_binary_early_stopping, _fit_multiclass, _fit_regressor, _train_native],
    ids=["binary-early_stopping", "multiclass", "regressor", "xgb.train"],
)
def test_params_are_a_superset_of_mlflows_autolog(client: Any, store: Path, fit: Any) -> None:
    """Every param MLflow's xgboost autolog logs for a fit is logged by tracksdk, same value."""
    import mlflow.xgboost
    from mlflow.tracking._tracking_service import utils

    # MLflow's global tracking URI (and the variable it exports) is put back afterwards.
    old_uri, old_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.xgboost.autolog(log_models=False, log_datasets=False, importance_types=[], silent=True)
    try:
        with mlflow.start_run() as plain:
            fit()
    finally:
        mlflow.xgboost.autolog(disable=True, silent=True)
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env
    with tracked(autolog=["xgboost"]) as run:
        fit()
    theirs = data(client, plain.info).params
    ours = data(client, run).params
    assert len(theirs) > 3  # MLflow's autolog did log this fit
    missing = set(theirs) - set(ours)
    assert not missing, f"MLflow logs {sorted(missing)}, tracksdk does not"
    different = {k: (theirs[k], ours[k]) for k in set(theirs) & set(ours) if theirs[k] != ours[k]}
    assert not different, f"MLflow's value first: {different}"
