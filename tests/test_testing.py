"""tracksdk.testing.capture_runs: users test their own tracked code.

Every behaviour is checked on both stores capture_runs offers: the memory store (the
default, no MLflow) and MLflow's own sqlite store, and the two are compared.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, Literal

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


STORES = pytest.mark.parametrize("store", ["memory", "sqlite"])


@STORES
def test_capture_runs_reads_back_everything(
    project: Path, monkeypatch: pytest.MonkeyPatch, store: Literal["memory", "sqlite"]
) -> None:
    """capture_runs hands back params, metrics, history, tags and artifacts as stored."""
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")  # capture_runs turns tracking on
    with capture_runs(store=store) as captured:
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


@STORES
def test_capture_runs_sees_children_and_failures(
    project: Path, store: Literal["memory", "sqlite"]
) -> None:
    """Child runs carry their parent id; a failing run is FAILED."""
    with capture_runs(store=store) as captured:
        with tracked(experiment="p") as parent:
            train()
        with pytest.raises(ZeroDivisionError), tracked():
            1 / 0  # noqa: B018
        runs = captured.runs
    assert [r.status for r in runs] == ["FINISHED", "FINISHED", "FAILED"]
    assert runs[1].parent_run_id == parent.run_id
    with pytest.raises(AssertionError, match="exactly one run, found 3"):
        captured.only()


@STORES
def test_capture_runs_restores_configuration(
    project: Path, store: Literal["memory", "sqlite"]
) -> None:
    """After the block, tracked code goes back to the configured store."""
    tracksdk.configure(experiment="mine")
    with capture_runs(store=store):
        pass
    with tracked() as run:
        pass
    assert run.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    from core_fixtures import local_client

    assert local_client(project).get_experiment(run.experiment_id).name == "mine"


@tracked(experiment="compare")
def rich_run(rows: int = 4) -> dict[str, Any]:
    """Everything a run can hold, for comparing the two stores."""
    tracksdk.log_params({"rows": rows, "kind": "full"})
    for step in range(rows):
        tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
        tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)  # a duplicate row
    tracksdk.log_metric("odd", float("nan"))
    tracksdk.log_metric("big", float("inf"), step=1)
    tracksdk.set_tags({"team": "ml", "long": "x" * 9000})
    tracksdk.log_dict({"a": 1}, "config/run.json")
    with tracked(run_name="child"):
        tracksdk.log_metric("inner", 2.0)
    return {"auc": 0.75, "converged": True}


def _snapshot(captured: Any) -> list[dict[str, Any]]:
    """What a user would compare: everything but ids, times and machine details."""
    volatile = ("tracksdk.client_run_id", "mlflow.parentRunId")
    out = []
    for run in captured.runs:
        out.append(
            {
                "name": run.name if run.parent_run_id else None,  # MLflow invents top names
                "status": run.status,
                "experiment": run.experiment,
                "params": run.params,
                "metrics": {k: ("nan" if v != v else v) for k, v in run.metrics.items()},
                # As a multiset: the two captures ran at different moments, and MLflow orders
                # points by timestamp (the order itself is compared on the same input by
                # tests/test_stores.py's property test).
                "history": {
                    k: sorted((step, "nan" if v != v else v) for step, v in run.metric_history(k))
                    for k in run.metrics
                },
                "tags": {k: v for k, v in run.tags.items() if k not in volatile},
                "artifacts": run.artifacts,
                "has_parent": run.parent_run_id is not None,
                "config": (
                    run.artifact_text("config/run.json")
                    if "config/run.json" in run.artifacts
                    else None
                ),
            }
        )
    return out


def test_memory_store_shows_what_sqlite_shows(project: Path) -> None:
    """The same tracked code, captured on both stores, reads back the same."""
    snapshots = []
    for store in ("memory", "sqlite"):
        with capture_runs(store=store) as captured, warnings.catch_warnings(record=True) as w:  # type: ignore[arg-type]
            warnings.simplefilter("always")
            rich_run()
            snapshots.append(_snapshot(captured))
        said = " ".join(str(x.message) for x in w)
        assert "NaN" in said and "9000" in said, said  # normalised values are announced
    memory, sqlite = snapshots
    for run in sqlite:  # the run name MLflow generated, kept in its tag
        run["tags"].pop("mlflow.runName", None)
    for run in memory:
        run["tags"].pop("mlflow.runName", None)
    assert memory == sqlite
    assert memory[0]["params"] == {"rows": "4", "kind": "full"}
    # Each point twice: tracksdk's per-key timestamps keep both rows.
    assert memory[0]["history"]["loss"] == sorted([(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.25)] * 2)


def test_memory_capture_does_not_import_mlflow(project: Path) -> None:
    """A user's test of tracked code on the memory store never imports MLflow."""
    code = textwrap.dedent(
        """
        import sys
        import tracksdk
        from tracksdk.testing import capture_runs

        @tracksdk.tracked(experiment="fast")
        def train(lr):
            tracksdk.log_metric("loss", lr)
            tracksdk.log_text("card", "card.md")
            return {"auc": 0.5}

        with capture_runs() as captured:
            for i in range(20):
                train(lr=i)
        runs = captured.runs
        assert len(runs) == 20 and {r.status for r in runs} == {"FINISHED"}
        assert sorted(r.metrics["loss"] for r in runs) == list(range(20))
        print("mlflow" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_capture_runs_refuses_a_root_for_the_memory_store(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="memory store has no folder"),
        capture_runs(root=tmp_path, store="memory"),
    ):
        pass
    with (
        pytest.raises(ValueError, match="use 'memory' or 'sqlite'"),
        capture_runs(store="postgres"),  # type: ignore[arg-type]
    ):
        pass


def test_forked_children_under_the_memory_store_are_said_and_write_nothing(
    project: Path,
) -> None:
    """The memory store lives in the parent: a forked child's logs cannot reach it. One
    warning per child says so and points to store="sqlite"; nothing is written to disk and
    the parent's run is whole. With store="sqlite" the children's points arrive."""
    code = textwrap.dedent(
        """
        import multiprocessing, os, sys, warnings
        import tracksdk
        from tracksdk.testing import capture_runs

        def child(i):
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                tracksdk.log_metric(f"child{i}", 1.0)
                tracksdk.flush(10)
            warned = any("store='sqlite'" in str(w.message) for w in said)
            sys.stdout.flush()  # one write of a whole line: the two children print at once
            os.write(1, f"child warned: {warned}\\n".encode())

        @tracksdk.tracked
        def train():
            tracksdk.log_metric("parent", 1.0)
            workers = [multiprocessing.get_context("fork").Process(target=child, args=(i,))
                       for i in range(2)]
            [w.start() for w in workers]
            [w.join() for w in workers]
            tracksdk.log_metric("after", 2.0)

        with capture_runs(store=sys.argv[1]) as captured:
            train()
        run = captured.only()
        print("metrics:", sorted(run.metrics), run.status)
        """
    )
    outputs = {}
    for store in ("memory", "sqlite"):
        out = subprocess.run(
            [sys.executable, "-c", code, store],
            cwd=project, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        outputs[store] = out.stdout
    assert outputs["memory"].count("child warned: True") == 2
    assert "metrics: ['after', 'parent'] FINISHED" in outputs["memory"]
    assert "metrics: ['after', 'child0', 'child1', 'parent'] FINISHED" in outputs["sqlite"]
    assert outputs["sqlite"].count("child warned: False") == 2
    assert not (project / ".tracksdk" / "journal").exists() or not any(
        (project / ".tracksdk" / "journal").iterdir()
    )


def test_mlflows_autolog_under_the_memory_store_stays_out_of_the_working_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own autolog cannot reach the memory store: tracksdk's engine logs the fit
    into the captured run, and MLflow writes no ./mlflow.db or ./mlruns of its own."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    work = project / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    with capture_runs() as captured, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with tracked(autolog={"sklearn": {"engine": "mlflow"}}):
            LogisticRegression(max_iter=200).fit(X, y)
    run = captured.only()
    assert run.status == "FINISHED"
    assert run.params.get("max_iter") == "200"  # the fit was logged into the captured run
    assert sorted(p.name for p in work.iterdir()) == []
