"""``tracksdk.start()`` and ``run.end()``: a run without a block, on the local sqlite store.

The runs a process leaves open are ended at its exit: those tests run a script in a
subprocess and read the run back, as a user would, with MLflow's client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest
from core_fixtures import all_runs, artifact_paths, artifact_text, local_client, start_job

import tracksdk
from tracksdk import tracked

# -- in this process ---------------------------------------------------------------------


def test_start_log_end_reads_back_finished_with_params_and_metrics(project: Path) -> None:
    """start() takes tracked's options; module-level log_* calls go to the run until end()."""
    run = tracksdk.start(experiment="notebook", run_name="first", tags={"team": "growth"})
    assert tracksdk.active_run() is run and run.status == "RUNNING"
    tracksdk.log_param("learning_rate", 0.1)
    for step, loss in enumerate((0.9, 0.5, 0.3)):
        tracksdk.log_metric("loss", loss, step=step)
    run.log_metric("val_auc", 0.91)
    run.end()
    assert run.status == "FINISHED"
    assert tracksdk.active_run() is None

    (stored,) = all_runs(project)
    client = local_client(project)
    assert stored.info.run_id == run.run_id
    assert stored.info.status == "FINISHED" and stored.info.end_time is not None
    assert client.get_experiment(stored.info.experiment_id).name == "notebook"
    assert stored.info.run_name == "first"
    assert stored.data.params == {"learning_rate": "0.1"}
    assert stored.data.metrics == {"loss": 0.3, "val_auc": 0.91}
    assert stored.data.tags["team"] == "growth"
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [0.9, 0.5, 0.3]
    # The calling file is kept with the run's sources, as for a `with tracked()` block.
    assert "source/test_start_end.py" in artifact_paths(client, run.run_id, "source")


def test_the_run_is_mlflows_active_run_until_it_ends(project: Path) -> None:
    """Like a tracked block, the run is MLflow's active run while open, and only then."""
    import mlflow

    run = tracksdk.start()
    active = mlflow.active_run()
    assert active is not None and active.info.run_id == run.run_id
    run.end()
    assert mlflow.active_run() is None


@pytest.mark.parametrize(("given", "status"), [("FAILED", "FAILED"), ("killed", "KILLED")])
def test_end_with_a_status(project: Path, given: str, status: str) -> None:
    """end(status=...) ends the run with it (any case), with no error recorded."""
    run = tracksdk.start()
    run.log_metric("loss", 0.4)
    run.end(status=given)
    assert run.status == status
    (stored,) = all_runs(project)
    assert stored.info.status == status
    assert stored.data.metrics == {"loss": 0.4}
    assert "tracksdk.error.type" not in stored.data.tags


def test_an_unknown_status_is_a_value_error_and_the_run_goes_on(project: Path) -> None:
    """A typo in the status names the allowed ones; the run stays open and current."""
    run = tracksdk.start()
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED") as caught:
        run.end("DONE")
    assert "'DONE'" in str(caught.value)
    assert run.status == "RUNNING" and tracksdk.active_run() is run
    tracksdk.log_metric("after", 1.0)
    run.end()
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED" and stored.data.metrics == {"after": 1.0}


def test_ending_twice_does_nothing(project: Path) -> None:
    """A second end(), even with another status, changes nothing."""
    run = tracksdk.start()
    run.end()
    run.end("KILLED")
    assert run.status == "FINISHED"
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED"


def test_start_inside_a_tracked_block_is_a_child_run(project: Path) -> None:
    """Inside a tracked run, start() opens a child run in the parent's experiment."""
    with tracked(experiment="search") as parent:
        child = tracksdk.start(run_name="trial")
        assert child.parent is parent and tracksdk.active_run() is child
        tracksdk.log_metric("score", 0.7)
        child.end()
        assert tracksdk.active_run() is parent
    runs = {r.info.run_id: r for r in all_runs(project)}
    stored = runs[str(child.run_id)]
    assert stored.data.tags["mlflow.parentRunId"] == parent.run_id
    assert stored.info.experiment_id == parent.experiment_id
    assert stored.data.metrics == {"score": 0.7}
    assert {r.info.status for r in runs.values()} == {"FINISHED"}


def test_ending_a_parent_ends_its_open_children_first(project: Path) -> None:
    """A parent started by start() ends the runs start() opened in it, with its status."""
    parent = tracksdk.start(run_name="parent")
    child = tracksdk.start(run_name="child")
    grandchild = tracksdk.start(run_name="grandchild")
    assert grandchild.parent is child and child.parent is parent
    parent.end("KILLED")
    assert (parent.status, child.status, grandchild.status) == ("KILLED",) * 3
    assert tracksdk.active_run() is None
    stored = {r.info.run_name: r for r in all_runs(project)}
    assert {name: r.info.status for name, r in stored.items()} == {
        "parent": "KILLED",
        "child": "KILLED",
        "grandchild": "KILLED",
    }
    assert stored["grandchild"].data.tags["mlflow.parentRunId"] == child.run_id


def test_runs_ended_out_of_order_leave_the_right_one_current(project: Path) -> None:
    """Two top-level runs ended in the order they started: the open one stays current."""
    first = tracksdk.start(run_name="first")
    second = tracksdk.start(run_name="second", nested=False)
    assert second.parent is None
    first.end()
    assert tracksdk.active_run() is second
    tracksdk.log_metric("m", 2.0)
    second.end()
    assert tracksdk.active_run() is None  # not `first`, ended meanwhile
    stored = {r.info.run_name: r for r in all_runs(project)}
    assert stored["second"].data.metrics == {"m": 2.0} and stored["first"].data.metrics == {}


def test_end_inside_a_with_block_ends_the_run_and_the_block_changes_nothing(
    project: Path,
) -> None:
    """run.end() inside a block ends it then; the block's exit, even by an error, keeps it."""
    with pytest.raises(RuntimeError), tracked(run_name="block") as run:
        run.log_metric("m", 1.0)
        run.end("KILLED")
        assert tracksdk.active_run() is None
        raise RuntimeError("after the end")
    assert run.status == "KILLED"
    (stored,) = all_runs(project)
    assert stored.info.status == "KILLED"
    assert "tracksdk.error.type" not in stored.data.tags


def test_end_inside_a_decorated_function_leaves_its_value_unlogged(project: Path) -> None:
    """Ended by hand in its body, a decorated call's returned dict is returned, not logged."""

    @tracked
    def train() -> dict[str, float]:
        run = tracksdk.active_run()
        assert run is not None
        run.log_metric("inside", 1.0)
        run.end("FAILED")
        return {"returned": 2.0}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a closed journal
        assert train() == {"returned": 2.0}
    (stored,) = all_runs(project)
    assert stored.info.status == "FAILED"
    assert stored.data.metrics == {"inside": 1.0}


def test_a_run_started_in_a_thread_is_current_there_only(project: Path) -> None:
    """start() in a thread makes the run current in that thread, not in the main one."""
    started: list[tracksdk.Run] = []

    def work() -> None:
        run = tracksdk.start(run_name="worker")
        started.append(run)
        tracksdk.log_metric("in_thread", 1.0)
        assert tracksdk.active_run() is run
        run.end()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert tracksdk.active_run() is None
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED" and stored.data.metrics == {"in_thread": 1.0}


def test_disabled_start_gives_an_untracked_run_whose_end_does_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKSDK_MODE=disabled: an untracked run, current until end(), which stores nothing."""
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")
    run = tracksdk.start(experiment="off")
    assert run.tracked is False and run.run_id is None and run.status == "UNTRACKED"
    assert tracksdk.active_run() is run
    run.log_metric("m", 1.0)
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        run.end("nope")
    run.end()
    run.end()
    assert run.status == "UNTRACKED" and tracksdk.active_run() is None
    monkeypatch.delenv("TRACKSDK_MODE")
    assert all_runs(project) == []


def test_start_rejects_an_unknown_option(project: Path) -> None:
    """start() checks its options like tracked(): a typo is a TypeError, no run starts."""
    with pytest.raises(TypeError, match="run_name"):
        tracksdk.start(run_nam="x")  # type: ignore[call-arg]
    assert tracksdk.active_run() is None
    assert all_runs(project) == []


# -- runs left open at the end of the process --------------------------------------------


def script(project: Path, body: str) -> Path:
    path = project / "job.py"
    path.write_text(textwrap.dedent(body))
    return path


def python(project: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run Python with ``args`` in ``project``, without the TRACKSDK_ and MLFLOW_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_script(project: Path, body: str) -> subprocess.CompletedProcess[str]:
    script(project, body)
    return python(project, "job.py")


def test_a_script_that_exits_normally_ends_its_run_finished(project: Path) -> None:
    """(a) start() without end(): FINISHED at exit, with everything logged."""
    done = run_script(
        project,
        """
        import tracksdk
        run = tracksdk.start(experiment="script", run_name="unended")
        tracksdk.log_param("p", 1)
        tracksdk.log_metric("m", 0.5)
        print(run.run_id)
        """,
    )
    assert done.returncode == 0, done.stderr
    (stored,) = all_runs(project)
    assert stored.info.run_id == done.stdout.strip()
    assert stored.info.status == "FINISHED" and stored.info.end_time is not None
    assert stored.data.params == {"p": "1"} and stored.data.metrics == {"m": 0.5}
    assert stored.data.tags["mlflow.source.name"].endswith("job.py")
    assert "tracksdk.exit_code" not in stored.data.tags


def test_an_uncaught_exception_ends_the_run_failed_with_the_error(project: Path) -> None:
    """(b) An uncaught error: FAILED with its type, message and traceback; the excepthook
    the script had before still runs."""
    done = run_script(
        project,
        """
        import sys
        import tracksdk

        def mine(kind, exc, tb):
            print("the script's own hook", flush=True)
            sys.__excepthook__(kind, exc, tb)

        sys.excepthook = mine
        outer = tracksdk.start(run_name="outer")
        inner = tracksdk.start(run_name="inner")
        tracksdk.log_metric("m", 1.0)

        def train():
            raise ValueError("diverged at epoch 3")

        train()
        """,
    )
    assert done.returncode == 1
    assert "the script's own hook" in done.stdout
    assert "ValueError: diverged at epoch 3" in done.stderr
    runs = {r.info.run_name: r for r in all_runs(project)}
    assert set(runs) == {"outer", "inner"}
    for stored in runs.values():
        assert stored.info.status == "FAILED"
        assert stored.data.tags["tracksdk.error.type"] == "builtins.ValueError"
        assert stored.data.tags["tracksdk.error.message"] == "diverged at epoch 3"
    text = artifact_text(
        local_client(project), runs["inner"].info.run_id, "error/traceback.txt", project.parent
    )
    assert "in train" in text and "diverged at epoch 3" in text


@pytest.mark.parametrize(("code", "status"), [(3, "FAILED"), (0, "FINISHED")])
def test_sys_exit_ends_the_run_by_its_code(project: Path, code: int, status: str) -> None:
    """(c) sys.exit(3): FAILED; sys.exit(0): FINISHED; both tag tracksdk.exit_code, as a
    decorated function's sys.exit does."""
    done = run_script(
        project,
        f"""
        import sys
        import tracksdk
        tracksdk.start()
        tracksdk.log_metric("m", 1.0)
        sys.exit({code})
        """,
    )
    assert done.returncode == code, done.stderr
    (stored,) = all_runs(project)
    assert stored.info.status == status
    assert stored.data.tags["tracksdk.exit_code"] == str(code)
    assert stored.data.metrics == {"m": 1.0}
    assert "tracksdk.error.type" not in stored.data.tags


def test_an_error_at_an_interactive_prompt_is_not_the_runs_outcome(project: Path) -> None:
    """At a prompt (python -i here; IPython is told the same way) the process outlives an error:
    the run goes on, and ends FINISHED when the session does."""
    typed = (
        "import tracksdk\n"
        "run = tracksdk.start(run_name='repl')\n"
        "raise ValueError('a typo at the prompt')\n"
        "tracksdk.log_metric('m', 1.0)\n"
    )
    done = python(project, "-i", "-q", stdin=typed)
    assert done.returncode == 0, done.stderr
    assert "a typo at the prompt" in done.stderr
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED" and stored.data.metrics == {"m": 1.0}
    assert "tracksdk.error.type" not in stored.data.tags


def test_a_thread_calling_sys_exit_does_not_fail_the_run(project: Path) -> None:
    """sys.exit in a thread ends only that thread: the process, and its run, finish."""
    done = run_script(
        project,
        """
        import sys, threading
        import tracksdk
        tracksdk.start()
        thread = threading.Thread(target=sys.exit, args=(5,))
        thread.start()
        thread.join()
        """,
    )
    assert done.returncode == 0, done.stderr
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED" and "tracksdk.exit_code" not in stored.data.tags


def job(project: Path, body: str) -> subprocess.Popen[str]:
    """Start ``body`` (indented) as a script; return once it printed "ready".

    The scripts wait in short sleeps, as a training loop runs: Python runs a signal's
    handler between the main thread's steps, and a signal the kernel hands to a thread
    that does not block it (one of a library's) does not cut a long sleep short.
    """
    return start_job(project, textwrap.dedent(body))


def stopped(proc: subprocess.Popen[str]) -> str:
    """Wait for ``proc`` to end; its stderr. Killed if it hangs, not left to a later test."""
    try:
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_ends_a_started_run_killed(project: Path, signum: signal.Signals) -> None:
    """(d) SIGTERM, or Ctrl-C (an uncaught KeyboardInterrupt), while the script runs:
    KILLED with no error recorded, and the process dies by the signal."""
    proc = job(
        project,
        """
        import signal, time
        import tracksdk
        # Python's own handler, even when this test runs where SIGINT is ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        tracksdk.start(run_name="stopped")
        tracksdk.log_metric("m", 1.0)
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
        """,
    )
    proc.send_signal(signum)
    stderr = stopped(proc)
    assert proc.returncode == -signum, stderr
    (stored,) = all_runs(project)
    assert stored.info.status == "KILLED" and stored.info.end_time is not None
    assert stored.data.metrics == {"m": 1.0}
    assert "tracksdk.error.type" not in stored.data.tags


def test_sigterm_ends_a_thread_run_killed_after_the_main_run_ended(project: Path) -> None:
    """A run started in a thread is still ended KILLED by SIGTERM when the main thread's
    run, which installed the handler, has ended before it."""
    proc = job(
        project,
        """
        import threading, time
        import tracksdk
        main = tracksdk.start(run_name="main")
        started = threading.Event()

        def work():
            tracksdk.start(run_name="worker")
            tracksdk.log_metric("m", 1.0)
            started.set()
            while True:
                time.sleep(0.1)

        threading.Thread(target=work, daemon=True).start()
        started.wait()
        main.end()
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
        """,
    )
    proc.send_signal(signal.SIGTERM)
    stderr = stopped(proc)
    assert proc.returncode == -signal.SIGTERM, stderr
    stored = {r.info.run_name: r for r in all_runs(project)}
    assert stored["main"].info.status == "FINISHED"
    assert stored["worker"].info.status == "KILLED"
    assert "mlflow.parentRunId" not in stored["worker"].data.tags  # a thread of its own


def test_a_forked_child_exiting_leaves_the_parents_run_open(project: Path) -> None:
    """A forked child's exit does not end the parent's start()ed run: the parent does."""
    done = run_script(
        project,
        """
        import os, sys
        import tracksdk
        run = tracksdk.start(run_name="parent")
        pid = os.fork()
        if pid == 0:
            sys.exit(4)  # the child's exit runs atexit handlers: not the parent's to end
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        tracksdk.log_metric("after_child", 1.0)
        run.end("KILLED")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    (stored,) = all_runs(project)
    assert stored.info.status == "KILLED"
    assert stored.data.metrics == {"after_child": 1.0}
    assert "tracksdk.exit_code" not in stored.data.tags
