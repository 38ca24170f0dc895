"""Faults against real `mlflow server` processes: nothing lost, nothing duplicated, no stall.

The plain server (`mlflow_server`, PostgreSQL) is killed and restarted by PID. Faults that
cannot be made that way go through the DagsHub-shaped server's proxy (`dagshub_server`):
lost responses, 429/503 with Retry-After, a black hole that accepts and never answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import tracksdk
from tracksdk import TrackSDKWarning, tracked

pytestmark = pytest.mark.server

CREATE = "/api/2.0/mlflow/runs/create"
LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"
TRACKSDK = [sys.executable, "-m", "tracksdk.cli"]


def admin_client(server: Any) -> Any:
    """A client that reads the DagsHub-shaped server as its admin (or the plain server)."""
    from mlflow.tracking import MlflowClient

    if hasattr(server, "admin_username"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = server.admin_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = server.admin_password
        return MlflowClient(server.tracking_uri)
    return MlflowClient(server.url)


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the admin credentials a test sets to read runs back."""
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)


def use_server(monkeypatch: pytest.MonkeyPatch, server: Any) -> None:
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", server.url)
    tracksdk.reset()


def use_dagshub(monkeypatch: pytest.MonkeyPatch, server: Any) -> None:
    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__HOST", server.host)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__OWNER", server.owner)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__REPO", server.repo)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", server.token)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__USERNAME", server.username)
    tracksdk.reset()


def dagshub_env(server: Any) -> dict[str, str]:
    return {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": server.host,
        "TRACKSDK_DAGSHUB__OWNER": server.owner,
        "TRACKSDK_DAGSHUB__REPO": server.repo,
        "TRACKSDK_DAGSHUB__TOKEN": server.token,
        "TRACKSDK_DAGSHUB__USERNAME": server.username,
    }


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return {**env, **extra}


def steps_of(client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def runs_of(client: Any, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_runs([found.experiment_id], run_view_type=3, max_results=500))


def test_server_killed_mid_run_loses_nothing_and_never_blocks(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (down 3 s, then its restart: ~8 s in all) while points are logged
    at a steady rate, before, during and after the outage.

    No call takes over 50 ms, every point arrives exactly once, and the run is FINISHED.
    """
    use_server(monkeypatch, mlflow_server)
    slowest = 0.0
    outage: list[float] = []

    def kill_and_restart() -> None:
        outage.append(time.monotonic())
        mlflow_server.kill(signal.SIGKILL)
        time.sleep(3)
        mlflow_server.start()
        outage.append(time.monotonic())

    # Logging goes on until 200 steps after the server is back: the outage, however long the
    # restart takes here, lies wholly inside the logging.
    with (
        pytest.warns(TrackSDKWarning, match="cannot reach the store") as warned,
        tracked(experiment="killed-server") as run,
    ):
        assert run.run_id is not None
        killer = threading.Thread(target=kill_and_restart)
        step, last = 0, None
        while last is None or step < last:
            if step == 200:
                killer.start()
            if last is None and step > 200 and not killer.is_alive():
                last = step + 200
            started = time.perf_counter()
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.01)
            step += 1
        killer.join()
        # The end of a run waits only seconds for a store that is down; an explicit flush
        # waits as long as it is told to, here until the restarted server answers.
        assert run.flush(180)
    assert len(warned) == 1  # one warning for the outage, not one per failed attempt
    assert outage[1] - outage[0] >= 3
    print(
        f"\nserver down {outage[1] - outage[0]:.1f} s; {last} points; "
        f"slowest call {slowest * 1000:.2f} ms"
    )
    assert slowest < 0.050, f"slowest log_metric took {slowest * 1000:.1f} ms"
    client = admin_client(mlflow_server)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert steps_of(client, run.run_id, "loss") == list(range(last))


# Each run goes through the same steps (create, answer lost, find it by client run id), so
# a few runs show what twenty did.
RUNS = 6


def test_lost_create_run_answers_make_no_ghost_runs(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader: None
) -> None:
    """6 runs whose runs/create answer is lost once each: 6 runs, not 12."""
    use_dagshub(monkeypatch, dagshub_server)
    dagshub_server.reset_counts()
    client_ids = []
    try:
        for index in range(RUNS):
            dagshub_server.fail_routes = {CREATE: ("lose", 1)}
            with tracked(experiment="lost-create", run_name=f"r{index}") as run:
                run.log_metric("m", float(index), step=index)
            client_ids.append(run.client_run_id)
            assert run.run_id is not None
    finally:
        dagshub_server.clear_failures()
    lost = [r for r in dagshub_server.requests if r[1].endswith(CREATE) and r[2] == 0]
    print(f"\n{len(lost)} create answers lost")
    assert len(lost) == RUNS
    client = admin_client(dagshub_server)
    runs = runs_of(client, "lost-create")
    assert len(runs) == RUNS
    assert sorted(r.data.tags["tracksdk.client_run_id"] for r in runs) == sorted(client_ids)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.metrics["m"] for r in runs) == [float(i) for i in range(RUNS)]


def test_lost_log_batch_answers_make_no_duplicates(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader: None
) -> None:
    """6 log-batch answers lost (the server stored the batch), between batches that are
    answered: every point exactly once."""
    use_dagshub(monkeypatch, dagshub_server)
    dagshub_server.reset_counts()
    try:
        with tracked(experiment="lost-batch") as run:
            for burst in range(8):
                if burst < 6:  # the next log-batch is stored, and its answer lost
                    dagshub_server.fail_routes = {LOG_BATCH: ("lose", 1)}
                for i in range(10):
                    step = burst * 10 + i
                    run.log_metric("loss", 1.0 / (step + 1), step=step)
                run.log_param(f"p{burst}", burst)
                assert run.flush(60)
    finally:
        dagshub_server.clear_failures()
    lost = [r for r in dagshub_server.requests if r[1].endswith(LOG_BATCH) and r[2] == 0]
    print(f"\n{len(lost)} log-batch answers lost")
    assert len(lost) == 6
    client = admin_client(dagshub_server)
    assert steps_of(client, run.run_id, "loss") == list(range(80))
    stored = client.get_run(run.run_id)
    assert stored.data.params == {f"p{b}": str(b) for b in range(8)}
    assert stored.info.status == "FINISHED"


def test_black_hole_server_never_blocks_log_calls(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader: None
) -> None:
    """A server that accepts and never answers: calls stay under 50 ms; all arrive after."""
    use_dagshub(monkeypatch, dagshub_server)
    monkeypatch.setenv("TRACKSDK_HTTP_TIMEOUT", "2")
    slowest = 0.0
    try:
        with (
            pytest.warns(TrackSDKWarning, match="cannot reach the store"),
            tracked(experiment="black-hole") as run,
        ):
            dagshub_server.fail_routes = {LOG_BATCH: "hang"}
            for step in range(600):
                started = time.perf_counter()
                run.log_metric("loss", 1.0 / (step + 1), step=step)
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.005)
            dagshub_server.clear_failures()
    finally:
        dagshub_server.clear_failures()
    print(f"\nblack hole: slowest call {slowest * 1000:.2f} ms")
    assert slowest < 0.050, f"slowest log_metric took {slowest * 1000:.1f} ms"
    client = admin_client(dagshub_server)
    assert steps_of(client, run.run_id, "loss") == list(range(600))
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_black_hole_at_start_waits_start_timeout_then_runs(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader: None
) -> None:
    """runs/create never answered: the function starts after TRACKSDK_START_TIMEOUT."""
    use_dagshub(monkeypatch, dagshub_server)
    monkeypatch.setenv("TRACKSDK_HTTP_TIMEOUT", "4")
    monkeypatch.setenv("TRACKSDK_START_TIMEOUT", "1")
    dagshub_server.fail_routes = {CREATE: ("hang", 1)}
    started = time.monotonic()
    try:
        with (
            pytest.warns(tracksdk.TrackSDKWarning, match="did not create run"),
            tracked(experiment="black-hole-start") as run,
        ):
            entered = time.monotonic() - started
            assert run.run_id is None and run.client_run_id
            for step in range(100):
                run.log_metric("loss", float(step), step=step)
    finally:
        dagshub_server.clear_failures()
    print(f"\nblack hole at start: the block started after {entered:.2f} s")
    assert entered < 10
    assert run.run_id is not None  # created in the background once the store answered
    client = admin_client(dagshub_server)
    [stored] = runs_of(client, "black-hole-start")
    assert stored.info.run_id == run.run_id
    assert steps_of(client, run.run_id, "loss") == list(range(100))
    assert stored.info.status == "FINISHED"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    project: Path,
    dagshub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    reader: None,
    status: int,
) -> None:
    """A 429/503 with Retry-After: 2 delays the next attempt by those 2 seconds."""
    use_dagshub(monkeypatch, dagshub_server)
    with tracked(experiment="retry-after") as run:
        dagshub_server.reset_counts()
        dagshub_server.fail_routes = {LOG_BATCH: (f"retry-after:{status}:2", 1)}
        for step in range(10):
            run.log_metric("loss", float(step), step=step)
        assert run.flush(30)
    batches = [
        (when, request)
        for when, request in zip(dagshub_server.request_times, dagshub_server.requests, strict=True)
        if request[1].endswith(LOG_BATCH)
    ]
    assert batches[0][1][2] == status
    assert batches[1][1][2] == 200
    assert batches[1][0] - batches[0][0] >= 1.9
    client = admin_client(dagshub_server)
    assert steps_of(client, run.run_id, "loss") == list(range(10))


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_server_at_start_is_waited_for_quietly(
    project: Path,
    dagshub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    reader: None,
    status: int,
) -> None:
    """Four "busy, retry after 1 s" answers to the run's creation (a team server shedding
    load): the start waits through them, within the start timeout, so the run exists
    with its id when the body starts, and nothing is said. (A 503 without Retry-After,
    often a proxy whose server is down, still gives up after three tries: see
    test_503_at_start_then_back_mid_run.)
    """
    use_dagshub(monkeypatch, dagshub_server)
    dagshub_server.fail_routes = {CREATE: (f"retry-after:{status}:1", 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackSDKWarning)
        with tracked(experiment=f"busy-{status}") as run:
            assert run.run_id is not None  # created before the body
            run.log_metric("loss", 0.5, step=0)
    creates = [r for r in dagshub_server.requests if r[1].endswith(CREATE)]
    assert [r[2] for r in creates] == [status] * 4 + [200]
    client = admin_client(dagshub_server)
    [stored] = runs_of(client, f"busy-{status}")
    assert stored.info.run_id == run.run_id and stored.info.status == "FINISHED"
    assert steps_of(client, run.run_id, "loss") == [0]


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from tracksdk import tracked

    with tracked(experiment=sys.argv[1]) as run:
        for step in range(int(sys.argv[2])):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_param("p", "v")
        print(run.client_run_id, run.run_id, flush=True)
        time.sleep(600)
    """
)


def start_child(
    project: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[str], str]:
    (project / "child.py").write_text(SIGNAL_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, "child.py", *args],
        cwd=project,
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line:
        child.kill()
        raise AssertionError(f"the child did not start: {child.communicate()[1]}")
    return child, line


def test_sigterm_ends_the_run_killed_within_5_s_and_loses_nothing(
    project: Path, mlflow_server: Any
) -> None:
    child, line = start_child(
        project,
        {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url},
        "sigterm",
        "3000",
    )
    run_id = line.split()[1]
    client = admin_client(mlflow_server)
    try:
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        status = None
        while time.monotonic() - sent < 5:
            status = client.get_run(run_id).info.status
            if status == "KILLED":
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - sent
        child.communicate(timeout=30)  # and close its pipes
    finally:
        if child.poll() is None:
            child.kill()
    print(f"\nSIGTERM: KILLED after {elapsed:.2f} s")
    assert status == "KILLED", f"status {status} after {elapsed:.1f} s"
    assert child.returncode == -signal.SIGTERM
    assert steps_of(client, run_id, "loss") == list(range(3000))
    assert client.get_run(run_id).data.params == {"p": "v"}
    assert not (project / ".tracksdk" / "journal").exists() or not any(
        (project / ".tracksdk" / "journal").iterdir()
    )


def test_sigkill_with_unsent_points_then_sync(
    project: Path, dagshub_server: Any, reader: None
) -> None:
    """Killed while log-batch hangs: `tracksdk sync` sends all 2,000 points; KILLED."""
    env = {**dagshub_env(dagshub_server), "TRACKSDK_HTTP_TIMEOUT": "2"}
    dagshub_server.fail_routes = {LOG_BATCH: "hang"}
    try:
        child, line = start_child(project, env, "sigkill", "2000")
        run_id = line.split()[1]
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)  # and close its pipes
    finally:
        dagshub_server.clear_failures()
    client = admin_client(dagshub_server)
    assert client.get_run(run_id).info.status == "RUNNING"  # what plain MLflow leaves
    result = subprocess.run(
        [*TRACKSDK, "sync"],
        cwd=project,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"as run {run_id}" in result.stdout
    assert client.get_run(run_id).info.status == "KILLED"
    assert steps_of(client, run_id, "loss") == list(range(2000))
    assert client.get_run(run_id).data.params == {"p": "v"}
    running = [r for r in runs_of(client, "sigkill") if r.info.status == "RUNNING"]
    assert running == []


def test_503_at_start_then_back_mid_run(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch, reader: None
) -> None:
    """Every MLflow route answers 503 at start: the function runs; when the server is
    back the run is created (once) and everything is sent, FINISHED."""
    use_dagshub(monkeypatch, dagshub_server)
    dagshub_server.fail_routes = {"/api/2.0/mlflow/*": 503}
    try:
        with (
            pytest.warns(tracksdk.TrackSDKWarning, match="did not create run"),
            tracked(experiment="down-at-start") as run,
        ):
            assert run.run_id is None
            for step in range(50):
                run.log_metric("loss", float(step), step=step)
            dagshub_server.clear_failures()
    finally:
        dagshub_server.clear_failures()
    assert run.run_id is not None
    client = admin_client(dagshub_server)
    [stored] = runs_of(client, "down-at-start")
    assert stored.info.status == "FINISHED"
    assert steps_of(client, run.run_id, "loss") == list(range(50))


def test_dns_failure_at_start_then_sync_to_another_store(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that does not resolve: journaled. `tracksdk sync` leaves it (recorded for
    another store) unless --all, which sends it to the configured server."""
    (project / "dns.py").write_text(
        "from tracksdk import tracked\n"
        "with tracked(experiment='dns') as run:\n"
        "    run.log_metric('m', 1.0)\n"
        "print(run.client_run_id)\n"
    )
    down = child_env(
        {
            "TRACKSDK_BACKEND": "server",
            "TRACKSDK_SERVER__URI": "http://tracksdk-no-such-host.invalid:5000",
            "TRACKSDK_FLUSH_TIMEOUT": "1",
        }
    )
    child = subprocess.run(
        [sys.executable, "dns.py"],
        cwd=project,
        env=down,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert "did not create run" in child.stderr
    client_run_id = child.stdout.strip()
    env = child_env({"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url})

    def sync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TRACKSDK, "sync", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    skipped = sync()
    assert skipped.returncode == 0, skipped.stderr
    assert "tracksdk-no-such-host.invalid" in skipped.stdout and "--all" in skipped.stdout
    sent = sync("--all")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    client = admin_client(mlflow_server)
    [stored] = runs_of(client, "dns")
    assert stored.data.tags["tracksdk.client_run_id"] == client_run_id
    assert stored.data.metrics["m"] == 1.0
    assert stored.info.status == "FINISHED"


def test_slow_flush_shows_a_progress_bar(
    project: Path,
    dagshub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    reader: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A run end that waits more than 2 s for the store says so on stderr."""
    use_dagshub(monkeypatch, dagshub_server)
    monkeypatch.setenv("TRACKSDK_HTTP_TIMEOUT", "2")
    try:
        with (
            pytest.warns(TrackSDKWarning, match="cannot reach the store"),
            tracked(experiment="slow-flush") as run,
        ):
            dagshub_server.fail_routes = {LOG_BATCH: "hang"}
            for step in range(100):
                run.log_metric("loss", float(step), step=step)
            threading.Timer(4.0, dagshub_server.clear_failures).start()
    finally:
        dagshub_server.clear_failures()
    err = capfd.readouterr().err
    assert "tracksdk: sending run" in err
    client = admin_client(dagshub_server)
    assert steps_of(client, run.run_id, "loss") == list(range(100))


def test_a_store_replaced_mid_run_gets_the_run_recreated_from_the_journal(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is replaced by an empty one on the same port mid-run (later batches get
    404 "run not found"): the run is created again there from the journal's start, with
    every point, the param and FINISHED, and one warning says so.
    """
    use_server(monkeypatch, mlflow_server)
    monkeypatch.setenv("TRACKSDK_FLUSH_TIMEOUT", "120")
    old_database = None
    try:
        with pytest.warns(TrackSDKWarning) as record, tracked(experiment="replaced") as run:
            for step in range(500):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            assert run.flush(60)
            first_id = run.run_id
            old_database = mlflow_server.replace_store()
            assert old_database is not None
            for step in range(500, 1000):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_param("after", "replaced")
            for step in range(1000, 1500):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
        messages = [str(w.message) for w in record]
        assert [m for m in messages if "no longer has run" in m], messages
        assert not [m for m in messages if "refused" in m], messages
        client = admin_client(mlflow_server)
        [stored] = runs_of(client, "replaced")
        assert stored.info.run_id != first_id
        assert stored.info.status == "FINISHED"
        assert stored.data.params == {"after": "replaced"}
        assert stored.data.tags["tracksdk.client_run_id"] == run.client_run_id
        # The provenance files were uploaded to the lost store and freed: said in a tag.
        assert "could not be sent again" in stored.data.tags["tracksdk.artifacts_not_resent"]
        assert steps_of(client, stored.info.run_id, "loss") == list(range(1500))
        journal = project / ".tracksdk" / "journal"
        assert not [p for p in journal.iterdir() if p.name != "kept"] if journal.exists() else True
        assert not (journal / "kept").exists()
    finally:
        # The server goes on with the fresh store (no test needs the old runs): dropping the
        # old database spares a second restart.
        mlflow_server.drop_old_store(old_database)
