"""The tracksdk command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
