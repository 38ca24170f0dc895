"""Spawned processes join their parent's run: ``run.ref()``, ``tracksdk.attach``, and the
environment variable a top-level run sets (docs/distributed.md, "Spawned children").

The jobs run as scripts, so that ``spawn`` children start real interpreters; every check
reads the parent's run back with MlflowClient.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from core_fixtures import all_runs, local_client

import tracksdk
from tracksdk import tracked
from tracksdk._attach import ENV_VAR
from tracksdk.exceptions import ConfigError

SPAWN = textwrap.dedent(
    """
    import multiprocessing as mp
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import tracksdk
    from tracksdk import tracked

    def explicit(ref):
        run = tracksdk.attach(ref)
        assert tracksdk.attach(ref) is run  # once per process
        for step in range(3):
            run.log_metric("child_loss", 1.0 / (step + 1), step=step)
        tracksdk.log_param("child_param", "yes")  # the process's run: the attached one

    def unchanged(i):
        tracksdk.log_metric("worker_metric", float(i), step=i)  # no attach: the variable
        return i

    if __name__ == "__main__":
        spawn = mp.get_context("spawn")
        with tracked(experiment="attach", params=False) as run:
            child = spawn.Process(target=explicit, args=(run.ref(),))
            child.start()
            child.join()
            assert child.exitcode == 0
            with ProcessPoolExecutor(2, mp_context=spawn) as pool:
                assert sorted(pool.map(unchanged, range(4))) == [0, 1, 2, 3]
            import subprocess
            subprocess.run(
                [sys.executable, "-c", "import tracksdk; tracksdk.set_tag('from_sub', 'ok')"],
                check=True,
            )
        print("RUN_ID", run.run_id)
    """
)


def test_spawned_children_and_a_subprocess_write_to_the_parents_run(project: Path) -> None:
    (project / "job.py").write_text(SPAWN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "job.py"], cwd=project, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = all_runs(project)  # the children made no run of their own
    assert run.info.status == "FINISHED"
    client = local_client(project)
    history = client.get_metric_history(run.info.run_id, "child_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    workers = client.get_metric_history(run.info.run_id, "worker_metric")
    assert sorted(m.step for m in workers) == [0, 1, 2, 3]
    assert run.data.params == {"child_param": "yes"}
    assert run.data.tags["from_sub"] == "ok"
    assert "no tracked run is open" not in done.stderr


def test_the_variable_is_set_while_a_top_level_run_is_open(project: Path) -> None:
    assert ENV_VAR not in os.environ
    with tracked(experiment="attach") as run:
        assert os.environ[ENV_VAR] == run.ref()
        with tracked(experiment="attach") as child:  # a nested run does not replace it
            assert os.environ[ENV_VAR] == run.ref() != child.ref()
    assert ENV_VAR not in os.environ


def test_a_reference_holds_ids_and_no_credential(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "http://127.0.0.1:9/")
    monkeypatch.setenv("TRACKSDK_SERVER__USERNAME", "alice")
    monkeypatch.setenv("TRACKSDK_SERVER__PASSWORD", "pw-canary-attach-77")
    monkeypatch.setenv("TRACKSDK_START_TIMEOUT", "0")
    monkeypatch.setenv("TRACKSDK_FLUSH_TIMEOUT", "0")
    with pytest.warns(Warning), tracked(experiment="attach") as run:
        ref = run.ref()
    assert "pw-canary-attach-77" not in ref and "alice" not in ref
    assert run.client_run_id in ref and "127.0.0.1:9" in ref


def test_bad_and_untracked_references(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"run\.ref\(\)"):
        tracksdk.attach("not a reference")
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")
    with tracked() as run:
        assert not run.tracked
        attached = tracksdk.attach(run.ref())
    assert not attached.tracked and attached.run_id is None
