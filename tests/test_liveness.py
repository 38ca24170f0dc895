"""A live writer stays visibly alive, and a store that cannot be reached neither stalls
the end of a run nor makes threads and open files grow with the number of runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core_fixtures import local_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return {**base, **extra}


def offline_writer(project: Path) -> subprocess.Popen[str]:
    """``writer.py`` of ``project``, started offline with its output piped."""
    return subprocess.Popen(
        [sys.executable, "writer.py"],
        cwd=project,
        env=clean_env(TRACKSDK_MODE="offline"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_offline_run_keeps_its_heartbeat_so_another_hosts_sync_leaves_it(project: Path) -> None:
    """A shared spool: a sync on another host must not replay an offline run still written."""
    (project / "writer.py").write_text(
        textwrap.dedent(
            """
            import os, sys, time
            from tracksdk import tracked
            from tracksdk._journal import live
            live.HEARTBEAT_EVERY = 0.2
            with tracked(experiment="spool") as run:
                print(run.client_run_id, flush=True)
                for i in range(600):
                    run.log_metric("loss", float(i), step=i)
                    time.sleep(0.05)
                    if os.path.exists("stop"):
                        break
            """
        )
    )
    writer = offline_writer(project)
    assert writer.stdout is not None
    client_id = writer.stdout.readline().strip()
    folder = project / ".tracksdk" / "journal" / client_id
    meta = json.loads((folder / "meta.json").read_text())
    meta["host"] = "node-a"  # as if written by another machine on a shared folder
    (folder / "meta.json").write_text(json.dumps(meta))
    time.sleep(1.0)
    first = float((folder / "heartbeat").read_text())
    time.sleep(1.0)
    assert float((folder / "heartbeat").read_text()) > first  # beating, with no sender
    # A sync that counts a heartbeat older than 2 s as a dead writer: this one is alive.
    sync = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tracksdk import cli; from tracksdk._journal import folders; "
            "folders.HEARTBEAT_STALE = 2.0; "
            "sys.argv = ['tracksdk', 'sync', '--all']; cli.main()",
        ],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.poll() is None  # the sync ran while the writer was still writing
    assert "skipped" in sync.stdout, sync.stdout + sync.stderr
    (project / "stop").touch()
    _, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0, stderr
    assert folder.exists()  # still there for a real sync, nothing sent half-way
    assert local_client(project).get_experiment_by_name("spool") is None


LOOP = """
import os, resource, sys, threading, time
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
from tracksdk import tracked
counts = []
for i in range(int(sys.argv[1])):
    with tracked(experiment="down", run_name=f"r{i}") as run:
        run.log_metric("m", float(i))
        with open(sys.argv[0]) as own:  # the user's own file, every run
            own.read(1)
    if i in (5, int(sys.argv[1]) - 1):
        counts.append((threading.active_count(), len(os.listdir("/proc/self/fd"))))
print("COUNTS", counts)
"""


def test_store_down_threads_and_files_do_not_grow_with_runs(project: Path) -> None:
    """25 runs against a closed port under `ulimit -n 80`: no growth, the user's open works.

    Counted after run 5 and after run 25: a thread or a file left per run shows as 20 more.
    """
    (project / "loop.py").write_text(textwrap.dedent(LOOP))
    env = clean_env(
        TRACKSDK_BACKEND="server",
        TRACKSDK_SERVER__URI=f"http://127.0.0.1:{free_port()}",
        TRACKSDK_FLUSH_TIMEOUT="0.2",
        TRACKSDK_START_TIMEOUT="0.2",
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [sys.executable, "loop.py", "25", "80"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = eval(result.stdout.split("COUNTS", 1)[1])
    (threads_5, fds_5), (threads_25, fds_25) = counts
    assert threads_25 <= threads_5 + 3, counts
    assert fds_25 <= fds_5 + 4, counts
    journals = list((project / ".tracksdk" / "journal").iterdir())
    assert len(journals) == 25  # every run kept for a later sync


def test_end_of_run_does_not_wait_the_flush_timeout_when_the_store_is_down(
    project: Path,
) -> None:
    """A closed port: the run ends within seconds, not TRACKSDK_FLUSH_TIMEOUT, with one message."""
    (project / "short.py").write_text(
        textwrap.dedent(
            """
            import time
            from tracksdk import tracked
            start = time.monotonic()
            with tracked(experiment="short") as run:
                run.log_metric("m", 1.0)
                time.sleep(0.1)
            print("ELAPSED", time.monotonic() - start)
            """
        )
    )
    env = clean_env(
        TRACKSDK_BACKEND="server",
        TRACKSDK_SERVER__URI=f"http://127.0.0.1:{free_port()}",
        TRACKSDK_FLUSH_TIMEOUT="30",
    )
    result = subprocess.run(
        [sys.executable, "short.py"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    elapsed = float(result.stdout.split("ELAPSED")[1])
    assert elapsed < 12, (elapsed, result.stderr)
    assert result.stderr.count("cannot be reached") == 1, result.stderr
    assert "tracksdk sync" in result.stderr
    assert len(list((project / ".tracksdk" / "journal").iterdir())) == 1


def test_the_automatic_sync_does_not_read_a_live_jobs_journal(project: Path) -> None:
    """Dozens of jobs share one journal folder: each run's start must skip the others'
    live journals by their lock alone, not read their records (which cost every job CPU
    in proportion to all the others' points). ``tracksdk sync`` still counts them.
    """
    from tracksdk import _replay
    from tracksdk._journal import folders
    from tracksdk.backends import Connection

    (project / "writer.py").write_text(
        textwrap.dedent(
            """
            import os, time
            from tracksdk import tracked
            with tracked(experiment="busy") as run:
                for i in range(3000):
                    run.log_metric("loss", float(i), step=i)
                print(run.client_run_id, flush=True)
                while not os.path.exists("stop"):
                    time.sleep(0.05)
            """
        )
    )
    writer = offline_writer(project)
    try:
        assert writer.stdout is not None
        client_id = writer.stdout.readline().strip()
        found = next(f for f in folders.find(project / ".tracksdk" / "journal"))
        assert found.client_id == client_id
        uri = f"sqlite:///{project / 'mlflow.db'}"
        conn = Connection(backend="local", tracking_uri=uri, registry_uri=uri)
        quiet = _replay.sync_one(found, conn, http_timeout=5.0, read_skipped=False)
        counted = _replay.sync_one(found, conn, http_timeout=5.0)
    finally:
        (project / "stop").touch()
        _, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0, stderr
    assert (quiet.state, counted.state) == ("live", "live")
    assert "still running" in quiet.message
    assert quiet.summary.metric_points == 0 and not quiet.summary.records  # not read
    assert counted.summary.metric_points == 3000  # what `tracksdk sync` shows
