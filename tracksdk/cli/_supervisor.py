"""Running a server (``tracksdk serve``, ``tracksdk ui``) as a process group stopped on a signal.

The server is ``mlflow models serve`` or ``mlflow ui``, whose uvicorn processes outlive it
when only it is signalled; :class:`GroupSupervisor` takes the whole group down, and
:func:`exit_by_signal` then ends tracksdk by the signal it received.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from tracksdk.cli._common import err

if TYPE_CHECKING:
    from types import FrameType


class Stopped(BaseException):
    """A stop signal that arrived before the server started; unwinds the set-up.

    A BaseException, like KeyboardInterrupt, so that MLflow's ``except Exception`` around
    the download does not turn it into an error message.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class GroupSupervisor:
    """Runs a command in its own process group and takes the whole group down on a signal.

    Used by ``serve`` and ``ui`` (``what`` names the server in messages). The server is
    ``mlflow models serve`` or ``mlflow ui``, whose uvicorn process (and its workers, with
    MLFLOW_MODELS_WORKERS) outlive it when only it is signalled, so signals go to the group.
    A session of its own also keeps the terminal's Ctrl-C from reaching it directly: the
    stop is tracksdk's to run, bounded by ``stop_timeout`` and followed by the clean-up.

    Use as a context manager: while active, SIGTERM, SIGINT and SIGHUP are caught. Inside
    :meth:`interruptible` they raise :class:`Stopped`; while :meth:`run` runs the command
    they are forwarded to its process group (a second one sends SIGKILL); otherwise they
    are recorded, and :meth:`run` does not start the command. ``signum`` is the first one.
    """

    def __init__(self, stop_timeout: float, what: str = "model server") -> None:
        self.stop_timeout = stop_timeout
        self.what = what
        self.signum: int | None = None
        self._signalled_at = 0.0
        self._interruptible = False
        self._pgid: int | None = None
        self._saved: dict[int, Any] = {}
        self._saved_wakeup_fd = -1
        self._wakeup: tuple[int, int] | None = None

    def __enter__(self) -> GroupSupervisor:
        # Python writes each caught signal's number to this pipe, so the main loop can wait
        # for "a stop signal or a child exited" in select() instead of polling.
        read_end, write_end = self._wakeup = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._saved_wakeup_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._saved[signum] = signal.signal(signum, self._on_signal)
        # A Python handler, not SIG_IGN: ignoring SIGCHLD would make the kernel reap the
        # children itself, and their exit status would be lost.
        self._saved[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _on_child_exit)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._saved_wakeup_fd)
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a stop signal interrupts by raising :class:`Stopped`."""
        if self.signum is not None:
            raise Stopped(self.signum)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only record and forward here: printing is left to the main loop, which may itself
        # be printing when the signal arrives.
        first = self.signum is None
        if first:
            self.signum, self._signalled_at = signum, time.monotonic()
        if self._pgid is not None:
            # A second signal (Ctrl-C twice) means: do not wait for a graceful stop.
            _killpg(self._pgid, _forwarded(signum) if first else signal.SIGKILL)
        elif self._interruptible and first:
            raise Stopped(signum)

    def _pause(self, timeout: float | None) -> None:
        """Sleep until a signal is caught (a stop signal, SIGCHLD) or ``timeout`` passes."""
        assert self._wakeup is not None, "use GroupSupervisor as a context manager"
        read_end = self._wakeup[0]
        select.select([read_end], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(read_end, 512):
                pass

    def run(self, command: list[str], env: dict[str, str]) -> int:
        """Run ``command`` until its whole process group has exited; return its status.

        The status is the command's exit code, negative for a signal as in
        :attr:`subprocess.Popen.returncode`, or ``-signum`` without starting it when a stop
        signal came first.
        """
        if self.signum is not None:
            return -self.signum
        _adopt_orphans()
        child = subprocess.Popen(command, env=env, start_new_session=True)
        pgid = self._pgid = child.pid  # a new session's leader: its PID is the group's ID
        if self.signum is not None:  # it came while the child started, before it was known
            _killpg(pgid, _forwarded(self.signum))
        stopping_since: float | None = None  # when the group was asked to stop
        killed_at: float | None = None
        while True:
            now = time.monotonic()
            if stopping_since is None and self.signum is not None:
                stopping_since = self._signalled_at
                name = signal.Signals(self.signum).name
                err.print(
                    f"{name}: stopping the {self.what} (waiting up to {self.stop_timeout:g} s).",
                    highlight=False,
                )
            if child.poll() is not None:
                if not _group_alive(pgid):
                    break
                if stopping_since is None:
                    # The server ended by itself but left processes behind: stop them too.
                    stopping_since = now
                    _killpg(pgid, signal.SIGTERM)
            if stopping_since is None:
                self._pause(None)  # serving: until a stop signal, or the server exits
                continue
            if killed_at is None and now - stopping_since >= self.stop_timeout:
                err.print(
                    f"The {self.what} did not stop within {self.stop_timeout:g} s: killing it.",
                    highlight=False,
                )
                _killpg(pgid, signal.SIGKILL)
                killed_at = now
            elif killed_at is not None and now - killed_at > 10:
                # Only a process stuck in the kernel survives SIGKILL; do not hang on it.
                err.print(
                    f"[red]error:[/red] processes of group {pgid} survived SIGKILL.",
                    highlight=False,
                )
                break
            # Stopping: poll, since group members that are not our children (no subreaper
            # outside Linux) send no SIGCHLD when they exit.
            self._pause(0.05)
        self._pgid = None
        return child.returncode if child.returncode is not None else -signal.SIGKILL


def _forwarded(signum: int) -> int:
    """The signal that stops the server gracefully for ``signum`` received by tracksdk.

    SIGHUP (the terminal went away) becomes SIGTERM: uvicorn has no graceful stop on SIGHUP,
    and with several workers its supervisor takes SIGHUP as "restart the workers".
    """
    return signal.SIGTERM if signum == signal.SIGHUP else signum


def _on_child_exit(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: SIGCHLD only has to wake the main loop, through the wake-up pipe."""


def _killpg(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has members left; reaps those that are our children.

    Call it only once the group leader's :class:`subprocess.Popen` has reaped the leader.
    """
    # Members orphaned while the group stops are adopted by this process (_adopt_orphans):
    # reap them, as a zombie still counts as a member of its group.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members exist that we may not signal
    return True


def _adopt_orphans() -> None:
    """Become the parent of orphaned descendants (Linux), so they can be waited for.

    uvicorn outlives the ``mlflow`` process that started it by a moment on every stop.
    Without this it is handed to PID 1, which in a container often never reaps it, and
    its zombie would keep the group alive until the SIGKILL deadline.
    """
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_child_subreaper = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def exit_by_signal(signum: int) -> NoReturn:
    """End this process by ``signum`` with its default action, as if it had not been caught.

    The parent (a shell, systemd, a supervisor) then sees the death by that signal it asked
    for; a shell shows it as exit status 128 + the signal number (143 for SIGTERM).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise typer.Exit(128 + signum)  # reached only if the signal is blocked
