"""Fixtures for the core tests: a fresh project folder with its own local store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracksdk

ISOLATED_PREFIXES = (
    "TRACKSDK_",
    "_TRACKSDK_",
    "MLFLOW_TRACKING",
    "MLFLOW_REGISTRY",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT",
)
ISOLATED_NAMES = (
    "DAGSHUB_USER_TOKEN",
    "DAGSHUB_CLIENT_TOKENS_CACHE",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "GITHUB_ACTIONS",  # a run's CI tags: only tests/test_ci_tags.py sets a CI
    "GITLAB_CI",
)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ISOLATED_PREFIXES) or name in ISOLATED_NAMES:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store, made once: MLflow's schema migration takes ~3.5 s here."""
    from mlflow.tracking._tracking_service.utils import _get_store

    folder = tmp_path_factory.mktemp("template-store")
    _get_store(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlruns"))
    return folder / "mlflow.db"


@pytest.fixture
def project(fresh_project: Path, empty_store: Path) -> Path:
    """Like fresh_project, with an empty store already in place (copied, for speed)."""
    shutil.copyfile(empty_store, fresh_project / "mlflow.db")
    return fresh_project


@pytest.fixture
def fresh_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A git repository with one commit, as the working directory, with a clean env."""
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "init")
    clean_env(monkeypatch)
    monkeypatch.setenv("DAGSHUB_CLIENT_TOKENS_CACHE", str(tmp_path / "no-dagshub-tokens"))
    monkeypatch.chdir(root)
    tracksdk.reset()
    yield root
    tracksdk.reset()


def start_job(project: Path, script: str) -> subprocess.Popen[str]:
    """Run ``script`` as ``job.py`` in ``project`` (clean env); return once it printed "ready"."""
    (project / "job.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    proc = subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def local_client(root: Path):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def all_runs(root: Path) -> list:  # type: ignore[type-arg]
    client = local_client(root)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, order_by=["attributes.start_time ASC"]))


def artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    out: list[str] = []
    for info in client.list_artifacts(run_id, path):
        out.extend(artifact_paths(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(out)


def artifact_text(client, run_id: str, path: str, tmp: Path) -> str:  # type: ignore[no-untyped-def]
    return Path(client.download_artifacts(run_id, path, str(tmp))).read_text()


TRACKSDK = [sys.executable, "-m", "tracksdk.cli"]


def run_cli(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``tracksdk ARGS`` in ``project`` with a clean TRACKSDK_/MLFLOW_ environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    base["COLUMNS"] = "200"
    return subprocess.run(
        [*TRACKSDK, *args],
        cwd=project,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
