"""Console capture: what a run prints is kept as logs/console.log (docs/console.md).

The main cases run a tracked script as a subprocess, so that fds 1 and 2 are real (not
pytest's), against the local sqlite store and the PostgreSQL-backed server: the terminal
still shows every line, and the artifact read back through MLflow's client holds Python's
print, os.write(1, ...), C's puts and a subprocess's inherited output, with a secret
redacted. Then the hard cases: SIGKILL and `tracksdk sync`, SIGTERM, an exception, a
forked child that outlives the run (and the process), many threads, a flood of output,
fds that cannot be captured, and in-process runs under pytest's own capture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import all_runs, artifact_paths, local_client, run_cli

import tracksdk
from tracksdk import _console_log, _console_sink, tracked
from tracksdk._console_log import ConsoleLog
from tracksdk._console_sink import Sink, collapse
from tracksdk._journal.records import Output, decode, encode

CANARY = "canary-console-5d81c3a7"  # in a secret-looking environment variable
PARAM_CANARY = "canary-console-param-09be"  # logged under a secret-looking param name

MAIN = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys, threading
    import tracksdk
    from tracksdk import tracked

    with tracked(experiment="console") as run:
        print("py line")
        os.write(1, b"fd line\\n")
        print("err line", file=sys.stderr)
        libc = ctypes.CDLL(None)
        libc.puts(b"c line")
        subprocess.run(["sh", "-c", "echo sub line; echo sub err >&2"], check=True)
        print("token is", os.environ["MY_SERVICE_API_KEY"])
        tracksdk.log_param("db_password", os.environ["PARAM_SECRET"])
        print("param is", os.environ["PARAM_SECRET"])
        for i in range(5):
            print(f"\\rprogress {i * 25}%", end="", flush=True)
        print()

        def talk(n):
            for i in range(200):  # one write per line (print writes its end apart)
                sys.stdout.write(f"thread {n} line {i} " + "x" * 40 + "\\n")

        threads = [threading.Thread(target=talk, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tracksdk.log_metric("m", 1.0)
    print("RUN_ID", run.run_id, flush=True)
    print("after the run")
    """
)


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return {**base, "MY_SERVICE_API_KEY": CANARY, "PARAM_SECRET": PARAM_CANARY, **(extra or {})}


def run_script(
    project: Path, script: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    (project / "job.py").write_text(script)
    return subprocess.run(
        [sys.executable, "job.py"],
        cwd=project,
        env=script_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    for line in result.stdout.splitlines():
        if line.startswith("RUN_ID "):
            return line.split()[1]
    raise AssertionError(f"no run id in the output:\n{result.stdout}\n{result.stderr}")


def console_log(client: Any, run_id: str, tmp: Path) -> str:
    local = client.download_artifacts(run_id, "logs/console.log", str(tmp))
    return Path(local).read_text()


def server_client(server: Any) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=server.url)


def check_main(result: subprocess.CompletedProcess[str], log: str) -> None:
    terminal = result.stdout + result.stderr
    for line in ("py line", "fd line", "err line", "c line", "sub line", "sub err"):
        assert line in terminal, line
        assert f"{line}\n" in log, line
    # The terminal gets what was printed, unchanged; the run gets it redacted.
    assert f"token is {CANARY}" in terminal
    assert "token is ***\n" in log
    assert "param is ***\n" in log
    assert CANARY not in log and PARAM_CANARY not in log
    # A progress bar's carriage returns: the log keeps its last state only.
    assert "progress 0%" in result.stdout  # (text mode turns its \\r into \\n)
    assert "progress 100%\n" in log and "progress 25%" not in log
    # Eight threads, 200 whole lines each, none torn, as the terminal shows them.
    lines = [line for line in log.splitlines() if line.startswith("thread ")]
    assert sorted(lines) == sorted(
        f"thread {n} line {i} " + "x" * 40 for n in range(8) for i in range(200)
    )
    assert lines == [line for line in result.stdout.splitlines() if line.startswith("thread ")]
    # Only the run's output: not what the process printed after it.
    assert "after the run" in result.stdout and "after the run" not in log


def test_console_log_on_the_local_store(project: Path, tmp_path: Path) -> None:
    """Python, fd, C and subprocess output reach logs/console.log; the terminal keeps all."""
    result = run_script(project, MAIN)
    assert result.returncode == 0, result.stderr
    client = local_client(project)
    run_id = run_id_of(result)
    assert "logs/console.log" in artifact_paths(client, run_id)
    check_main(result, console_log(client, run_id, tmp_path))


@pytest.mark.server
def test_console_log_on_the_postgres_server(
    project: Path, mlflow_server: Any, tmp_path: Path
) -> None:
    """The same script against the PostgreSQL-backed server, over HTTP."""
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url}
    result = run_script(project, MAIN, env)
    assert result.returncode == 0, result.stderr
    check_main(result, console_log(server_client(mlflow_server), run_id_of(result), tmp_path))


def test_lightgbm_native_log_lines(project: Path, tmp_path: Path) -> None:
    """LightGBM's own [LightGBM] [Info] lines are in the log, in both capture modes."""
    pytest.importorskip("lightgbm")
    script = textwrap.dedent(
        """
        import lightgbm as lgb, numpy as np
        from tracksdk import tracked

        X = np.random.default_rng(0).random((200, 3))
        y = (X[:, 0] > 0.5).astype(int)
        with tracked(experiment="console-lightgbm") as run:
            lgb.train({"objective": "binary", "verbose": 1, "num_leaves": 4},
                      lgb.Dataset(X, y), num_boost_round=2)
        print("RUN_ID", run.run_id)
        """
    )
    for mode in ("fd", "python"):
        result = run_script(project, script, {"TRACKSDK_CONSOLE": mode})
        assert result.returncode == 0, result.stderr
        log = console_log(local_client(project), run_id_of(result), tmp_path / mode)
        assert "[LightGBM] [Info] Number of data points in the train set: 200" in log


KILLED = textwrap.dedent(
    """
    import os, sys, time
    from tracksdk import tracked

    with tracked(experiment="console-killed") as run:
        for i in range(20):
            print(f"before the kill {i}")
        os.write(1, b"fd before the kill\\n")
        print("token", os.environ["MY_SERVICE_API_KEY"], file=sys.stderr)
        print("ready", flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize(
    "where", ["offline-local", pytest.param("online-server", marks=pytest.mark.server)]
)
def test_sigkill_then_sync_keeps_the_console(
    project: Path, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """What was printed a second before a SIGKILL is in console.log after `tracksdk sync`."""
    if where == "offline-local":
        env = {"TRACKSDK_MODE": "offline"}
    else:
        server = request.getfixturevalue("mlflow_server")
        env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": server.url}
    (project / "job.py").write_text(KILLED)
    child = subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=project,
        env=script_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "ready":
                break
        time.sleep(_console_sink.FLUSH_EVERY + 1.0)  # the flusher's next chunk
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    sync_env = {k: v for k, v in env.items() if k != "TRACKSDK_MODE"}
    if where == "offline-local":  # (online, the run's sender had them already)
        dry = run_cli(project, "sync", "--dry-run", env=sync_env)
        assert "console chunks" in dry.stdout, dry.stdout + dry.stderr
    result = run_cli(project, "sync", env=sync_env)
    assert result.returncode == 0, result.stdout + result.stderr
    if where == "offline-local":
        client = local_client(project)
        [run] = all_runs(project)
    else:
        client = server_client(request.getfixturevalue("mlflow_server"))
        experiment = client.get_experiment_by_name("console-killed")
        [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED"
    log = console_log(client, run.info.run_id, tmp_path)
    for i in range(20):
        assert f"before the kill {i}\n" in log
    assert "fd before the kill\n" in log
    assert "token ***\n" in log and CANARY not in log


def test_sigterm_and_exception_keep_the_console(project: Path, tmp_path: Path) -> None:
    """A run ended by SIGTERM (KILLED) or by an exception (FAILED) keeps its output."""
    failing = textwrap.dedent(
        """
        from tracksdk import tracked
        try:
            with tracked(experiment="console-failed") as run:
                print("before the error")
                raise ValueError("boom")
        except ValueError:
            pass
        print("RUN_ID", run.run_id)
        """
    )
    result = run_script(project, failing)
    assert result.returncode == 0, result.stderr
    client = local_client(project)
    run_id = run_id_of(result)
    assert client.get_run(run_id).info.status == "FAILED"
    assert console_log(client, run_id, tmp_path) == "before the error\n"

    (project / "job.py").write_text(KILLED.replace("console-killed", "console-sigterm"))
    child = subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=project,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert "before the kill 0" in child.stdout.readline()
    for line in child.stdout:
        if line.strip() == "ready":
            break
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert child.returncode == -signal.SIGTERM
    [killed] = [r for r in all_runs(project) if r.info.status == "KILLED"]
    log = console_log(client, killed.info.run_id, tmp_path / "killed")
    assert "before the kill 19\n" in log and "fd before the kill\n" in log
    assert "ready\n" in log


MODES = textwrap.dedent(
    """
    import os
    from tracksdk import tracked

    with tracked(experiment="console-modes") as run:
        print("py line")
        os.write(1, b"fd line\\n")
    print("RUN_ID", run.run_id)
    """
)


@pytest.mark.parametrize("mode", ["python", "off"])
def test_python_and_off_modes(project: Path, tmp_path: Path, mode: str) -> None:
    """python keeps print, not os.write; off keeps nothing (no artifact)."""
    result = run_script(project, MODES, {"TRACKSDK_CONSOLE": mode})
    assert result.returncode == 0, result.stderr
    assert "py line" in result.stdout and "fd line" in result.stdout
    client = local_client(project)
    run_id = run_id_of(result)
    if mode == "off":
        assert not any(p.startswith("logs/") for p in artifact_paths(client, run_id))
    else:
        assert console_log(client, run_id, tmp_path) == "py line\n"


FORKED = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from tracksdk import tracked

    marker = sys.argv[1]
    wait_for_child = sys.argv[2] == "wait"
    with tracked(experiment="console-fork") as run:
        print("parent in the run", flush=True)
        # A subprocess and a forked child that both write once the run has ended.
        subprocess.Popen(["sh", "-c", f"while [ ! -e {marker}.ended ]; do sleep 0.05; done; "
                          "sleep 0.5; i=0; while [ $i -lt 2000 ]; do "
                          "echo sub after the run $i; i=$((i+1)); done"])
        pid = os.fork()
        if pid == 0:
            # Fds inherited from threads of the parent (a git pipe of the run's provenance
            # capture) would hold the parent's run end until this child exits.
            os.closerange(3, 1 << 16)
            while not os.path.exists(marker + ".ended"):  # the parent's run has ended
                time.sleep(0.05)
            time.sleep(0.5)  # (and, with "exit", the parent is gone)
            for i in range(2000):  # more than a pipe holds; whole lines (sh writes too)
                os.write(1, f"child after the run {i}\\n".encode())
            sys.stdout.flush()
            os.write(2, b"child fd line\\n")
            with open(marker, "w") as f:
                f.write("ok")
            os._exit(0)
    open(marker + ".ended", "w").close()
    print("RUN_ID", run.run_id, flush=True)
    if wait_for_child:
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    """
)


@pytest.mark.parametrize("parent", ["wait", "exit"])
def test_forked_child_outliving_the_run(project: Path, tmp_path: Path, parent: str) -> None:
    """A child writing after the run (or the whole parent) ended never hits a closed pipe."""
    marker = tmp_path / "child-done"
    (project / "job.py").write_text(FORKED)
    result = subprocess.run(
        [sys.executable, "job.py", str(marker), parent],
        cwd=project,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if parent == "wait":
        assert "child exit 0" in result.stdout
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "ok"
    # Every line of the child reached the terminal (communicate read up to the last writer).
    for i in (0, 1999):
        assert f"child after the run {i}\n" in result.stdout
        assert f"sub after the run {i}\n" in result.stdout
    assert "child fd line" in result.stderr
    log = console_log(local_client(project), run_id_of(result), tmp_path)
    assert log == "parent in the run\n"


def test_flood_of_output_never_blocks(project: Path, tmp_path: Path) -> None:
    """20 MB printed at full speed: the run ends, the log is bounded with a marker line."""
    flood = textwrap.dedent(
        """
        import os, sys
        from tracksdk import tracked

        with tracked(experiment="console-flood") as run:
            line = "y" * 99 + "\\n"
            for i in range(200_000):
                sys.stdout.write(f"{i:08d} " + line)
            sys.stdout.flush()
            os.write(1, b"last fd line\\n")
        print("RUN_ID", run.run_id)
        """
    )
    result = run_script(project, flood, {"TRACKSDK_CONSOLE_MAX_MB": "2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 200_002
    log = console_log(local_client(project), run_id_of(result), tmp_path)
    assert len(log.encode()) <= (2 << 20) + 200
    assert log.startswith("00000000 y")
    assert log.endswith("00199999 " + "y" * 99 + "\nlast fd line\n")
    assert "bytes of console output left out here" in log


def test_fd_that_cannot_be_captured_is_one_warning(project: Path) -> None:
    """No fd 1 (a daemon's): one warning; the run goes on, finished, without a log."""
    closed = textwrap.dedent(
        """
        import os, sys
        from tracksdk import tracked

        os.close(1)
        sys.stdout = None
        with tracked(experiment="console-closed") as run:
            run.log_metric("m", 1.0)
        sys.stderr.write("RUN_ID %s\\n" % run.run_id)
        """
    )
    result = run_script(project, closed)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("console output of run") == 1, result.stderr
    assert "is not captured: file descriptor 1 is not" in result.stderr
    run_id = result.stderr.split("RUN_ID ")[1].split()[0]
    client = local_client(project)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not any(p.startswith("logs/") for p in artifact_paths(client, run_id))


TERMINAL = textwrap.dedent(
    """
    import os, shutil, sys
    from tracksdk import tracked

    with tracked(experiment="console-tty") as run:
        size = os.get_terminal_size(1)
        print("isatty", os.isatty(1), sys.stdout.isatty(), os.isatty(2))
        print("size", size.columns, size.lines)
        print("\\033[31mred\\033[0m")
        os.write(2, b"err on the terminal\\n")
    print("RUN_ID", run.run_id)
    """
)


def test_a_terminal_stays_a_terminal(project: Path, tmp_path: Path) -> None:
    """On a terminal, the run still writes to one: isatty, its size, bytes as they were."""
    import fcntl
    import pty
    import struct
    import termios

    (project / "job.py").write_text(TERMINAL)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "job.py"],
        cwd=project,
        env=script_env(),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert child.wait(60) == 0
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "isatty True True True\n" in shown
    assert "size 132 40\n" in shown
    assert "\033[31mred\033[0m\n" in shown and "err on the terminal\n" in shown
    run_id = shown.split("RUN_ID ")[1].split()[0]
    log = console_log(local_client(project), run_id, tmp_path)
    assert log == ("isatty True True True\nsize 132 40\n\033[31mred\033[0m\nerr on the terminal\n")


# -- in this process, under pytest's own capture -------------------------------------------


def fd_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_in_process_run_under_pytest_capture(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """pytest's fds are put back exactly; its capture still gets what the run wrote."""
    before = (fd_identity(1), fd_identity(2))
    with tracked(experiment="console-pytest") as outer:
        assert fd_identity(1) != before[0]
        os.write(1, b"outer fd line\n")
        with tracked(run_name="nested") as inner:
            os.write(2, b"nested fd line\n")
    assert (fd_identity(1), fd_identity(2)) == before
    captured = capfd.readouterr()
    assert "outer fd line" in captured.out and "nested fd line" in captured.err
    client = local_client(project)
    log = console_log(client, outer.run_id, tmp_path)
    assert "outer fd line\n" in log and "nested fd line\n" in log  # nested runs share it
    assert not any(p.startswith("logs/") for p in artifact_paths(client, inner.run_id))


def test_an_fd_replaced_during_the_run_is_left_in_place(project: Path, tmp_path: Path) -> None:
    """Another tool's dup2 onto fd 1 during the run: the run's end does not undo it."""
    before = os.dup(1)
    theirs = os.open(tmp_path / "theirs.txt", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with tracked(experiment="console-replaced"):
            os.write(1, b"captured\n")
            os.dup2(theirs, 1)
        os.write(1, b"after the run\n")
        assert fd_identity(1) == fd_identity(theirs)
    finally:
        os.dup2(before, 1)
        os.close(before)
        os.close(theirs)
    assert (tmp_path / "theirs.txt").read_text() == "after the run\n"


def test_no_capture_when_disabled_or_untracked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKSDK_MODE=disabled and a rank that does not track leave the fds alone."""
    before = fd_identity(1)
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")
    tracksdk.reset()
    with tracked():
        assert fd_identity(1) == before
    monkeypatch.delenv("TRACKSDK_MODE")
    monkeypatch.setenv("RANK", "1")
    tracksdk.reset()
    with tracked():
        assert fd_identity(1) == before


def test_notebooks_capture_python_level(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In IPython (a Jupyter kernel), fd mode becomes python mode on its own."""
    shell = types.ModuleType("IPython")
    shell.get_ipython = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", shell)
    before = fd_identity(1)
    original = sys.stdout
    with tracked(experiment="console-notebook") as run:
        assert fd_identity(1) == before
        assert sys.stdout is not original
        print("cell output")
    assert sys.stdout is original
    assert console_log(local_client(project), run.run_id, tmp_path) == "cell output\n"


def test_upload_again_replaces_the_artifact(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the run prints, console.log is uploaded again over itself, never doubled."""
    monkeypatch.setattr(_console_log, "UPLOAD_EVERY", 0.0)
    client = local_client(project)
    with tracked(experiment="console-again") as run:
        os.write(1, b"first\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "logs/console.log" in artifact_paths(client, run.run_id):
                break
            time.sleep(0.2)
        assert console_log(client, run.run_id, tmp_path / "1") == "first\n"
        os.write(1, b"second\n")
    assert console_log(client, run.run_id, tmp_path / "2") == "first\nsecond\n"


@pytest.mark.server
def test_upload_again_replaces_on_the_server(
    project: Path, tmp_path: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP artifact store replaces console.log too."""
    monkeypatch.setattr(_console_log, "UPLOAD_EVERY", 0.0)
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", mlflow_server.url)
    tracksdk.reset()
    client = server_client(mlflow_server)
    with tracked(experiment="console-again") as run:
        os.write(1, b"first\n")
        deadline = time.monotonic() + 30
        while "logs/console.log" not in artifact_paths(client, run.run_id):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.write(1, b"second\n")
    assert console_log(client, run.run_id, tmp_path) == "first\nsecond\n"


def test_a_continued_run_appends_to_its_log(project: Path, tmp_path: Path) -> None:
    """Resume's part: the log the store has comes first, then what the new process prints."""
    from tracksdk._config import resolve_with_connection
    from tracksdk.stores import open_store

    with tracked(experiment="console-resume") as run:
        os.write(1, b"first process\n")
    _, conn = resolve_with_connection()
    log = ConsoleLog(tmp_path / "console", 1 << 20)
    previous = _console_log.fetch_previous(conn, str(run.run_id))
    assert previous == "first process\n"
    log.adopt(previous, "--- continued ---\n")
    log.add("second process\n", (1, 100))
    log.adopt("ignored: the log has begun\n")
    store = open_store(conn)
    log.upload(store, str(run.run_id))
    store.close()
    text = console_log(local_client(project), run.run_id, tmp_path / "after")
    assert text == "first process\n--- continued ---\nsecond process\n"


# -- the pieces --------------------------------------------------------------------------


def test_output_record_bytes() -> None:
    """The Output record's bytes: ["o", stream, text]; a malformed one is no record."""
    record = Output("stdout", "caf\u00e9\n")
    assert encode(record) == b'["o","stdout","caf\xc3\xa9\\n"]'
    assert decode(encode(record)) == record
    assert decode(b'["o","stdout"]') is None
    assert decode(b'["o",1,"text"]') is None


def test_collapse_keeps_what_a_terminal_shows() -> None:
    assert collapse("10%\r50%\r100%\n") == "100%\n"
    assert collapse("windows\r\nline\r\n") == "windows\nline\n"
    assert collapse("a\rb\nplain\n") == "b\nplain\n"


class _Journal:
    max_bytes = 1 << 30

    def pending_bytes(self) -> int:
        return 0


class _Writer:
    """Takes the sink's chunks (the sink's only use of a writer)."""

    def __init__(self) -> None:
        self.journal = _Journal()
        self.chunks: list[tuple[str, str]] = []

    def output(self, stream: str, text: str) -> bool:
        self.chunks.append((stream, text))
        return True


def test_sink_chunks_whole_lines_in_order() -> None:
    """Whole lines, in the order printed; a line's end waits for its newline."""
    writer = _Writer()
    sink = Sink(writer)  # type: ignore[arg-type]
    sink.feed("stdout", b"a\nhalf")
    sink.feed("stderr", b"e\n")
    sink.flush()
    assert writer.chunks == [("stdout", "a\n"), ("stderr", "e\n")]
    sink.feed("stdout", b" line\n\xc3")  # a character cut in two by a read
    sink.feed("stdout", b"\xa9\n")
    sink.close(1.0)
    assert "".join(t for s, t in writer.chunks if s == "stdout") == "a\nhalf line\n\u00e9\n"


def test_sink_flushes_big_output_at_once_and_bounds_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64 KiB waiting wakes the flusher; past MAX_PENDING, a line says what was left out."""
    monkeypatch.setattr(_console_sink, "MAX_PENDING", 1 << 20)
    writer = _Writer()
    sink = Sink(writer)  # type: ignore[arg-type]
    sink.start()
    started = time.monotonic()
    sink.feed("stdout", b"z" * 99 + b"\n" * 1 + b"q" * 100 * 1000)
    sink.feed("stdout", b"\n")
    while not writer.chunks and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert time.monotonic() - started < _console_sink.FLUSH_EVERY
    for _ in range(30):
        sink.feed("stderr", b"w" * 99_999 + b"\n")
    sink.close(1.0)
    assert all(len(t.encode()) <= _console_sink.CHUNK_BYTES for _, t in writer.chunks)
    assert "bytes of console output were left out here" in writer.chunks[-1][1]


def test_console_log_keeps_head_and_tail(tmp_path: Path) -> None:
    """The first and last halves of the bound, a marker line between, lines whole."""
    log = ConsoleLog(tmp_path / "c", 10_000)
    for i in range(2000):
        log.add(f"line {i:05d}\n", (1, 100 + i))
    text = log.build().read_text()
    assert len(text) <= 10_000 + 200
    head, marker, tail = text.partition("[tracksdk: ")
    assert head.startswith("line 00000\n") and head.endswith("\n")
    assert len(head) <= 5000
    assert tail.splitlines()[-1] == "line 01999"
    assert "bytes of console output left out here" in marker + tail
    for line in text.splitlines():
        assert len(line) == 10 or line.startswith("[tracksdk: "), line
    # Reopened (a sync after a crash): the same state, records already added are skipped.
    again = ConsoleLog(tmp_path / "c", 10_000)
    again.add("line 01999\n", (1, 100 + 1999))
    assert again.build().read_text() == text
    again.add("later\n", (2, 0))
    assert again.build().read_text().endswith("line 01999\nlater\n")


def test_console_log_cuts_bytes_appended_after_its_state(tmp_path: Path) -> None:
    """A crash between an append and its state: the stray bytes are cut when reopened."""
    log = ConsoleLog(tmp_path / "c", 1 << 20)
    log.add("kept\n", (1, 10))
    with (tmp_path / "c" / "head.log").open("ab") as file:
        file.write(b"half-written")
    again = ConsoleLog(tmp_path / "c", 1 << 20)
    again.add("kept\n", (1, 10))  # the record is sent again: added once
    again.add("next\n", (1, 20))
    assert again.build().read_text() == "kept\nnext\n"


def test_many_threads_and_short_runs_leave_no_threads_behind(project: Path) -> None:
    """Each run's tee and flusher threads end with it (no writer outlives the run)."""
    for i in range(5):
        with tracked(experiment="console-threads") as run:
            os.write(1, f"run {i}\n".encode())
            run.log_metric("m", float(i))
    deadline = time.monotonic() + 10
    names = ("tracksdk-console", "tracksdk-console-tee")
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if t.name in names]
        if not alive:
            break
        time.sleep(0.05)
    assert not alive
