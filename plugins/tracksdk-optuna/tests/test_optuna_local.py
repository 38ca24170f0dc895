"""tracksdk_optuna.optimize in one process, on a local sqlite store, read back through MLflow.

Trials complete, are pruned, raise, return NaN, run in threads, and a later call continues
the study's parent run; the champion gate registers the refit model once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")

import tracksdk_optuna  # noqa: E402

import tracksdk  # noqa: E402
from tracksdk import ConfigError, Gate, Register  # noqa: E402
from tracksdk.testing import NO_PROVENANCE, capture_runs  # noqa: E402

EXPERIMENT = "optuna-local"


# --- fixtures (module-local: no conftest.py, so nothing clashes with tests/conftest.py) ---


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local store for the module: MLflow's schema migration takes seconds."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its per-trial lines, not its errors
    return tmp_path_factory.mktemp("optuna-local")


@pytest.fixture
def client(store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracked runs go to ``store`` (no provenance, for speed); yields a client on it."""
    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_TRACKING", "MLFLOW_RUN_ID", "MLFLOW_EXP")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(store)  # the project root, and the journal, stay in the temp folder
    tracksdk.reset()
    with capture_runs(store):
        tracksdk.configure(capture=NO_PROVENANCE, system_metrics={"enabled": False})
        yield mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    tracksdk.reset()


def new_study(**kwargs: Any) -> Any:
    name = f"study-{uuid.uuid4().hex[:8]}"
    sampler = optuna.samplers.RandomSampler(seed=0)
    return optuna.create_study(study_name=name, sampler=sampler, **kwargs)


def study_runs(client: Any, study: Any) -> tuple[Any, dict[int, Any]]:
    """The study's parent run, and its trials' runs by trial number (each number once)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`optuna.study_name` = '{study.study_name}'"
    )
    parents = [r for r in runs if "optuna.trial_number" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    (parent,) = parents
    trials: dict[int, Any] = {}
    for run in runs:
        if run is parent:
            continue
        number = int(run.data.tags["optuna.trial_number"])
        assert number not in trials, f"trial {number} has two runs"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        trials[number] = run
    return parent, trials


def history(client: Any, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


# --- one study, every state -----------------------------------------------------------


def objective(trial: Any) -> float:
    x = trial.suggest_int("x", 0, 5)
    if trial.number == 2:
        raise ValueError("boom")  # caught (catch=): the search goes on
    for step in range(3):
        trial.report(x + step, step)
    if trial.number == 3:
        raise optuna.TrialPruned()
    if trial.number == 4:
        return float("nan")  # Optuna fails the trial
    tracksdk.log_metric("x_seen", x)  # into this trial's run
    return float(x)


def test_each_trial_is_a_child_run_with_its_state_params_and_values(client: Any) -> None:
    study = new_study(direction="minimize")
    parent_run = tracksdk_optuna.optimize(
        study, objective, n_trials=6, catch=(ValueError,), experiment=EXPERIMENT
    )
    assert parent_run is not None and parent_run.status == "FINISHED"
    parent, trials = study_runs(client, study)
    assert parent.info.run_id == parent_run.run_id
    assert sorted(trials) == list(range(6))
    states = [t.state.name for t in study.trials]  # Optuna's own verdicts
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED", "FAIL", "COMPLETE"]
    for trial in study.trials:
        run = trials[trial.number]
        data = run.data
        assert data.tags["optuna.state"] == trial.state.name
        assert run.info.run_name == f"trial-{trial.number}"
        assert data.params == {"x": str(trial.params["x"])}
        assert data.metrics["duration_s"] >= 0
        assert trial.user_attrs["tracksdk.run_id"] == run.info.run_id
        x = trial.params["x"]
        if trial.number != 2:  # the failing one raised before reporting
            assert history(client, run, "intermediate_value") == [(s, x + s) for s in range(3)]
        if trial.state.name == "COMPLETE":
            assert run.info.status == "FINISHED"
            assert data.metrics["value"] == trial.value
            assert data.metrics["x_seen"] == x
        else:
            assert "value" not in data.metrics
    assert trials[3].info.status == "FINISHED"  # pruned: the search working, not an error
    assert trials[2].info.status == "FAILED"
    assert trials[2].data.tags["tracksdk.error.type"] == "builtins.ValueError"
    assert trials[4].info.status == "FAILED"
    assert "nan is not acceptable" in trials[4].data.tags["tracksdk.error.message"]

    best = study.best_trial
    tags, metrics = parent.data.tags, parent.data.metrics
    assert parent.info.status == "FINISHED"
    assert tags["tracksdk.run_key"] == f"optuna:{study.study_name}"
    assert parent.info.run_name == study.study_name
    assert metrics["best_value"] == study.best_value
    assert tags["optuna.best_trial"] == str(best.number)
    assert tags["optuna.best_params"] == f'{{"x": {best.params["x"]}}}'
    assert tags["tracksdk.best_run_id"] == trials[best.number].info.run_id
    assert tags["optuna.directions"] == "MINIMIZE"
    assert (metrics["trials_complete"], metrics["trials_pruned"], metrics["trials_failed"]) == (
        3,
        1,
        2,
    )
    # The best value so far after each trial (the end of the call logs the last again).
    completed = [t.value if t.state.name == "COMPLETE" else float("inf") for t in study.trials]
    running = [(n, min(completed[: n + 1])) for n in range(6)]
    assert sorted(set(history(client, parent, "best_value"))) == running


def test_an_uncaught_error_fails_the_trial_then_the_parent(client: Any) -> None:
    study = new_study()

    def failing(trial: Any) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise RuntimeError("the data is gone")
        return x

    with pytest.raises(RuntimeError, match="the data is gone"):
        tracksdk_optuna.optimize(study, failing, n_trials=3, experiment=EXPERIMENT)
    parent, trials = study_runs(client, study)
    assert sorted(trials) == [0, 1]  # the search stopped there, as study.optimize does
    assert trials[1].info.status == "FAILED"
    assert trials[1].data.tags["optuna.state"] == "FAIL"
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["best_value"] == study.best_value
    assert parent.data.metrics["trials_failed"] == 1


def test_trials_in_parallel_threads_nest_in_the_parent(client: Any) -> None:
    study = new_study(direction="maximize")

    def threaded(trial: Any) -> float:
        x = trial.suggest_float("x", 0, 1)
        tracksdk.log_metric("x_seen", x)
        return x

    tracksdk_optuna.optimize(study, threaded, n_trials=4, n_jobs=2, experiment=EXPERIMENT)
    parent, trials = study_runs(client, study)  # every child's parent is the study's run
    assert sorted(trials) == list(range(4))
    for trial in study.trials:
        assert trials[trial.number].data.metrics["x_seen"] == trial.params["x"]
    assert parent.data.metrics["best_value"] == study.best_value


def test_several_objectives_log_each_value_and_no_best(client: Any) -> None:
    study = new_study(directions=["minimize", "maximize"])

    def two(trial: Any) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x

    tracksdk_optuna.optimize(study, two, n_trials=2, experiment=EXPERIMENT)
    parent, trials = study_runs(client, study)
    for trial in study.trials:
        metrics = trials[trial.number].data.metrics
        assert (metrics["values_0"], metrics["values_1"]) == tuple(trial.values)
    assert "best_value" not in parent.data.metrics
    assert parent.data.tags["optuna.directions"] == "MINIMIZE,MAXIMIZE"
    with pytest.raises(ConfigError, match="several objectives"):
        tracksdk_optuna.optimize(study, two, n_trials=0, refit=lambda best: None)


# --- continuing the parent, registering once ---------------------------------------------


class Constant(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A model saved by tracksdk's built-in pyfunc plugin: no framework needed."""

    def __init__(self, x: float) -> None:
        self.x = x

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # No type hints: MLflow would try (and fail) to turn them into a signature.
        return [self.x] * len(model_input)


def quadratic(trial: Any) -> float:
    return (trial.suggest_float("x", -3, 3) - 1) ** 2


def test_later_calls_continue_the_parent_and_register_once_at_the_end(client: Any) -> None:
    """The recipe for several workers: search, then one last call refits and registers."""
    study = new_study()
    model = f"optuna-{study.study_name}"
    with pytest.raises(ConfigError, match="refit= is missing"):
        tracksdk_optuna.optimize(study, quadratic, n_trials=1, register=model)
    assert study.trials == []
    first = tracksdk_optuna.optimize(study, quadratic, n_trials=3, experiment=EXPERIMENT)
    second = tracksdk_optuna.optimize(study, quadratic, n_trials=3, experiment=EXPERIMENT)
    refits: list[int] = []

    def refit(best: Any) -> Any:
        refits.append(best.number)
        return Constant(best.params["x"])

    spec = Register(model, gate=Gate("best_value", mode="min"))
    last = tracksdk_optuna.optimize(
        study, quadratic, n_trials=0, experiment=EXPERIMENT, refit=refit, register=spec
    )
    assert first is not None and second is not None and last is not None
    assert first.run_id == second.run_id == last.run_id
    assert (first.resumed, second.resumed, last.resumed) == (False, True, True)
    parent, trials = study_runs(client, study)
    assert sorted(trials) == list(range(6))
    assert refits == [study.best_trial.number]
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id == parent.info.run_id
    assert client.get_model_version_by_alias(model, "champion").version == version.version
    assert parent.data.tags["tracksdk.model.registered"] == f"{model}/{version.version}"
    assert parent.data.metrics["best_value"] == study.best_value
    for run in trials.values():
        assert not any(key.startswith("tracksdk.model") for key in run.data.tags)


def test_the_runs_record_the_callers_code_not_the_plugins(client: Any) -> None:
    """The tracked function is the plugin's own: its source and repository are the caller's."""
    tracksdk.configure(capture={"source": True})
    study = new_study(direction="minimize")
    tracksdk_optuna.optimize(
        study, lambda trial: trial.suggest_float("x", 0, 1), n_trials=1, experiment=EXPERIMENT
    )
    parent, _ = study_runs(client, study)
    sources = [a.path for a in client.list_artifacts(parent.info.run_id, "source")]
    assert f"source/{Path(__file__).name}" in sources
    assert "source/__init__.py" not in sources  # tracksdk_optuna's module
