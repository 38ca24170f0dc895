"""Canary secrets planted everywhere a user keeps them never come out anywhere.

Planted: the DagsHub token in settings (.env), a secret-looking environment variable, a
password in the server URI's user info, and secret options on the command line. The user
code passes a secret to the tracked function, logs it as a param, a tag, text, a dict,
and raises an exception carrying it. Searched: every param, tag and metric key of every
run, every artifact's bytes, everything the process printed, and the reprs and error
messages tracksdk produces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.server

ENV_CANARY = "canary-env-7f3a91c2"
URI_CANARY = "canary-uri-5be6d0a4"
ARGV_CANARY_1 = "canary-argv-c41e7d55"
ARGV_CANARY_2 = "canary-argv-9d02b6f1"

JOB = textwrap.dedent(
    """
    import os, sys
    import tracksdk
    from tracksdk import tracked

    note = os.environ["MY_SERVICE_API_KEY"]

    @tracked(experiment="secrets")
    def train(api_token: str, comment: str, learning_rate: float = 0.1):
        tracksdk.log_param("copied", comment)
        tracksdk.set_tag("header", "Bearer " + comment)
        tracksdk.log_text(f"config: {comment}", "config.txt")
        tracksdk.log_dict({"nested": [comment, {"k": comment}]}, "config.json")
        tracksdk.log_metric("m", 1.0)
        print(repr(tracksdk.active_run()))
        raise RuntimeError(f"failed with {comment}")

    try:
        train(note, note)
    except RuntimeError:
        pass

    from tracksdk._config import resolve_with_connection
    explained, conn = resolve_with_connection()
    print(repr(explained.settings))
    print(repr(conn))
    print(repr(conn.credentials))
    try:
        tracksdk.configure(backend="server", server={"uri": "http://u:" + note + "@remote.example"})
        resolve_with_connection()
    except tracksdk.ConfigError as exc:
        print("config error:", exc)
    """
)


def run_job(project: Path, env: dict[str, str]) -> str:
    (project / "job.py").write_text(JOB)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_"))
    }
    result = subprocess.run(
        [sys.executable, "job.py", "--password", ARGV_CANARY_1, f"--api-key={ARGV_CANARY_2}"],
        cwd=project,
        env={**base, "MY_SERVICE_API_KEY": ENV_CANARY, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def stored_text(client: Any) -> str:
    """Every param, tag and metric key, and every artifact's content, of every run."""
    chunks: list[str] = []
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs, "no runs were stored"
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            chunks += [f"{k}={v}" for k, v in run.data.params.items()]
            chunks += [f"{k}={v}" for k, v in run.data.tags.items()]
            chunks += list(run.data.metrics)
            local = client.download_artifacts(run.info.run_id, "", tmp)
            for path in Path(local).rglob("*"):
                if path.is_file():
                    chunks.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(chunks)


def assert_absent(text: str, *canaries: str) -> None:
    for canary in canaries:
        assert canary not in text, f"{canary} leaked"


def test_canaries_on_dagshub_backend(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real DagsHub token and every canary stay out of the store and the output."""
    (project / ".env").write_text(f"TRACKSDK_DAGSHUB__TOKEN={dagshub_server.token}\n")
    env = {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": dagshub_server.host,
        "TRACKSDK_DAGSHUB__OWNER": dagshub_server.owner,
        "TRACKSDK_DAGSHUB__REPO": dagshub_server.repo,
        "MLFLOW_TRACKING_URI": f"http://someone:{URI_CANARY}@127.0.0.1:1",
    }
    output = run_job(project, env)
    canaries = (dagshub_server.token, ENV_CANARY, URI_CANARY, ARGV_CANARY_1, ARGV_CANARY_2)
    assert "config error:" in output and "failed with" not in output
    assert_absent(output, *canaries)
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.admin_password)
    stored = stored_text(MlflowClient(tracking_uri=dagshub_server.tracking_uri))
    assert "tracksdk.error.message=failed with ***" in stored
    assert "config: ***" in stored and "--password '***'" in stored
    assert_absent(stored, *canaries)


def test_canaries_on_server_backend_with_uri_userinfo(project: Path, mlflow_server: Any) -> None:
    """A password in TRACKSDK_SERVER__URI is used for auth but never shown or stored."""
    uri = mlflow_server.url.replace("http://", f"http://bob:{URI_CANARY}@")
    output = run_job(project, {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": uri})
    assert_absent(output, ENV_CANARY, URI_CANARY, ARGV_CANARY_1, ARGV_CANARY_2)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("secrets")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1)
    text = "\n".join(f"{k}={v}" for k, v in runs[0].data.tags.items())
    assert "tracksdk.error.message=failed with ***" in text
    assert_absent(stored_text(client), ENV_CANARY, URI_CANARY, ARGV_CANARY_1, ARGV_CANARY_2)
