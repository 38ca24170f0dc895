"""tracksdk-xgboost needs tracksdk only: its wheel asks for no other plugin, and a real
training is tracked in a process where the other plugins cannot be imported."""

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

pytest.importorskip("xgboost")
mlflow = pytest.importorskip("mlflow")

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

PLUGIN = Path(__file__).resolve().parent.parent
OTHER_PLUGINS = ("tracksdk_sklearn", "tracksdk_lightgbm")

# The child process: a meta-path finder first in line refuses the other plugins (as if
# they were not installed) and records each attempt; then a tracked XGBoost training with
# autolog, evaluation and the returned model saved, as a user would write it.
CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys, warnings

    class Refuse(importlib.abc.MetaPathFinder):
        attempts = []

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in OTHER_PLUGINS:
                self.attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())

    import xgboost
    from sklearn.datasets import load_breast_cancer

    import tracksdk
    from tracksdk.exceptions import TrackSDKWarning

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    tracksdk.configure(capture={name: False for name in (
        "git", "diff", "untracked", "source", "command", "environment", "requirements"
    )})

    @tracksdk.tracked(experiment="xgboost-alone", autolog=["xgboost"])
    def train(n_estimators=5):
        model = xgboost.XGBClassifier(n_estimators=n_estimators, max_depth=2, n_jobs=1)
        model.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], verbose=False)
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
).replace("OTHER_PLUGINS", repr(OTHER_PLUGINS), 1)


def test_the_wheel_asks_for_tracksdk_and_no_other_plugin(tmp_path: Path) -> None:
    """The built wheel's Requires-Dist has tracksdk, no other plugin; no code imports one."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("tracksdk_xgboost-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(meta).decode())
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    required = {canonicalize_name(Requirement(r).name) for r in metadata.get_all("Requires-Dist")}
    assert "tracksdk" in required
    assert not {"tracksdk-sklearn", "tracksdk-lightgbm"} & required
    assert {"xgboost", "scikit-learn", "matplotlib", "mlflow"} <= required  # what it imports
    assert b"xgboost = tracksdk_xgboost" in entry_points
    assert {"tracksdk_xgboost/__init__.py", "tracksdk_xgboost/engine.py"} <= set(sources)
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            assert not [m for m in imported if m.startswith(OTHER_PLUGINS)], name


def test_a_training_is_tracked_where_no_other_plugin_can_be_imported(tmp_path: Path) -> None:
    """Autolog, evaluation and model saving of a real XGBoost training, without the others.

    The child process loads only the xgboost plugin (``TRACKSDK_PLUGINS``), as in an
    environment where no other plugin is installed; any import of another plugin, by this
    one or by tracksdk, fails there and is reported.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    env.update(TRACKSDK_PLUGINS="xgboost", TRACKSDK_LOCAL__ROOT=str(tmp_path))
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
    # The plugin and its engine ran; nothing of the other plugins is in the process.
    assert {"tracksdk_xgboost", "tracksdk_xgboost.engine"} <= set(report["loaded"])
    assert not [m for m in report["loaded"] if m.startswith(OTHER_PLUGINS)]
    assert report["warnings"] == []

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("xgboost-alone")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    # The function's argument, then what the xgboost engine read from the model.
    assert params["n_estimators"] == "5"
    assert params["num_boost_round"] == "5"
    assert params["objective"] == "binary:logistic"
    assert tags["estimator_class"] == "xgboost.sklearn.XGBClassifier"
    history = client.get_metric_history(run.info.run_id, "validation_0-logloss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert history[-1].value < history[0].value  # training lowered the validation loss
    assert metrics["fit_time_s"] > 0
    assert metrics["val_accuracy"] > 0.9
    assert tags["tracksdk.model.framework"] == "xgboost"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/model.ubj", "model/requirements.txt"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/val_feature_importance.png" in evaluation
