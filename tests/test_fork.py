"""Forked children of a tracked process: their points reach the parent's run, nothing of
the parent's is overwritten, and a child that never logs leaves no trace.

Each case runs as its own script, the way users run training, so that the fork happens
in a real process with the sender's threads running; the store is then read back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import local_client

PRELUDE = """
import multiprocessing as mp, os, sys, threading, time
import tracksdk
from tracksdk import tracked
"""


def run_script(project: Path, body: str, env: dict[str, str] | None = None, timeout: float = 240):
    script = project / "job.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=project,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def the_run(client: Any, experiment: str) -> Any:
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    [run] = client.search_runs([found.experiment_id])
    return run


def steps(client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def journals_left(project: Path) -> list[str]:
    """The journal folders left, each with what its KEPT.txt says (a kept one's reason)."""
    folder = project / ".tracksdk" / "journal"
    if not folder.exists():
        return []
    found = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "kept")
    kept = folder / "kept"
    found += sorted(p for p in kept.iterdir() if p.is_dir()) if kept.exists() else []
    return [
        f"{p.relative_to(folder)}: {(p / 'KEPT.txt').read_text()[:1500]}"
        if (p / "KEPT.txt").exists()
        else str(p.relative_to(folder))
        for p in found
    ]


CHILD_LOGS = """
def child():
    for i in range(100):
        tracksdk.log_metric("child_metric", float(i), step=i)
    tracksdk.log_param("child_param", "from-child")

with tracked(experiment="fork-join") as run:
    for i in range(200):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
    run.flush()
    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join()
    assert proc.exitcode == 0, proc.exitcode
    time.sleep(float(os.environ.get("AFTER_JOIN", "0")))
    for i in range(200, 400):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
print("END", run.status, run.run_id)
"""


@pytest.mark.parametrize("after_join", ["0", "1.5"])
def test_forked_child_points_reach_the_parents_run(project: Path, after_join: str) -> None:
    """Parent 200 points, a forked child 100 points and a param, parent 200 more: all kept."""
    result = run_script(project, CHILD_LOGS, {"AFTER_JOIN": after_join})
    assert result.returncode == 0, result.stderr
    assert "END FINISHED" in result.stdout
    assert "TrackSDKWarning" not in result.stderr, result.stderr
    client = local_client(project)
    run = the_run(client, "fork-join")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss") == list(range(400))
    assert steps(client, run.info.run_id, "child_metric") == list(range(100))
    assert run.data.params["child_param"] == "from-child"
    assert journals_left(project) == []


@pytest.mark.server
def test_forked_child_points_reach_the_parents_run_on_a_server(
    project: Path, mlflow_server: Any
) -> None:
    """The same on the PostgreSQL-backed server: the child sends over its own connection."""
    from mlflow.tracking import MlflowClient

    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url}
    body = CHILD_LOGS.replace("fork-join", "fork-join-server")
    result = run_script(project, body, env)
    assert result.returncode == 0, result.stderr
    assert "TrackSDKWarning" not in result.stderr, result.stderr
    client = MlflowClient(mlflow_server.url)
    run = the_run(client, "fork-join-server")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss") == list(range(400))
    assert steps(client, run.info.run_id, "child_metric") == list(range(100))
    assert run.data.params["child_param"] == "from-child"


def test_pool_workers_that_never_log_leave_no_trace(project: Path) -> None:
    """Pool.__exit__ SIGTERMs its workers: no KILLED record, no warning, no lost point."""
    body = """
    def square(x):
        return x * x

    with tracked(experiment="pool") as run:
        for i in range(200):
            run.log_metric("loss", float(i), step=i)
        run.flush()
        with mp.get_context("fork").Pool(2) as pool:
            assert sum(pool.map(square, range(10))) == 285
        time.sleep(1.5)
        for i in range(200, 400):
            run.log_metric("loss", float(i), step=i)
    print("END", run.status)
    """
    for _ in range(2):  # the overwrite this guards against depended on timing
        result = run_script(project, body)
        assert result.returncode == 0, result.stderr
        assert "tracksdk" not in result.stderr, result.stderr
    client = local_client(project)
    experiment = client.get_experiment_by_name("pool")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED"
        assert steps(client, run.info.run_id, "loss") == list(range(400))
    assert journals_left(project) == []


def test_pool_workers_that_log_add_to_the_parents_run(project: Path) -> None:
    """Workers logging through tracksdk.log_*: every point arrives, the run ends FINISHED."""
    body = """
    def work(i):
        tracksdk.log_metric("worker_metric", float(i), step=i)
        return i

    with tracked(experiment="pool-log") as run:
        for i in range(200):
            run.log_metric("loss", float(i), step=i)
        with mp.get_context("fork").Pool(3) as pool:
            assert pool.map(work, range(60)) == list(range(60))
        for i in range(200, 400):
            run.log_metric("loss", float(i), step=i)
    print("END", run.status)
    """
    result = run_script(project, body)
    assert result.returncode == 0, result.stderr
    assert "END FINISHED" in result.stdout
    client = local_client(project)
    run = the_run(client, "pool-log")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss") == list(range(400))
    assert steps(client, run.info.run_id, "worker_metric") == list(range(60))
    assert journals_left(project) == []


def test_fork_while_another_thread_logs_never_deadlocks(project: Path) -> None:
    """A thread logs in a tight loop while 20 children fork, log and leave by os._exit."""
    body = """
    stop = threading.Event()
    with tracked(experiment="fork-busy") as run:
        def busy():
            i = 0
            while not stop.is_set():
                run.log_metric("busy", float(i), step=i)
                i += 1
                if i % 20 == 0:
                    time.sleep(0.001)  # busy, but not a 70 MB journal for sqlite
        thread = threading.Thread(target=busy)
        thread.start()
        hung = 0
        for n in range(20):
            pid = os.fork()
            if pid == 0:
                tracksdk.log_metric("child", float(n), step=n)
                os._exit(0)  # its point waits in its journal: the parent's end sends it
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.01)
            else:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        stop.set()
        thread.join()
    print("HUNG", hung, "END", run.status)
    """
    result = run_script(project, body)
    assert result.returncode == 0, result.stderr
    assert "HUNG 0 END FINISHED" in result.stdout, result.stdout + result.stderr
    client = local_client(project)
    run = the_run(client, "fork-busy")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "child") == list(range(20))
    busy = steps(client, run.info.run_id, "busy")
    assert busy == list(range(len(busy))) and len(busy) > 100


def test_child_leaving_by_os_exit_is_sent_by_the_parent(project: Path) -> None:
    """A child that logs and dies at once (os._exit): the parent's run end sends its points."""
    body = """
    with tracked(experiment="fork-exit") as run:
        pid = os.fork()
        if pid == 0:
            for i in range(50):
                tracksdk.log_metric("child", float(i), step=i)
            os._exit(0)
        os.waitpid(pid, 0)
        run.log_metric("parent", 1.0)
    print("END", run.status)
    """
    result = run_script(project, body)
    assert result.returncode == 0, result.stderr
    client = local_client(project)
    run = the_run(client, "fork-exit")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "child") == list(range(50))
    assert journals_left(project) == []


def test_offline_child_journal_is_synced_into_the_parents_run(project: Path) -> None:
    """Offline: the child's journal waits beside the parent's; `tracksdk sync` joins them."""
    body = """
    def child():
        for i in range(20):
            tracksdk.log_metric("child", float(i), step=i)

    with tracked(experiment="fork-offline") as run:
        run.log_metric("parent", 1.0)
        proc = mp.get_context("fork").Process(target=child)
        proc.start()
        proc.join()
    """
    result = run_script(project, body, {"TRACKSDK_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    assert len(journals_left(project)) == 2
    from core_fixtures import run_cli

    synced = run_cli(project, "sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    client = local_client(project)
    run = the_run(client, "fork-offline")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "child") == list(range(20))
    assert journals_left(project) == []


def test_spawned_child_joins_the_run_through_the_environment(project: Path) -> None:
    """A spawn child is a new interpreter: it joins the parent's run (TRACKSDK_PARENT_RUN).

    docs/distributed.md, "Spawned children and subprocesses"; tests/test_attach.py has
    the explicit ``tracksdk.attach`` and a process pool.
    """
    body = """
    def child():
        tracksdk.log_metric("child", 1.0)
        print("CHILD", tracksdk.active_run() is None, flush=True)

    if __name__ == "__main__":
        with tracked(experiment="spawn") as run:
            run.log_metric("parent", 1.0)
            proc = mp.get_context("spawn").Process(target=child)
            proc.start()
            proc.join()
        print("END", run.status)
    """
    result = run_script(project, body)
    assert result.returncode == 0, result.stderr
    assert "no tracked run is open" not in result.stdout + result.stderr
    assert "CHILD True" in result.stdout  # no run of its own: the parent's, joined
    client = local_client(project)
    run = the_run(client, "spawn")
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"parent", "child"}


def test_worker_forked_while_git_runs_does_not_hold_up_the_run(project: Path) -> None:
    """A long-lived worker forked while a provenance git call's pipe is open: git tags
    recorded, and the run ends while the worker still runs (not when it exits)."""
    from core_fixtures import git

    git(project, "remote", "add", "origin", "https://example.com/owner/repo.git")
    body = """
    # Forces the race the user's code can hit: the provenance worker's first pipe (a git
    # call's stdout) waits until the main thread has forked, so the worker inherits it.
    real_pipe = os.pipe
    opened, forked = threading.Event(), threading.Event()

    def pipe():
        fds = real_pipe()
        if threading.current_thread().name == "tracksdk-provenance" and not opened.is_set():
            opened.set()
            forked.wait(60)
        return fds

    os.pipe = pipe

    def worker(parent):
        # Long-lived, like a data-loader worker, but gone with its parent: never a stray.
        end = time.monotonic() + 300
        while os.getppid() == parent and time.monotonic() < end:
            time.sleep(0.1)

    with tracked(experiment="fork-git") as run:
        assert opened.wait(60)
        proc = mp.get_context("fork").Process(target=worker, args=(os.getpid(),), daemon=True)
        proc.start()
        forked.set()
        run.log_metric("loss", 1.0)
    print("WORKER ALIVE AT RUN END", proc.is_alive())
    proc.terminate()
    proc.join()
    print("END", run.status)
    """
    result = run_script(project, body)
    assert result.returncode == 0, result.stderr
    assert "WORKER ALIVE AT RUN END True" in result.stdout, result.stdout + result.stderr
    assert "END FINISHED" in result.stdout
    assert "TrackSDKWarning" not in result.stderr, result.stderr
    tags = the_run(local_client(project), "fork-git").data.tags
    assert tags["tracksdk.git.status"] == "ok"
    assert tags["mlflow.source.git.commit"] == git(project, "rev-parse", "HEAD").strip()
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.git.repoURL"] == "https://example.com/owner/repo.git"
    assert tags["mlflow.source.git.dirty"] == "false"
