"""Three worker processes share one Optuna study on PostgreSQL and one parent run.

The study lives in a fresh PostgreSQL database (Optuna's RDB storage); the runs go to the
suite's PostgreSQL-backed ``mlflow server``. The workers start their searches together,
so they race to create the study's parent run, and their trials interleave.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg2")

# The suite's server machinery. The plugin's tests run from the repository only.
TESTS = Path(__file__).resolve().parents[3] / "tests"
if not (TESTS / "servers.py").is_file():
    pytest.skip("tests/servers.py of the tracksdk repository is needed", allow_module_level=True)
sys.path.insert(0, str(TESTS))
import servers  # noqa: E402

EXPERIMENT = "optuna-workers"
WORKERS, TRIALS_EACH = 3, 8

WORKER = textwrap.dedent(
    """
    import sys

    # Everything a search needs is imported before the start signal, so that the
    # workers' imports overlap and their searches start together.
    import mlflow
    import optuna

    import tracksdk
    import tracksdk_optuna

    storage, name, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tracksdk.configure(capture={key: False for key in (
        "git", "diff", "untracked", "source", "command", "environment", "requirements"
    )})
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        tracksdk.log_metric("x_abs", abs(x))  # into this trial's run
        return (x - 2) ** 2

    print("READY", flush=True)
    sys.stdin.readline()
    run = tracksdk_optuna.optimize(study, objective, n_trials=n_trials, experiment=EXPERIMENT)
    print("PARENT", run.run_id, flush=True)
    """
).replace("EXPERIMENT", repr(EXPERIMENT))


@pytest.fixture(scope="session")
def _pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # tests/conftest.py's fixtures serve tests/ only: the same pool, so the same server.
    pool = servers.session_pool(lambda: tmp_path_factory.mktemp("servers"))
    yield pool
    pool.close()


@pytest.fixture
def mlflow_server(_pool: Any) -> Any:
    """The suite's PostgreSQL-backed ``mlflow server`` (see tests/conftest.py)."""
    server = _pool.get("mlflow_server")
    if not server.is_healthy():  # an earlier test stopped it
        server.start()
    return server


@pytest.fixture
def study_storage() -> Iterator[str]:
    """An Optuna RDB storage URL on a fresh PostgreSQL database."""
    database = servers.create_database("tracksdk_optuna")
    try:
        yield servers.pg_uri(database)
    finally:
        servers.drop_database(database)


def start_worker(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(root / "worker.py"), *args],
        cwd=root,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.server
def test_three_workers_fill_one_parent_run_with_every_trial_once(
    mlflow_server: Any, study_storage: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    name = f"workers-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=study_storage, direction="minimize")
    (tmp_path / "worker.py").write_text(WORKER)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    env = {
        **base,
        "TRACKSDK_BACKEND": "server",
        "TRACKSDK_SERVER__URI": mlflow_server.url,
        "TRACKSDK_SYSTEM_METRICS__ENABLED": "false",
    }
    children = [
        start_worker(tmp_path, env, study_storage, name, str(TRIALS_EACH)) for _ in range(WORKERS)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdin is not None
            line = child.stdout.readline()
            assert line.strip() == "READY", line + child.communicate(timeout=60)[1]
        for child in children:  # all imported: start the searches together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=240) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    parent_ids = {line.split()[1] for out, _ in outputs for line in out.splitlines()[-1:]}
    # What the workers said (tracksdk's warnings): shown with a failed assertion below.
    said = "\n".join(err[-2000:] for _, err in outputs)

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    keyed = client.search_runs(
        [experiment.experiment_id],
        f"tags.`tracksdk.run_key` = 'optuna:{name}'",
        run_view_type=3,  # the trash too: no loser of the creation race left behind
    )
    assert len(keyed) == 1, ([(r.info.run_id, r.info.lifecycle_stage) for r in keyed], said)
    (parent,) = keyed
    assert parent_ids == {parent.info.run_id}  # every worker wrote to that one
    # The process that created it, and each that continued it (docs/resume.md).
    tags = parent.data.tags
    writers = {tags["tracksdk.client_run_id"]}
    writers.update(v for k, v in tags.items() if k.startswith("tracksdk.part."))
    assert len(writers) == WORKERS

    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`optuna.study_name` = '{name}'", run_view_type=3
    )
    trial_runs = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert len(trial_runs) == WORKERS * TRIALS_EACH
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in trial_runs)
    assert numbers == list(range(WORKERS * TRIALS_EACH)), said  # every trial once

    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in trial_runs}
    trials = study.get_trials()
    assert len(trials) == WORKERS * TRIALS_EACH
    for trial in trials:
        run = by_number[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.metrics["value"] == trial.value
        assert run.data.metrics["x_abs"] == abs(trial.params["x"])
        assert run.data.params["x"] == str(trial.params["x"])
        assert trial.user_attrs.get("tracksdk.run_id") == run.info.run_id, said

    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == study.best_value, said
    assert parent.data.tags["optuna.best_trial"] == str(study.best_trial.number)
    best_run = by_number[study.best_trial.number]
    assert parent.data.tags["tracksdk.best_run_id"] == best_run.info.run_id
    assert parent.data.metrics["trials_complete"] == WORKERS * TRIALS_EACH
