"""Multi-process jobs (docs/distributed.md): launcher detection, rank0 and shared modes.

The ranks here are processes started with the variables torchrun, srun and mpirun set,
so that the modes are checked without torch; tests/test_torchrun.py runs the real
torchrun with DistributedDataParallel. Every check reads the runs back with MlflowClient.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import all_runs

from tracksdk import _distributed

JOB = textwrap.dedent(
    """
    import os, time
    import tracksdk
    from tracksdk import tracked

    @tracked(experiment=os.environ.get("JOB_EXPERIMENT", "dist"))
    def train(lr: float = 0.1, steps: int = 3):
        rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
        for step in range(steps):
            tracksdk.log_metric("loss", 1.0 / (step + 1) + rank, step=step)
        time.sleep(float(os.environ.get("JOB_SLEEP", "0")))  # a system metrics sample
        if os.environ.get("FAIL_RANK") == str(rank):
            raise RuntimeError(f"rank {rank} failed")
        return {"acc": 0.5 + rank / 10}

    train()
    """
)


def torch_env(rank: int, world: int, run_id: str | None) -> dict[str, str]:
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "MASTER_PORT": "29500",
    }
    if run_id is not None:
        env["TORCHELASTIC_RUN_ID"] = run_id
    return env


def run_ranks(
    project: Path, envs: list[dict[str, str]], extra: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Start every rank at once (as a launcher does) and wait for all of them."""
    (project / "job.py").write_text(JOB)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    base["TRACKSDK_SYSTEM_METRICS__INTERVAL"] = "0.2"
    procs = []
    for env in envs:
        procs.append(
            subprocess.Popen(
                [sys.executable, "job.py"],
                cwd=project,
                env={**base, **(extra or {}), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def metric_keys(run: Any) -> set[str]:
    return set(run.data.metrics)


# -- detection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"RANK": "1", "WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": "job7",
             "TORCHELASTIC_RESTART_COUNT": "2"},
            ("torchrun", 1, 4, "job7", "2"),
        ),
        ({"RANK": "3", "WORLD_SIZE": "4"}, ("torch", 3, 4, None, "0")),
        (
            {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3",
             "OMPI_MCA_orte_ess_jobid": "991"},
            ("mpi", 2, 3, "991", "0"),
        ),
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "SLURM_JOB_ID": "55", "SLURM_STEP_ID": "0"},
         ("mpi", 1, 2, "55.0", "0")),
        (
            {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "123",
             "SLURM_RESTART_COUNT": "1"},
            ("slurm", 1, 2, "123", "1"),
        ),
    ],
)  # fmt: skip
def test_each_launcher_is_detected(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    launch = _distributed.detect(env)
    assert launch is not None
    assert (launch.launcher, launch.rank, launch.world_size, launch.job_id, launch.attempt) == (
        expected
    )
    assert launch.multi


def test_no_launcher_and_a_single_task_are_not_multi_process() -> None:
    assert _distributed.detect({"HOME": "/root"}) is None
    single = _distributed.detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_ID": "9"})
    assert single is not None and not single.multi


def test_torchrun_without_rdzv_id_on_one_machine_is_named_by_its_agent() -> None:
    """torchrun names its run "none": the ranks' common parent names the launch."""
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"}
    launch = _distributed.detect(env)
    assert launch is not None and launch.job_id is not None
    assert f":{os.getppid()}:" in launch.job_id
    spread = {**env, "LOCAL_WORLD_SIZE": "1"}  # ranks on several machines: no common parent
    assert _distributed.detect(spread).job_id is None  # type: ignore[union-attr]


def test_rank_statuses_count_only_this_attempt() -> None:
    tags = {
        "tracksdk.rank_status.0": "1:FINISHED",
        "tracksdk.rank_status.1": "0:FAILED",  # the attempt before the restart
        "other": "x",
    }
    assert _distributed.rank_statuses(tags, "1") == {0: "FINISHED"}
    assert _distributed.final_status({0: "FINISHED", 1: "KILLED"}) == "KILLED"
    assert _distributed.final_status({0: "KILLED", 1: "FAILED"}) == "FAILED"
    assert _distributed.parse_shared("1/2/0") == (1, 2, "0")
    assert _distributed.parse_shared("x/2") is None


# -- the modes, with ranks started as a launcher starts them ----------------------------


def test_rank0_mode_tracks_rank_0_only(project: Path) -> None:
    job = uuid.uuid4().hex
    done = run_ranks(project, [torch_env(r, 2, job) for r in range(2)])
    assert [d.returncode for d in done] == [0, 0], done[1].stderr
    [run] = all_runs(project)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1"
    assert {"loss", "acc"} <= metric_keys(run)
    assert not any("rank_1" in key for key in metric_keys(run))


def test_shared_mode_one_run_series_per_rank_params_once(project: Path) -> None:
    job = uuid.uuid4().hex
    done = run_ranks(
        project,
        [torch_env(r, 2, job) for r in range(2)],
        {"TRACKSDK_DISTRIBUTED__MODE": "shared", "JOB_SLEEP": "0.7"},
    )
    assert [d.returncode for d in done] == [0, 0], done[0].stderr + done[1].stderr
    [run] = all_runs(project)
    assert run.info.status == "FINISHED"
    keys = metric_keys(run)
    assert {"loss", "acc", "loss/rank_1", "acc/rank_1"} <= keys
    assert run.data.metrics["acc/rank_1"] == pytest.approx(0.6)
    assert any(k.startswith("system/rank_0/") for k in keys), keys
    assert any(k.startswith("system/rank_1/") for k in keys)
    assert run.data.params["lr"] == "0.1" and run.data.params["steps"] == "3"
    tags = run.data.tags
    assert tags["tracksdk.distributed.world_size"] == "2"
    assert tags["tracksdk.rank_status.0"] == "0:FINISHED"
    assert tags["tracksdk.rank_status.1"] == "0:FINISHED"
    assert "tracksdk.resumed" not in tags  # the ranks joined; nothing was resumed
    from core_fixtures import local_client

    history = local_client(project).get_metric_history(run.info.run_id, "loss/rank_1")
    assert sorted((m.step, m.value) for m in history) == [(0, 2.0), (1, 1.5), (2, 4 / 3)]


def test_shared_mode_one_failed_rank_fails_the_run(project: Path) -> None:
    job = uuid.uuid4().hex
    done = run_ranks(
        project,
        [torch_env(r, 2, job) for r in range(2)],
        {"TRACKSDK_DISTRIBUTED__MODE": "shared", "FAIL_RANK": "1"},
    )
    assert [d.returncode for d in done] == [0, 1]
    [run] = all_runs(project)
    assert run.info.status == "FAILED"
    assert run.data.tags["tracksdk.rank_status.1"] == "0:FAILED"
    assert run.data.tags["tracksdk.rank_status.0"] == "0:FINISHED"


def test_shared_mode_without_a_job_id_says_what_to_set(project: Path) -> None:
    done = run_ranks(
        project,
        [{"RANK": str(r), "WORLD_SIZE": "2"} for r in range(2)],
        {"TRACKSDK_DISTRIBUTED__MODE": "shared"},
    )
    assert [d.returncode for d in done] == [1, 1]
    assert "TRACKSDK_RUN_KEY" in done[1].stderr and "ConfigError" in done[1].stderr
    assert all_runs(project) == []


@pytest.mark.server
def test_four_ranks_racing_on_the_team_server_make_one_run(
    project: Path, mlflow_server: Any
) -> None:
    """SLURM's variables this time, and the PostgreSQL-backed server: exactly one run."""
    from mlflow.tracking import MlflowClient

    job = uuid.uuid4().hex[:12]
    experiment = f"dist-{job}"
    envs = [{"SLURM_PROCID": str(r), "SLURM_NTASKS": "4", "SLURM_JOB_ID": job} for r in range(4)]
    done = run_ranks(
        project,
        envs,
        {
            "TRACKSDK_DISTRIBUTED__MODE": "shared",
            "TRACKSDK_BACKEND": "server",
            "TRACKSDK_SERVER__URI": mlflow_server.url,
            "JOB_EXPERIMENT": experiment,
        },
    )
    assert [d.returncode for d in done] == [0] * 4, [d.stderr[-2000:] for d in done]
    client = MlflowClient(tracking_uri=mlflow_server.url)
    found = client.get_experiment_by_name(experiment)
    [run] = client.search_runs([found.experiment_id])
    assert run.info.status == "FINISHED"
    assert {"loss", "loss/rank_1", "loss/rank_2", "loss/rank_3"} <= metric_keys(run)
    assert run.data.tags["tracksdk.distributed.launcher"] == "slurm"
    assert len([t for t in run.data.tags if t.startswith("tracksdk.rank_status.")]) == 4


def test_an_unknown_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracksdk import tracked
    from tracksdk.exceptions import ConfigError

    with pytest.raises(ConfigError, match="'rank0', 'shared', 'each'"):
        tracked(distributed="all")
    monkeypatch.setenv("TRACKSDK_DISTRIBUTED__MODE", "all")
    with pytest.raises(ConfigError, match="TRACKSDK_DISTRIBUTED__MODE"), tracked():
        pass
