"""SIGTERM during a tracked run: the run ends KILLED and the process still terminates."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

from core_fixtures import all_runs, start_job

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from tracksdk import tracked

    @tracked(experiment="preempt")
    def train(steps: int = 1000):
        for step in range(steps):
            import tracksdk
            tracksdk.log_metric("loss", 1.0 / (step + 1), step=step)
            if step == 2:
                print("ready", flush=True)
            time.sleep(0.05)

    train()
    print("not reached", flush=True)
    """
)


def test_sigterm_marks_run_killed_and_process_dies_by_signal(project: Path) -> None:
    """SIGTERM ends the run KILLED, keeps the logged points, then terminates as SIGTERM does."""
    proc = start_job(project, SCRIPT)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == -signal.SIGTERM, stderr
    assert "not reached" not in stdout
    (run,) = all_runs(project)
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
    from core_fixtures import local_client

    history = local_client(project).get_metric_history(run.info.run_id, "loss")
    assert len(history) >= 3


def test_sigterm_runs_a_previous_python_handler(project: Path) -> None:
    """A handler installed before the run still runs after the run is marked KILLED."""
    script = (
        textwrap.dedent(
            """
        import signal, sys
        def handler(signum, frame):
            print("user handler ran", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, handler)
        """
        )
        + SCRIPT
    )
    proc = start_job(project, script)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert "user handler ran" in stdout, stderr
    assert proc.returncode == 7
    assert all_runs(project)[0].info.status == "KILLED"
