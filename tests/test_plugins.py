"""Framework plugins through the core: discovery, scoped autolog, model logging, registry.

The plugin used here is tests/resources/tracksdk-dummy, a distribution with a ``tracksdk``
entry point for a toy framework, installed for the test session only (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from core_fixtures import artifact_paths, local_client
from tracksdk_dummy.plugin import AUTOLOG_STATE, ToyModel

import tracksdk
from tracksdk import Gate, Register, Result, TrackSDKWarning, _plugins, tracked
from tracksdk.hookspecs import hookimpl


@pytest.fixture(autouse=True)
def fresh_plugins() -> Any:
    _plugins.reset()
    AUTOLOG_STATE.update(enabled=False, options=None)
    yield
    _plugins.reset()


FRAME = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "b": [0.5] * 7})


def test_installed_plugin_is_discovered() -> None:
    """The dummy distribution's entry point registers the toy framework."""
    pm = _plugins.manager()
    assert "toy" in _plugins.frameworks(pm)
    assert _plugins.framework_of(pm, ToyModel(2.0)) == "toy"
    assert _plugins.framework_of(pm, object()) is None


def test_autolog_is_scoped_to_the_run(project: Path) -> None:
    """autolog= turns the framework's autolog on inside the run only, with its options."""
    AUTOLOG_STATE.update(enabled="the user's own", options={"mine": True})
    with tracked(autolog={"toy": {"log_models": False}}):
        assert AUTOLOG_STATE == {"enabled": True, "options": {"log_models": False}}
    assert AUTOLOG_STATE == {"enabled": "the user's own", "options": {"mine": True}}


def test_autolog_from_settings_and_true(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACKSDK_AUTOLOG=true enables every installed plugin's framework."""
    monkeypatch.setenv("TRACKSDK_AUTOLOG", "true")
    with tracked():
        assert AUTOLOG_STATE["enabled"] is True
    assert AUTOLOG_STATE["enabled"] is False


def test_autolog_unknown_framework_warns(project: Path) -> None:
    """A framework no plugin provides is named in one warning; the run goes on."""
    with (
        pytest.warns(TrackSDKWarning, match=r"no plugin provides autolog for 'nosuchml'"),
        tracked(autolog=["nosuchml"]) as run,
    ):
        run.log_metric("m", 1.0)
    assert run.status == "FINISHED"


def test_plugins_setting_limits_loading(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACKSDK_PLUGINS limits which plugins load."""
    monkeypatch.setenv("TRACKSDK_PLUGINS", "something-else")
    with pytest.warns(TrackSDKWarning, match="available: none installed"), tracked(autolog=["toy"]):
        pass
    assert AUTOLOG_STATE["enabled"] is False


def test_returned_model_is_logged_with_signature_and_loads(project: Path) -> None:
    """A returned model is saved by its plugin with a signature from the call's input."""

    @tracked
    def train(X: pd.DataFrame, coef: float = 2.0) -> ToyModel:
        return ToyModel(coef)

    model = train(FRAME)
    import mlflow.pyfunc
    from core_fixtures import all_runs

    (run,) = all_runs(project)
    assert run.data.tags["tracksdk.model.framework"] == "toy"
    uri = run.data.tags["tracksdk.model.uri"]
    assert uri == f"runs:/{run.info.run_id}/model"
    client = local_client(project)
    paths = artifact_paths(client, run.info.run_id)
    assert "model/MLmodel" in paths and "model/input_example.json" in paths
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert loaded.metadata.signature is not None
    assert [c.name for c in loaded.metadata.signature.inputs.inputs] == ["a", "b"]
    np.testing.assert_allclose(loaded.predict(FRAME), model.predict(FRAME))


def test_model_with_metrics_tuple_and_result(project: Path) -> None:
    """(model, metrics) and Result(model, metrics, input_example) log both."""

    @tracked
    def pair() -> tuple[ToyModel, dict[str, float]]:
        return ToyModel(1.0), {"val_mae": 0.2}

    @tracked
    def result() -> Result:
        return Result(ToyModel(1.0), {"val_mae": 0.1}, input_example=FRAME.iloc[:2])

    pair()
    returned = result()
    assert isinstance(returned, Result)  # the value itself passes through untouched
    from core_fixtures import all_runs

    first, second = all_runs(project)
    assert first.data.metrics == {"val_mae": 0.2} and second.data.metrics == {"val_mae": 0.1}
    for run in (first, second):
        assert "model/MLmodel" in artifact_paths(local_client(project), run.info.run_id)


def test_register_by_name_sets_challenger_alias(project: Path) -> None:
    """register="name" creates a version and points the challenger alias at it."""

    @tracked(register="toy-model")
    def train() -> ToyModel:
        return ToyModel(3.0)

    train()
    train()
    client = local_client(project)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='toy-model'"))
    assert versions == [1, 2]
    assert str(client.get_model_version_by_alias("toy-model", "challenger").version) == "2"


def test_champion_gate_promotes_only_better_versions(project: Path) -> None:
    """The gate moves @champion only when the metric beats the champion's, and says why."""
    spec = Register("gated", gate=Gate("val_mae", mode="min", min_delta=0.01))

    @tracked(register=spec)
    def train(mae: float) -> tuple[ToyModel, dict[str, float]]:
        return ToyModel(1.0), {"val_mae": mae}

    train(0.30)  # v1: no champion yet -> promoted
    train(0.35)  # v2: worse -> rejected
    train(0.295)  # v3: better, but by less than min_delta -> rejected
    train(0.20)  # v4: better -> promoted
    client = local_client(project)
    assert str(client.get_model_version_by_alias("gated", "champion").version) == "4"
    verdicts = {
        str(v.version): v.tags["tracksdk.gate.verdict"]
        for v in client.search_model_versions("name='gated'")
    }
    assert verdicts == {"1": "promoted", "2": "rejected", "3": "rejected", "4": "promoted"}
    v2 = client.get_model_version("gated", "2")
    assert v2.tags["tracksdk.gate.value"] == "0.35"
    assert v2.tags["tracksdk.gate.champion_value"] == "0.3"
    assert v2.tags["tracksdk.gate.champion_version"] == "1"
    # A promotion writes the alias audit tags (as `tracksdk models --set-alias` does).
    v4 = client.get_model_version("gated", "4").tags
    assert v4["tracksdk.alias.champion.via"] == "gate"
    assert v4["tracksdk.alias.champion.previous_version"] == "1"
    assert v4["tracksdk.alias.champion.reason"] == "0.2 beats champion v1's 0.3"
    assert v4["tracksdk.alias.champion.set_by"] and v4["tracksdk.alias.champion.set_at"]
    assert not any(k.startswith("tracksdk.alias.") for k in v2.tags)


def test_gate_without_the_metric_does_not_promote(project: Path) -> None:
    """A run that never logged the gate metric is registered but not promoted."""

    @tracked(register=Register("nometric", gate=Gate("val_auc")))
    def train() -> ToyModel:
        return ToyModel(1.0)

    with pytest.warns(TrackSDKWarning, match="logged no such metric"):
        train()
    client = local_client(project)
    version = client.get_model_version("nometric", "1")
    assert version.tags["tracksdk.gate.verdict"] == "rejected"
    assert "champion" not in client.get_registered_model("nometric").aliases


RACER = textwrap.dedent(
    """
    import os, sys, time
    from tracksdk import Gate, Register, tracked
    from tracksdk_dummy.plugin import ToyModel

    go = sys.argv[1]

    @tracked(register=Register("raced", gate=Gate("val_auc")))
    def train():
        print("ready", flush=True)  # imported, run started: wait for the other one
        deadline = time.monotonic() + 120
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.001)
        return ToyModel(1.0), {"val_auc": 0.9}

    train()
    """
)


def test_gate_race_two_processes_exactly_one_wins(project: Path) -> None:
    """Two trainings with the same score finish together: exactly one is promoted."""
    (project / "racer.py").write_text(RACER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    go = project / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "racer.py", str(go)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # Both have imported everything and started their runs: release them together
        # (each polls for the file every millisecond).
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    finally:
        go.touch()
        errors = [proc.communicate(timeout=180)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    client = local_client(project)
    verdicts = sorted(
        v.tags.get("tracksdk.gate.verdict", "none")
        for v in client.search_model_versions("name='raced'")
    )
    assert verdicts == ["promoted", "rejected"], errors


def test_evaluate_logs_prefixed_metrics(project: Path) -> None:
    """tracksdk.evaluate goes through the owning plugin and logs prefixed metrics."""
    y = FRAME.sum(axis=1) * 2.0 + 1.0
    with tracked() as run:
        metrics = tracksdk.evaluate(ToyModel(2.0), FRAME, y, prefix="val_")
    assert metrics == {"val_mae": 1.0}
    assert local_client(project).get_run(str(run.run_id)).data.metrics == {"val_mae": 1.0}
    assert tracksdk.evaluate(ToyModel(2.0), FRAME, y) == {"mae": 1.0}  # works untracked too
    with pytest.raises(tracksdk.TrackSDKError, match="No installed plugin can evaluate"):
        tracksdk.evaluate(object(), FRAME, y)


def test_log_checkpoint(project: Path) -> None:
    """log_checkpoint saves intermediate model states under checkpoints/."""
    with tracked() as run:
        for step in (1, 2):
            assert (
                tracksdk.log_checkpoint(ToyModel(float(step)), step)
                == f"checkpoints/step-{step:06d}"
            )
    paths = artifact_paths(local_client(project), str(run.run_id))
    assert "checkpoints/step-000001/MLmodel" in paths
    assert "checkpoints/step-000002/MLmodel" in paths


def test_ownership_warning_when_autolog_misses_the_models_framework(project: Path) -> None:
    """A returned model whose framework is not in autolog= gets a warning naming its plugin."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")

        @tracked(autolog=["not-toy"])
        def train() -> ToyModel:
            return ToyModel(1.0)

        train()
    messages = [str(w.message) for w in record]
    assert any("belongs to the 'toy' plugin" in m for m in messages), messages


def test_broken_plugin_is_a_warning_not_a_crash(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin that fails to import, or whose hook raises, is named in a warning."""
    dist = tmp_path / "site" / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tracksdk]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.warns(
        TrackSDKWarning, match=r"plugin 'broken' \(no_such_module_xyz\) failed to load"
    ):
        pm = _plugins.manager()
    assert "toy" in _plugins.frameworks(pm)  # the others still work

    class Raising:
        @hookimpl
        def tracksdk_model_framework(self, model: Any) -> str | None:
            raise RuntimeError("plugin bug")

    pm.register(Raising(), name="raising")
    with pytest.warns(TrackSDKWarning, match="plugin 'raising' failed in tracksdk_model_framework"):
        assert _plugins.framework_of(pm, ToyModel(1.0)) == "toy"


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    env["COLUMNS"] = "200"
    return env


def test_models_command_lists_versions_aliases_and_gate(project: Path) -> None:
    """tracksdk models NAME shows versions, aliases and gate verdicts."""

    @tracked(register=Register("listed-model", gate=Gate("val_mae", mode="min")))
    def train(mae: float) -> tuple[ToyModel, dict[str, float]]:
        return ToyModel(1.0), {"val_mae": mae}

    train(0.5)
    train(0.7)
    result = subprocess.run(
        [sys.executable, "-m", "tracksdk.cli", "models", "listed-model"],
        cwd=project, env=_cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "champion" in lines["1"] and "promoted: val_mae=0.5" in lines["1"]
    assert "challenger" in lines["2"] and "rejected: val_mae=0.7" in lines["2"]


@pytest.mark.server
def test_serve_champion_predicts_like_the_model(project: Path) -> None:
    """tracksdk serve name@champion answers /invocations with the model's predictions."""
    import json
    import signal
    import socket
    import urllib.request

    @tracked(register=Register("served", gate=Gate("val_mae", mode="min")))
    def train(X: pd.DataFrame) -> tuple[ToyModel, dict[str, float]]:
        return ToyModel(3.0), {"val_mae": 0.1}

    model, _ = train(FRAME)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracksdk.cli", "serve", "served@champion", "--port", str(port)],
        cwd=project, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    payload = json.dumps({"dataframe_split": FRAME.to_dict(orient="split")}).encode()
    try:
        deadline = time.monotonic() + 180
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=payload,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError:  # not listening yet
                time.sleep(0.25)
        assert answer is not None, proc.stdout.read().decode() if proc.stdout else ""
        np.testing.assert_allclose(answer["predictions"], model.predict(FRAME))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)  # and close its pipe


@pytest.mark.server
def test_server_without_registry_and_logged_models(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a server answering 404 to the registry and logged-model routes: one warning each,
    the model stays logged in the run, and autolog drops log_models."""
    from tracksdk.stores._probe import forget_probes

    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__HOST", dagshub_server.host)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__OWNER", dagshub_server.owner)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__REPO", dagshub_server.repo)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", dagshub_server.token)
    forget_probes()
    dagshub_server.fail_routes = {
        "/api/2.0/mlflow/registered-models/*": 404,
        "/api/2.0/mlflow/model-versions/*": 404,
        "/api/2.0/mlflow/logged-models*": 404,
    }

    @tracked(register="no-registry-model", autolog={"toy": {"log_models": True}})
    def train() -> ToyModel:
        assert AUTOLOG_STATE["options"] == {"log_models": False}
        return ToyModel(1.0)

    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            train()
    finally:
        dagshub_server.clear_failures()
        forget_probes()
    messages = [str(w.message) for w in record]
    assert any("no logged-model endpoints" in m for m in messages), messages
    assert any("has no model registry" in m for m in messages), messages
    assert dagshub_server.count("/api/2.0/mlflow/model-versions/create") == 0
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.admin_password)
    client = MlflowClient(tracking_uri=dagshub_server.tracking_uri)
    experiment = client.get_experiment_by_name(project.name)
    (run,) = client.search_runs([experiment.experiment_id], max_results=1)
    assert run.data.tags["tracksdk.model.registered"] == "no registry on this server"
    assert "model/MLmodel" in artifact_paths(client, run.info.run_id)


def test_returning_evaluated_metrics_logs_each_point_once(project: Path) -> None:
    """Metrics that evaluate() already logged are not logged again when returned."""
    y_true = FRAME.sum(axis=1) * 2.0 + 1.0

    @tracked(autolog="toy")  # a single name, not a list of letters
    def train() -> tuple[ToyModel, dict[str, float]]:
        assert AUTOLOG_STATE["enabled"] is True
        model = ToyModel(2.0)
        return model, tracksdk.evaluate(model, FRAME, y_true, prefix="val_")

    train()
    from core_fixtures import all_runs

    (run,) = all_runs(project)
    assert len(local_client(project).get_metric_history(run.info.run_id, "val_mae")) == 1


# --- a returned mlflow.pyfunc.PythonModel (the built-in pyfunc plugin) ---


def _add_n_class() -> type:
    import mlflow.pyfunc

    class AddN(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        """MLflow's documentation example: adds n to every input value."""

        def __init__(self, n: float) -> None:
            self.n = n

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input.apply(lambda column: column + self.n)

    return AddN


def test_returned_python_model_is_logged_with_the_pyfunc_flavor_and_registered(
    project: Path,
) -> None:
    """A returned PythonModel subclass is saved as model/ (python_function flavour, pinned
    requirements), loads from runs:/<id>/model with the model's answers, and registers."""
    import mlflow.pyfunc
    import yaml

    AddN = _add_n_class()

    @tracked(register="add-n")
    def build(X: pd.DataFrame, n: float) -> Any:
        return AddN(n)

    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackSDKWarning)  # no "no installed plugin" warning
        build(FRAME, 5.0)
    client = local_client(project)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run_id = run.info.run_id
    assert run.data.tags["tracksdk.model.framework"] == "pyfunc"
    assert run.data.tags["tracksdk.model.registered"] == "add-n/1"
    files = artifact_paths(client, run_id, "model")
    assert "model/MLmodel" in files and "model/python_model.pkl" in files
    mlmodel = yaml.safe_load(Path(client.download_artifacts(run_id, "model/MLmodel")).read_text())
    assert "python_function" in mlmodel["flavors"]
    requirements = Path(client.download_artifacts(run_id, "model/requirements.txt")).read_text()
    assert "mlflow==" in requirements and "cloudpickle==" in requirements
    loaded = mlflow.pyfunc.load_model(_download(project, f"runs:/{run_id}/model"))
    pd.testing.assert_frame_equal(loaded.predict(FRAME), FRAME + 5.0)
    assert str(client.get_model_version_by_alias("add-n", "challenger").version) == "1"
    by_alias = mlflow.pyfunc.load_model(_download(project, "models:/add-n@challenger"))
    pd.testing.assert_frame_equal(by_alias.predict(FRAME.head(2)), FRAME.head(2) + 5.0)


def _download(project: Path, uri: str) -> str:
    """A model URI of the project's store, downloaded (MLflow's global URI left alone)."""
    from mlflow.artifacts import download_artifacts

    return str(
        download_artifacts(
            artifact_uri=uri,
            dst_path=str(project.parent / uri.replace(":", "").replace("/", "_")),
            tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
        )
    )


def test_an_installed_plugin_is_asked_before_the_builtin_pyfunc_plugin() -> None:
    """A plugin that claims a PythonModel subclass wins over the built-in pyfunc plugin."""

    class Claims:
        @hookimpl
        def tracksdk_model_framework(self, model: Any) -> str | None:
            return "toy" if type(model).__name__ == "AddN" else None

    AddN = _add_n_class()
    pm = _plugins.manager()
    assert _plugins.framework_of(pm, AddN(1.0)) == "pyfunc"
    assert "pyfunc" not in _plugins.frameworks(pm)  # nothing to autolog
    pm.register(Claims(), name="claims")
    assert _plugins.framework_of(pm, AddN(1.0)) == "toy"
