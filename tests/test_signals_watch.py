"""A SIGTERM ends the run even when the main thread cannot run the handler at once.

CPython runs the Python handler in the main thread between bytecodes. A SIGTERM that a
C library's thread takes, or that lands just before ``time.sleep`` starts, leaves the
main thread asleep; a main thread in long C code runs no bytecode. The scripts below
make each case happen on purpose (the first one happened in the suite by chance:
print "ready", SIGTERM, sleep), then check the run as MLflow shows it: KILLED, and the
process gone with SIGTERM's status, within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from core_fixtures import all_runs

from tracksdk import tracked

# A thread of the user's own takes the signal: the kernel may pick any thread that does
# not block it, and pthread_kill picks this one for sure.
ASLEEP = textwrap.dedent(
    """
    import signal, threading, time
    from tracksdk import tracked, log_metric

    def stop():
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    with tracked(experiment="watch") as run:
        log_metric("loss", 0.5)
        threading.Timer(0.3, stop).start()
        print("sleeping", flush=True)
        time.sleep(600)
    """
)

# The main thread is busy in C code for seconds: key stretching runs no bytecode and
# releases the GIL (as LightGBM's and XGBoost's ctypes calls, and torch's ops, do).
BUSY = textwrap.dedent(
    """
    import hashlib, os, signal, threading, time
    from tracksdk import tracked, log_metric
    {handler}
    def busy(rounds):
        return hashlib.pbkdf2_hmac("sha256", b"x", b"salt", rounds)

    start = time.perf_counter()
    busy(100_000)
    rounds = int(100_000 * {seconds} / max(time.perf_counter() - start, 1e-4))

    with tracked(experiment="watch") as run:
        log_metric("loss", 0.5)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        print("busy", flush=True)
        busy(rounds)
        print("the C code returned", flush=True)
        time.sleep(600)
    """
)

USER_HANDLER = textwrap.dedent(
    """
    import sys
    def on_term(signum, frame):
        print("user handler", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, on_term)
    """
)


def _run(project: Path, script: str, timeout: float = 60) -> tuple[int, str, str, float]:
    (project / "job.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "job.py"], cwd=project, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def _only_run(project: Path) -> object:
    [run] = all_runs(project)
    return run


def test_sigterm_taken_by_another_thread_wakes_the_sleeping_main_thread(project: Path) -> None:
    """Without the watch, the handler would wait for the 600 s sleep to end."""
    code, out, err, took = _run(project, ASLEEP)
    assert code == -signal.SIGTERM, err
    assert "sleeping" in out
    assert took < 30
    run = _only_run(project)
    assert run.info.status == "KILLED"  # type: ignore[attr-defined]
    assert run.data.metrics["loss"] == 0.5  # type: ignore[attr-defined]


def test_sigterm_while_main_thread_is_in_c_code_ends_run_and_process(project: Path) -> None:
    """The watch ends the run KILLED, then the process, as SIGTERM's default action would."""
    code, out, err, took = _run(project, BUSY.format(handler="", seconds=120))
    assert code == -signal.SIGTERM, err
    assert "busy" in out and "the C code returned" not in out
    assert took < 60  # the C code alone would take 120 s
    run = _only_run(project)
    assert run.info.status == "KILLED"  # type: ignore[attr-defined]
    assert run.data.metrics["loss"] == 0.5  # type: ignore[attr-defined]


def test_a_user_handler_still_runs_when_the_c_code_returns(project: Path) -> None:
    """The watch ends the run KILLED, but the user's own handler decides about the process."""
    code, out, err, took = _run(project, BUSY.format(handler=USER_HANDLER, seconds=6))
    assert code == 3, err
    assert out.splitlines() == ["busy", "user handler"]  # as soon as the C code returned
    assert took > 5
    run = _only_run(project)
    assert run.info.status == "KILLED"  # type: ignore[attr-defined]


def test_wakeup_fd_is_the_watchs_during_a_run_and_given_back(project: Path) -> None:
    """In the main thread: set during the top-level run, -1 again after it."""
    assert signal.set_wakeup_fd(-1) == -1
    with tracked(experiment="watch"):
        ours = signal.set_wakeup_fd(-1)
        assert ours != -1
        signal.set_wakeup_fd(ours)
        with tracked(experiment="watch"):  # nested: the same watch
            assert signal.set_wakeup_fd(ours) == ours
    assert signal.set_wakeup_fd(-1) == -1


def test_a_wakeup_fd_of_the_users_is_left_alone(project: Path) -> None:
    """asyncio's loop, for one, owns the wakeup fd: the watch steps aside."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        signal.set_wakeup_fd(write)
        with tracked(experiment="watch"):
            assert signal.set_wakeup_fd(write) == write
        assert signal.set_wakeup_fd(-1) == write
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_does_not_write_into_the_parents_watch(project: Path) -> None:
    """The child's wakeup fd is reset: its signals are not taken for the parent's."""
    read, write = os.pipe()
    with tracked(experiment="watch"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write, str(signal.set_wakeup_fd(-1)).encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 64) == b"-1"
    os.close(read)


def test_a_wakeup_fd_set_during_the_run_is_kept_after_it(project: Path) -> None:
    """asyncio's loop started inside the run takes the wakeup fd: the run's end keeps it."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        with tracked(experiment="watch"):
            signal.set_wakeup_fd(write)
        assert signal.set_wakeup_fd(-1) == write
    finally:
        os.close(read)
        os.close(write)
