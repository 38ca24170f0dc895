"""Running ``git``: one short subprocess per call, never prompting, never locking, time-limited.

Every call runs with ``GIT_TERMINAL_PROMPT=0`` (never prompt), ``GIT_OPTIONAL_LOCKS=0`` (never
take ``index.lock``: a tracked run must not make the user's own ``git commit`` fail, the same
choice editors make for their background ``git status``; the cost is that git cannot save the
stat data it refreshes, which the user's next own ``git status`` does), standard input closed
and a time limit. Variables that point git at another repository (``GIT_DIR``,
``GIT_INDEX_FILE``, ... as set inside git hooks) are removed, because the repository is the
one found from the script's folder.

Output is read in chunks up to a limit and counted beyond it, so a huge diff is measured but
never held whole; every failure is a :class:`GitFailed` whose message is the warning to show.
Reading ends when git has exited, not only at end-of-file (see :func:`_chunks`).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from tracksdk._threads import Thread, Timer, child_signals

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

_READ_CHUNK = 65536
# While a pipe has nothing to read, how often to check whether git has exited (milliseconds).
# Only a pipe held open by another process waits this long: otherwise end-of-file comes first.
_EXIT_CHECK_MS = 50

# Variables that make git ignore `-C` and use another repository or index (the list printed by
# `git rev-parse --local-env-vars`, less GIT_CONFIG_*: those carry the user's `-c` settings,
# such as safe.directory in CI containers). They are set while git hooks run, e.g. a pre-commit
# hook that runs the test suite.
_REPO_LOCAL_ENV = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_DIR",
    "GIT_GRAFT_FILE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_NAMESPACE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_PREFIX",
    "GIT_REPLACE_REF_BASE",
    "GIT_SHALLOW_FILE",
    "GIT_WORK_TREE",
)


class GitFailed(Exception):
    """A git call could not run or failed; the message is the warning to show."""


@dataclass(frozen=True)
class Output:
    """What a finished git call wrote to its standard output."""

    stdout: bytes  # at most the `limit` asked for
    total: int  # bytes git wrote to stdout, kept or not


def _git_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _REPO_LOCAL_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env["GIT_PAGER"] = "cat"
    return env


@dataclass
class Pending:
    """A started git call, until :func:`finish` reads it to its end."""

    argv: list[str]
    process: subprocess.Popen[bytes]
    limit: int | None
    timeout: float
    timer: threading.Timer
    timed_out: threading.Event
    stderr: list[bytes] = field(default_factory=list)
    reader: threading.Thread | None = None


def start(root: Path, args: Sequence[str], *, timeout: float, limit: int | None = None) -> Pending:
    """Start ``git <args>`` in ``root``, killed after ``timeout`` seconds; see :func:`finish`.

    Raises:
        GitFailed: git could not be started.
    """
    import subprocess  # imported here: only code inside a repository pays for it

    argv = ["git", "--no-pager", "--literal-pathspecs", "-C", str(root), *args]
    try:
        # The capture worker blocks SIGTERM (tracksdk._threads); git would inherit that
        # and outlive a scheduler's SIGTERM to the process group.
        with child_signals():
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_git_env(),
                # No console window flashing up on Windows; 0 (no flag) elsewhere.
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
    except FileNotFoundError:
        raise GitFailed("the git executable was not found on PATH") from None
    except OSError as exc:
        raise GitFailed(f"git could not be started ({exc})") from None
    # Killing on a timer (instead of communicate(timeout=...)) lets stdout be read in chunks, so
    # a huge diff is counted but never held in memory whole.
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    timer = Timer(timeout, kill, name="tracksdk-git-timeout")
    timer.start()
    pending = Pending(
        argv=argv, process=process, limit=limit, timeout=timeout, timer=timer, timed_out=timed_out
    )
    # stderr is drained concurrently so that a chatty git (one warning per file) cannot fill
    # the pipe and block while we read stdout.
    pending.reader = Thread(_drain, name="tracksdk-git-stderr", args=(process, pending.stderr))
    pending.reader.start()
    return pending


def _chunks(process: subprocess.Popen[bytes], stream: IO[bytes]) -> Iterator[bytes]:
    """Yield what git writes to ``stream``, until end-of-file or until git has exited.

    End-of-file alone cannot be waited for: a process that the user's code forks (a
    multiprocessing worker) while this call's pipes are open in our process, between their
    creation and Popen closing our copy of the write end, keeps that copy open for as long as
    it lives, since a fork without exec keeps every descriptor, O_CLOEXEC or not. So the pipe
    is polled, and once git has exited what it wrote is read without blocking and the read ends.
    """
    if not hasattr(select, "poll"):  # Windows: no fork there, so end-of-file comes with git's end
        while chunk := stream.read(_READ_CHUNK):
            yield chunk
        return
    fd = stream.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    exited = False
    while True:
        if not poller.poll(0 if exited else _EXIT_CHECK_MS):
            if exited:  # git is gone and everything it wrote has been read
                return
            # Checked only when nothing was readable; once git has exited, one more pass
            # without waiting reads what it wrote just before: that is in the pipe by then.
            exited = process.poll() is not None
            continue
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            return
        yield chunk


def _drain(process: subprocess.Popen[bytes], into: list[bytes]) -> None:
    assert process.stderr is not None
    kept = 0
    # A failed read (the pipe closed under us by finish) must not print a thread traceback.
    with contextlib.suppress(OSError, ValueError):
        for chunk in _chunks(process, process.stderr):
            if kept < 8192:  # enough for the message; the rest is discarded
                into.append(chunk)
                kept += len(chunk)


def finish(pending: Pending, *, ok_codes: Sequence[int] = (0,)) -> Output:
    """Read the call's output (at most its ``limit``, all of it counted) and wait for its end.

    Raises:
        GitFailed: git timed out or exited with a status not in ``ok_codes``.
    """
    process = pending.process
    assert process.stdout is not None
    kept: list[bytes] = []
    kept_size = 0
    total = 0
    try:
        for chunk in _chunks(process, process.stdout):
            total += len(chunk)
            if pending.limit is None:
                kept.append(chunk)
            elif kept_size < pending.limit:
                chunk = chunk[: pending.limit - kept_size]
                kept.append(chunk)
                kept_size += len(chunk)
        returncode = process.wait()
    finally:
        pending.timer.cancel()
        if process.returncode is None:
            process.kill()
            process.wait()
        if pending.reader is not None:
            pending.reader.join(timeout=1.0)
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    command = " ".join(pending.argv[5:7])  # after "git --no-pager ... -C <root>": "diff HEAD"
    if pending.timed_out.is_set():
        raise GitFailed(f"`git {command}` took longer than {pending.timeout:g} s")
    if returncode not in ok_codes:
        message = b"".join(pending.stderr).decode("utf-8", errors="replace").strip()
        first_line = message.splitlines()[0] if message else f"exit status {returncode}"
        raise GitFailed(f"`git {command}` failed: {first_line}")
    return Output(stdout=b"".join(kept), total=total)


def abandon(pending: Pending) -> None:
    """Stop a call whose result is no longer wanted."""
    pending.process.kill()
    with contextlib.suppress(GitFailed):
        finish(pending)


def run(root: Path, args: Sequence[str], *, timeout: float, limit: int | None = None) -> Output:
    """Run ``git <args>`` in ``root`` to its end (:func:`start`, then :func:`finish`)."""
    return finish(start(root, args, timeout=timeout, limit=limit))
