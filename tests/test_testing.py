"""tracksdk.testing.capture_runs: users test their own tracked code against a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracksdk
from tracksdk import tracked
from tracksdk.testing import capture_runs


@tracked(experiment="user-code")
def train(learning_rate: float = 0.1) -> dict[str, float]:
    for step in range(3):
        tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
    tracksdk.log_text("model card", "card.md")
    return {"val_auc": 0.9}


def test_capture_runs_reads_back_everything(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """capture_runs hands back params, metrics, history, tags and artifacts as stored."""
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")  # capture_runs turns tracking on
    with capture_runs() as captured:
        train(learning_rate=0.2)
        run = captured.only()
    assert run.status == "FINISHED"
    assert run.experiment == "user-code"
    assert run.params == {"learning_rate": "0.2"}
    assert run.metrics == {"loss": 1 / 3, "val_auc": 0.9}
    assert run.metric_history("loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert "card.md" in run.artifacts
    assert run.artifact_text("card.md") == "model card"
    assert run.tags["tracksdk.function"].endswith("train")
    from core_fixtures import all_runs

    assert all_runs(project) == []  # nothing reached the project's own store


def test_capture_runs_sees_children_and_failures(project: Path) -> None:
    """Child runs carry their parent id; a failing run is FAILED."""
    with capture_runs() as captured:
        with tracked(experiment="p") as parent:
            train()
        with pytest.raises(ZeroDivisionError), tracked():
            1 / 0  # noqa: B018
        runs = captured.runs
    assert [r.status for r in runs] == ["FINISHED", "FINISHED", "FAILED"]
    assert runs[1].parent_run_id == parent.run_id
    with pytest.raises(AssertionError, match="exactly one run, found 3"):
        captured.only()


def test_capture_runs_restores_configuration(project: Path) -> None:
    """After the block, tracked code goes back to the configured store."""
    tracksdk.configure(experiment="mine")
    with capture_runs():
        pass
    with tracked() as run:
        pass
    assert run.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    from core_fixtures import local_client

    assert local_client(project).get_experiment(run.experiment_id).name == "mine"
