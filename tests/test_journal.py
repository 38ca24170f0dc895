"""The journal on the local store: files and modes, offline mode, `tracksdk sync`, the cap.

Faults against real servers are in test_journal_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from core_fixtures import all_runs, artifact_paths, local_client, run_cli

import tracksdk
from tracksdk import TrackSDKWarning, tracked


def journals(project: Path) -> list[Path]:
    folder = project / ".tracksdk" / "journal"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_healthy_run_leaves_no_journal_and_everything_is_stored(project: Path) -> None:
    """Points, params, tags and artifacts all reach the store; the journal is deleted."""
    with tracked(experiment="journal") as run:
        assert run.run_id is not None  # the store created it before the block started
        for step in range(3000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_params({"lr": 0.1, "depth": 3})
        run.set_tag("stage", "dev")
        run.log_text("hello", "notes/hello.txt")
        run.log_dict({"a": 1}, "config.json")
    assert journals(project) == []
    client = local_client(project)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.1", "depth": "3"}
    assert stored.data.tags["stage"] == "dev"
    assert stored.data.tags["tracksdk.client_run_id"] == run.client_run_id
    history = client.get_metric_history(run.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(3000))
    assert {"notes/hello.txt", "config.json"} <= set(artifact_paths(client, run.run_id))


def test_journal_files_are_private(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders are 0700 and files 0600 (offline, so that nothing is sent and deleted)."""
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    source = project / "data.csv"
    source.write_text("a,b\n1,2\n")
    source.chmod(0o644)
    with pytest.warns(TrackSDKWarning, match="tracksdk sync"), tracked(experiment="j") as run:
        run.log_metric("m", 1.0)
        run.log_text("secret-ish", "notes.txt")
        run.log_artifact(source)  # a copy keeps its source's mode bits unless fixed
    [folder] = journals(project)
    paths = [folder.parent, folder, *folder.rglob("*")]
    modes = {str(p): (p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in paths}
    assert len(modes) > 5  # meta.json, lock, heartbeat, a segment, files/...
    wrong = {p: oct(m) for p, (d, m) in modes.items() if m != (0o700 if d else 0o600)}
    assert wrong == {}


def test_offline_mode_journals_then_sync_uploads(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKSDK_MODE=offline contacts no store; `tracksdk sync` uploads the run later."""
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()

    @tracked(experiment="offline-exp")
    def train(lr: float) -> dict[str, float]:
        for step in range(500):
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
        tracksdk.log_text("note", "notes/n.txt")
        tracksdk.set_tag("where", "train")
        return {"acc": 0.9}

    before = all_runs(project)
    with pytest.warns(TrackSDKWarning, match="tracksdk sync"):
        assert train(0.1) == {"acc": 0.9}
    assert all_runs(project) == before  # nothing reached the store
    [journal] = journals(project)

    dry = run_cli(project, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "501 metric points" in dry.stdout and "offline-exp" in dry.stdout  # 500 + acc
    assert "end it FINISHED" in dry.stdout
    assert journals(project) == [journal]

    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stderr + result.stdout
    assert journals(project) == []
    [run] = all_runs(project)
    client = local_client(project)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["where"] == "train"
    assert run.data.tags["tracksdk.client_run_id"] == journal.name
    assert run.data.metrics["acc"] == 0.9
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(
        range(500)
    )
    assert "notes/n.txt" in artifact_paths(client, run.info.run_id)
    # A second sync has nothing to do and makes no second run.
    again = run_cli(project, "sync")
    assert again.returncode == 0
    assert len(all_runs(project)) == 1


def test_offline_run_registers_its_model_at_sync(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register= offline: the registration is journaled and done by the sync."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    X, y = load_iris(return_X_y=True)

    @tracked(register="iris-offline")
    def train(X, y):  # type: ignore[no-untyped-def]
        return LogisticRegression(max_iter=200).fit(X, y)

    with pytest.warns(TrackSDKWarning):
        train(X, y)
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stderr + result.stdout
    client = local_client(project)
    [version] = client.search_model_versions("name='iris-offline'")
    [run] = all_runs(project)
    assert version.run_id == run.info.run_id
    assert "model/MLmodel" in artifact_paths(client, run.info.run_id)


def test_sync_dry_run_lists_and_sends_nothing_when_empty(project: Path) -> None:
    result = run_cli(project, "sync", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "nothing to sync" in result.stdout.lower()


def test_journal_cap_drops_points_not_params(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TRACKSDK_JOURNAL__MAX_MB, new points are dropped and counted, once warned."""
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    monkeypatch.setenv("TRACKSDK_JOURNAL__MAX_MB", "1")
    tracksdk.reset()
    with pytest.warns(TrackSDKWarning) as record, tracked(experiment="cap") as run:
        run.log_param("kept", "yes")
        for step in range(120_000):
            run.log_metric("m", float(step), step=step)
        run.set_tag("after", "kept too")
    full = [w for w in record if "TRACKSDK_JOURNAL__MAX_MB" in str(w.message)]
    assert len(full) == 1
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stderr + result.stdout
    [stored] = all_runs(project)
    dropped = int(stored.data.tags["tracksdk.dropped_points"])
    assert 0 < dropped < 120_000
    history = local_client(project).get_metric_history(stored.info.run_id, "m")
    assert len(history) == 120_000 - dropped
    # The points kept are the first ones: nothing is dropped from the middle.
    assert sorted(m.step for m in history) == list(range(120_000 - dropped))
    assert stored.data.params == {"kept": "yes"}
    assert stored.data.tags["after"] == "kept too"


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import tracksdk
    from tracksdk import tracked

    with tracked(experiment="killed") as run:
        for step in range(2000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_param("p", "v")
        print(run.client_run_id, flush=True)
        time.sleep(600)
    """
)


def test_sigkill_offline_then_sync_marks_the_run_killed(
    project: Path,
) -> None:
    """A process killed with its points journaled: sync sends them all, the run is KILLED."""
    (project / "killed.py").write_text(SIGKILL_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    env["TRACKSDK_MODE"] = "offline"
    child = subprocess.Popen(
        [sys.executable, "killed.py"], cwd=project, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        client_id = child.stdout.readline().strip()
        assert client_id, "the child did not start its run"
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)  # and close its pipe
    finally:
        if child.poll() is None:
            child.kill()
    [journal] = journals(project)
    assert journal.name == client_id
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stderr + result.stdout
    [run] = all_runs(project)
    assert run.info.status == "KILLED"
    assert run.data.params == {"p": "v"}
    history = local_client(project).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2000))
    assert journals(project) == []


def test_next_run_syncs_leftovers_of_the_same_store(project: Path) -> None:
    """A journal left by a dead process for this store is sent by the next tracked run."""
    (project / "killed.py").write_text(SIGKILL_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    # Point the dead process at this store, but keep its sender from writing: a store
    # path that is a file makes the local store refuse, and the run stays journaled.
    blocker = project / "blocked"
    blocker.write_text("not a folder")
    child = subprocess.Popen(
        [sys.executable, "killed.py"],
        cwd=project,
        env={**env, "TRACKSDK_LOCAL__ROOT": str(blocker / "store")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)  # and close its pipe
    finally:
        if child.poll() is None:
            child.kill()
    [journal] = journals(project)
    meta = json.loads((journal / "meta.json").read_text())
    blocker.unlink()  # the store path is usable now
    assert meta["target"].endswith("blocked/store/mlflow.db")
    os.environ["TRACKSDK_LOCAL__ROOT"] = str(blocker / "store")
    try:
        tracksdk.reset()
        with tracked(experiment="next") as run:
            run.log_metric("x", 1.0)
        deadline = time.monotonic() + 60
        while journals(project) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        del os.environ["TRACKSDK_LOCAL__ROOT"]
        tracksdk.reset()
    assert journals(project) == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{blocker / 'store' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_name = {client.get_experiment(r.info.experiment_id).name: r for r in runs}
    assert by_name["killed"].info.status == "KILLED"
    assert len(client.get_metric_history(by_name["killed"].info.run_id, "loss")) == 2000
    assert by_name["next"].info.status == "FINISHED"


def test_offline_autolog_uses_tracksdks_engine_and_makes_no_stray_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's autolog engine needs a run in a store: offline, tracksdk's engine is used.

    Otherwise MLflow's engine would create a run of its own in MLflow's default store (the
    project's mlflow.db) at the first fit.
    """
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    X, y = load_iris(return_X_y=True)
    autolog = {"sklearn": {"engine": "mlflow"}}
    with (
        pytest.warns(TrackSDKWarning) as record,
        tracked(experiment="offline-autolog", autolog=autolog),
    ):
        LogisticRegression(C=0.5, max_iter=200).fit(X, y)
    assert any("uses tracksdk's engine" in str(w.message) for w in record), [
        str(w.message) for w in record
    ]
    assert all_runs(project) == []  # no stray run
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stderr + result.stdout
    [run] = all_runs(project)
    assert run.data.params["C"] == "0.5"
    assert run.data.tags["estimator_class"].endswith("LogisticRegression")
