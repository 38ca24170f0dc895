"""Data lineage from arguments (issue 12): a tracked function's DataFrames, arrays and data
file paths become the run's dataset inputs, read back from the local sqlite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from core_fixtures import all_runs

import tracksdk
from tracksdk import _lineage, tracked


def inputs_of(project: Path) -> dict[str, tuple[Any, list[str]]]:
    """Each input's dataset and its context tag values, by name."""
    [run] = all_runs(project)
    return {
        i.dataset.name: (i.dataset, [t.value for t in i.tags if t.key == "mlflow.data.context"])
        for i in run.inputs.dataset_inputs
    }


def test_frames_arrays_and_files_become_inputs_with_their_contexts(project: Path) -> None:
    import mlflow.data

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.random(12_000), "city": ["paris", "lyon"] * 6_000})
    array = rng.random((500, 4))
    (project / "test.csv").write_text("x,y\n1,2\n3,4\n")

    @tracked(experiment="lineage")
    def train(X_train: np.ndarray, valid_df: pd.DataFrame, test_path: str, lr: float = 0.1) -> None:
        pass

    train(array, frame, "test.csv")
    found = inputs_of(project)
    assert sorted(found) == ["X_train", "test_path", "valid_df"]
    array_input, array_context = found["X_train"]
    assert array_context == ["training"]
    assert array_input.digest == mlflow.data.from_numpy(array).digest  # MLflow's own digest
    assert json.loads(array_input.profile)["features_shape"] == [500, 4]
    frame_input, frame_context = found["valid_df"]
    assert frame_context == ["validation"]
    assert frame_input.digest == mlflow.data.from_pandas(frame).digest
    assert json.loads(frame_input.profile) == {"num_rows": 12_000, "num_elements": 24_000}
    assert {c["name"] for c in json.loads(frame_input.schema)["mlflow_colspec"]} == {"x", "city"}
    file_input, file_context = found["test_path"]
    assert file_context == ["test"]
    assert json.loads(file_input.source) == {"uri": (project / "test.csv").resolve().as_uri()}
    assert json.loads(file_input.profile)["size_bytes"] == 12
    assert json.loads(file_input.profile)["sampled"] is False
    [run] = all_runs(project)
    assert run.data.params["lr"] == "0.1"


LAYERS = np.array([64, 32])  # a short vector is a setting, not data


def test_what_is_not_data_is_not_an_input(project: Path) -> None:
    (project / "train.py").write_text("print('code, not data')\n")
    (project / "folder.csv").mkdir()

    @tracked(experiment="lineage")
    def train(
        layers: Any = LAYERS,
        optimizer: str = "adam",
        script: str = "train.py",
        missing: str = "gone.csv",
        folder: str = "folder.csv",
        series: Any = None,
    ) -> None:
        pass

    train(series=pd.Series(range(500)))
    assert inputs_of(project) == {}


def test_the_same_data_logged_again_by_hand_is_one_input(project: Path) -> None:
    frame = pd.DataFrame({"x": range(300)})

    @tracked(experiment="lineage")
    def train(train_df: pd.DataFrame) -> None:
        run = tracksdk.active_run()
        assert run is not None
        run.log_input(train_df, "training", name="my name")  # already recorded at the start
        run.log_input(frame.head(10), "validation", name="other data")

    train(frame)
    assert sorted(inputs_of(project)) == ["other data", "train_df"]


def test_switched_off_nothing_is_recorded(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKSDK_CAPTURE__DATASETS", "false")

    @tracked(experiment="lineage")
    def train(X_train: Any) -> None:
        pass

    train(np.zeros((10, 10)))
    assert inputs_of(project) == {}


def test_a_large_file_is_sampled_not_read_whole(project: Path) -> None:
    """Above 8 MiB only the first and last 4 MiB, and the size, make the digest: a change
    in the tail or the size shows, one in the middle does not (docs/collected-information.md).
    """
    path = project / "big.csv"
    size = 12 << 20
    path.write_bytes(b"a" * size)
    first = _lineage.describe_file(path, "big")
    assert json.loads(first["profile"])["sampled"] is True
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"b")  # the middle, which is not read
    assert _lineage.describe_file(path, "big")["digest"] == first["digest"]
    with path.open("r+b") as f:
        f.seek(size - 10)
        f.write(b"b")  # the tail
    assert _lineage.describe_file(path, "big")["digest"] != first["digest"]


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("X_train", "training"),
        ("train_df", "training"),
        ("training_data", "training"),
        ("val", "validation"),
        ("X_valid", "validation"),
        ("validation_set", "validation"),
        ("test", "test"),
        ("X_test", "test"),
        ("data", None),
        ("X", None),
        ("trainer_state", None),
        ("contest", None),
    ],
)
def test_the_context_comes_from_the_arguments_name(name: str, context: str | None) -> None:
    assert _lineage.context_of(name) == context


@pytest.mark.server
def test_inputs_reach_the_team_server(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same records through the REST store, read back from the PostgreSQL server."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", mlflow_server.url)
    (project / "val.parquet").write_bytes(b"PAR1 not really parquet")
    experiment = f"lineage-{project.parent.name}"

    @tracked(experiment=experiment)
    def train(X_train: np.ndarray, val_path: Path) -> None:
        pass

    train(np.ones((50, 3)), project / "val.parquet")
    client = MlflowClient(tracking_uri=mlflow_server.url)
    found = client.get_experiment_by_name(experiment)
    [run] = client.search_runs([found.experiment_id])
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["X_train", "val_path"]
    assert [t.value for t in inputs["val_path"].tags] == ["validation"]
    assert json.loads(inputs["val_path"].dataset.profile)["size_bytes"] == 23


def test_the_memory_store_neither_records_nor_imports_mlflow(tmp_path: Path) -> None:
    """A unit test of training code (tracksdk.testing's memory store) pays no MLflow import
    for a DataFrame argument."""
    import subprocess
    import sys

    script = (
        "import sys, pandas as pd\n"
        "from tracksdk import tracked\n"
        "from tracksdk.testing import capture_runs\n"
        "@tracked\n"
        "def train(train_df, lr=0.1):\n"
        "    return {'m': 1.0}\n"
        "with capture_runs(store='memory') as runs:\n"
        "    train(pd.DataFrame({'x': range(10)}))\n"
        "print(runs[0].params['lr'], 'mlflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.1", "False"]
