"""tracksdk's own lightgbm autolog engine, through real tracked runs on a real local store.

Tiny real models (5 to 20 trees) trained inside ``tracksdk.tracked`` runs; what was logged
is read back with ``MlflowClient`` from the store, as a user would.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

lightgbm = pytest.importorskip("lightgbm")
mlflow = pytest.importorskip("mlflow")

import tracksdk_lightgbm  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import tracksdk  # noqa: E402
from tracksdk import tracked  # noqa: E402
from tracksdk.autolog import choose_engine  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402
from tracksdk.testing import NO_PROVENANCE, capture_runs  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True, as_frame=True)
X_TRAIN, X_VAL, Y_TRAIN, Y_VAL = train_test_split(X, Y, random_state=0, stratify=Y)
LGB = {"n_estimators": 5, "verbose": -1}
PROVENANCE = ("environment/", "source/")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local store for the module: MLflow's schema migration takes seconds."""
    return tmp_path_factory.mktemp("lightgbm-engine")


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
    """Whatever a test does, MLflow's lightgbm and sklearn autolog are off afterwards."""
    import mlflow.lightgbm
    import mlflow.sklearn
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = {k: AUTOLOGGING_INTEGRATIONS.get(k) for k in ("lightgbm", "sklearn")}
    yield
    mlflow.lightgbm.autolog(disable=True, silent=True)
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


# --- what the default engine logs ---


def test_sklearn_api_params_tags_and_fit_time(client: Any) -> None:
    """get_params, num_boost_round, the params LightGBM resolved for train, tags, fit_time_s."""
    model = lightgbm.LGBMClassifier(num_leaves=7, **LGB)
    with tracked(autolog=["lightgbm"]) as run:
        model.fit(X_TRAIN, Y_TRAIN)
    logged = data(client, run)
    expected = {k: str(v) for k, v in model.get_params().items() if k != "objective"}
    threads = model.booster_.params["num_threads"]
    assert logged.params == {
        **expected,
        "num_boost_round": "5",
        "objective": "binary",
        "metric": "['binary']",
        "num_threads": str(threads),
        "keep_training_booster": "False",
    }
    assert logged.params["num_leaves"] == "7"
    assert logged.tags["estimator_name"] == "LGBMClassifier"
    assert logged.tags["estimator_class"] == "lightgbm.sklearn.LGBMClassifier"
    assert set(logged.metrics) == {"fit_time_s"}  # no eval set: no curves
    assert artifacts(client, run) == []  # no importance plots


def test_eval_sets_are_logged_per_iteration_with_mlflows_names(client: Any) -> None:
    """Each eval set's metric at step = iteration, named <dataset>-<metric> as MLflow does."""
    model = lightgbm.LGBMClassifier(**LGB)
    with tracked(autolog=["lightgbm"]) as run:
        model.fit(
            X_TRAIN,
            Y_TRAIN,
            eval_X=(X_TRAIN, X_VAL),
            eval_y=(Y_TRAIN, Y_VAL),
            eval_metric="auc",
        )
    logged = data(client, run)
    curves = {
        f"{dataset}-{metric}": values
        for dataset, results in model.evals_result_.items()
        for metric, values in results.items()
    }
    assert set(curves) == {
        "valid_0-binary_logloss",
        "valid_0-auc",
        "valid_1-binary_logloss",
        "valid_1-auc",
    }
    assert set(logged.metrics) == {"fit_time_s", *curves}
    for key, expected in curves.items():
        points = history(client, run, key)
        assert [step for step, _ in points] == list(range(5))
        assert [value for _, value in points] == pytest.approx(expected)
    assert "best_iteration" not in logged.metrics  # no early stopping


def test_early_stopping_logs_the_best_iteration_as_mlflow_does(client: Any) -> None:
    """best_iteration, stopped_iteration, and the best results one step after the last."""
    model = lightgbm.LGBMClassifier(n_estimators=200, learning_rate=0.5, verbose=-1)
    with tracked(autolog=["lightgbm"]) as run:
        model.fit(
            X_TRAIN,
            Y_TRAIN,
            eval_X=(X_VAL,),
            eval_y=(Y_VAL,),
            callbacks=[lightgbm.early_stopping(3, verbose=False)],
        )
    logged = data(client, run)
    curve = model.evals_result_["valid_0"]["binary_logloss"]
    stopped = len(curve)
    assert stopped < 200  # it did stop early
    assert logged.metrics["best_iteration"] == model.best_iteration_
    assert logged.metrics["stopped_iteration"] == stopped
    points = history(client, run, "valid_0-binary_logloss")
    assert [step for step, _ in points] == [*range(stopped), stopped]
    assert points[-1][1] == pytest.approx(curve[model.best_iteration_ - 1])
    assert logged.metrics["valid_0-binary_logloss"] == pytest.approx(min(curve))


def test_train_logs_params_and_curves_and_keeps_the_users_callbacks(client: Any) -> None:
    """lightgbm.train: params dict and train's other arguments; the user's callbacks untouched."""
    recorded: dict[str, Any] = {}
    callbacks = [lightgbm.record_evaluation(recorded)]
    params = {"objective": "binary", "num_leaves": 5, "verbose": -1}
    with tracked(autolog=["lightgbm"]) as run:
        booster = lightgbm.train(
            params,
            lightgbm.Dataset(X_TRAIN, Y_TRAIN),
            num_boost_round=4,
            valid_sets=[lightgbm.Dataset(X_VAL, Y_VAL)],
            valid_names=["val"],
            callbacks=callbacks,
        )
    assert len(callbacks) == 1
    assert booster.current_iteration() == 4
    logged = data(client, run)
    assert logged.params == {
        "objective": "binary",
        "num_leaves": "5",
        "verbose": "-1",
        "num_boost_round": "4",
        "keep_training_booster": "False",
    }
    points = history(client, run, "val-binary_logloss")
    assert [value for _, value in points] == pytest.approx(recorded["val"]["binary_logloss"])
    assert "estimator_name" not in logged.tags


def test_importance_plots_opt_in(client: Any) -> None:
    """importance_plots=True: MLflow's feature_importance_{split,gain}.json and .png."""
    model = lightgbm.LGBMClassifier(**LGB)
    with tracked(autolog={"lightgbm": {"importance_plots": True}}) as run:
        model.fit(X_TRAIN, Y_TRAIN)
    assert artifacts(client, run) == [
        "feature_importance_gain.json",
        "feature_importance_gain.png",
        "feature_importance_split.json",
        "feature_importance_split.png",
    ]
    split = json.loads(
        Path(client.download_artifacts(run.run_id, "feature_importance_split.json")).read_text()
    )
    expected = model.booster_.feature_importance(importance_type="split")
    assert split == dict(zip(model.booster_.feature_name(), map(float, expected), strict=True))


def test_log_datasets_opt_in(client: Any) -> None:
    """log_datasets=True: the training data as an input of the run."""
    with tracked(autolog={"lightgbm": {"log_datasets": True}}) as run:
        lightgbm.LGBMClassifier(**LGB).fit(X_TRAIN, Y_TRAIN)
    inputs = client.get_run(run.run_id).inputs.dataset_inputs
    assert [t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"] == ["train"]


# --- scope ---


def test_scope_ends_with_the_run(client: Any) -> None:
    """After the run lightgbm.train and fit are LightGBM's own again; a fit logs nothing."""
    train, fit = lightgbm.train, lightgbm.LGBMClassifier.fit
    experiments = [e.experiment_id for e in client.search_experiments()]
    before = len(client.search_runs(experiments))
    with tracked(autolog=["lightgbm"]):
        assert lightgbm.train is not train
        assert lightgbm.LGBMClassifier.fit is not fit
    assert lightgbm.train is train
    assert lightgbm.engine.train is train
    assert lightgbm.LGBMClassifier.fit is fit
    lightgbm.LGBMClassifier(**LGB).fit(X_TRAIN, Y_TRAIN)
    lightgbm.train({"verbose": -1}, lightgbm.Dataset(X_TRAIN, Y_TRAIN), 2)
    assert len(client.search_runs(experiments)) == before + 1


def test_pipeline_with_both_engines_is_logged_once_by_sklearn(client: Any) -> None:
    """sklearn and lightgbm autolog on: the Pipeline is one fit; the LGBM step not again."""
    pipeline = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(**LGB))
    with tracked(autolog=["sklearn", "lightgbm"]) as run:
        pipeline.fit(X_TRAIN, Y_TRAIN)
    logged = data(client, run)
    assert logged.params["lgbmclassifier__n_estimators"] == "5"
    assert "num_boost_round" not in logged.params
    assert logged.tags["estimator_name"] == "Pipeline"
    assert len(history(client, run, "fit_time_s")) == 1


def test_pipeline_with_lightgbm_only_logs_the_step(client: Any) -> None:
    """Only lightgbm autolog on: the LGBM step inside the Pipeline is logged."""
    pipeline = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(**LGB))
    with tracked(autolog=["lightgbm"]) as run:
        pipeline.fit(X_TRAIN, Y_TRAIN)
    logged = data(client, run)
    assert logged.params["num_boost_round"] == "5"
    assert logged.tags["estimator_name"] == "LGBMClassifier"


# --- failures ---


def test_a_failing_metric_key_does_not_stop_training(client: Any) -> None:
    """In strict mode an invalid metric name raises inside tracksdk: one warning, and
    LightGBM trains every iteration."""
    model = lightgbm.LGBMClassifier(**LGB)
    with (
        pytest.warns(TrackSDKWarning, match="could not log evaluation results") as caught,
        tracked(autolog=["lightgbm"], strict=True) as run,
    ):
        model.fit(X_TRAIN, Y_TRAIN, eval_X=(X_VAL,), eval_y=(Y_VAL,), eval_names=["val#1"])
    assert model.booster_.current_iteration() == 5
    assert len([w for w in caught if "could not" in str(w.message)]) == 1
    assert "fit_time_s" in data(client, run).metrics


# --- MLflow's engine ---


def test_mlflow_engine_opt_in(client: Any) -> None:
    """engine='mlflow': MLflow's lightgbm autolog (its importances), no post-training metrics."""
    from sklearn.metrics import accuracy_score

    with tracked(autolog={"lightgbm": {"engine": "mlflow"}}) as run:
        model = lightgbm.LGBMClassifier(**LGB).fit(X_TRAIN, Y_TRAIN)
        accuracy_score(Y_VAL, model.predict(X_VAL))
    logged = data(client, run)
    assert logged.params["num_boost_round"] == "5"
    assert "fit_time_s" not in logged.metrics
    assert logged.metrics == {}  # MLflow would log accuracy_score_X: off by default
    assert "feature_importance_gain.json" in artifacts(client, run)


def test_engine_choice() -> None:
    """MLflow-only options select MLflow's engine; importance_plots=False cannot be had."""
    spec = tracksdk_lightgbm.autolog_spec()
    assert choose_engine(spec, {})[0] == "tracksdk"
    assert choose_engine(spec, {"log_models": True})[0] == "mlflow"
    assert choose_engine(spec, {"log_post_training_metrics": True}) == (
        "mlflow",
        {"log_post_training_metrics": True},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine, config = choose_engine(spec, {"engine": "mlflow", "importance_plots": False})
    assert engine == "mlflow" and config == {}
    assert "always does it" in str(caught[0].message)


def test_mlflow_engine_nested_restores_the_post_training_switch() -> None:
    """Two MLflow-engine scopes (nested runs), restored innermost first, leave MLflow as it was."""
    import mlflow.sklearn

    manager = mlflow.sklearn._AUTOLOGGING_METRICS_MANAGER
    assert "register_model" not in vars(manager)
    outer = tracksdk_lightgbm.tracksdk_autolog("lightgbm", {"engine": "mlflow"}, in_store=True)
    outer_switch = vars(manager)["register_model"]
    inner = tracksdk_lightgbm.tracksdk_autolog("lightgbm", {"engine": "mlflow"}, in_store=True)
    assert outer is not None and inner is not None
    assert vars(manager)["register_model"] is not outer_switch
    inner()
    assert vars(manager)["register_model"] is outer_switch
    outer()
    assert "register_model" not in vars(manager)


def test_returned_models_are_saved_and_load_while_autolog_is_on(client: Any) -> None:
    """A model returned from an autologged run, of a class defined here (cloudpickle copies
    it by value), is saved and loads: the class is not patched, its parent's fit logs."""
    import mlflow.pyfunc

    class Shallow(lightgbm.LGBMClassifier):  # type: ignore[misc]
        def fit(self, X: Any, y: Any, **kwargs: Any) -> Shallow:
            self.set_params(max_depth=2)
            return super().fit(X, y, **kwargs)

    @tracked(autolog=["lightgbm"])
    def train() -> Any:
        assert not getattr(Shallow.__dict__["fit"], "__tracksdk_autolog__", False)
        return Shallow(**LGB).fit(X_TRAIN, Y_TRAIN)

    model = train()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    run = runs[0]
    assert run.data.tags["tracksdk.model.framework"] == "lightgbm"
    assert run.data.params["max_depth"] == "2"  # logged through LGBMClassifier.fit
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert list(loaded.predict(X_VAL)) == list(model.predict(X_VAL))


# --- the same params as MLflow's lightgbm autolog ---

#: Params MLflow's lightgbm autolog logs that tracksdk's engine does not, each on purpose
#: (docs/autolog.md, "Compared with MLflow's lightgbm autolog"). Empty: none today.
MLFLOW_ONLY_PARAMS: dict[str, str] = {}


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def _fit_binary_with_eval_set() -> None:
    lightgbm.LGBMClassifier(**LGB).fit(X_TRAIN, Y_TRAIN, eval_X=(X_VAL,), eval_y=(Y_VAL,))


def _fit_multiclass_with_eval_set() -> None:
    X_iris, y_iris = _iris()
    lightgbm.LGBMClassifier(**LGB).fit(X_iris, y_iris, eval_X=(X_iris,), eval_y=(y_iris,))


def _fit_regressor() -> None:
    from sklearn.datasets import load_diabetes

    X_dia, y_dia = load_diabetes(return_X_y=True, as_frame=True)
    lightgbm.LGBMRegressor(num_leaves=7, **LGB).fit(X_dia, y_dia)


def _train_native() -> None:
    X_iris, y_iris = _iris()
    params = {"objective": "multiclass", "num_class": 3, "learning_rate": 0.2, "verbose": -1}
    train_set = lightgbm.Dataset(X_iris, y_iris)
    lightgbm.train(params, train_set, num_boost_round=3, valid_sets=[train_set])


@pytest.mark.parametrize(
    "fit",
    [_fit_binary_with_eval_set, _fit_multiclass_with_eval_set, _fit_regressor, _train_native],
    ids=["binary-eval_set", "multiclass-eval_set", "regressor", "lgb.train"],
)
def test_params_are_a_superset_of_mlflows_autolog(client: Any, store: Path, fit: Any) -> None:
    """Every param MLflow's lightgbm autolog logs for a fit is logged by tracksdk, same value."""
    import mlflow.lightgbm
    from mlflow.tracking._tracking_service import utils

    # MLflow's global tracking URI (and the variable it exports) is put back afterwards.
    old_uri, old_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.lightgbm.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        with mlflow.start_run() as plain:
            fit()
    finally:
        mlflow.lightgbm.autolog(disable=True, silent=True)
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env
    with tracked(autolog=["lightgbm"]) as run:
        fit()
    theirs = data(client, plain.info).params
    ours = data(client, run).params
    assert len(theirs) > 3  # MLflow's autolog did log this fit
    missing = set(theirs) - set(ours) - set(MLFLOW_ONLY_PARAMS)
    assert not missing, f"MLflow logs {sorted(missing)}, tracksdk does not"
    different = {k: (theirs[k], ours[k]) for k in set(theirs) & set(ours) if theirs[k] != ours[k]}
    assert not different, f"MLflow's value first: {different}"
