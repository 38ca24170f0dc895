"""tracksdk-lightgbm needs tracksdk only: its wheel does not ask for tracksdk-sklearn, and a
real training is tracked in a process where ``tracksdk_sklearn`` cannot be imported."""

from __future__ import annotations

import ast
import email.parser
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightgbm")
mlflow = pytest.importorskip("mlflow")

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

PLUGIN = Path(__file__).resolve().parent.parent

# The child process: a meta-path finder first in line refuses tracksdk_sklearn (as if it
# were not installed) and records each attempt; then a tracked LightGBM training with
# autolog, evaluation and the returned model saved, as a user would write it.
CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys, warnings

    class Refuse(importlib.abc.MetaPathFinder):
        attempts = []

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "tracksdk_sklearn":
                self.attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())

    import lightgbm
    from sklearn.datasets import load_breast_cancer

    import tracksdk
    from tracksdk.exceptions import TrackSDKWarning

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    tracksdk.configure(capture={name: False for name in (
        "git", "diff", "untracked", "source", "command", "environment", "requirements"
    )})

    @tracksdk.tracked(experiment="lightgbm-alone", autolog=["lightgbm"])
    def train(n_estimators=5):
        model = lightgbm.LGBMClassifier(n_estimators=n_estimators, verbose=-1)
        model.fit(X[:400], y[:400], eval_X=(X[400:],), eval_y=(y[400:],))
        tracksdk.evaluate(model, X[400:], y[400:], prefix="val_")
        return model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train()  # the run's end waits until its records are in the store
    print(json.dumps({
        "attempts": Refuse.attempts,
        "loaded": sorted(m for m in sys.modules if m.startswith("tracksdk_")),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, TrackSDKWarning)],
    }))
    """
)


def test_the_wheel_asks_for_tracksdk_and_not_for_tracksdk_sklearn(tmp_path: Path) -> None:
    """The built wheel's Requires-Dist has tracksdk, no tracksdk-sklearn; no code imports it."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("tracksdk_lightgbm-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(meta).decode())
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    required = {canonicalize_name(Requirement(r).name) for r in metadata.get_all("Requires-Dist")}
    assert "tracksdk" in required
    assert "tracksdk-sklearn" not in required
    assert {"lightgbm", "scikit-learn", "matplotlib"} <= required  # what its code imports
    assert sources  # the package's modules are in the wheel
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            assert not [m for m in imported if m.startswith("tracksdk_sklearn")], name


def test_a_training_is_tracked_where_tracksdk_sklearn_cannot_be_imported(tmp_path: Path) -> None:
    """Autolog, evaluation and model saving of a real LightGBM training, without tracksdk-sklearn.

    The child process loads only the lightgbm plugin (``TRACKSDK_PLUGINS``), as in an
    environment where tracksdk-sklearn is not installed; any import of ``tracksdk_sklearn``,
    by the plugin or by tracksdk, fails there and is reported.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    env.update(TRACKSDK_PLUGINS="lightgbm", TRACKSDK_LOCAL__ROOT=str(tmp_path))
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    # The plugin and its engine ran; nothing of tracksdk-sklearn is in the process.
    assert {"tracksdk_lightgbm", "tracksdk_lightgbm.engine"} <= set(report["loaded"])
    assert not [m for m in report["loaded"] if m.startswith("tracksdk_sklearn")]
    assert report["warnings"] == []

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lightgbm-alone")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    # The function's argument, then what the lightgbm engine read from the model and
    # what LightGBM resolved for the training.
    assert params["n_estimators"] == "5"
    assert params["num_boost_round"] == "5"
    assert params["objective"] == "binary"
    assert tags["estimator_class"] == "lightgbm.sklearn.LGBMClassifier"
    history = client.get_metric_history(run.info.run_id, "valid_0-binary_logloss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert history[-1].value < history[0].value  # training lowered the validation loss
    assert metrics["fit_time_s"] > 0
    assert metrics["val_accuracy"] > 0.9
    assert tags["tracksdk.model.framework"] == "lightgbm"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/MLmodel" in artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/val_feature_importance.png" in evaluation
