"""``tracksdk diff RUN_A RUN_B`` (issue 12): what differs between two runs, as tables
and as JSON, from runs made in a real git repository on the local sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from core_fixtures import all_runs
from core_fixtures import run_cli as cli

from tracksdk import _compare

TRAIN = """
import sys
import pandas as pd
from tracksdk import tracked

@tracked(experiment="diff")
def train(train_df: pd.DataFrame, lr: float = 0.1) -> dict[str, float]:
    return {"rmse": float(train_df["y"].mean()) * lr}

train(pd.DataFrame({"y": [float(v) for v in sys.argv[1].split(",")]}), lr=float(sys.argv[2]))
"""


def train(project: Path, values: str, lr: float = 0.1) -> None:
    """The project's own train.py (its git repository is the one recorded), run as a user does."""
    script = project / "train.py"
    if not script.exists():
        script.write_text(TRAIN)
        subprocess.run(["git", "add", "train.py"], cwd=project, check=True)
        subprocess.run(["git", "commit", "-qm", "train"], cwd=project, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "train.py", values, str(lr)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def two_run_ids(project: Path) -> tuple[str, str]:
    first, second = all_runs(project)
    return first.info.run_id, second.info.run_id


def diff_json(project: Path, a: str, b: str) -> dict:  # type: ignore[type-arg]
    result = cli(project, "diff", a, b, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_same_code_different_data_is_said_plainly(project: Path) -> None:
    train(project, "1,2,3")
    train(project, "1,2,4")
    a, b = two_run_ids(project)
    found = diff_json(project, a, b)
    assert found["verdict"] == "same code, different data, same params"
    assert found["code"]["same"] is True
    assert found["data"]["inputs"] == [
        {"name": "train_df", "context": "training", "a": found["data"]["inputs"][0]["a"],
         "b": found["data"]["inputs"][0]["b"]},
    ]  # fmt: skip
    assert found["data"]["inputs"][0]["a"] != found["data"]["inputs"][0]["b"]
    assert found["metrics"]["rmse"]["delta"] == pytest.approx(0.1 * (7 / 3 - 2))
    assert found["packages"] == {"changed": {}, "added": {}, "removed": {}}
    table = cli(project, "diff", a, b)
    assert table.returncode == 0, table.stderr
    assert "same code, different data, same params" in table.stdout
    assert "train_df" in table.stdout and "differs" in table.stdout


def test_different_code_and_params_show_files_and_values(project: Path) -> None:
    train(project, "1,2")
    (project / "README.md").write_text("hello\nchanged\n")  # a tracked file, uncommitted
    (project / "notes.txt").write_text("new\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=project, check=True)
    train(project, "1,2", lr=0.5)
    a, b = two_run_ids(project)
    found = diff_json(project, a, b)
    assert found["verdict"] == "different code, same data, 1 param(s) differ"
    assert found["code"]["same_commit"] is True and found["code"]["same_diff"] is False
    assert found["code"]["files"] == {"only_a": [], "only_b": ["README.md", "notes.txt"],
                                      "changed": []}  # fmt: skip
    assert found["params"] == {"changed": {"lr": ["0.1", "0.5"]}, "added": {}, "removed": {}}
    assert found["tags"]["mlflow.source.git.dirty"] == ["false", "true"]
    table = cli(project, "diff", a, b).stdout
    assert "only in B's diff: README.md, notes.txt" in table
    assert "0.1" in table and "0.5" in table


def test_an_unknown_run_is_the_users_mistake(project: Path) -> None:
    train(project, "1")
    [run] = all_runs(project)
    result = cli(project, "diff", run.info.run_id, "0123456789abcdef")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no run '0123456789abcdef'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    # A store that cannot be read is not the user's mistake: status 1.
    broken = cli(project, "diff", run.info.run_id, run.info.run_id,
                 env={"TRACKSDK_LOCAL__ROOT": "/proc/no-such-folder"})  # fmt: skip
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "error:" in broken.stderr and "Traceback" not in broken.stderr


def test_packages_and_a_cut_diff_compare_by_name() -> None:
    """The pure comparison: package versions by normalized name, a diff's files."""
    base = dict(name="r", status="FINISHED", experiment_id="1", metrics={}, tags={})
    a = _compare.RunRecord(
        run_id="a", params={}, **base,  # type: ignore[arg-type]
        requirements=_compare.parse_requirements("numpy==2.4.6\nScikit_Learn==1.9.1\n# x\n-e .\n"),
        diff="diff --git a/x.py b/x.py\n+1\ndiff --git a/y.py b/y.py\n+2\n",
    )  # fmt: skip
    b = _compare.RunRecord(
        run_id="b", params={}, **base,  # type: ignore[arg-type]
        requirements=_compare.parse_requirements("numpy==2.5.0\nscikit-learn==1.9.1\ntorch==2.13.0\n"),
        diff="diff --git a/x.py b/x.py\n+1\ndiff --git a/y.py b/y.py\n+3\n",
    )  # fmt: skip
    found = _compare.compare(a, b)
    assert found["packages"] == {
        "changed": {"numpy": ["2.4.6", "2.5.0"]},
        "added": {"torch": "2.13.0"},
        "removed": {},
    }
    assert found["code"]["files"] == {"only_a": [], "only_b": [], "changed": ["y.py"]}
    assert found["verdict"] == (
        "code unknown (no git information), no data recorded, same params, 2 package(s) differ"
    )
