"""The tracksdk command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tracksdk import tracked

TRACKSDK = [sys.executable, "-m", "tracksdk.cli"]


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    base["COLUMNS"] = "200"
    return subprocess.run(
        [*TRACKSDK, *args],
        cwd=project,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_local_ok(project: Path) -> None:
    """doctor names the local backend, its store, and exits 0."""
    result = cli(project, "doctor", env={"TRACKSDK_EXPERIMENT": "exp1"})
    assert result.returncode == 0, result.stderr
    assert "backend: local" in result.stdout
    assert str(project / "mlflow.db") in result.stdout
    assert "TRACKSDK_EXPERIMENT" in result.stdout and "environment" in result.stdout


def test_doctor_reports_bad_settings_and_exits_nonzero(project: Path) -> None:
    """doctor explains an unknown backend and exits 1."""
    result = cli(project, "doctor", env={"TRACKSDK_BACKEND": "nope"})
    assert result.returncode == 1
    assert "Unknown backend 'nope'" in result.stderr


def test_doctor_unreachable_server_exits_nonzero(project: Path) -> None:
    """doctor exits 1 when the configured server does not answer."""
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": "http://127.0.0.1:9"}
    result = cli(project, "doctor", env=env)
    assert result.returncode == 1
    assert "does not answer" in result.stdout


def test_runs_lists_recent_runs(project: Path) -> None:
    """runs prints the experiment's runs with status and metrics."""
    with tracked(experiment="listed", run_name="first-run") as run:
        run.log_metric("acc", 0.75)
    result = cli(project, "runs", "-e", "listed")
    assert result.returncode == 0, result.stderr
    assert "first-run" in result.stdout and "FINISHED" in result.stdout
    assert "acc=0.75" in result.stdout
    empty = cli(project, "runs", "-e", "nothing-here")
    assert "No runs in experiment 'nothing-here'" in empty.stdout


def test_ui_prints_url_for_remote_backend(project: Path) -> None:
    """ui on a remote backend prints where the UI is instead of starting one."""
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": "https://mlflow.example.com"}
    result = cli(project, "ui", env=env)
    assert result.returncode == 0
    assert "https://mlflow.example.com" in result.stdout


@pytest.mark.server
def test_doctor_against_dagshub_shaped_server(project: Path, dagshub_server: Any) -> None:
    """doctor shows the credential source masked, and exits 1 on a rejected token."""
    env = {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": dagshub_server.host,
        "TRACKSDK_DAGSHUB__OWNER": dagshub_server.owner,
        "TRACKSDK_DAGSHUB__REPO": dagshub_server.repo,
        "TRACKSDK_DAGSHUB__USERNAME": dagshub_server.username,
        "DAGSHUB_USER_TOKEN": dagshub_server.token,
    }
    ok = cli(project, "doctor", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (
        f"credentials: basic as {dagshub_server.username}, secret *** from DAGSHUB_USER_TOKEN"
        in ok.stdout
    )
    assert "answers, MLflow 3.17.2" in ok.stdout
    assert dagshub_server.token not in ok.stdout + ok.stderr
    bad = cli(project, "doctor", env={**env, "DAGSHUB_USER_TOKEN": "wrong-token-222222"})
    assert bad.returncode == 1
    assert "rejected the credentials (HTTP 401; DAGSHUB_USER_TOKEN)" in bad.stdout
    assert "wrong-token-222222" not in bad.stdout + bad.stderr


@pytest.mark.server
def test_ui_serves_the_local_store(project: Path) -> None:
    """ui starts the MLflow UI on the project's store; its API lists our experiment."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    with tracked(experiment="seen-in-ui"):
        pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    proc = subprocess.Popen(
        [*TRACKSDK, "ui", "--port", str(port)],
        cwd=project,
        env={**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
        deadline = time.monotonic() + 180
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                time.sleep(1)
        assert body is not None, proc.stdout.read() if proc.stdout else ""
        assert "seen-in-ui" in {e["name"] for e in body["experiments"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
