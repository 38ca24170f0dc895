"""`tracked` as decorator and context manager, on the local sqlite store."""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from core_fixtures import all_runs, artifact_paths, artifact_text, local_client

import tracksdk
from tracksdk import tracked


def test_bare_decorator_logs_bound_params_with_defaults(project: Path) -> None:
    """@tracked logs every bound argument, defaults applied, and returns the value."""

    @tracked
    def train(learning_rate: float, num_leaves: int = 31, name: str = "lgbm") -> str:
        return "done"

    assert train(0.1) == "done"
    (run,) = all_runs(project)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.1", "num_leaves": "31", "name": "lgbm"}
    assert run.data.tags["tracksdk.function"].endswith("train")


def test_called_decorator_sets_experiment_name_tags(project: Path) -> None:
    """@tracked(...) puts the run in the named experiment with its name and tags."""

    @tracked(experiment="churn", run_name="first", tags={"team": "growth"})
    def train() -> None:
        pass

    train()
    (run,) = all_runs(project)
    client = local_client(project)
    assert client.get_experiment(run.info.experiment_id).name == "churn"
    assert run.info.run_name == "first"
    assert run.data.tags["team"] == "growth"


def test_default_experiment_is_project_folder_name(project: Path) -> None:
    """Without TRACKSDK_EXPERIMENT the experiment is named after the project root."""
    with tracked():
        pass
    (run,) = all_runs(project)
    assert local_client(project).get_experiment(run.info.experiment_id).name == project.name


def test_params_selection_and_false(project: Path) -> None:
    """params= selects argument names, or logs none with False."""

    @tracked(params=["a"])
    def some(a: int, b: int) -> None:
        pass

    @tracked(params=False)
    def none(a: int) -> None:
        pass

    some(1, 2)
    none(3)
    first, second = all_runs(project)
    assert first.data.params == {"a": "1"}
    assert second.data.params == {}


def test_non_scalar_params_are_short_and_readable(project: Path) -> None:
    """Arrays, frames, long lists and objects are logged by shape, not dumped."""
    frame = pd.DataFrame({"x": range(1000), "y": range(1000)})

    @tracked
    def train(data: pd.DataFrame, weights: np.ndarray, ids: list[int], **extra: object) -> None:
        pass

    train(frame, np.zeros((3, 4)), list(range(5000)), alpha=0.5)
    (run,) = all_runs(project)
    params = run.data.params
    assert params["data"] == "DataFrame(shape=(1000, 2), columns=[x, y])"
    assert params["weights"] == "ndarray(shape=(3, 4), dtype=float64)"
    assert params["ids"] == "list(len=5000)"
    assert params["alpha"] == "0.5"
    assert all(len(v) <= 250 for v in params.values())


def test_wrapped_function_keeps_name_doc_signature(project: Path) -> None:
    """The decorated function keeps its name, docstring and signature."""

    def original(learning_rate: float = 0.05) -> float:
        """Train it."""
        return learning_rate

    train = tracked(experiment="x")(original)
    assert train.__name__ == "original"
    assert train.__doc__ == "Train it."
    assert inspect.signature(train) == inspect.signature(original)
    assert train(0.5) == 0.5


def test_returned_mapping_of_numbers_becomes_metrics(project: Path) -> None:
    """A returned dict's numbers are logged as metrics; the dict itself passes through."""

    @tracked
    def train() -> dict[str, float]:
        return {"val_auc": 0.91, "val_loss": np.float64(0.2)}

    @tracked
    def other() -> dict[str, object]:
        return {"model": "not a number", "n": 3}

    assert train() == {"val_auc": 0.91, "val_loss": 0.2}
    with pytest.warns(tracksdk.TrackSDKWarning, match="'model' \\(a str\\)"):
        assert other() == {"model": "not a number", "n": 3}
    first, second = all_runs(project)
    assert first.data.metrics == {"val_auc": 0.91, "val_loss": 0.2}
    assert second.data.metrics == {"n": 3.0}  # issue 8 (B2): was {} before


def test_context_manager_yields_run_with_ids_and_url(project: Path) -> None:
    """`with tracked(...) as run` exposes ids, the tracking URI and a UI link."""
    with tracked(experiment="cm") as run:
        run.log_metric("loss", 0.5, step=1)
        run.log_metric("loss", 0.25, step=2)
        assert run.status == "RUNNING"
        assert tracksdk.active_run() is run
    assert run.status == "FINISHED"
    assert run.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    assert run.url == f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    history = local_client(project).get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert tracksdk.active_run() is None


def test_async_function_is_tracked(project: Path) -> None:
    """An async def stays a coroutine function and its run spans the await."""

    @tracked
    async def train(epochs: int = 2) -> dict[str, float]:
        await asyncio.sleep(0)
        tracksdk.log_metric("inside", 1.0)
        return {"acc": 0.8}

    assert inspect.iscoroutinefunction(train)
    assert asyncio.run(train()) == {"acc": 0.8}
    (run,) = all_runs(project)
    assert run.data.params == {"epochs": "2"}
    assert run.data.metrics == {"inside": 1.0, "acc": 0.8}


def test_nested_calls_make_child_runs(project: Path) -> None:
    """A tracked function called inside a tracked run becomes its child."""

    @tracked
    def trial(c: float) -> dict[str, float]:
        return {"score": c * 2}

    with tracked(experiment="search") as parent:
        for c in (0.1, 0.2):
            trial(c)
    runs = all_runs(project)
    children = [r for r in runs if r.info.run_id != parent.run_id]
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.run_id}
    assert {r.info.experiment_id for r in runs} == {parent.experiment_id}


def test_nested_false_makes_independent_run(project: Path) -> None:
    """nested=False starts a top-level run even inside another."""
    with tracked(experiment="a"), tracked(experiment="b", nested=False) as inner:
        pass
    runs = {r.info.run_id: r for r in all_runs(project)}
    assert "mlflow.parentRunId" not in runs[str(inner.run_id)].data.tags


def test_exception_marks_failed_records_error_and_reraises(project: Path) -> None:
    """An exception ends the run FAILED with type, message and traceback, re-raised as is."""

    class Boom(RuntimeError):
        pass

    error = Boom("diverged at epoch 3")

    @tracked
    def train() -> None:
        raise error

    with pytest.raises(Boom) as caught:
        train()
    assert caught.value is error
    (run,) = all_runs(project)
    assert run.info.status == "FAILED"
    assert run.data.tags["tracksdk.error.type"].endswith("Boom")
    assert run.data.tags["tracksdk.error.message"] == "diverged at epoch 3"
    client = local_client(project)
    text = artifact_text(client, run.info.run_id, "error/traceback.txt", project.parent)
    assert "diverged at epoch 3" in text and "raise error" in text


def test_keyboard_interrupt_marks_killed(project: Path) -> None:
    """Ctrl-C ends the run KILLED and still propagates."""

    @tracked
    def train() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train()
    assert all_runs(project)[0].info.status == "KILLED"


@pytest.mark.parametrize(("code", "status"), [(0, "FINISHED"), (None, "FINISHED"), (3, "FAILED")])
def test_sys_exit(project: Path, code: int | None, status: str) -> None:
    """sys.exit(0) inside the function ends the run FINISHED; a non-zero code FAILED."""

    @tracked
    def train() -> None:
        sys.exit(code)

    with pytest.raises(SystemExit):
        train()
    (run,) = all_runs(project)
    assert run.info.status == status
    assert run.data.tags["tracksdk.exit_code"] == str(code)


def test_mlflow_global_state_is_restored(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracked call leaves MLflow's tracking URI, active run and env as it found them."""
    import os

    import mlflow

    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which tracksdk would honour
    # when no backend is named; name it.
    monkeypatch.setenv("TRACKSDK_BACKEND", "local")
    mlflow.set_tracking_uri(f"sqlite:///{project / 'other.db'}")
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    with tracked() as run:
        assert mlflow.active_run() is not None
        assert mlflow.active_run().info.run_id == run.run_id  # type: ignore[union-attr]
        assert mlflow.get_tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    assert mlflow.active_run() is None
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_mlflow_fluent_calls_inside_land_in_the_run(project: Path) -> None:
    """Plain mlflow.log_metric inside a tracked block writes to the tracked run."""
    import mlflow

    with tracked() as run:
        mlflow.log_metric("plain", 2.0)
    assert local_client(project).get_run(str(run.run_id)).data.metrics["plain"] == 2.0


def test_disabled_mode_is_a_pass_through(
    fresh_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKSDK_MODE=disabled runs the function and writes nothing anywhere."""
    project = fresh_project
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")

    @tracked
    def train(x: int) -> dict[str, float]:
        tracksdk.log_metric("m", 1.0)
        return {"x": float(x)}

    assert train(2) == {"x": 2.0}
    with tracked() as run:
        run.log_metric("m", 1.0)
    assert run.run_id is None and run.status == "UNTRACKED"
    assert not (project / "mlflow.db").exists()
    assert not (project / "mlruns").exists()


def test_only_rank_zero_tracks_by_default(
    fresh_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RANK set, non-zero ranks run untracked unless track_all_ranks is set."""
    project = fresh_project
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    @tracked
    def train() -> int:
        return 7

    assert train() == 7
    assert not (project / "mlflow.db").exists()
    monkeypatch.setenv("TRACKSDK_TRACK_ALL_RANKS", "true")
    assert train() == 7
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("TRACKSDK_TRACK_ALL_RANKS")
    assert train() == 7
    assert len(all_runs(project)) == 2


def test_explicit_logging_functions_round_trip(project: Path) -> None:
    """Every module-level log function writes what MLflow reads back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data_file = project / "notes.txt"
    data_file.write_text("some notes")
    folder = project / "outputs"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    frame = pd.DataFrame({"f": [1.0, 2.0], "target": [0, 1]})
    with tracked() as run:
        tracksdk.log_metrics({"a": 1.0, "b": 2}, step=3)
        tracksdk.log_param("p", 5)
        tracksdk.log_params({"q": "x", "r": None})
        tracksdk.set_tag("stage", "dev")
        tracksdk.set_tags({"owner": "me"})
        tracksdk.log_artifact(data_file)
        tracksdk.log_artifact(data_file, artifact_path="docs")
        tracksdk.log_artifacts(folder, artifact_path="out")
        tracksdk.log_text("hello", "text/hello.txt")
        tracksdk.log_dict({"k": [1, 2]}, "config.json")
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        tracksdk.log_figure(fig, "plots/line.png")
        plt.close(fig)
        tracksdk.log_input(frame, "training", name="tiny", targets="target")
        tracksdk.log_input(np.ones((4, 2)), "validation", name="ones")
    client = local_client(project)
    stored = client.get_run(str(run.run_id))
    assert stored.data.metrics == {"a": 1.0, "b": 2.0}
    assert client.get_metric_history(run.run_id, "a")[0].step == 3
    assert {k: stored.data.params[k] for k in ("p", "q", "r")} == {"p": "5", "q": "x", "r": "None"}
    assert stored.data.tags["stage"] == "dev" and stored.data.tags["owner"] == "me"
    paths = artifact_paths(client, str(run.run_id))
    for expected in (
        "notes.txt",
        "docs/notes.txt",
        "out/a.txt",
        "text/hello.txt",
        "config.json",
        "plots/line.png",
    ):
        assert expected in paths
    assert artifact_text(client, str(run.run_id), "config.json", project.parent) == (
        '{\n  "k": [\n    1,\n    2\n  ]\n}'
    )
    inputs = {d.dataset.name: d for d in stored.inputs.dataset_inputs}
    assert set(inputs) == {"tiny", "ones"}
    contexts = {name: {t.key: t.value for t in d.tags} for name, d in inputs.items()}
    assert contexts["tiny"]["mlflow.data.context"] == "training"
    assert contexts["ones"]["mlflow.data.context"] == "validation"


def test_log_outside_a_run_warns_and_does_nothing(fresh_project: Path) -> None:
    """tracksdk.log_metric outside any tracked run warns instead of starting a run."""
    project = fresh_project
    import tracksdk._api as api

    api._warned_generation = -1
    with pytest.warns(tracksdk.TrackSDKWarning, match="no tracked run is open in this process"):
        tracksdk.log_metric("m", 1.0)
    assert not (project / "mlflow.db").exists()


def test_artifacts_live_in_project_root_from_a_subfolder(
    fresh_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subfolder, the store is created in the project root with its artifacts."""
    project = fresh_project
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    with tracked() as run:
        run.log_text("x", "x.txt")
    assert (project / "mlflow.db").exists()
    assert not (sub / "mlflow.db").exists()
    stored = local_client(project).get_run(str(run.run_id))
    assert stored.info.artifact_uri.startswith(str(project / "mlruns"))
    assert (Path(stored.info.artifact_uri) / "x.txt").read_text() == "x"


def test_provenance_recorded_on_a_real_run(project: Path) -> None:
    """A run records git state, the diff, untracked files, sources and requirements."""
    import subprocess

    from core_fixtures import git

    commit = git(project, "rev-parse", "HEAD").strip()
    (project / "README.md").write_text("changed\n")
    (project / "src").mkdir()
    job = project / "src" / "job.py"  # a script in a subfolder of the repository
    job.write_text("from tracksdk import tracked\nwith tracked() as run:\n    print(run.run_id)\n")
    out = subprocess.run(
        [sys.executable, "src/job.py", "--token", "canary-argv-token-1"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = out.stdout.strip()
    client = local_client(project)
    stored = client.get_run(run_id)
    tags = stored.data.tags
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.git.dirty"] == "true"
    assert tags["tracksdk.git.status"] == "ok"
    assert tags["tracksdk.env.mlflow_version"] == "3.17.2"
    assert tags["mlflow.source.name"] == "src/job.py"
    assert tags["tracksdk.command"].endswith("src/job.py --token '***'")
    paths = artifact_paths(client, run_id)
    assert "source/diff.txt" in paths
    assert "source/untracked.txt" in paths
    assert "environment/requirements.txt" in paths
    assert "source/job.py" in paths
    diff = artifact_text(client, run_id, "source/diff.txt", project.parent)
    assert "+changed" in diff
    untracked = artifact_text(client, run_id, "source/untracked.txt", project.parent)
    assert "src/job.py" in untracked


def test_capture_switches_turn_captures_off(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACKSDK_CAPTURE__* variables switch each capture off."""
    (project / "README.md").write_text("changed\n")
    for name in ("DIFF", "UNTRACKED", "SOURCE", "REQUIREMENTS", "ENVIRONMENT", "COMMAND"):
        monkeypatch.setenv(f"TRACKSDK_CAPTURE__{name}", "false")
    with tracked() as run:
        pass
    client = local_client(project)
    tags = client.get_run(str(run.run_id)).data.tags
    assert artifact_paths(client, str(run.run_id)) == []
    assert "tracksdk.env.python" not in tags and "tracksdk.command" not in tags
    assert tags["tracksdk.git.status"] == "ok"  # git itself is still on
    monkeypatch.setenv("TRACKSDK_CAPTURE__GIT", "false")
    with tracked() as second:
        pass
    assert "tracksdk.git.status" not in client.get_run(str(second.run_id)).data.tags
