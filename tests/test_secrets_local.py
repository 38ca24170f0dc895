"""Secrets in odd places, on the local store and the machine's PostgreSQL.

Each test runs a user script in a subprocess (only environment variables and argv change),
then reads back what was stored through MlflowClient and searches everything the process
printed. Covered: secrets nested in arguments, ``log_params`` and ``log_dict`` (F12);
the shell's ``PWD``/``OLDPWD`` (F14); a password in a database tracking URI (F11); the
dagshub client's browser login with a terminal attached (P2); the plain repr of short
nested arguments (B11).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import all_runs, artifact_paths, local_client, run_cli

CANARIES = {
    "NESTED": "canary-nested-4d1f9a77",
    "LISTED": "canary-listed-b83e0c12",
    "DATACLASS": "canary-dataclass-e5a2",
    "PYDANTIC": "canary-pydantic-7c9b",
    "PARAMS": "canary-params-0f3d6e",
    "DICT": "canary-dict-91ab44",
}

NESTED_JOB = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    from pydantic import BaseModel
    import tracksdk
    from tracksdk import tracked

    # Names that do not look secret: nothing is registered before the call.
    C = json.loads(os.environ["JOB_VALUES"])

    @dataclasses.dataclass
    class Creds:
        user: str
        token: str

    class Remote(BaseModel):
        name: str
        token: str

    @tracked(experiment="nested")
    def train(config, items, creds, remote, lr=0.1):
        tracksdk.log_params({"cfg": {"db": {"password": C["PARAMS"], "host": "db.local"}}})
        tracksdk.log_dict(
            {"db": {"password": C["DICT"], "host": "db.local"}, "runs": [{"api_key": C["DICT"]}]},
            "config.json",
        )
        tracksdk.log_text(" ".join(C.values()), "notes.txt")
        tracksdk.set_tag("note", f"db {C['NESTED']}")
        raise RuntimeError(f"failed with {config} {items} {creds} {remote} {C['PARAMS']}")

    try:
        train(
            config={"db": {"password": C["NESTED"], "host": "db.local"}, "layers": 3},
            items=[{"api_key": C["LISTED"], "name": "a"}, {"name": "b"}],
            creds=Creds("u", C["DATACLASS"]),
            remote=Remote(name="m", token=C["PYDANTIC"]),
        )
    except RuntimeError as exc:
        print("caller sees the real message:", "canary-nested" in str(exc))
    """
)


def base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_"))
    }


def run_script(
    project: Path, code: str, env: dict[str, str], *args: str, script: str = "job.py"
) -> subprocess.CompletedProcess[str]:
    (project / script).write_text(code)
    return subprocess.run(
        [sys.executable, str(project / script), *args],
        cwd=project,
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_artifact(client: Any, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def assert_absent(text: str, *canaries: str) -> None:
    for canary in canaries:
        assert canary not in text, f"{canary} leaked"


def test_nested_secrets_are_masked_in_params_tags_artifacts_and_journal(project: Path) -> None:
    """Secret keys nested in dicts, lists, dataclasses and pydantic models are masked at any
    depth, siblings kept, and their values never reach params, tags, artifacts or the journal.
    """
    env = {"JOB_VALUES": json.dumps(CANARIES)}
    result = run_script(project, NESTED_JOB, env)
    assert result.returncode == 0, result.stderr
    assert "caller sees the real message: True" in result.stdout  # the user's error is unchanged
    assert_absent(result.stdout + result.stderr, *CANARIES.values())

    (run,) = all_runs(project)
    params = run.data.params
    assert params["config"] == "{'db': {'password': '***', 'host': 'db.local'}, 'layers': 3}"
    assert params["items"] == "[{'api_key': '***', 'name': 'a'}, {'name': 'b'}]"
    assert params["creds"] == "Creds(user='u', token='***')"
    assert params["remote"] == "Remote(name='m', token='***')"
    assert params["cfg"] == "{'db': {'password': '***', 'host': 'db.local'}}"
    tags = run.data.tags
    assert tags["note"] == "db ***"
    assert tags["tracksdk.error.message"].startswith("failed with {'db': {'password': '***'")
    client = local_client(project)
    assert json.loads(read_artifact(client, run.info.run_id, "config.json")) == {
        "db": {"password": "***", "host": "db.local"},
        "runs": [{"api_key": "***"}],
    }
    assert read_artifact(client, run.info.run_id, "notes.txt") == " ".join(["***"] * 6)
    traceback = read_artifact(client, run.info.run_id, "error/traceback.txt")
    assert "RuntimeError: failed with" in traceback
    stored = [f"{k}={v}" for k, v in {**params, **tags}.items()]
    for path in artifact_paths(client, run.info.run_id):
        stored.append(read_artifact(client, run.info.run_id, path))
    assert_absent("\n".join(stored), *CANARIES.values())

    # Offline, the journal keeps everything on disk: no canary in any byte of it.
    offline = run_script(project, NESTED_JOB, {**env, "TRACKSDK_MODE": "offline"})
    assert offline.returncode == 0, offline.stderr
    journal = project / ".tracksdk" / "journal"
    files = [p for p in journal.rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in files), files  # the log_dict file is there
    data = b"\n".join(p.read_bytes() for p in files)
    assert b"'password': '***'" in data
    for canary in CANARIES.values():
        assert canary.encode() not in data, f"{canary} is in the journal"


PATH_JOB = textwrap.dedent(
    """
    import os
    from pathlib import Path
    import tracksdk
    from tracksdk import tracked

    @tracked(experiment="paths")
    def train(data: Path = Path.cwd() / "data.csv"):
        tracksdk.set_tag("data_dir", str(Path.cwd() / "data"))
        tracksdk.log_text(f"reading {data}", "notes.txt")
        raise FileNotFoundError(f"no such file: {data}; db password {os.environ['DB_PWD']}")

    try:
        train()
    except FileNotFoundError:
        pass
    """
)


def test_working_directory_survives_pwd_and_oldpwd(project: Path) -> None:
    """With PWD and OLDPWD set as a shell sets them, paths stay real everywhere; DB_PWD's value
    is masked."""
    cwd = str(project)
    env = {"PWD": cwd, "OLDPWD": str(project.parent), "DB_PWD": "canary-db-pwd-66e1"}
    result = run_script(project, PATH_JOB, env)
    assert result.returncode == 0, result.stderr
    (run,) = all_runs(project)
    assert run.data.params["data"] == f"{cwd}/data.csv"
    assert run.data.tags["data_dir"] == f"{cwd}/data"
    assert run.data.tags["tracksdk.error.message"] == (
        f"no such file: {cwd}/data.csv; db password ***"
    )
    assert run.data.tags["tracksdk.command"] == f"python {cwd}/job.py"
    client = local_client(project)
    assert read_artifact(client, run.info.run_id, "notes.txt") == f"reading {cwd}/data.csv"
    traceback = read_artifact(client, run.info.run_id, "error/traceback.txt")
    assert f'File "{cwd}/job.py"' in traceback
    assert "canary-db-pwd-66e1" not in traceback + result.stdout + result.stderr


def test_short_nested_arguments_are_logged_as_their_plain_repr(project: Path) -> None:
    """A short nested dict is logged as Python shows it (insertion order, nested values);
    a long or big one as its length."""
    code = textwrap.dedent(
        """
        from tracksdk import tracked

        @tracked(experiment="reprs")
        def train(cfg, grid, many, long, pair):
            pass

        train(
            cfg={"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}},
            grid={"kernel": ("linear", "rbf"), "C": [1, 10]},
            many={f"k{i}": i for i in range(11)},
            long={"a": "x" * 200, "b": "y" * 60},
            pair=(1,),
        )
        """
    )
    result = run_script(project, code, {})
    assert result.returncode == 0, result.stderr
    (run,) = all_runs(project)
    params = run.data.params
    assert params["cfg"] == "{'lr': 0.1, 'opt': {'name': 'adam', 'betas': [0.9, 0.99]}}"
    assert params["grid"] == "{'kernel': ('linear', 'rbf'), 'C': [1, 10]}"
    assert params["many"] == "dict(len=11)"
    assert params["long"] == "dict(len=2)"
    assert params["pair"] == "(1,)"


def test_grid_search_param_grid_is_logged_like_plain_mlflow(project: Path) -> None:
    """GridSearchCV's param_grid is logged as str(param_grid), as MLflow's autolog logs it."""
    pytest.importorskip("sklearn")
    code = textwrap.dedent(
        """
        from sklearn.datasets import load_iris
        from sklearn.model_selection import GridSearchCV
        from sklearn.svm import SVC
        from tracksdk import tracked

        X, y = load_iris(return_X_y=True)
        with tracked(experiment="grid", autolog=["sklearn"]):
            GridSearchCV(SVC(), {"kernel": ("linear", "rbf"), "C": [1, 10]}, cv=2).fit(X, y)
        """
    )
    result = run_script(project, code, {})
    assert result.returncode == 0, result.stderr
    grids = [
        r.data.params["param_grid"] for r in all_runs(project) if "param_grid" in r.data.params
    ]
    assert grids == [str({"kernel": ("linear", "rbf"), "C": [1, 10]})]


# -- a password in a database tracking URI (F11) ------------------------------------------

PG_CANARY = "canary-pg-password-3a7d"

PG_JOB = textwrap.dedent(
    """
    import warnings
    import tracksdk
    from tracksdk import tracked

    warnings.simplefilter("always")
    with tracked(experiment="pg-secret") as run:
        tracksdk.log_metric("loss", 0.5)
        tracksdk.log_param("lr", 0.1)
        print("repr:", repr(run))
        print("uri:", run.tracking_uri)
    """
)


@pytest.fixture
def pg_database() -> Any:
    """A fresh database on the machine's PostgreSQL (trust auth: any password works)."""
    servers = pytest.importorskip("servers")
    try:
        name = servers.create_database("tracksdk_secret")
    except servers.ServerStartError as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")
    yield name
    servers.drop_database(name)


def pg_uri(database: str, password: str = PG_CANARY) -> str:
    return f"postgresql+psycopg2://postgres:{password}@127.0.0.1:5432/{database}"


def test_database_uri_password_is_never_printed(project: Path, pg_database: str) -> None:
    """A password in a PostgreSQL MLFLOW_TRACKING_URI is used but never printed by a run's repr,
    run.tracking_uri, warnings, doctor, sync, sync --dry-run or ui."""
    uri = pg_uri(pg_database)
    shown = f"postgresql+psycopg2://***@127.0.0.1:5432/{pg_database}"
    env = {"MLFLOW_TRACKING_URI": uri}

    online = run_script(project, PG_JOB, env)
    assert online.returncode == 0, online.stderr
    assert f"uri: {shown}" in online.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("pg-secret")
    assert experiment is not None
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.data.metrics == {"loss": 0.5} and stored.data.params["lr"] == "0.1"

    # A store that fails at once (a driver that does not exist; a missing database would
    # make MLflow retry its connection for ~100 s first): the warning names the URI.
    bad_uri = uri.replace("+psycopg2", "+nodriver")
    missing = {"MLFLOW_TRACKING_URI": bad_uri, "TRACKSDK_FLUSH_TIMEOUT": "2"}
    broken = run_script(project, PG_JOB, missing)
    assert broken.returncode == 0, broken.stderr
    assert shown.replace("+psycopg2", "+nodriver") in broken.stderr, broken.stderr

    offline = run_script(project, PG_JOB, {**env, "TRACKSDK_MODE": "offline"})
    assert offline.returncode == 0, offline.stderr
    doctor = run_cli(project, "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"tracking URI: {shown}" in doctor.stdout
    dry = run_cli(project, "sync", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert shown in dry.stdout
    sync = run_cli(project, "sync", env=env)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    # The online run and the offline one; broken's journal is for another store, and stays.
    assert len(client.search_runs([experiment.experiment_id])) == 2
    ui = run_cli(project, "ui", env=env)
    assert ui.returncode == 2
    assert f"tracksdk ui serves sqlite stores; this backend is {shown}." in ui.stderr

    outputs = [online, broken, offline, doctor, dry, sync, ui]
    assert_absent("\n".join(r.stdout + r.stderr for r in outputs), PG_CANARY)


# -- no implicit DagsHub login with a terminal attached (P2) ------------------------------


def run_on_pty(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal: (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_no_interactive_dagshub_login_with_a_terminal(project: Path, tmp_path: Path) -> None:
    """With a terminal and no token, doctor and a training script give the clean "No DagsHub
    token found" error naming `dagshub login`, never the dagshub client's browser login."""
    pytest.importorskip("dagshub")  # the extra whose login flow used to start
    env = {
        **base_env(),
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__OWNER": "me",
        "TRACKSDK_DAGSHUB__REPO": "churn",
        # Nothing answers there: a login attempt would fail with a network traceback.
        "TRACKSDK_DAGSHUB__HOST": "http://127.0.0.1:9",
        "DAGSHUB_CLIENT_HOST": "http://127.0.0.1:9",
        "DAGSHUB_CLIENT_TOKENS_CACHE": str(tmp_path / "no-tokens"),
        "TERM": "xterm",
        "COLUMNS": "200",
    }
    code, output = run_on_pty([sys.executable, "-m", "tracksdk.cli", "doctor"], project, env)
    assert code == 1, output
    assert "No DagsHub token found" in output and "dagshub login" in output
    assert "Traceback" not in output and "AUTHORIZATION REQUIRED" not in output

    (project / "train.py").write_text(
        "from tracksdk import tracked\n"
        "@tracked(experiment='tty')\n"
        "def train():\n"
        "    print('the body ran')\n"
        "try:\n"
        "    train()\n"
        "except Exception as exc:\n"
        "    print(f'{type(exc).__name__}: {exc}')\n"
    )
    code, output = run_on_pty([sys.executable, str(project / "train.py")], project, env)
    assert code == 0, output
    assert "ConfigError: No DagsHub token found" in output and "dagshub login" in output
    assert "AUTHORIZATION REQUIRED" not in output and "Traceback" not in output


def test_mlflow_tls_variables_are_checked_like_mlflow_does(project: Path, tmp_path: Path) -> None:
    """MLFLOW_TRACKING_INSECURE_TLS with MLFLOW_TRACKING_SERVER_CERT_PATH, or a cert path that
    is no file, is a clear settings error for an http(s) MLFLOW_TRACKING_URI."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not checked here\n")
    uri = {"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}
    both = run_cli(
        project,
        "doctor",
        env={
            **uri,
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
            "MLFLOW_TRACKING_SERVER_CERT_PATH": str(bundle),
        },
    )
    assert both.returncode == 1
    assert "MLFLOW_TRACKING_INSECURE_TLS=true and MLFLOW_TRACKING_SERVER_CERT_PATH" in both.stderr
    missing = run_cli(
        project,
        "doctor",
        env={**uri, "MLFLOW_TRACKING_SERVER_CERT_PATH": str(tmp_path / "nope.pem")},
    )
    assert missing.returncode == 1
    assert (
        "MLFLOW_TRACKING_SERVER_CERT_PATH" in missing.stderr and "is not a file" in missing.stderr
    )
    assert "Traceback" not in both.stderr + missing.stderr


def test_url_user_info_in_any_value_is_masked(project: Path) -> None:
    """A password in any URL (a param, a tag, an exception) is stored as ``***@``."""
    from tracksdk import tracked

    @tracked(experiment="url-info")
    def train(db_url: str) -> None:
        raise RuntimeError("cannot reach https://bob:s3cretpass@example.com/x")

    with pytest.raises(RuntimeError, match="s3cretpass"):  # the caller's exception is intact
        train("postgresql://app:hunter22@db/prod")
    [run] = all_runs(project)
    assert run.data.params["db_url"] == "postgresql://***@db/prod"
    assert run.data.tags["tracksdk.error.message"] == "cannot reach https://***@example.com/x"
    stored = repr(run.data.params) + repr(run.data.tags)
    assert "hunter22" not in stored and "s3cretpass" not in stored
