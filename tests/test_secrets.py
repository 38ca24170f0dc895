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
from core_fixtures import artifact_paths, run_cli

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


# -- MLflow's credential variables, permissions and the capability probe -----------------
#
# These use the basic-auth `mlflow server` behind the DagsHub stand-in directly (its own
# port, no proxy): a real MLflow 3 basic-auth app. Each test creates its own users, so
# nothing it does changes what other tests see.


def _admin_call(dagshub_server: Any, path: str, body: dict[str, Any]) -> Any:
    import requests

    admin = (dagshub_server.admin_username, dagshub_server.admin_password)
    response = requests.post(dagshub_server.server.url + path, json=body, auth=admin, timeout=30)
    assert response.status_code == 200, response.text
    return response.json() if response.text.strip() else {}


def new_user(dagshub_server: Any, prefix: str) -> tuple[str, str]:
    """A fresh non-admin user of the basic-auth server; returns (name, password)."""
    import uuid

    name, password = f"{prefix}-{uuid.uuid4().hex[:8]}", f"canary-pw-{uuid.uuid4().hex}"
    _admin_call(
        dagshub_server, "/api/2.0/mlflow/users/create", {"username": name, "password": password}
    )
    return name, password


ENV_JOB = textwrap.dedent(
    """
    import sys
    import tracksdk
    from tracksdk import tracked

    @tracked(experiment=sys.argv[1])
    def train(lr: float = 0.1, epochs: int = 2):
        for step in range(epochs):
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
        return {"acc": 0.9}

    train()
    print("trained")
    """
)


def run_env_job(project: Path, env: dict[str, str], experiment: str) -> str:
    (project / "envjob.py").write_text(ENV_JOB)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_"))
    }
    result = subprocess.run(
        [sys.executable, "envjob.py", experiment],
        cwd=project,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def admin_client(dagshub_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.admin_password)
    return MlflowClient(tracking_uri=dagshub_server.server.url)


def test_mlflow_tracking_credentials_reach_a_basic_auth_server(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_URI with MLFLOW_TRACKING_USERNAME/PASSWORD: a run arrives whole,
    doctor says the credentials work, sync sends an offline run, and the password is never
    printed."""
    user, password = new_user(dagshub_server, "envuser")
    env = {
        "MLFLOW_TRACKING_URI": dagshub_server.server.url,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    outputs = [run_env_job(project, env, f"env-{user}")]
    doctor = run_cli(project, "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert (
        f"credentials: basic as {user}, secret *** from MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD" in doctor.stdout
    )
    assert f"answers, MLflow 3.17.2; the credentials work (user {user!r})" in doctor.stdout
    outputs += [run_env_job(project, {**env, "TRACKSDK_MODE": "offline"}, f"env-{user}")]
    sync = run_cli(project, "sync", env=env)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "sent " in sync.stdout
    outputs += [doctor.stdout + doctor.stderr, sync.stdout + sync.stderr]
    # A wrong password is a 401 that names MLflow's variables, not a permission problem.
    wrong = run_cli(project, "doctor", env={**env, "MLFLOW_TRACKING_PASSWORD": "wrong-pw-0123"})
    assert wrong.returncode == 1
    assert "rejected the credentials (HTTP 401; MLFLOW_TRACKING_USERNAME and" in wrong.stdout
    token = run_cli(project, "doctor", env={**env, "MLFLOW_TRACKING_TOKEN": "tok-unused-0123"})
    assert (
        "from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in token.stdout
    )  # basic wins

    client = admin_client(dagshub_server, monkeypatch)
    experiment = client.get_experiment_by_name(f"env-{user}")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params == {"lr": "0.1", "epochs": "2"}
        assert run.data.metrics == {"loss": 0.5, "acc": 0.9}
        assert "source/envjob.py" in artifact_paths(client, run.info.run_id)
    assert_absent("\n".join(outputs), password)


def test_permission_denied_is_not_blamed_on_the_password(
    project: Path, dagshub_server: Any
) -> None:
    """A 403 on an experiment says the credentials were accepted but lack permission on that
    experiment; a wrong password still says to fix the password."""
    user, password = new_user(dagshub_server, "denied")
    locked = f"locked-{user}"
    created = _admin_call(dagshub_server, "/api/2.0/mlflow/experiments/create", {"name": locked})
    _admin_call(
        dagshub_server,
        "/api/3.0/mlflow/users/permissions/grant",
        {
            "username": user,
            "resource_type": "experiment",
            "resource_id": created["experiment_id"],
            "permission": "DENY",
        },
    )
    env = {
        "TRACKSDK_BACKEND": "server",
        "TRACKSDK_SERVER__URI": dagshub_server.server.url,
        "TRACKSDK_SERVER__USERNAME": user,
        "TRACKSDK_SERVER__PASSWORD": password,
        "TRACKSDK_FLUSH_TIMEOUT": "5",
    }
    output = run_env_job(project, env, locked)
    assert "trained" in output  # the training itself is unaffected
    assert (
        f"answered HTTP 403: the credentials were accepted ({user!r}, from "
        f"TRACKSDK_SERVER__PASSWORD), but they lack permission on experiment {locked!r}"
    ) in output
    assert "EDIT or MANAGE permission" in output
    assert "fix the password" not in output and "password was refused" not in output

    wrong = run_env_job(project, {**env, "TRACKSDK_SERVER__PASSWORD": "wrong-pw-4567"}, locked)
    assert (
        f"answered HTTP 401: the user name or password was refused: fix the password of {user!r}"
        in wrong
    )
    assert "lack permission" not in wrong.split("HTTP 401")[1].split("\n")[0]
    assert_absent(output + wrong, password)


def test_capability_probe_does_not_read_403_as_present(project: Path, dagshub_server: Any) -> None:
    """A basic-auth MLflow 3 server answers 403 to a non-admin on unknown routes; the probe
    then judges from the server's version, and counts the capability missing without one."""
    import requests

    user, password = new_user(dagshub_server, "prober")
    unknown = requests.post(
        dagshub_server.server.url + "/api/2.0/mlflow/no-such-endpoint",
        json={},
        auth=(user, password),
        timeout=30,
    )
    assert unknown.status_code == 403  # the premise: 403 says nothing about the route
    env = {
        "TRACKSDK_BACKEND": "server",
        "TRACKSDK_SERVER__URI": dagshub_server.tracking_uri,  # through the proxy
        "TRACKSDK_SERVER__USERNAME": user,
        "TRACKSDK_SERVER__PASSWORD": password,
    }
    plain = run_cli(project, "doctor", env=env)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "✓ logged models (MLflow 3 endpoints): available\n" in plain.stdout
    assert "✓ model registry: available\n" in plain.stdout

    # The server answers the probed routes the way it answers routes it does not know.
    try:
        check_probe_with_403s(project, dagshub_server, env)
    finally:
        dagshub_server.clear_failures()


def check_probe_with_403s(project: Path, dagshub_server: Any, env: dict[str, str]) -> None:
    dagshub_server.fail_routes = {"/api/2.0/mlflow/logged-models/search": 403}
    versioned = run_cli(project, "doctor", env=env)
    assert versioned.returncode == 0, versioned.stdout + versioned.stderr
    assert (
        "✓ logged models (MLflow 3 endpoints): available (the endpoint answered 403 "
        "(permission denied); judged from the server's version, MLflow 3.17.2)"
    ) in versioned.stdout

    dagshub_server.fail_routes = {
        "/api/2.0/mlflow/logged-models/search": 403,
        "/api/2.0/mlflow/registered-models/search": 403,
        "/version": 403,
    }
    unknown_version = run_cli(project, "doctor", env=env)
    assert unknown_version.returncode == 0, unknown_version.stdout + unknown_version.stderr
    assert "! logged models (MLflow 3 endpoints): missing (the endpoint answered 403" in (
        unknown_version.stdout
    )
    assert "! model registry: missing (the endpoint answered 403" in unknown_version.stdout
    assert "counted as missing" in unknown_version.stdout
