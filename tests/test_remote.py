"""The same user code on every backend: local, a PostgreSQL-backed server, DagsHub-shaped.

Each test runs real code against real stores: the user script runs in a subprocess with
only environment variables changed, and what it logged is read back through MlflowClient.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import artifact_paths

import tracksdk
from tracksdk import TrackSDKWarning, tracked

pytestmark = pytest.mark.server

JOB = textwrap.dedent(
    """
    import json, os, sys
    import tracksdk
    from tracksdk import tracked

    SECRET = os.environ.get("JOB_WATCH_SECRET", "")

    @tracked(experiment="e2e", tags={"suite": "remote"})
    def train(learning_rate: float = 0.1, epochs: int = 3):
        for step in range(epochs):
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
        tracksdk.log_text("hello", "notes/hello.txt")
        global secret_in_environ
        secret_in_environ = bool(SECRET) and any(
            SECRET in v for k, v in os.environ.items() if k != "JOB_WATCH_SECRET"
        )
        return {"val_auc": 0.9}

    with tracked(experiment="e2e", run_name="parent") as parent:
        train(learning_rate=0.2)
    print(json.dumps({
        "run_id": parent.run_id,
        "url": parent.url,
        "tracking_uri": parent.tracking_uri,
        "secret_in_environ": secret_in_environ,
    }))
    """
)


def base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_"))
    }


def run_job(project: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], str]:
    (project / "job.py").write_text(JOB)
    result = subprocess.run(
        [sys.executable, "job.py", *args],
        cwd=project,
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout + result.stderr


def client_for(uri: str, username: str | None = None, password: str | None = None) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if username:
        # Reading back as an admin goes through MLflow's own env-based basic auth.
        os.environ["MLFLOW_TRACKING_USERNAME"] = username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password or ""
    return client


@pytest.fixture
def reader_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore MLFLOW_TRACKING_USERNAME/PASSWORD after a test reads as admin."""
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    yield


def check_job_results(client: Any, out: dict[str, Any]) -> None:
    parent = client.get_run(out["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "parent"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'"
    )
    assert len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED"
    assert child.data.params == {"learning_rate": "0.2", "epochs": "3"}
    assert child.data.metrics == {"loss": 1 / 3, "val_auc": 0.9}
    history = client.get_metric_history(child.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert child.data.tags["suite"] == "remote"
    assert child.data.tags["mlflow.source.git.branch"] == "main"
    assert child.data.tags["mlflow.source.name"] == "job.py"
    paths = artifact_paths(client, child.info.run_id)
    for expected in ("notes/hello.txt", "environment/requirements.txt", "source/job.py"):
        assert expected in paths
    assert client.get_experiment(parent.info.experiment_id).name == "e2e"


def test_same_script_on_local_store(project: Path) -> None:
    """No settings: the script logs to the local sqlite store in the project root."""
    out, _ = run_job(project, {})
    assert out["tracking_uri"] == f"sqlite:///{project / 'mlflow.db'}"
    check_job_results(client_for(out["tracking_uri"]), out)


def test_same_script_on_postgres_server(project: Path, mlflow_server: Any) -> None:
    """TRACKSDK_BACKEND=server: params, metrics, tags and artifacts reach the server."""
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url}
    out, _ = run_job(project, env)
    assert out["tracking_uri"] == mlflow_server.url
    assert out["url"].startswith(f"{mlflow_server.url}/#/experiments/")
    check_job_results(client_for(mlflow_server.url), out)


def test_same_script_via_mlflow_tracking_uri(project: Path, mlflow_server: Any) -> None:
    """With only MLFLOW_TRACKING_URI set, existing setups keep working."""
    out, _ = run_job(project, {"MLFLOW_TRACKING_URI": mlflow_server.url})
    assert out["tracking_uri"] == mlflow_server.url
    check_job_results(client_for(mlflow_server.url), out)


def dagshub_env(dagshub_server: Any) -> dict[str, str]:
    return {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": dagshub_server.host,
        "TRACKSDK_DAGSHUB__OWNER": dagshub_server.owner,
        "TRACKSDK_DAGSHUB__REPO": dagshub_server.repo,
    }


def test_same_script_on_dagshub_shaped_server(
    project: Path, dagshub_server: Any, reader_env: None
) -> None:
    """dagshub backend: basic auth under /<owner>/<repo>.mlflow; user name from the API."""
    dagshub_server.reset_counts()
    env = {**dagshub_env(dagshub_server), "DAGSHUB_USER_TOKEN": dagshub_server.token}
    out, _ = run_job(project, env)
    assert out["tracking_uri"] == dagshub_server.tracking_uri
    assert dagshub_server.count("/api/v1/user", "GET") == 1
    assert dagshub_server.count("/api/v1/user/repos*") == 0  # never creates a repository
    statuses = {status for _, _, status in dagshub_server.requests}
    assert 401 not in statuses and 403 not in statuses
    client = client_for(
        dagshub_server.tracking_uri, dagshub_server.admin_username, dagshub_server.admin_password
    )
    check_job_results(client, out)


def test_dagshub_token_never_enters_environ(
    project: Path, dagshub_server: Any, reader_env: None
) -> None:
    """A token from .env reaches MLflow through the auth provider, not os.environ."""
    (project / ".env").write_text(f"TRACKSDK_DAGSHUB__TOKEN={dagshub_server.token}\n")
    env = {**dagshub_env(dagshub_server), "JOB_WATCH_SECRET": dagshub_server.token}
    out, _ = run_job(project, env)
    assert out["secret_in_environ"] is False
    client = client_for(
        dagshub_server.tracking_uri, dagshub_server.admin_username, dagshub_server.admin_password
    )
    check_job_results(client, out)


def test_dagshub_wrong_token_is_a_clear_config_error(project: Path, dagshub_server: Any) -> None:
    """A rejected token stops before the function, naming which credential to fix."""
    env = {**dagshub_env(dagshub_server), "DAGSHUB_USER_TOKEN": "wrong-token-000000"}
    (project / "job.py").write_text(JOB)
    result = subprocess.run(
        [sys.executable, "job.py"],
        cwd=project,
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "ConfigError: DagsHub rejected the token (HTTP 401" in result.stderr
    assert "wrong-token-000000" not in result.stderr


def test_dagshub_wrong_token_is_one_clear_error_and_no_retry_storm(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the user name given, a wrong token fails at run creation with one error.

    The error names the credential to fix, never shows the token, and the sender stops:
    the store sees one refused request, not a retry per record. The run is kept in the
    journal for `tracksdk sync`.
    """
    for key, value in dagshub_env(dagshub_server).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__USERNAME", dagshub_server.username)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", "wrong-token-111111")
    dagshub_server.reset_counts()

    @tracked
    def train() -> dict[str, float]:
        for step in range(50):
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
        return {"acc": 0.5}

    with pytest.warns(TrackSDKWarning) as record:
        assert train() == {"acc": 0.5}
    messages = [str(w.message) for w in record if issubclass(w.category, TrackSDKWarning)]
    assert len(messages) == 1, messages
    assert "HTTP 401" in messages[0] and "TRACKSDK_DAGSHUB__TOKEN" in messages[0]
    assert "tracksdk sync" in messages[0]
    assert all("wrong-token-111111" not in m for m in messages)
    refused = [r for r in dagshub_server.requests if r[1].startswith(dagshub_server.prefix)]
    assert len(refused) <= 2, refused
    journals = list((project / ".tracksdk" / "journal").iterdir())
    assert len(journals) == 1
    assert b'"loss"' in (journals[0] / "seg-000001.log").read_bytes()


def test_server_failures_mid_run_are_retried_and_nothing_is_lost(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader_env: None
) -> None:
    """503s on log-batch mid-run: the calls return at once, and every point arrives once."""
    for key, value in dagshub_env(dagshub_server).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", dagshub_server.token)

    experiment = f"mid-run-503-{uuid.uuid4().hex[:8]}"

    @tracked(experiment=experiment)
    def train() -> dict[str, float]:
        dagshub_server.fail_routes = {"/api/2.0/mlflow/runs/log-batch": (503, 3)}
        for step in range(20):
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
            time.sleep(0.05)
        return {"acc": 0.5}

    try:
        with pytest.warns(tracksdk.TrackSDKWarning, match="cannot reach the store"):
            assert train() == {"acc": 0.5}
    finally:
        dagshub_server.clear_failures()
    assert dagshub_server.count("/api/2.0/mlflow/runs/log-batch") >= 4  # 3 refused + sent
    client = client_for(
        dagshub_server.tracking_uri, dagshub_server.admin_username, dagshub_server.admin_password
    )
    [run] = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], max_results=5
    )
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(20))
    assert run.data.metrics["acc"] == 0.5


# -- the same verdict on every backend ----------------------------------------------------


@pytest.fixture(params=["local", "server"])
def backend(request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Configure a backend in-process; return a client to read runs back."""
    if request.param == "local":
        return client_for(f"sqlite:///{project / 'mlflow.db'}")
    server = request.getfixturevalue("mlflow_server")
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", server.url)
    return client_for(server.url)


def test_bad_input_gives_the_same_result_on_every_backend(backend: Any) -> None:
    """Invalid metrics, steps, keys, long params and conflicts end up identical everywhere."""
    with pytest.warns(TrackSDKWarning), tracked(experiment="verdicts") as run:
        run.log_metric("as_text", "1.0")  # type: ignore[arg-type]
        run.log_metric("flag", True)
        run.log_metric("inf", math.inf)
        run.log_metric("fractional_step", 1.0, step=1.5)  # type: ignore[arg-type]
        run.log_metric("bad key?", 2.0)
        run.log_param("long", "v" * 7000)
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.2)
    stored = backend.get_run(run.run_id).data
    metrics = dict(stored.metrics)
    assert math.isnan(metrics.pop("inf"))
    assert metrics == {"bad key_": 2.0}
    assert stored.params["lr"] == "0.1"
    assert stored.tags["tracksdk.param_conflict.lr"] == "0.2"
    assert stored.params["long"].endswith(
        "[7000 characters; full value in artifact params/long.txt]"
    )
    assert "params/long.txt" in artifact_paths(backend, run.run_id)
