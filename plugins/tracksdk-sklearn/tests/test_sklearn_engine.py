"""tracksdk's own sklearn autolog engine, through real tracked runs on a real local store.

Every test trains tiny real models inside ``tracksdk.tracked`` runs and reads what was
logged back with ``MlflowClient`` from the store, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sklearn = pytest.importorskip("sklearn")
mlflow = pytest.importorskip("mlflow")

import cloudpickle  # noqa: E402
import numpy as np  # noqa: E402
import tracksdk_sklearn  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.base import BaseEstimator  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import tracksdk  # noqa: E402
from tracksdk import tracked  # noqa: E402
from tracksdk.autolog import choose_engine, mlflow_autolog_enabled  # noqa: E402
from tracksdk.exceptions import TrackSDKWarning  # noqa: E402
from tracksdk.testing import NO_PROVENANCE, capture_runs  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True, as_frame=True)
PROVENANCE = ("environment/", "source/")


# --- fixtures (module-local: no conftest.py, so nothing clashes with tests/conftest.py) ---


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local store for the module: MLflow's schema migration takes seconds."""
    return tmp_path_factory.mktemp("sklearn-engine")


@pytest.fixture
def client(store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracked runs go to ``store`` (no provenance, for speed); yields a client on it."""
    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_TRACKING", "MLFLOW_RUN_ID", "MLFLOW_EXP")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(store)  # the project root, and the journal, stay in the temp folder
    tracksdk.reset()
    with capture_runs(store):
        tracksdk.configure(capture=NO_PROVENANCE)
        yield mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    tracksdk.reset()


@pytest.fixture(autouse=True)
def no_mlflow_autolog() -> Iterator[None]:
    """Whatever a test does, MLflow's sklearn autolog is off and unconfigured afterwards."""
    import mlflow.sklearn
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    before = AUTOLOGGING_INTEGRATIONS.get("sklearn")
    yield
    mlflow.sklearn.autolog(disable=True, silent=True)
    if before is None:
        AUTOLOGGING_INTEGRATIONS.pop("sklearn", None)
    else:
        AUTOLOGGING_INTEGRATIONS["sklearn"] = before


def data(client: Any, run: Any) -> Any:
    return client.get_run(run.run_id).data


def artifacts(client: Any, run: Any) -> list[str]:
    return [a.path for a in client.list_artifacts(run.run_id) if not a.path.startswith(PROVENANCE)]


def history(client: Any, run: Any, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.run_id, key)]


def children(client: Any, run: Any) -> list[Any]:
    found = client.search_runs([run.experiment_id], f"tags.mlflow.parentRunId = '{run.run_id}'")
    return list(found)


def is_patched(function: Any) -> bool:
    return bool(getattr(function, "__tracksdk_autolog__", False))


# --- what the default engine logs ---


def test_default_engine_logs_params_tags_and_fit_time(client: Any) -> None:
    """Params as get_params(deep=True), MLflow's estimator tags, fit_time_s; nothing else."""
    model = LogisticRegression(C=0.5, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 50 iterations, on purpose
        with tracked(autolog=["sklearn"]) as run:
            assert is_patched(LogisticRegression.fit)
            assert not mlflow_autolog_enabled("sklearn")  # MLflow's autolog is not involved
            model.fit(X, Y)
    logged = data(client, run)
    assert logged.params == {k: str(v) for k, v in model.get_params().items()}
    assert logged.params["C"] == "0.5"
    assert logged.tags["estimator_name"] == "LogisticRegression"
    assert logged.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert set(logged.metrics) == {"fit_time_s"}
    assert 0 < logged.metrics["fit_time_s"] < 60
    assert artifacts(client, run) == []  # no estimator.html, no plots
    assert children(client, run) == []


def test_pipeline_is_one_fit_with_prefixed_readable_params(client: Any) -> None:
    """A Pipeline logs once, its steps' params prefixed, estimator values on one line."""
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=2.0))
    with tracked(autolog=["sklearn"]) as run:
        pipeline.fit(X, Y)
    logged = data(client, run)
    assert logged.params["logisticregression__C"] == "2.0"
    assert logged.params["standardscaler__with_mean"] == "True"
    assert logged.params["logisticregression"] == "LogisticRegression(C=2.0)"
    assert logged.params["steps"] == (
        "[('standardscaler', StandardScaler()), ('logisticregression', LogisticRegression(C=2.0))]"
    )
    assert "C" not in logged.params  # the steps' own fits are not logged
    assert logged.tags["estimator_name"] == "Pipeline"
    assert len(history(client, run, "fit_time_s")) == 1


def test_search_logs_best_results_and_child_runs(client: Any) -> None:
    """A search: its own params, best params and score, cv_results.csv, top candidates."""
    grid = {"logisticregression__C": [0.01, 0.1, 1.0]}
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()), grid, cv=3)
    with tracked(autolog={"sklearn": {"max_tuning_runs": 2}}) as run:
        search.fit(X, Y)
    logged = data(client, run)
    assert logged.params["cv"] == "3"
    assert "logisticregression__C" not in logged.params  # the seed's untuned params
    assert logged.params["best_logisticregression__C"] == str(
        search.best_params_["logisticregression__C"]
    )
    assert logged.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert logged.tags["estimator_name"] == "GridSearchCV"
    assert len(history(client, run, "fit_time_s")) == 1  # not one per candidate
    assert artifacts(client, run) == ["cv_results.csv"]

    kids = children(client, run)
    assert len(kids) == 2
    ranks = sorted(kid.data.metrics["rank_test_score"] for kid in kids)
    assert ranks == [1.0, 2.0]  # the best two
    for kid in kids:
        index = int(kid.info.run_name.rpartition("-")[2])
        assert kid.data.params == {
            "logisticregression__C": str(
                search.cv_results_["params"][index]["logisticregression__C"]
            )
        }
        assert kid.data.metrics["mean_test_score"] == pytest.approx(
            search.cv_results_["mean_test_score"][index]
        )
        assert not any(key.startswith("split") for key in kid.data.metrics)
        assert kid.data.tags["estimator_name"] == "Pipeline"
        assert kid.info.status == "FINISHED"


def test_search_without_child_runs(client: Any) -> None:
    """max_tuning_runs=0: no child run."""
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracked(autolog={"sklearn": {"max_tuning_runs": 0}}) as run:
            search.fit(X, Y)
    assert children(client, run) == []
    assert "best_C" in data(client, run).params


# --- the opt-in extras ---


def test_training_metrics_are_mlflows(client: Any) -> None:
    """training_metrics=True: MLflow's names and definitions, equal to sklearn.metrics."""
    model = make_pipeline(StandardScaler(), LogisticRegression())
    with tracked(autolog={"sklearn": {"training_metrics": True}}) as run:
        model.fit(X, Y)
    metrics = data(client, run).metrics
    pred, proba = model.predict(X), model.predict_proba(X)
    assert metrics == pytest.approx(
        {
            "fit_time_s": metrics["fit_time_s"],
            "training_precision_score": skm.precision_score(Y, pred, average="weighted"),
            "training_recall_score": skm.recall_score(Y, pred, average="weighted"),
            "training_f1_score": skm.f1_score(Y, pred, average="weighted"),
            "training_accuracy_score": skm.accuracy_score(Y, pred),
            "training_log_loss": skm.log_loss(Y, proba),
            "training_roc_auc": skm.roc_auc_score(Y, proba[:, 1]),
            "training_score": model.score(X, Y),
        }
    )
    assert artifacts(client, run) == []


def test_training_metrics_of_a_regressor(client: Any) -> None:
    """Regressors get MLflow's regression training metrics."""
    Xd, yd = load_diabetes(return_X_y=True)
    model = LinearRegression()
    with tracked(autolog={"sklearn": {"training_metrics": True}}) as run:
        model.fit(Xd, yd)
    metrics = data(client, run).metrics
    pred = model.predict(Xd)
    assert metrics["training_mean_squared_error"] == pytest.approx(skm.mean_squared_error(yd, pred))
    assert metrics["training_root_mean_squared_error"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(yd, pred))
    )
    assert metrics["training_mean_absolute_error"] == pytest.approx(
        skm.mean_absolute_error(yd, pred)
    )
    assert metrics["training_r2_score"] == pytest.approx(skm.r2_score(yd, pred))


def test_training_plots_estimator_html_and_dataset(client: Any, tmp_path: Path) -> None:
    """training_plots, estimator_html and log_datasets each add what they name."""
    options = {"training_plots": True, "estimator_html": True, "log_datasets": True}
    with tracked(autolog={"sklearn": options}) as run:
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)
    assert sorted(artifacts(client, run)) == [
        "estimator.html",
        "training_confusion_matrix.png",
        "training_precision_recall_curve.png",
        "training_roc_curve.png",
    ]
    assert "training_accuracy_score" not in data(client, run).metrics  # its own option
    html = Path(client.download_artifacts(run.run_id, "estimator.html", str(tmp_path)))
    assert "StandardScaler" in html.read_text()
    inputs = client.get_run(run.run_id).inputs.dataset_inputs
    assert [tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"] == [
        "train"
    ]


# --- scope ---


def test_scope_ends_with_the_run(client: Any) -> None:
    """After the run the patches are gone, and a fit logs nothing anywhere."""
    original = LogisticRegression.fit
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    with tracked(autolog=["sklearn"]) as run:
        assert LogisticRegression.fit is not original
        LogisticRegression(max_iter=1000).fit(X, Y)
    assert LogisticRegression.fit is original
    assert "__init_subclass__" not in BaseEstimator.__dict__
    LogisticRegression(max_iter=1000).fit(X, Y)
    after = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(after) == before + 1
    assert len(history(client, run, "fit_time_s")) == 1


def test_fit_in_another_thread_is_not_logged(client: Any) -> None:
    """The scope is the run's context: a fit in a plain thread during the run is not logged."""
    done = threading.Event()

    def fit_elsewhere() -> None:
        LogisticRegression(C=3.0, max_iter=1000).fit(X, Y)
        done.set()

    with tracked(autolog=["sklearn"]) as run:
        thread = threading.Thread(target=fit_elsewhere)
        thread.start()
        thread.join()
        assert done.is_set()
    logged = data(client, run)
    assert logged.params == {}
    assert logged.metrics == {}


def test_nested_runs_inherit_or_use_their_own_options(client: Any) -> None:
    """A child run without autolog= inherits the parent's; with its own it uses those."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracked(autolog=["sklearn"]) as parent:
            with tracked() as inherits:
                LogisticRegression(max_iter=50).fit(X, Y)
            with tracked(autolog={"sklearn": {"training_metrics": True}}) as own:
                LogisticRegression(max_iter=50).fit(X, Y)
            with tracked(autolog={"sklearn": {"disable": True}}) as off:
                LogisticRegression(max_iter=50).fit(X, Y)
            LogisticRegression(max_iter=60).fit(X, Y)  # the parent's options again
    assert set(data(client, inherits).metrics) == {"fit_time_s"}
    assert "training_accuracy_score" in data(client, own).metrics
    assert data(client, off).metrics == {}
    assert data(client, off).params == {}
    assert set(data(client, parent).metrics) == {"fit_time_s"}
    assert data(client, parent).params["max_iter"] == "60"


def test_user_classes_are_logged_and_still_pickle(client: Any) -> None:
    """A class defined in a function is not patched (cloudpickle copies it by value)."""

    class Scaled(LogisticRegression):  # type: ignore[misc]
        def fit(self, X: Any, y: Any) -> Scaled:
            return super().fit(np.asarray(X) / 100.0, y)

    with tracked(autolog=["sklearn"]) as run:
        model = Scaled(max_iter=1000).fit(X, Y)
        assert "fit" in Scaled.__dict__ and not is_patched(Scaled.__dict__["fit"])
        restored = cloudpickle.loads(cloudpickle.dumps(model))
    assert not is_patched(type(restored).__dict__["fit"])
    logged = data(client, run)
    assert logged.tags["estimator_name"] == "Scaled"  # through LogisticRegression.fit
    assert logged.params["max_iter"] == "1000"


def test_a_class_defined_during_the_run_is_patched(client: Any) -> None:
    """An estimator class created while the run is open (a module imported late) is logged."""
    module = types.ModuleType("late_estimators")
    sys.modules[module.__name__] = module
    try:
        with tracked(autolog=["sklearn"]) as run:
            exec(
                textwrap.dedent(
                    """
                    from sklearn.base import BaseEstimator, ClassifierMixin

                    class Majority(ClassifierMixin, BaseEstimator):
                        def __init__(self, smoothing=1.0):
                            self.smoothing = smoothing

                        def fit(self, X, y):
                            self.classes_, counts = __import__("numpy").unique(
                                y, return_counts=True
                            )
                            self.label_ = self.classes_[counts.argmax()]
                            return self

                        def predict(self, X):
                            return __import__("numpy").full(len(X), self.label_)
                    """
                ),
                module.__dict__,
            )
            Majority = module.Majority
            Majority.__module__ = module.__name__
            assert is_patched(Majority.__dict__["fit"])
            Majority(smoothing=2.0).fit(X, Y)
        assert not is_patched(Majority.__dict__["fit"])
    finally:
        del sys.modules[module.__name__]
    logged = data(client, run)
    assert logged.params == {"smoothing": "2.0"}
    assert logged.tags["estimator_name"] == "Majority"


# --- failures never reach the fit ---


class BrokenParams(LogisticRegression):  # type: ignore[misc]
    """get_params(deep=True), which autolog reads, fails; fitting does not use it."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        if deep:
            raise RuntimeError("params unavailable")
        return dict(super().get_params(deep=False))


def test_a_logging_failure_is_one_warning_and_the_fit_goes_on(client: Any) -> None:
    """A failing logging step warns once; the fit returns its model; later steps still log."""
    expected = "could not read the estimator's params"
    with (
        pytest.warns(TrackSDKWarning, match=expected) as caught,
        tracked(autolog=["sklearn"]) as run,
    ):
        model = BrokenParams(max_iter=1000).fit(X, Y)
        BrokenParams(max_iter=1000).fit(X, Y)
    assert hasattr(model, "coef_")
    assert len([w for w in caught if "could not" in str(w.message)]) == 1
    assert "fit_time_s" in data(client, run).metrics


def test_a_logging_failure_does_not_raise_even_when_warnings_are_errors(client: Any) -> None:
    """With tracksdk's warnings as errors, the warning itself cannot escape into the fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackSDKWarning)
        with tracked(autolog=["sklearn"]):
            model = BrokenParams(max_iter=1000).fit(X, Y)
    assert hasattr(model, "coef_")


def test_the_fits_own_error_is_unchanged(client: Any) -> None:
    """An exception of the fit itself propagates as it is; the params are logged already."""
    with pytest.raises(ValueError, match="Unknown label type"), tracked(autolog=["sklearn"]) as run:
        LogisticRegression().fit(X, np.linspace(0, 1, len(Y)))
    logged = data(client, run)
    assert logged.params["C"] == "1.0"
    assert "fit_time_s" not in logged.metrics


# --- choosing the engine ---


def test_mlflow_engine_opt_in(client: Any) -> None:
    """engine='mlflow' is MLflow's autolog: its training metrics and estimator.html."""
    with tracked(autolog={"sklearn": {"engine": "mlflow"}}) as run:
        LogisticRegression(max_iter=1000).fit(X, Y)
    logged = data(client, run)
    assert "training_accuracy_score" in logged.metrics
    assert "fit_time_s" not in logged.metrics
    assert "estimator.html" in artifacts(client, run)
    assert not [p for p in artifacts(client, run) if p.endswith(".png")]  # training_plots off


def test_mlflow_only_option_selects_mlflows_engine(client: Any) -> None:
    """log_post_training_metrics=True is MLflow's engine's: it is selected by itself."""
    with tracked(autolog={"sklearn": {"log_post_training_metrics": True}}) as run:
        model = LogisticRegression(max_iter=1000).fit(X, Y)
        skm.f1_score(Y, model.predict(X))
    metrics = data(client, run).metrics
    assert "training_accuracy_score" in metrics
    assert [m for m in metrics if m.startswith("f1_score")]


@pytest.mark.parametrize(
    ("options", "engine"),
    [
        ({}, "tracksdk"),
        ({"log_models": False, "silent": True, "exclusive": False}, "tracksdk"),
        ({"log_models": True}, "mlflow"),
        ({"log_post_training_metrics": True}, "mlflow"),
        ({"exclusive": True}, "mlflow"),
        ({"engine": "mlflow"}, "mlflow"),
        ({"disable": True}, "off"),
    ],
)
def test_engine_choice(options: dict[str, Any], engine: str) -> None:
    """The engine follows the option, else the MLflow-only options, else tracksdk's."""
    assert choose_engine(tracksdk_sklearn.autolog_spec(), options)[0] == engine


def test_engine_choice_follows_the_users_own_mlflow_autolog() -> None:
    """With MLflow's sklearn autolog already on, MLflow's engine, unless told otherwise."""
    import mlflow.sklearn

    mlflow.sklearn.autolog(log_models=False, silent=True)
    spec = tracksdk_sklearn.autolog_spec()
    assert choose_engine(spec, {})[0] == "mlflow"
    assert choose_engine(spec, {"engine": "tracksdk"})[0] == "tracksdk"


def test_explicit_tracksdk_engine_switches_the_users_mlflow_autolog_off_for_the_run(
    client: Any,
) -> None:
    """engine='tracksdk' over a user's global MLflow autolog: ours logs; theirs is back after."""
    import mlflow.sklearn
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    mlflow.sklearn.autolog(log_models=False, max_tuning_runs=2, silent=True)
    users = dict(AUTOLOGGING_INTEGRATIONS["sklearn"])
    with tracked(autolog={"sklearn": {"engine": "tracksdk"}}) as run:
        assert AUTOLOGGING_INTEGRATIONS["sklearn"]["disable"] is True
        LogisticRegression(max_iter=1000).fit(X, Y)
    assert dict(AUTOLOGGING_INTEGRATIONS["sklearn"]) == users
    logged = data(client, run)
    assert set(logged.metrics) == {"fit_time_s"}
    with tracked() as after:  # the user's MLflow autolog works again
        LogisticRegression(max_iter=1000).fit(X, Y)
    assert "training_accuracy_score" in data(client, after).metrics


def test_option_warnings() -> None:
    """Unknown names, registered_model_name and options the engine cannot honour warn."""
    spec = tracksdk_sklearn.autolog_spec()
    with pytest.warns(TrackSDKWarning) as caught:
        engine, config = choose_engine(
            spec, {"registered_model_name": "m", "log_everything": True, "max_tuning_runs": 2}
        )
    messages = " ".join(str(w.message) for w in caught)
    assert "registered_model_name" in messages and "log_everything" in messages
    assert (engine, config["max_tuning_runs"]) == ("tracksdk", 2)
    assert "log_everything" not in config

    with pytest.warns(TrackSDKWarning, match=r"engine='tracksdk' ignores log_models=True"):
        engine, config = choose_engine(spec, {"engine": "tracksdk", "log_models": True})
    assert engine == "tracksdk" and "log_models" not in config
    with pytest.warns(TrackSDKWarning, match=r"engine='mlflow' ignores training_metrics=False"):
        engine, config = choose_engine(spec, {"engine": "mlflow", "training_metrics": False})
    assert engine == "mlflow" and config == {}
    with pytest.warns(TrackSDKWarning, match="Unknown sklearn autolog engine 'fast'"):
        assert choose_engine(spec, {"engine": "fast"})[0] == "tracksdk"


# --- model saving under -W error::UserWarning ---


def test_save_works_when_user_warnings_are_errors(tmp_path: Path) -> None:
    """MLflow warns while mlflow.pyfunc is imported; that no longer fails the save.

    In a fresh interpreter (the import happens once per process), with integer columns
    whose schema hint MLflow would otherwise turn into an ``AnyType`` signature.
    """
    code = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd
        from sklearn.linear_model import LogisticRegression
        import tracksdk_sklearn
        from mlflow.models import Model
        X = pd.DataFrame({{"a": np.arange(60), "b": np.arange(60) % 7}})
        y = (X.a % 2).to_numpy()
        model = LogisticRegression(max_iter=2000).fit(X, y)
        path = {str(tmp_path / "model")!r}
        assert tracksdk_sklearn.tracksdk_save_model(model, "sklearn", path, X, ()) == "sklearn"
        inputs = Model.load(path + "/MLmodel").signature.inputs
        print([(c.name, str(c.type)) for c in inputs.inputs])
        """
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[('a', 'DataType.long'), ('b', 'DataType.long')]"


def test_a_child_run_on_mlflows_engine_inside_a_parent_on_tracksdks(client: Any) -> None:
    """Engines nest: the child's fit is MLflow's only, the parent's fits tracksdk's only."""
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    original = LogisticRegression.fit
    with tracked(autolog=["sklearn"]) as parent:
        with tracked(autolog={"sklearn": {"engine": "mlflow"}}) as child:
            LogisticRegression(max_iter=1000).fit(X, Y)
        assert not mlflow_autolog_enabled("sklearn")
        LogisticRegression(max_iter=2000).fit(X, Y)
    assert LogisticRegression.fit is original
    assert AUTOLOGGING_INTEGRATIONS.get("sklearn", {}).get("disable", True) is True
    child_metrics = data(client, child).metrics
    assert "training_accuracy_score" in child_metrics
    assert "fit_time_s" not in child_metrics  # tracksdk's patch stepped aside
    parent_data = data(client, parent)
    assert set(parent_data.metrics) == {"fit_time_s"}
    assert parent_data.params["max_iter"] == "2000"


def test_returned_model_is_saved_while_autolog_is_on(client: Any) -> None:
    """The returned model (patched classes pickle by name) is saved and predicts the same."""
    import mlflow.pyfunc

    @tracked(autolog=["sklearn"])
    def train() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)

    model = train()
    run = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    assert run.data.tags["tracksdk.model.framework"] == "sklearn"
    assert "fit_time_s" in run.data.metrics
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_journaled_only_run_falls_back_to_tracksdks_engine() -> None:
    """in_store=False (offline run): MLflow's engine would make runs of its own; not used."""
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    from tracksdk.autolog import start_autolog

    spec = tracksdk_sklearn.autolog_spec()
    with pytest.warns(TrackSDKWarning, match="uses tracksdk's engine in this run"):
        restore = start_autolog(spec, {"engine": "mlflow", "log_models": True}, in_store=False)
    try:
        assert is_patched(LogisticRegression.fit)
        assert AUTOLOGGING_INTEGRATIONS.get("sklearn", {}).get("disable", True) is True
    finally:
        restore()
    assert not is_patched(LogisticRegression.fit)
