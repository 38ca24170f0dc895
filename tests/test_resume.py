"""Resuming a run: tracked(key=...), TRACKSDK_RUN_KEY, tracked(run_id=...), offline parts.

Everything is read back through MLflow: one run per key, every step once, the status the
last part ended with. The local store (sqlite) and the PostgreSQL-backed server are both
real; the killed processes are real processes killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import artifact_text, local_client, run_cli

import tracksdk
from tracksdk import ResumeError, tracked
from tracksdk.exceptions import ConfigError, ValidationError

EXPERIMENT = "resume"

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mlflow  # imported first: racing processes then start their runs together
    from tracksdk import tracked

    mode, total = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:  # racing: say ready, then start with the others
        go = Path(sys.argv[3])
        (go.parent / f"ready-{mode}").touch()
        while not go.exists():
            time.sleep(0.01)
    with tracked(experiment="resume", tags={"mode": mode}) as run:
        first = run.last_step("loss", -1) + 1
        print("START", run.run_id, first, run.resumed, flush=True)
        print(f"console of {mode}", flush=True)
        run.log_param("lr", 0.1)
        for step in range(first, total):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            if mode == "die" and step == total // 2:
                run.flush()
                print("READY", flush=True)
                time.sleep(600)
        if mode.startswith("worker"):
            run.log_metric(mode, 1.0)
        if mode == "fail":
            raise RuntimeError("boom")
    """
)


def env_for(extra: dict[str, str]) -> dict[str, str]:
    prefixes = ("TRACKSDK_", "_TRACKSDK_", "MLFLOW_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**base, "TRACKSDK_SYSTEM_METRICS__ENABLED": "false", **extra}


def start_worker(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    script = project / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=project,
        env=env_for(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    out, err = child.communicate(timeout=timeout)
    return out, err


def start_line(out: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith("START")).split()


def steps_of(client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def keyed_runs(client: Any, key: str, view: int = 1) -> list[Any]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return list(
        client.search_runs(
            [experiment.experiment_id],
            f"tags.`tracksdk.run_key` = '{key}'",
            run_view_type=view,
        )
    )


def server_env(server: Any) -> dict[str, str]:
    return {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": server.url}


def server_client(server: Any) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.url)


# -- in one process, the local store ---------------------------------------------------


def test_a_key_creates_the_run_then_continues_it(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="job-1") as first:
        assert first.resumed is False
        assert first.last_step("loss") is None
        for step in range(3):
            first.log_metric("loss", float(step), step=step)
    with tracked(experiment=EXPERIMENT, key="job-1") as second:
        assert second.run_id == first.run_id
        assert second.resumed is True
        assert second.last_step("loss") == 2
        assert second.last_step("loss", -1) + 1 == 3
        for step in range(3, 5):
            second.log_metric("loss", float(step), step=step)
        assert second.last_step("loss") == 4
    client = local_client(project)
    (run,) = keyed_runs(client, "job-1")
    assert run.info.run_id == first.run_id
    assert run.info.status == "FINISHED"
    assert steps_of(client, run.info.run_id, "loss") == [0, 1, 2, 3, 4]
    assert run.data.tags["tracksdk.resumed"] == "1"
    assert f"tracksdk.part.{second.client_run_id}" in run.data.tags


def test_a_failed_run_continues_and_finishes(project: Path) -> None:
    with pytest.raises(RuntimeError), tracked(experiment=EXPERIMENT, key="k") as first:
        first.log_metric("loss", 1.0, step=0)
        raise RuntimeError("boom")
    client = local_client(project)
    assert client.get_run(first.run_id).info.status == "FAILED"
    with tracked(experiment=EXPERIMENT, key="k") as second:
        # Back to RUNNING while the part runs, as mlflow.start_run(run_id=) does.
        assert client.get_run(second.run_id).info.status == "RUNNING"
        second.log_metric("loss", 0.5, step=1)
    assert second.run_id == first.run_id
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_the_decorator_continues_by_key_and_params_repeat(project: Path) -> None:
    @tracked(experiment=EXPERIMENT, key="fit")
    def fit(lr: float = 0.1) -> float:
        run = tracksdk.active_run()
        assert run is not None
        run.log_metric("loss", lr, step=run.last_step("loss", -1) + 1)
        return lr

    fit()
    fit()  # the same param value again: fine
    client = local_client(project)
    (run,) = keyed_runs(client, "fit")
    assert run.data.params == {"lr": "0.1"}
    assert steps_of(client, run.info.run_id, "loss") == [0, 1]
    assert not any(k.startswith("tracksdk.param_conflict") for k in run.data.tags)


def test_a_conflicting_param_keeps_the_first_value_with_a_warning(project: Path) -> None:
    @tracked(experiment=EXPERIMENT, key="fit")
    def fit(lr: float) -> None:
        pass

    fit(0.1)
    with pytest.warns(tracksdk.TrackSDKWarning, match="'lr' was already logged as '0.1'"):
        fit(0.2)
    (run,) = keyed_runs(local_client(project), "fit")
    assert run.data.params["lr"] == "0.1"
    assert run.data.tags["tracksdk.param_conflict.lr"] == "0.2"
    assert run.info.status == "FINISHED"


def test_a_conflicting_param_is_an_error_in_strict_mode(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="strict") as run:
        run.log_param("lr", 0.1)
    with (
        pytest.raises(ValidationError, match="'lr' was already logged"),
        tracked(experiment=EXPERIMENT, key="strict", strict=True) as again,
    ):
        again.log_param("lr", 0.2)
    assert local_client(project).get_run(run.run_id).data.params == {"lr": "0.1"}


def test_must_fails_clearly_when_no_run_has_the_key(project: Path) -> None:
    body_ran = False
    with (
        pytest.raises(ResumeError, match=r"resume=\"must\": no run .* has key 'nope'"),
        tracked(experiment=EXPERIMENT, key="nope", resume="must"),
    ):
        body_ran = True
    assert not body_ran
    client = local_client(project)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    journal = project / ".tracksdk" / "journal"
    left = [p for p in journal.iterdir() if p.is_dir()] if journal.exists() else []
    assert left == []


def test_never_fails_clearly_when_a_run_has_the_key(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="once", resume="never") as first:
        first.log_metric("m", 1.0)
    with (
        pytest.raises(ResumeError, match=f'resume="never": run {first.run_id}'),
        tracked(experiment=EXPERIMENT, key="once", resume="never"),
    ):
        pass
    (run,) = keyed_runs(local_client(project), "once")
    assert run.info.status == "FINISHED"


def test_must_continues_an_existing_run(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="m1") as first:
        pass
    with tracked(experiment=EXPERIMENT, key="m1", resume="must") as second:
        assert second.resumed
    assert second.run_id == first.run_id


def test_a_key_whose_run_was_deleted_starts_a_new_run(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="again") as first:
        first.log_metric("loss", 1.0, step=5)
    client = local_client(project)
    client.delete_run(first.run_id)
    with tracked(experiment=EXPERIMENT, key="again") as second:
        assert not second.resumed
        assert second.last_step("loss") is None
    assert second.run_id != first.run_id
    (run,) = keyed_runs(client, "again")
    assert run.info.run_id == second.run_id
    assert run.info.status == "FINISHED"


def test_start_and_end_continue_a_keyed_run(project: Path) -> None:
    first = tracksdk.start(experiment=EXPERIMENT, key="notebook")
    first.log_metric("loss", 1.0, step=0)
    first.end(status="KILLED")
    second = tracksdk.start(experiment=EXPERIMENT, key="notebook", resume="must")
    assert second.resumed and second.last_step("loss") == 0
    second.log_metric("loss", 0.5, step=1)
    second.end()
    client = local_client(project)
    assert second.run_id == first.run_id
    assert steps_of(client, first.run_id, "loss") == [0, 1]
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="resume must be one of 'allow', 'must', 'never'"):
        tracked(key="k", resume="maybe")
    with pytest.raises(ConfigError, match="key must be a non-empty string"):
        tracked(key="")
    with pytest.raises(ConfigError, match="run_id must be a non-empty string"):
        tracked(run_id=123)  # type: ignore[arg-type]


def test_run_id_continues_a_run_made_without_tracksdk(project: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as plain:
        mlflow.log_metric("loss", 1.0, step=7)
    with tracked(run_id=plain.info.run_id) as run:
        assert run.run_id == plain.info.run_id
        assert run.resumed and run.last_step("loss") == 7
        run.log_metric("loss", 0.5, step=8)
    client = local_client(project)
    assert steps_of(client, plain.info.run_id, "loss") == [7, 8]
    assert client.get_run(plain.info.run_id).info.status == "FINISHED"


def test_an_unknown_run_id_fails_clearly(project: Path) -> None:
    with (
        pytest.raises(ResumeError, match="there is no run with id 0123abcd"),
        tracked(experiment=EXPERIMENT, run_id="0123abcd"),
    ):
        pass


def test_the_environment_key_names_the_top_level_run_only(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_RUN_KEY", "slurm-42")
    monkeypatch.delenv("_TRACKSDK_RUN_KEY_OWNER", raising=False)
    tracksdk.reset()
    for _ in range(2):
        with tracked(experiment=EXPERIMENT) as parent, tracked() as child:
            child.log_metric("fold", 1.0)
    client = local_client(project)
    (run,) = keyed_runs(client, "slurm-42")
    assert run.info.run_id == parent.run_id
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'"
    )
    assert len(children) == 2  # one per part: a child is a run of its own
    assert all("tracksdk.run_key" not in c.data.tags for c in children)


def test_system_metrics_go_on_at_the_next_step(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_SYSTEM_METRICS__INTERVAL", "0.1")
    tracksdk.reset()
    cpu = "system/cpu_utilization_percentage"
    for _ in range(2):
        with tracked(experiment=EXPERIMENT, key="sampled") as run:
            time.sleep(0.6)
    client = local_client(project)
    steps = steps_of(client, run.run_id, cpu)
    assert len(steps) >= 4
    assert steps == list(range(len(steps)))  # no step twice: the second part went on


CHILD_SCRIPT = textwrap.dedent(
    """
    from tracksdk import tracked

    with tracked(experiment="resume") as run:
        print("CHILD", run.run_id, run.resumed, flush=True)
    """
)


def test_a_subprocess_does_not_take_the_jobs_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation script the job runs makes a run of its own: the job's ends FAILED."""
    monkeypatch.setenv("TRACKSDK_RUN_KEY", "job-7")
    tracksdk.reset()
    (project / "child.py").write_text(CHILD_SCRIPT)
    with pytest.raises(RuntimeError), tracked(experiment=EXPERIMENT) as job:
        out = subprocess.run(
            [sys.executable, "child.py"], cwd=project, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        raise RuntimeError("training crashes after the evaluation")
    _, child_id, resumed = out.stdout.split()
    assert child_id != job.run_id and resumed == "False"
    client = local_client(project)
    (run,) = keyed_runs(client, "job-7")
    assert run.info.run_id == job.run_id
    assert run.info.status == "FAILED"
    assert "tracksdk.run_key" not in client.get_run(child_id).data.tags


def test_a_continuing_part_sets_its_creation_tags(project: Path) -> None:
    with tracked(experiment=EXPERIMENT, key="tags", tags={"who": "A", "a": "1"}) as first:
        pass
    with tracked(experiment=EXPERIMENT, key="tags", tags={"who": "B"}, run_name="b") as second:
        pass
    tags = local_client(project).get_run(first.run_id).data.tags
    assert (tags["who"], tags["a"]) == ("B", "1")
    assert tags["mlflow.runName"] == first.name  # the run keeps its name
    assert tags["tracksdk.client_run_id"] == first.client_run_id
    assert tags["tracksdk.run_part"].endswith(second.client_run_id)


def test_resume_needs_a_key_and_not_both_key_and_run_id(project: Path) -> None:
    with (
        pytest.raises(ConfigError, match=r"resume='must'\) needs a run key"),
        tracked(experiment=EXPERIMENT, resume="must"),
    ):
        pass
    with pytest.raises(ConfigError, match="give one of them"):
        tracked(key="k", run_id="abc")


def test_the_console_log_is_appended_on_resume(project: Path, tmp_path: Path) -> None:
    for mode in ("first", "second"):
        child = start_worker(project, {"TRACKSDK_RUN_KEY": "console"}, mode, "2")
        _, err = finish(child)
        assert child.returncode == 0, err
    client = local_client(project)
    (run,) = keyed_runs(client, "console")
    log = artifact_text(client, run.info.run_id, "logs/console.log", tmp_path)
    assert log.index("console of first") < log.index("the run continues here")
    assert log.index("the run continues here") < log.index("console of second")


# -- across processes: SIGKILL, offline, races -----------------------------------------


def test_sigkill_then_the_same_key_gives_one_run_every_step_once(project: Path) -> None:
    env = {"TRACKSDK_RUN_KEY": "preempted"}
    child = start_worker(project, env, "die", "10")
    assert child.stdout is not None
    lines = [child.stdout.readline(), child.stdout.readline()]
    while "READY" not in lines[-1]:
        line = child.stdout.readline()
        assert line, child.communicate()[1]
        lines.append(line)
    run_id = lines[0].split()[1]
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    client = local_client(project)
    assert client.get_run(run_id).info.status == "RUNNING"  # dead, as plain MLflow leaves it

    again = start_worker(project, env, "requeued", "10")
    out, err = finish(again)
    assert again.returncode == 0, err
    _, resumed_id, first, resumed = start_line(out)
    assert (resumed_id, first, resumed) == (run_id, "6", "True")
    (run,) = keyed_runs(client, "preempted", view=3)  # none deleted either
    assert run.info.status == "FINISHED"
    assert steps_of(client, run_id, "loss") == list(range(10))
    assert run.data.params == {"lr": "0.1"}


def test_offline_parts_are_continued_offline_and_synced_as_one_run(project: Path) -> None:
    env = {"TRACKSDK_MODE": "offline", "TRACKSDK_RUN_KEY": "offline-job"}
    child = start_worker(project, env, "die", "10")
    assert child.stdout is not None
    while "READY" not in child.stdout.readline():
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    again = start_worker(project, env, "requeued", "10")
    out, err = finish(again)
    assert again.returncode == 0, err
    _, run_id, first, resumed = start_line(out)
    assert (run_id, first, resumed) == ("None", "6", "True")  # from the journal here

    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    client = local_client(project)
    (run,) = keyed_runs(client, "offline-job", view=3)
    assert steps_of(client, run.info.run_id, "loss") == list(range(10))
    # The killed part is synced too (KILLED), but the later part sets the status.
    assert run.info.status == "FINISHED"
    assert run.data.tags["tracksdk.resumed"] == "1"


def test_nested_runs_of_offline_parts_find_their_parent_at_sync(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    for fold in range(2):
        with (
            pytest.warns(tracksdk.TrackSDKWarning, match="offline run"),
            tracked(experiment=EXPERIMENT, key="cv") as parent,
            tracked() as child,
        ):
            assert parent.resumed is (fold == 1)
            child.log_metric("fold_auc", 0.5 + fold)
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    client = local_client(project)
    (run,) = keyed_runs(client, "cv", view=3)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert sorted(c.data.metrics["fold_auc"] for c in children) == [0.5, 1.5]
    assert all(c.info.status == "FINISHED" for c in children)


def test_must_offline_without_a_journal_fails_clearly(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    with (
        pytest.raises(ResumeError, match="no journal on this machine has it"),
        tracked(experiment=EXPERIMENT, key="gone", resume="must"),
    ):
        pass


def race(project: Path, env: dict[str, str], key: str) -> list[str]:
    """Four processes start the same key at the same moment; their run ids."""
    gate = project / f"gate-{key}"
    gate.mkdir()
    go = gate / "go"
    children = [
        start_worker(project, {**env, "TRACKSDK_RUN_KEY": key}, f"worker_{i}", "3", str(go))
        for i in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # every process has imported MLflow: they start together
    go.touch()
    ids = []
    for child in children:
        out, err = finish(child, timeout=180)
        assert child.returncode == 0, err
        ids.append(start_line(out)[1])
    return ids


def one_raced_run(client: Any, key: str, ids: list[str]) -> None:
    """One run has the key, none in the trash either; every racer wrote to it; FINISHED."""
    runs = keyed_runs(client, key, view=3)
    assert len(runs) == 1, [(r.info.run_id, r.info.lifecycle_stage) for r in runs]
    (run,) = runs
    assert set(ids) == {run.info.run_id}
    assert {f"worker_{i}" for i in range(4)} <= set(run.data.metrics)
    assert run.info.status == "FINISHED"


def dagshub_env(server: Any) -> dict[str, str]:
    return {
        "TRACKSDK_BACKEND": "dagshub",
        "TRACKSDK_DAGSHUB__HOST": server.host,
        "TRACKSDK_DAGSHUB__OWNER": server.owner,
        "TRACKSDK_DAGSHUB__REPO": server.repo,
        "TRACKSDK_DAGSHUB__TOKEN": server.token,
    }


def test_four_processes_racing_on_one_key_make_one_run_local(project: Path) -> None:
    client = local_client(project)
    one_raced_run(client, "race", race(project, {}, "race"))
    names = [e.name for e in client.search_experiments()]
    assert not any(name.startswith("tracksdk.run_key/") for name in names)


@pytest.mark.server
def test_four_processes_racing_on_one_key_make_one_run_on_the_server(
    project: Path, mlflow_server: Any
) -> None:
    ids = race(project, server_env(mlflow_server), "race-server")
    one_raced_run(server_client(mlflow_server), "race-server", ids)


@pytest.mark.server
def test_an_unknown_run_id_on_the_dagshub_shaped_server_fails_clearly(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in dagshub_env(dagshub_server).items():
        monkeypatch.setenv(name, value)
    tracksdk.reset()
    with (
        pytest.raises(ResumeError, match=r"no run with id 0123abcd .* or you may not read it"),
        tracked(experiment=EXPERIMENT, run_id="0123abcd"),
    ):
        pass


@pytest.mark.server
def test_a_param_changed_while_the_store_was_down_loses_no_metric(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier value is learnt only when the store answers: the batch still lands."""
    for name, value in dagshub_env(dagshub_server).items():
        monkeypatch.setenv(name, value)
    tracksdk.reset()
    with tracked(experiment=EXPERIMENT, key="late") as first:
        first.log_param("lr", 0.1)
        first.log_metric("loss", 1.0, step=0)
    monkeypatch.setenv("TRACKSDK_START_TIMEOUT", "0.5")
    tracksdk.reset()
    search = f"{dagshub_server.prefix}/api/2.0/mlflow/runs/search"
    dagshub_server.fail_routes = {search: ("retry-after:503:1", 2)}
    try:
        with (
            pytest.warns(tracksdk.TrackSDKWarning, match="did not create run"),
            tracked(experiment=EXPERIMENT, key="late") as second,
        ):
            assert second.run_id is None  # not known yet: the params are not either
            second.log_param("lr", 0.2)
            second.log_metric("loss", 0.5, step=1)
    finally:
        dagshub_server.clear_failures()
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.admin_password)
    client = MlflowClient(dagshub_server.tracking_uri)
    run = client.get_run(first.run_id)
    assert steps_of(client, first.run_id, "loss") == [0, 1]
    assert run.data.params["lr"] == "0.1"
    assert run.data.tags["tracksdk.param_conflict.lr"] == "0.2"
    assert "tracksdk.write_failures" not in run.data.tags
    assert run.info.status == "FINISHED"


@pytest.mark.server
def test_four_processes_that_all_found_no_run_make_one(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hard race: each process's search answers "no run" before any of them creates."""
    search = f"{dagshub_server.prefix}/api/2.0/mlflow/runs/search"
    dagshub_server.fail_routes = {search: ("gather:4", 4)}
    try:
        ids = race(project, dagshub_env(dagshub_server), "race-gathered")
    finally:
        dagshub_server.clear_failures()
    assert dagshub_server.count(search) >= 4
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", dagshub_server.admin_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", dagshub_server.admin_password)
    one_raced_run(MlflowClient(dagshub_server.tracking_uri), "race-gathered", ids)


@pytest.mark.server
def test_sigkill_then_resume_on_the_server(project: Path, mlflow_server: Any) -> None:
    env = {**server_env(mlflow_server), "TRACKSDK_RUN_KEY": "server-job"}
    child = start_worker(project, env, "die", "10")
    assert child.stdout is not None
    run_id = child.stdout.readline().split()[1]
    while "READY" not in child.stdout.readline():
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    again = start_worker(project, env, "fail", "10")
    out, _ = finish(again)
    assert again.returncode == 1  # the part raised: the run ends FAILED
    assert start_line(out)[1:] == [run_id, "6", "True"]
    client = server_client(mlflow_server)
    assert steps_of(client, run_id, "loss") == list(range(10))
    assert client.get_run(run_id).info.status == "FAILED"
    third = start_worker(project, env, "done", "10")
    out, err = finish(third)
    assert third.returncode == 0, err
    assert start_line(out)[1:] == [run_id, "10", "True"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["tracksdk.resumed"] == "2"
