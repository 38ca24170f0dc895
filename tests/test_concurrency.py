"""Many processes on one store at once: nothing fails, nothing is lost (issue 4).

Requirements:

- "Eight processes creating a new store at once never fail: lock around first creation."
- "Eight processes logging 1,000 points each to one store: 0 errors, 0 lost."

A launcher process imports MLflow (the slow part: ~3 s of CPU each, 25 s for eight
interpreters on this 2-core machine) and then forks eight workers. Each worker is its own
process with its own stdout/stderr files, store connections, journal and locks; it waits
for a "go" file, so that all eight reach the store within a few milliseconds, runs a tiny
tracked block and exits normally. What they stored is read back through MlflowClient and
checked point by point; their stderr must hold no warning, error or traceback.

The last test is about what the end of such a process may leave behind: a journal whose
run was fully sent, found later by `tracksdk sync`, must not change that run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import FORK_WORKERS

WORKERS = 8
POINTS = 1000
STEP_BASE = 1_000_000  # worker i logs steps i*STEP_BASE ... i*STEP_BASE + POINTS - 1
READY_TIMEOUT = 240.0  # importing MLflow on a busy machine
RUN_TIMEOUT = 240.0

LAUNCHER = (
    textwrap.dedent(
        """
    import json, os, sys, time, traceback
    from pathlib import Path

    # The slow imports happen once, here, before the workers are forked.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401
    import tracksdk.settings  # noqa: F401
    from tracksdk import tracked

    workers, points, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    go = work / "go"
    base_step = int(os.environ["JOB_STEP_BASE"])
    deadline = time.monotonic() + float(os.environ["JOB_READY_TIMEOUT"])


    def worker(index):
        while not go.exists():
            if time.monotonic() > deadline:
                raise SystemExit("worker %d: no go signal" % index)
            time.sleep(0.002)
        base = index * base_step
        experiment = os.environ["JOB_EXPERIMENT"]
        with tracked(experiment=experiment, run_name="worker-%d" % index) as run:
            for i in range(points):
                run.log_metric("m", float(i), step=base + i)
        print(json.dumps({
            "index": index,
            "pid": os.getpid(),
            "run_id": run.run_id,
            "client_run_id": run.client_run_id,
            "status": run.status,
        }))
    """
    )
    + FORK_WORKERS
)


def base_env() -> dict[str, str]:
    """The test's environment without any tracksdk, MLflow or DagsHub setting."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKSDK_", "MLFLOW_", "DAGSHUB_", "PYTHONWARNINGS"))
        and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    }


# Provenance capture is not what these tests are about; it only slows eight processes.
CHEAP = {
    f"TRACKSDK_CAPTURE__{name}": "false"
    for name in ("GIT", "DIFF", "UNTRACKED", "SOURCE", "COMMAND", "ENVIRONMENT", "REQUIREMENTS")
}


@dataclass
class Finished:
    index: int
    returncode: int
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert lines, f"worker {self.index} printed nothing; stderr:\n{self.stderr}"
        return json.loads(lines[-1])  # type: ignore[no-any-return]


def run_workers(project: Path, env: dict[str, str], points: int) -> list[Finished]:
    """Fork WORKERS processes, release them together, and wait for every one."""
    work = project.parent / f"workers-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    script = work / "launcher.py"
    script.write_text(LAUNCHER)
    full_env = {
        **base_env(),
        **CHEAP,
        **env,
        "JOB_READY_TIMEOUT": str(READY_TIMEOUT),
        "JOB_STEP_BASE": str(STEP_BASE),
    }
    with (work / "launcher.out").open("wb") as out, (work / "launcher.err").open("wb") as err:
        launcher = subprocess.Popen(
            [sys.executable, str(script), str(WORKERS), str(points), str(work)],
            cwd=project,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: killed whole on a timeout
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (work / "forked").exists():
            if launcher.poll() is not None:
                pytest.fail(f"the launcher died:\n{(work / 'launcher.err').read_text()}")
            assert time.monotonic() < deadline, "the workers were not forked in time"
            time.sleep(0.02)
        (work / "go").touch()  # all eight go at once
        launcher.wait(timeout=RUN_TIMEOUT)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=30)
    launcher_err = (work / "launcher.err").read_text()
    assert launcher.returncode == 0, launcher_err
    codes = json.loads((work / "launcher.out").read_text().strip().splitlines()[-1])
    return [
        Finished(
            index,
            int(codes[str(index)]),
            (work / f"{index}.out").read_text(),
            (work / f"{index}.err").read_text(),
        )
        for index in range(WORKERS)
    ]


def assert_clean(finished: list[Finished]) -> list[dict[str, Any]]:
    """Every worker exited 0 with no warning, error or traceback on stderr."""
    problems = []
    for worker in finished:
        noisy = [
            line
            for line in worker.stderr.splitlines()
            if any(word in line.lower() for word in ("warning", "error", "traceback"))
        ]
        if worker.returncode != 0 or noisy:
            problems.append(f"worker {worker.index} (exit {worker.returncode}):\n{worker.stderr}")
    assert not problems, "\n\n".join(problems)
    results = [worker.result() for worker in finished]
    assert [r["index"] for r in results] == list(range(WORKERS))
    assert all(r["status"] == "FINISHED" for r in results), results
    assert len({r["pid"] for r in results}) == WORKERS, results  # eight processes
    run_ids = [r["run_id"] for r in results]
    assert None not in run_ids and len(set(run_ids)) == WORKERS, run_ids
    return results


def no_journals_left(project: Path) -> list[str]:
    folder = project / ".tracksdk" / "journal"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def check_store(client: Any, experiment: str, results: list[dict[str, Any]], points: int) -> None:
    """The store holds exactly the workers' runs, FINISHED, each with all of its points."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment!r} is missing"
    runs = {r.info.run_id: r for r in client.search_runs([found.experiment_id], max_results=100)}
    assert set(runs) == {r["run_id"] for r in results}
    problems = []
    for result in results:
        run = runs[result["run_id"]]
        index = result["index"]
        if run.info.status != "FINISHED":
            problems.append(f"worker {index}: run is {run.info.status}")
        if run.info.run_name != f"worker-{index}":
            problems.append(f"worker {index}: run name {run.info.run_name!r}")
        if run.data.tags.get("tracksdk.client_run_id") != result["client_run_id"]:
            problems.append(f"worker {index}: client run id tag differs")
        for tag in ("tracksdk.write_failures", "tracksdk.dropped_points"):
            if tag in run.data.tags:
                problems.append(f"worker {index}: {tag}={run.data.tags[tag]}")
        history = client.get_metric_history(run.info.run_id, "m")
        got = sorted((m.step, m.value) for m in history)
        base = index * STEP_BASE
        want = [(base + i, float(i)) for i in range(points)]
        if got != want:
            missing = sorted(set(want) - set(got))
            extra = len(got) - len(set(got))
            foreign = sorted(set(got) - set(want))
            problems.append(
                f"worker {index}: {len(got)} points, {len(missing)} missing "
                f"(first {missing[:5]}), {extra} duplicated, {len(foreign)} foreign "
                f"(first {foreign[:5]})"
            )
    assert not problems, "\n".join(problems)


def sqlite_client(root: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def new_store_root(fresh_project: Path) -> Iterator[Path]:
    """A store folder that does not exist yet (outside the project, not created by anyone)."""
    root = fresh_project.parent / "new-store" / "nested"
    assert not root.parent.exists()
    yield root


def test_eight_processes_create_a_new_store_at_once(
    fresh_project: Path, new_store_root: Path
) -> None:
    """Eight processes create the same new store (and experiment) together: none fails."""
    env = {
        "TRACKSDK_BACKEND": "local",
        "TRACKSDK_LOCAL__ROOT": str(new_store_root),
        "JOB_EXPERIMENT": "race",
    }
    finished = run_workers(fresh_project, env, points=1)
    results = assert_clean(finished)
    assert (new_store_root / "mlflow.db").is_file()
    assert not (fresh_project / "mlflow.db").exists()  # the setting was honoured
    client = sqlite_client(new_store_root)
    assert [e.name for e in client.search_experiments()].count("race") == 1
    check_store(client, "race", results, points=1)
    assert no_journals_left(fresh_project) == []


def test_eight_processes_log_1000_points_each_to_one_local_store(project: Path) -> None:
    """8 x 1,000 points into one sqlite store at once: 0 errors, 0 lost, 0 duplicated."""
    env = {"TRACKSDK_BACKEND": "local", "JOB_EXPERIMENT": "load"}
    finished = run_workers(project, env, points=POINTS)
    results = assert_clean(finished)
    check_store(sqlite_client(project), "load", results, points=POINTS)
    assert no_journals_left(project) == []


@pytest.mark.server
def test_eight_processes_log_1000_points_each_to_one_server(
    project: Path, mlflow_server: Any
) -> None:
    """8 x 1,000 points into one real `mlflow server` at once: 0 errors, 0 lost."""
    from mlflow.tracking import MlflowClient

    experiment = f"load-{uuid.uuid4().hex[:8]}"  # the server is shared by the session
    env = {
        "TRACKSDK_BACKEND": "server",
        "TRACKSDK_SERVER__URI": mlflow_server.url,
        "JOB_EXPERIMENT": experiment,
    }
    finished = run_workers(project, env, points=POINTS)
    results = assert_clean(finished)
    check_store(MlflowClient(tracking_uri=mlflow_server.url), experiment, results, points=POINTS)
    assert no_journals_left(project) == []


def test_a_sent_journal_left_behind_does_not_turn_a_finished_run_killed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process can die after the store acknowledged its run's last record (the end) and
    before the journal is deleted: SIGKILL or the OOM killer right after the run, or the
    interpreter stopping the daemon sender in the middle of deleting the folder. The next
    `tracksdk sync` (or tracked run) must then leave the FINISHED run as it is, not replay
    it as a dead run and end it again as KILLED."""
    from tracksdk import tracked
    from tracksdk._journal import folders

    delete = folders.remove
    monkeypatch.setattr(folders, "remove", lambda path: None)  # died before deleting
    with tracked(experiment="left-behind", settings={"capture": {"requirements": False}}) as run:
        run.log_metric("m", 1.0, step=3)
    monkeypatch.setattr(folders, "remove", delete)
    assert run.status == "FINISHED" and run.run_id is not None
    journal = project / ".tracksdk" / "journal" / str(run.client_run_id)
    assert journal.is_dir()
    client = sqlite_client(project)
    before = client.get_run(run.run_id).info
    assert before.status == "FINISHED"

    result = subprocess.run(
        [str(Path(sys.executable).parent / "tracksdk"), "sync"],
        cwd=project,
        env={**base_env(), "TRACKSDK_BACKEND": "local"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    after = client.get_run(run.run_id)
    assert (after.info.status, after.info.end_time) == (before.status, before.end_time)
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "m")] == [(3, 1.0)]
    assert no_journals_left(project) == []
