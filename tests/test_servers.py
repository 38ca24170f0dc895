"""The server fixtures work with a real MLflow client (and the real dagshub client)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import mlflow
import psycopg2
import pytest
import requests
from mlflow.exceptions import MlflowException
from servers import LOCALHOST, PG_HOST, PG_PORT, PG_USER, MlflowServer, ServerStartError

pytestmark = pytest.mark.server


@pytest.fixture
def fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short MLflow client retries so failure tests do not wait minutes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


@pytest.fixture
def dagshub_creds(monkeypatch: pytest.MonkeyPatch, dagshub_server) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.token)


def _log_everything(client: mlflow.MlflowClient, tmp_path: Path) -> tuple[str, bytes]:
    exp_id = client.create_experiment(f"exp-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id)
    run_id = run.info.run_id
    client.log_metric(run_id, "loss", 0.25, step=3)
    client.log_param(run_id, "lr", "0.01")
    client.set_tag(run_id, "team", "ml")
    payload = os.urandom(300_000)  # several upload chunks, binary
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    client.log_artifact(run_id, str(src), artifact_path="data")
    client.set_terminated(run_id)
    return run_id, payload


def _check_everything(
    client: mlflow.MlflowClient, run_id: str, payload: bytes, tmp_path: Path
) -> None:
    run = client.get_run(run_id)
    assert run.data.metrics == {"loss": 0.25}
    assert client.get_metric_history(run_id, "loss")[0].step == 3
    assert run.data.params == {"lr": "0.01"}
    assert run.data.tags["team"] == "ml"
    assert run.info.status == "FINISHED"
    # --serve-artifacts: the client only knows an HTTP-proxied artifact URI.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert [f.path for f in client.list_artifacts(run_id, "data")] == ["data/blob.bin"]
    out = tmp_path / f"download-{uuid.uuid4().hex[:6]}"
    out.mkdir()
    local = client.download_artifacts(run_id, "data/blob.bin", str(out))
    assert Path(local).read_bytes() == payload


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


# ---------------------------------------------------------------- PostgreSQL-backed server
def test_mlflow_server_roundtrip(mlflow_server, tmp_path):
    client = mlflow.MlflowClient(mlflow_server.url)
    run_id, payload = _log_everything(client, tmp_path)
    _check_everything(client, run_id, payload, tmp_path)
    # The artifact went through the server into its artifacts destination...
    stored = list(mlflow_server.artifacts_dir.rglob("blob.bin"))
    assert len(stored) == 1 and stored[0].read_bytes() == payload
    # ...and the run is in this session's PostgreSQL database.
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=mlflow_server.database)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone() == (1,)
    conn.close()


def test_servers_bind_only_localhost(mlflow_server, dagshub_server):
    loopback = {"0100007F"}  # 127.0.0.1 in /proc/net/tcp byte order
    assert _listening_addresses(mlflow_server.port) == loopback
    assert _listening_addresses(dagshub_server.port) == loopback
    assert _listening_addresses(dagshub_server.server.port) == loopback


def test_mlflow_server_restart_keeps_data(mlflow_server, tmp_path):
    client = mlflow.MlflowClient(mlflow_server.url)
    run_id, payload = _log_everything(client, tmp_path)
    first_pid = mlflow_server.pid

    mlflow_server.stop()
    mlflow_server.stop()  # idempotent
    assert not mlflow_server.is_running()
    assert not mlflow_server.is_healthy()
    assert mlflow_server.pids() == []

    mlflow_server.start()
    mlflow_server.start()  # idempotent
    assert mlflow_server.is_running() and mlflow_server.pid != first_pid
    _check_everything(client, run_id, payload, tmp_path)

    # Killing only the PID leaves uvicorn serving; start() must still recover.
    os.kill(mlflow_server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while mlflow_server.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mlflow_server.is_running()
    mlflow_server.start()
    assert len(mlflow_server.pids()) == 2  # CLI process + uvicorn worker, nothing stray
    _check_everything(client, run_id, payload, tmp_path)


def test_startup_failure_reports_log_tail(tmp_path):
    # Plain postgresql:// means psycopg 3 to SQLAlchemy 2.1, which is not installed.
    bad = MlflowServer(
        name="bad", workdir=tmp_path, backend_store_uri="postgresql://postgres@127.0.0.1/x"
    )
    with pytest.raises(ServerStartError, match="No module named 'psycopg'") as err:
        bad.start(timeout=120)
    assert "exited with code" in str(err.value)
    assert not bad.is_running() and bad.pids() == []


def test_mlflow_server_env_in_subprocess(mlflow_server, tmp_path):
    code = textwrap.dedent(
        """
        import mlflow
        with mlflow.start_run() as run:
            mlflow.log_metric("child", 7.0)
        print(run.info.run_id)
        """
    )
    env = {**os.environ, **mlflow_server.env}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = out.stdout.strip().splitlines()[-1]
    assert mlflow.MlflowClient(mlflow_server.url).get_run(run_id).data.metrics == {"child": 7.0}


# ---------------------------------------------------------------- DagsHub-shaped server
def test_dagshub_roundtrip_with_credentials(dagshub_server, dagshub_creds, tmp_path):
    assert dagshub_server.tracking_uri == (
        f"http://{LOCALHOST}:{dagshub_server.port}/"
        f"{dagshub_server.owner}/{dagshub_server.repo}.mlflow"
    )
    client = mlflow.MlflowClient(dagshub_server.tracking_uri)
    run_id, payload = _log_everything(client, tmp_path)
    _check_everything(client, run_id, payload, tmp_path)
    assert dagshub_server.count("/api/2.0/mlflow/runs/create") == 1
    assert dagshub_server.count("/api/2.0/mlflow/runs/log-metric", "POST") == 1
    assert any(
        m == "PUT" and "/mlflow-artifacts/artifacts/" in p and s == 200
        for m, p, s in dagshub_server.requests
    )


def test_dagshub_proxy_streams_bodies(dagshub_server, dagshub_creds, tmp_path):
    """Large and chunked bodies go through the proxy exactly as they reach MLflow directly."""
    client = mlflow.MlflowClient(dagshub_server.tracking_uri)
    run = client.create_run(client.create_experiment(f"bodies-{uuid.uuid4().hex[:8]}"))
    rel = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    path = f"/api/2.0/mlflow-artifacts/artifacts/{rel}"
    parts = [os.urandom(100_000) for _ in range(25)]  # 2.5 MB
    with requests.Session() as http:  # one keep-alive connection: framing must be exact
        http.auth = (dagshub_server.username, dagshub_server.token)
        proxy, direct = dagshub_server.tracking_uri + path, dagshub_server.server.url + path
        assert http.put(f"{proxy}/big.bin", data=b"".join(parts)).status_code == 200
        r = http.get(f"{proxy}/big.bin", stream=True)
        assert b"".join(r.iter_content(65536)) == b"".join(parts)
        # Chunked upload (no Content-Length): MLflow 3.17.2 under uvicorn answers 200 but
        # stores an EMPTY file, directly as through the proxy. MLflow's own client always
        # sends Content-Length; never upload a generator body to an MLflow server.
        sizes = []
        for base in (proxy, direct):
            assert http.put(f"{base}/chunked.bin", data=iter(parts)).status_code == 200
            sizes.append(len(http.get(f"{base}/chunked.bin").content))
        assert sizes[0] == sizes[1]
        assert http.get(f"{proxy}/big.bin").content == b"".join(parts)  # connection still sane
    assert dagshub_server.count("/api/2.0/mlflow-artifacts/artifacts/*", "PUT") == 2
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"big.bin", "chunked.bin"}


def test_dagshub_wrong_token_is_401(dagshub_server, monkeypatch, fast_http):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-token")
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(dagshub_server.tracking_uri).search_experiments()
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(dagshub_server.tracking_uri).search_experiments()


def test_dagshub_without_prefix_is_404(dagshub_server, dagshub_creds, fast_http):
    auth = (dagshub_server.username, dagshub_server.token)
    route = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(dagshub_server.tracking_uri + route, auth=auth).status_code == 200
    assert requests.get(dagshub_server.host + route, auth=auth).status_code == 404
    with pytest.raises(MlflowException, match="404"):
        mlflow.MlflowClient(dagshub_server.host).search_experiments()


def test_dagshub_api_routes(dagshub_server):
    host, token = dagshub_server.host, dagshub_server.token
    bearer = {"Authorization": f"Bearer {token}"}

    r = requests.get(f"{host}/api/v1/user", headers=bearer)
    assert r.status_code == 200
    assert r.json()["login"] == r.json()["username"] == dagshub_server.username
    assert requests.get(f"{host}/api/v1/user", auth=("anyone", token)).status_code == 200
    assert requests.get(f"{host}/api/v1/user").status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert requests.get(f"{host}/api/v1/user", headers=bad).status_code == 401

    repo = f"{host}/api/v1/repos/{dagshub_server.owner}/{dagshub_server.repo}"
    r = requests.get(repo, headers=bearer)
    assert r.status_code == 200
    assert r.json()["full_name"] == f"{dagshub_server.owner}/{dagshub_server.repo}"
    assert requests.get(f"{host}/api/v1/repos/someone/else", headers=bearer).status_code == 404
    assert requests.get(repo, headers=bad).status_code == 401


def test_real_dagshub_client_in_subprocess(dagshub_server, monkeypatch, tmp_path):
    """`dagshub.init` (real client) accepts the stand-in and MLflow then logs through it."""
    code = textwrap.dedent(
        """
        import os, dagshub, mlflow
        dagshub.init(repo_owner=os.environ["OWNER"], repo_name=os.environ["REPO"],
                     host=os.environ["DAGSHUB_CLIENT_HOST"], mlflow=True)
        print("uri", os.environ["MLFLOW_TRACKING_URI"])
        with mlflow.start_run() as run:
            mlflow.log_metric("acc", 0.5)
        print("run", run.info.run_id)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSHUB_"))}
    env.update(dagshub_server.env)
    # dagshub.init must set these itself from the API answers.
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key)
    env.update(OWNER=dagshub_server.owner, REPO=dagshub_server.repo)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["uri"] == dagshub_server.tracking_uri
    assert dagshub_server.count("/api/v1/user") >= 1
    assert dagshub_server.count(f"/api/v1/repos/{dagshub_server.owner}/{dagshub_server.repo}")
    assert dagshub_server.count("/api/2.0/mlflow/runs/create") == 1
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.token)
    client = mlflow.MlflowClient(dagshub_server.tracking_uri)
    assert client.get_run(lines["run"]).data.metrics == {"acc": 0.5}


def test_dagshub_fail_routes(dagshub_server, dagshub_creds, fast_http):
    client = mlflow.MlflowClient(dagshub_server.tracking_uri)
    exp_id = client.create_experiment(f"faults-{uuid.uuid4().hex[:8]}")
    create = "/api/2.0/mlflow/runs/create"
    try:
        # One 503, then the client's retry gets through.
        dagshub_server.fail_routes = {create: (503, 1)}
        dagshub_server.reset_counts()
        client.create_run(exp_id)
        assert dagshub_server.count(create) == 2
        assert [s for _, _, s in dagshub_server.requests] == [503, 200]
        assert create not in dagshub_server.fail_routes

        # Always 503: the client gives up.
        dagshub_server.fail_routes[create] = 503
        with pytest.raises(MlflowException):
            client.create_run(exp_id)

        # A lost answer: the server created the run, the retry creates a second one.
        dagshub_server.fail_routes = {create: ("lose", 1)}
        client.create_run(exp_id)
        assert len(client.search_runs([exp_id])) == 3
    finally:
        dagshub_server.clear_failures()


def test_dagshub_stop_start_keeps_data(dagshub_server, dagshub_creds, fast_http, tmp_path):
    client = mlflow.MlflowClient(dagshub_server.tracking_uri)
    run_id, payload = _log_everything(client, tmp_path)

    # Backend down behind a live proxy: the gateway answers 502.
    dagshub_server.server.stop()
    r = requests.get(
        dagshub_server.tracking_uri + "/api/2.0/mlflow/experiments/search?max_results=1",
        auth=(dagshub_server.username, dagshub_server.token),
    )
    assert r.status_code == 502

    dagshub_server.stop()
    dagshub_server.stop()  # idempotent
    assert not dagshub_server.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(dagshub_server.host + "/api/v1/user", timeout=5)

    dagshub_server.start()
    assert dagshub_server.is_running()
    _check_everything(client, run_id, payload, tmp_path)
    bearer = {"Authorization": f"Bearer {dagshub_server.token}"}
    assert requests.get(dagshub_server.host + "/api/v1/user", headers=bearer).ok
