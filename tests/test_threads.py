"""tracksdk's threads leave SIGTERM and SIGINT to the main thread; their subprocesses do not.

A process-directed signal goes to any thread that does not block it. When a tracksdk thread
took SIGTERM while the main thread slept, the run stayed RUNNING until the sleep returned
(tracksdk/_threads.py). The masks are read where the kernel keeps them, Linux's
``/proc/<pid>/task/<tid>/status`` (``SigBlk``): of every tracksdk thread of a running run,
of threads and timers started from one another, and of git as the provenance worker starts
it. A check of the source keeps every thread and subprocess on that path.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tracksdk import _capture
from tracksdk._threads import MAIN_THREAD_SIGNALS, Thread, Timer, child_signals
from tracksdk.provenance import _git_process

ROOT = Path(__file__).resolve().parents[1]
LINUX = pytest.mark.skipif(not Path("/proc/thread-self/status").exists(), reason="Linux /proc")
TAKEN_BY_MAIN = {signal.SIGTERM, signal.SIGINT}  # at least: tracksdk's and Python's handlers


def blocked(status: str) -> set[int]:
    """The signal numbers in the SigBlk line of a /proc status file's text."""
    line = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def blocked_here() -> set[int]:
    return blocked(Path("/proc/thread-self/status").read_text())


MASKS = textwrap.dedent(
    """
    import json, threading
    from tracksdk import _capture, tracked

    with tracked(experiment="masks") as run:
        run.log_metric("loss", 1.0, step=0)
        print("a line for the console capture", flush=True)
        # The provenance worker runs jobs in order: once this one ran, its capture is over
        # (git and its threads too) and the worker waits for the next job.
        captured = threading.Event()
        _capture._submit(captured.set)
        assert captured.wait(120)
        masks = {}
        for thread in threading.enumerate():
            try:
                with open(f"/proc/self/task/{thread.native_id}/status") as status:
                    masks[thread.name] = status.read()
            except OSError:
                pass  # it ended meanwhile
        print("MASKS", json.dumps(masks), flush=True)
    """
)


@LINUX
def test_every_thread_of_a_running_run_leaves_sigterm_to_the_main_thread(project: Path) -> None:
    (project / "job.py").write_text(MASKS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "job.py"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("MASKS "))
    masks = {name: blocked(status) for name, status in json.loads(line[6:]).items()}
    ours = {name: mask for name, mask in masks.items() if name.startswith("tracksdk-")}
    started = {name.rsplit("-", 1)[0] if "sender" in name else name for name in ours}
    expected = {"heartbeat", "sender", "provenance", "console-tee", "system-metrics"}
    assert {f"tracksdk-{name}" for name in expected} <= started
    wanted = TAKEN_BY_MAIN | MAIN_THREAD_SIGNALS
    assert {name: wanted - mask for name, mask in ours.items() if wanted - mask} == {}
    assert masks["MainThread"] & TAKEN_BY_MAIN == set()  # the one that takes them


@LINUX
def test_threads_and_timers_are_born_blocking_and_their_children_are_not() -> None:
    seen: dict[str, set[int]] = {}

    def nested() -> None:
        seen["nested"] = blocked_here()
        with child_signals():
            seen["nested child"] = blocked_here()
        seen["nested after"] = blocked_here()

    def outer() -> None:
        seen["thread"] = blocked_here()
        inner = Thread(nested, name="tracksdk-test-nested")
        inner.start()
        inner.join()

    caller = blocked_here()
    thread = Thread(outer, name="tracksdk-test")
    thread.start()
    assert blocked_here() == caller  # the caller's mask is back as it was
    thread.join()
    timer = Timer(0.0, lambda: seen.update(timer=blocked_here()), name="tracksdk-test-timer")
    timer.start()
    timer.join()
    for name in ("thread", "nested", "nested after", "timer"):
        assert seen[name] >= MAIN_THREAD_SIGNALS, name
    # A thread started from a tracksdk thread still gives its subprocesses the mask of the
    # thread outside tracksdk that started the first one.
    assert seen["nested child"] == caller
    with child_signals():  # not a tracksdk thread: nothing changes
        assert blocked_here() == caller


@LINUX
def test_git_started_by_the_provenance_worker_takes_sigterm(tmp_path: Path) -> None:
    """git, as provenance capture starts it, does not inherit the worker's blocked SIGTERM.

    git runs an alias: a Python script that prints its own mask, which is git's (a child of
    git gets the mask git has; a shell would reset it, and git itself blocks every signal
    for a moment around each fork, so neither a shell nor a read of git's status from
    outside would prove anything). A subprocess the worker starts without child_signals is
    the control: the worker's own mask.
    """
    probe = tmp_path / "probe"
    probe.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write(open('/proc/self/status').read())\n"
    )
    probe.chmod(0o755)
    out: dict[str, str] = {}
    done = threading.Event()

    def job() -> None:
        try:
            alias = ["-c", f"alias.probe=!{probe}", "probe"]  # no blank: git runs it, no shell
            out["git"] = _git_process.run(tmp_path, alias, timeout=60).stdout.decode()
            out["plain"] = subprocess.run(
                [str(probe)], capture_output=True, text=True, check=True
            ).stdout
        finally:
            done.set()

    _capture._submit(job)
    assert done.wait(120)
    assert blocked(out["git"]) & TAKEN_BY_MAIN == set()
    assert blocked(out["plain"]) >= MAIN_THREAD_SIGNALS


# -- every thread and subprocess goes through tracksdk._threads ----------------------------

_THREAD_STARTS = {
    "threading.Thread",
    "threading.Timer",
    "ThreadPoolExecutor",
    "futures.ThreadPoolExecutor",
    "concurrent.futures.ThreadPoolExecutor",
    "_thread.start_new_thread",
}
_SPAWNS = {"Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def offences(source: str, *, spawns: bool = True) -> list[str]:
    """Threads started other than through tracksdk._threads; subprocesses outside
    ``with child_signals()`` (when ``spawns``)."""
    found: list[str] = []

    def visit(node: ast.AST, shielded: bool) -> None:
        if isinstance(node, ast.With) and any(
            "child_signals" in ast.unparse(item.context_expr) for item in node.items
        ):
            shielded = True
        if isinstance(node, ast.ImportFrom):
            found.extend(
                f"line {node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}".endswith(tuple(_THREAD_STARTS))
            )
        if isinstance(node, ast.ClassDef) and any(
            ast.unparse(base) in _THREAD_STARTS for base in node.bases
        ):
            found.append(f"line {node.lineno}: a subclass of a thread")
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called in _THREAD_STARTS:
                found.append(f"line {node.lineno}: {called}")
            module, _, name = called.rpartition(".")
            spawn = (module == "subprocess" and name in _SPAWNS) or (
                module == "os" and name.startswith(("spawn", "posix_spawn", "system", "popen"))
            )
            if spawns and spawn and not shielded:
                found.append(f"line {node.lineno}: {called} outside child_signals()")
        for child in ast.iter_child_nodes(node):
            visit(child, shielded)

    visit(ast.parse(source), False)
    return found


def test_every_thread_and_subprocess_of_tracksdk_goes_through_its_thread_module() -> None:
    sources = [*ROOT.glob("tracksdk/**/*.py"), *ROOT.glob("plugins/*/*/**/*.py")]
    problems = {}
    for path in sources:
        relative = path.relative_to(ROOT)
        if relative == Path("tracksdk/_threads.py") or "tests" in relative.parts:
            continue
        # The CLI starts its servers from the main thread, where child_signals does nothing.
        spawns = relative.parts[:2] != ("tracksdk", "cli")
        found = offences(path.read_text(encoding="utf-8"), spawns=spawns)
        if found:
            problems[str(relative)] = found
    assert len(sources) > 50
    assert problems == {}


def test_the_source_check_finds_a_plain_thread_and_an_unshielded_subprocess() -> None:
    """The check itself can fail: made-up code is reported, its shielded twin is not."""
    bad = textwrap.dedent(
        """
        import subprocess, threading
        from threading import Timer
        threading.Thread(target=print).start()
        subprocess.Popen(["git"])
        """
    )
    assert offences(bad) == [
        "line 3: from threading import Timer",
        "line 4: threading.Thread",
        "line 5: subprocess.Popen outside child_signals()",
    ]
    good = "with child_signals():\n    subprocess.Popen(['git'])\nThread(print, name='x')\n"
    assert offences(good) == []
