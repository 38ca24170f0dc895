"""The tracksdk command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import run_cli as cli
from servers import free_port, group_members

from tracksdk import tracked

TRACKSDK = [sys.executable, "-m", "tracksdk.cli"]


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


def _start_ui(project: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.Popen(
        [*TRACKSDK, "ui", *args],
        cwd=project,
        env={**base, "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the finally below can clean up after a failed test
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.server
def test_runs_and_models_work_against_the_dagshub_shaped_server(
    project: Path, dagshub_server: Any
) -> None:
    """`tracksdk runs` and `tracksdk models` authenticate as runs do: no HTTP 401 (the
    examples once called that a known bug); a run prints no MLflow "View run at" line."""
    env = _dagshub_env(dagshub_server)
    script = "from tracksdk import tracked\nwith tracked(experiment='listed-remotely'):\n    pass\n"
    trained = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TRACKSDK_")}, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    assert "View run" not in trained.stdout + trained.stderr  # MLflow's fluent end_run line
    listed = cli(project, "runs", "-e", "listed-remotely", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "FINISHED" in listed.stdout and "401" not in listed.stdout + listed.stderr
    models = cli(project, "models", "no-such-model", env=env)
    assert models.returncode == 0, models.stdout + models.stderr
    assert "No versions of model 'no-such-model'" in " ".join(models.stdout.split())
    assert dagshub_server.token not in listed.stdout + listed.stderr + models.stdout


@pytest.mark.server
def test_ui_serves_the_local_store_and_sigterm_stops_all_of_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ui serves the project's store at TRACKSDK_LOCAL__UI_URL (run.url agrees), without
    MLflow's job runner; a second ui on the port exits 1; SIGTERM stops every process."""
    port = free_port()
    ui_url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("TRACKSDK_LOCAL__UI_URL", ui_url)
    with tracked(experiment="seen-in-ui") as run:
        pass
    assert run.url is not None and run.url.startswith(f"{ui_url}/#/experiments/")
    # No --port: the port comes from TRACKSDK_LOCAL__UI_URL, as the run's link does.
    proc = _start_ui(project, env={"TRACKSDK_LOCAL__UI_URL": ui_url})
    started: set[int] = set()
    try:
        url = f"{ui_url}/api/2.0/mlflow/experiments/search?max_results=10"
        deadline = time.monotonic() + 240
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:  # not listening yet
                time.sleep(0.25)
        assert body is not None, proc.communicate(timeout=30)[0] if proc.poll() is not None else ""
        assert "seen-in-ui" in {e["name"] for e in body["experiments"]}
        started = _descendants(proc.pid)
        table = _processes()
        (pgid,) = {table[p][2] for p in started}  # the UI runs in one group of its own
        assert pgid != proc.pid
        members = group_members(pgid)
        assert len(members) >= 3  # mlflow, uvicorn, its workers
        # No job runner: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false for the local viewer.
        assert not [p for p in members if "huey" in _cmdline(p) or "job" in _cmdline(p)]

        taken = cli(project, "ui", "--port", str(port))
        assert taken.returncode == 1, taken.stdout + taken.stderr
        assert f"cannot start the MLflow UI on 127.0.0.1:{port}: Address already in use" in (
            " ".join(taken.stderr.split())
        )

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGTERM, output
        text = " ".join(output.split())  # rich wraps long lines
        assert f"MLflow UI for local sqlite store {project / 'mlflow.db'}" in text
        assert f"at {ui_url}" in text and "Run links" not in text  # they point here already
        assert "SIGTERM: stopping the MLflow UI" in output and "killing it" not in output
        assert "Traceback" not in output
        assert _alive(started) == set() and group_members(pgid) == []
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{ui_url}/health", timeout=5)
    finally:
        _kill_leftovers(proc, started)


def test_ui_exits_1_when_the_port_is_taken(project: Path) -> None:
    """A port something already listens on: exit 1 with a message, before starting MLflow."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = cli(project, "ui", "--port", str(port))
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stderr.split())
    assert f"cannot start the MLflow UI on 127.0.0.1:{port}: Address already in use" in text
    assert "choose a free port with --port" in text
    assert "MLflow UI for" not in result.stdout  # no URL printed as if it were up
    assert time.monotonic() - started < 60


def test_ui_that_stops_by_itself_exits_1_and_says_where_links_point(project: Path) -> None:
    """A UI that ends on its own is a failure (exit 1), and a --port other than
    TRACKSDK_LOCAL__UI_URL's says how to make run links follow it."""
    port = free_port()
    # An invalid value MLflow reads when the server starts: `mlflow ui` fails at once.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "not-a-boolean"}
    result = cli(project, "ui", "--port", str(port), env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the MLflow UI stopped by itself (exit status 1)" in " ".join(result.stderr.split())
    out = " ".join(result.stdout.split())
    assert f"at http://127.0.0.1:{port}" in out
    assert "Run links (run.url) point at http://127.0.0.1:5000 (TRACKSDK_LOCAL__UI_URL)" in out
    assert f"set TRACKSDK_LOCAL__UI_URL=http://127.0.0.1:{port}" in out


def test_ui_url_setting_is_validated(project: Path) -> None:
    """A TRACKSDK_LOCAL__UI_URL that is not an http(s) URL is a settings error (exit 2)."""
    result = cli(project, "ui", env={"TRACKSDK_LOCAL__UI_URL": "127.0.0.1:5000"})
    assert result.returncode == 2
    assert "TRACKSDK_LOCAL__UI_URL" in result.stderr and "not an http(s) URL" in result.stderr


def _dagshub_env(server: Any) -> dict[str, str]:
    return {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": server.host,
        "TRACKSDK_DAGSHUB__OWNER": server.owner,
        "TRACKSDK_DAGSHUB__REPO": server.repo,
        "TRACKSDK_DAGSHUB__USERNAME": server.username,
        "DAGSHUB_USER_TOKEN": server.token,
    }


# --- doctor: server capabilities ------------------------------------------------------------

LOGGED_MODELS_OK = "✓ logged models (MLflow 3 endpoints): available"
REGISTRY_OK = "✓ model registry: available"
LOGGED_MODELS_MISSING = "! logged models (MLflow 3 endpoints): missing (the server answers 404)"
REGISTRY_MISSING = "! model registry: missing (the server answers 404)"


def test_doctor_local_store_has_logged_models_and_registry(project: Path) -> None:
    """On the local sqlite store doctor reports both capabilities as available."""
    result = cli(project, "doctor")
    assert result.returncode == 0, result.stderr
    assert f"{LOGGED_MODELS_OK} (local store)" in result.stdout
    assert f"{REGISTRY_OK} (local store)" in result.stdout


@pytest.mark.server
def test_doctor_reports_capabilities_of_a_full_server(project: Path, mlflow_server: Any) -> None:
    """A plain MLflow 3 server (PostgreSQL store) has both, as probed over HTTP."""
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url}
    result = cli(project, "doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert LOGGED_MODELS_OK in lines and REGISTRY_OK in lines


@pytest.mark.server
def test_doctor_reports_missing_capabilities_and_the_fallback(
    project: Path, dagshub_server: Any
) -> None:
    """A server answering 404 to the logged-model or registry routes (as DagsHub's MLflow 2.x
    can) is not broken: doctor exits 0 and says what tracksdk does instead."""
    env = _dagshub_env(dagshub_server)
    full = cli(project, "doctor", env=env)
    assert full.returncode == 0, full.stdout + full.stderr
    assert LOGGED_MODELS_OK in full.stdout.splitlines() and REGISTRY_OK in full.stdout.splitlines()
    try:
        dagshub_server.fail_routes = {"/api/2.0/mlflow/logged-models*": 404}
        no_logged = cli(project, "doctor", env=env)
        dagshub_server.fail_routes = {"/api/2.0/mlflow/registered-models/*": 404}
        no_registry = cli(project, "doctor", env=env)
    finally:
        dagshub_server.clear_failures()
    assert no_logged.returncode == 0, no_logged.stdout + no_logged.stderr
    text = " ".join(no_logged.stdout.split())  # rich wraps long lines at COLUMNS
    assert LOGGED_MODELS_MISSING in text
    assert "saved as run artifacts (runs:/<run_id>/model)" in text
    assert "autolog runs with log_models=False" in text
    assert REGISTRY_OK in text and "answers, MLflow 3.17.2" in text
    assert no_registry.returncode == 0, no_registry.stdout + no_registry.stderr
    text = " ".join(no_registry.stdout.split())
    assert REGISTRY_MISSING in text
    assert "tracked(register=...) skips registration with a warning" in text
    assert "serve or load it as runs:/<run_id>/model" in text
    assert LOGGED_MODELS_OK in text
    for result in (full, no_logged, no_registry):
        assert dagshub_server.token not in result.stdout + result.stderr


# --- models --set-alias ------------------------------------------------------------------------


def test_models_set_alias_promotes_and_rolls_back_with_audit_tags(project: Path) -> None:
    """--set-alias moves an alias by hand, writes who/when/why on the version, and
    models:/NAME@ALIAS then loads that version; unknown versions and models exit 1."""
    import mlflow.pyfunc
    from core_fixtures import local_client
    from mlflow.artifacts import download_artifacts
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)

    @tracked(register="iris-clf")
    def train(X: Any, y: Any, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=300).fit(X, y)

    # Two versions whose predictions differ: v1 is the better model.
    models = [train(X, y, C) for C in (1.0, 0.001)]
    assert (models[0].predict(X) != models[1].predict(X)).any()
    client = local_client(project)

    promoted = cli(project, "models", "iris-clf", "--set-alias", "champion", "2")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "Alias 'champion' of 'iris-clf' now points at v2 (it was not set)" in " ".join(
        promoted.stdout.split()
    )
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "2"
    tags = client.get_model_version("iris-clf", "2").tags
    assert tags["tracksdk.alias.champion.reason"] == "set by hand"
    assert tags["tracksdk.alias.champion.via"] == "hand"
    assert tags["tracksdk.alias.champion.previous_version"] == ""
    assert tags["tracksdk.alias.champion.set_by"]
    assert tags["tracksdk.alias.champion.set_at"].startswith(time.strftime("%Y-", time.gmtime()))

    rolled = cli(
        project, "models", "iris-clf", "--set-alias", "champion", "1", "--reason", "v2 is worse"
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "1"
    tags = client.get_model_version("iris-clf", "1").tags
    assert tags["tracksdk.alias.champion.reason"] == "v2 is worse"
    assert tags["tracksdk.alias.champion.previous_version"] == "2"
    # The challenger alias the registration set is untouched.
    assert str(client.get_model_version_by_alias("iris-clf", "challenger").version) == "2"
    # Downloaded with the store's URI: MLflow's global tracking URI is left alone.
    local = download_artifacts(
        artifact_uri="models:/iris-clf@champion",
        dst_path=str(project.parent / "champion"),
        tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
    )
    loaded = mlflow.pyfunc.load_model(local)
    assert (loaded.predict(X) == models[0].predict(X)).all()

    unknown_version = cli(project, "models", "iris-clf", "--set-alias", "champion", "7")
    assert unknown_version.returncode == 1
    assert "has no version 7; its versions: 1, 2" in " ".join(unknown_version.stderr.split())
    unknown_model = cli(project, "models", "iris-cfl", "--set-alias", "champion", "1")
    assert unknown_model.returncode == 1
    assert "no registered model 'iris-cfl'" in " ".join(unknown_model.stderr.split())
    assert str(client.get_model_version_by_alias("iris-clf", "champion").version) == "1"


@pytest.mark.server
def test_models_set_alias_on_a_server_without_registry(project: Path, dagshub_server: Any) -> None:
    """--set-alias against a server whose registry routes answer 404 exits 1 and says so."""
    try:
        dagshub_server.fail_routes = {"/api/2.0/mlflow/registered-models/*": 404}
        result = cli(
            project, "models", "m", "--set-alias", "champion", "1", env=_dagshub_env(dagshub_server)
        )
    finally:
        dagshub_server.clear_failures()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "has no model registry (it answers 404)" in " ".join(result.stderr.split())
    assert dagshub_server.token not in result.stdout + result.stderr


def test_runs_and_sync_exit_statuses(project: Path) -> None:
    """runs and sync exit 2 on invalid settings and 1 when the store fails, as cli.md says;
    sync keeps the journal it could not send."""
    bad_settings = {"TRACKSDK_BACKEND": "no-such-backend"}
    for command in ("runs", "sync"):
        result = cli(project, command, env=bad_settings)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Unknown backend 'no-such-backend'" in " ".join(result.stderr.split())
    # A store MLflow cannot open: a folder that cannot exist.
    broken_store = {"TRACKSDK_LOCAL__ROOT": "/proc/no-such-folder"}
    runs = cli(project, "runs", env=broken_store)
    assert runs.returncode == 1, runs.stdout + runs.stderr
    assert "error:" in runs.stderr
    script = "from tracksdk import tracked\nwith tracked() as r:\n    r.log_metric('m', 1.0)\n"
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKSDK_")}
    offline = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={**base, "TRACKSDK_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 0, offline.stderr
    journals = list((project / ".tracksdk" / "journal").iterdir())
    assert len(journals) == 1
    sync = cli(project, "sync", env=broken_store, timeout=120)
    assert sync.returncode == 1, sync.stdout + sync.stderr
    assert journals[0].exists()  # kept, to send once the store is fixed
    # The memory store lives in one process: sync refuses it and keeps the journal.
    for args in (("sync",), ("sync", "--rejected")):
        memory = cli(project, *args, env={"TRACKSDK_BACKEND": "memory"})
        assert memory.returncode == 2, memory.stdout + memory.stderr
        assert "no store to send journals to" in " ".join(memory.stderr.split())
    assert journals[0].exists()


def test_models_reason_without_set_alias_exits_2(project: Path) -> None:
    """--reason alone is a usage error (exit 2) that names --set-alias."""
    result = cli(project, "models", "some-model", "--reason", "why")
    assert result.returncode == 2
    assert "--reason goes with --set-alias ALIAS VERSION" in result.stderr


# --- serve: stopping ------------------------------------------------------------------------


def _processes() -> dict[int, tuple[str, int, int]]:
    """Every process as PID -> (state, parent PID, process group ID), from Linux's /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after ')'.
            state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            table[int(entry)] = (state, int(ppid), int(pgrp))
    return table


def _descendants(pid: int) -> set[int]:
    table = _processes()
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, (_, ppid, _) in table.items() if ppid == parent}
        found |= children
        todo.extend(children)
    return found


def _alive(pids: set[int]) -> set[int]:
    """The PIDs that still run (zombies count as gone: they hold no port or file)."""
    table = _processes()
    return {p for p in pids if p in table and table[p][0] != "Z"}


def _post(url: str, payload: bytes, timeout: float) -> Any:
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _start_serve(
    project: Path, model: str, port: int, tmpdir: Path, *args: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.Popen(
        [*TRACKSDK, "serve", model, "--port", str(port), *args],
        cwd=project,
        # TMPDIR: where serve puts the downloaded model, so the test can see it go.
        env={**base, "COLUMNS": "200", "TMPDIR": str(tmpdir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the finally below can clean up after a failed test
    )


def _wait_for_predictions(proc: subprocess.Popen[str], url: str, payload: bytes) -> Any:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return _post(url, payload, timeout=10)
        except OSError:  # not listening yet
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"serve never answered {url}:\n{proc.communicate()[0]}")


def _kill_leftovers(proc: subprocess.Popen[str], pids: set[int]) -> None:
    for pid in {proc.pid, *pids}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


@pytest.mark.server
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_serve_stops_every_process_and_removes_the_download(
    project: Path, tmp_path: Path, sig: str
) -> None:
    """A signal to `tracksdk serve` alone stops all the serving processes (uvicorn and its
    workers included), removes the downloaded model, and tracksdk dies by that signal."""
    import pandas as pd
    from tracksdk_dummy.plugin import ToyModel

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5] * 3})

    @tracked(register="stoppable")
    def train(X: pd.DataFrame) -> ToyModel:
        return ToyModel(3.0)

    train(frame)
    port, tmpdir = free_port(), tmp_path / "tmp"
    tmpdir.mkdir()
    # Two uvicorn workers: grandchildren of the mlflow process, which a plain kill misses.
    proc = _start_serve(project, "stoppable/1", port, tmpdir, env={"MLFLOW_MODELS_WORKERS": "2"})
    started: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        payload = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
        assert _wait_for_predictions(proc, url, payload) == {"predictions": [4.5, 7.5, 10.5]}
        started = _descendants(proc.pid)
        table = _processes()
        (pgid,) = {table[p][2] for p in started}  # the server runs in one group of its own
        assert pgid != proc.pid
        assert len(group_members(pgid)) >= 4  # mlflow, uvicorn's supervisor, 2 workers
        assert [p.name[:15] for p in tmpdir.iterdir()] == ["tracksdk-serve-"]

        proc.send_signal(getattr(signal, sig))
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == -getattr(signal, sig), output
        assert f"{sig}: stopping the model server" in output
        # uvicorn shut down gracefully, within the bound (SIGHUP reaches it as SIGTERM).
        assert "Application shutdown complete." in output and "killing it" not in output
        assert _alive(started) == set() and group_members(pgid) == []
        assert list(tmpdir.iterdir()) == []
        with pytest.raises(OSError):
            _post(url, payload, timeout=5)
    finally:
        _kill_leftovers(proc, started)


def test_serve_signal_during_the_download_removes_the_folder(project: Path, tmp_path: Path) -> None:
    """SIGTERM while the model is still downloading (here from a server that never answers)
    ends serve at once, by SIGTERM, without starting a server or leaving the folder."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(120)
        env = {"TRACKSDK_BACKEND": "server"}
        env["TRACKSDK_SERVER__URI"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = _start_serve(project, "hanging/1", free_port(), tmpdir, env=env)
        try:
            connection, _ = silent.accept()  # the download's first request
            with connection:
                assert [p.name[:15] for p in tmpdir.iterdir()] == ["tracksdk-serve-"]
                proc.send_signal(signal.SIGTERM)
                output, _ = proc.communicate(timeout=30)
        finally:
            _kill_leftovers(proc, set())
    assert proc.returncode == -signal.SIGTERM, output
    assert "SIGTERM: stopped while downloading models:/hanging/1." in output
    assert "Serving" not in output
    assert list(tmpdir.iterdir()) == []


SLOW_MODEL = """
import os
import time

import mlflow


class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        open(os.environ["SLOW_MODEL_STARTED"], "w").close()
        time.sleep(600)
        return model_input


mlflow.models.set_model(Slow())
"""


@pytest.mark.server
def test_serve_kills_a_server_that_does_not_stop_in_time(project: Path, tmp_path: Path) -> None:
    """A prediction still running after --stop-timeout seconds does not keep serve alive:
    the server is killed, the download removed, and serve ends by SIGTERM."""
    import mlflow.pyfunc

    code = tmp_path / "slow_model.py"
    code.write_text(SLOW_MODEL)
    folder = tmp_path / "slow-model"
    # pip_requirements given: no requirement inference (it would start a process).
    mlflow.pyfunc.save_model(str(folder), python_model=str(code), pip_requirements=["mlflow"])
    port, tmpdir, started_flag = free_port(), tmp_path / "tmp", tmp_path / "predicting"
    tmpdir.mkdir()
    proc = _start_serve(
        project,
        str(folder),
        port,
        tmpdir,
        "--stop-timeout",
        "2",
        env={"SLOW_MODEL_STARTED": str(started_flag)},
    )
    started: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        # A request without a body is answered at once (400): the server is up.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                _post(url, b"", timeout=10)
            except urllib.error.HTTPError:
                break
            except OSError:  # not listening yet
                time.sleep(0.25)
            else:
                break
        payload = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}).encode()
        threading.Thread(target=_post_ignoring_errors, args=(url, payload), daemon=True).start()
        while not started_flag.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
            time.sleep(0.2)
        started = _descendants(proc.pid)

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
        assert proc.returncode == -signal.SIGTERM, output
        assert "The model server did not stop within 2 s: killing it." in output
        assert 2 <= took < 20, took
        assert _alive(started) == set()
        assert list(tmpdir.iterdir()) == []
    finally:
        _kill_leftovers(proc, started)


def _post_ignoring_errors(url: str, payload: bytes) -> None:
    with contextlib.suppress(OSError):  # the server is killed mid-request: that is the point
        _post(url, payload, timeout=120)
