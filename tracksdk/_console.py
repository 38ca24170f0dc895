"""Console capture: what a top-level run prints, kept with the run as ``logs/console.log``.

``TRACKSDK_CONSOLE`` chooses how (docs/console.md):

- ``fd`` (the default): file descriptors 1 and 2 are redirected into pipes and teed
  (:mod:`tracksdk._console_fd`), so native libraries' and subprocesses' output is kept
  too. In a notebook or IPython, where fd redirection is unwelcome (the kernel's own
  fds are not the cells' output), ``python`` is used instead.
- ``python``: ``sys.stdout`` and ``sys.stderr`` are wrapped; what bypasses them
  (``os.write(1, ...)``, C code) is not kept.
- ``off``.

The capture belongs to the outermost run: nested runs share it, and while it runs no
other top-level run (another thread's) captures. What is captured goes through a
:class:`~tracksdk._console_sink.Sink` into the run's journal; the sender turns it into
the artifact (:mod:`tracksdk._console_log`). A capture that cannot start is one warning,
and the run goes on without it.
"""

from __future__ import annotations

import atexit
import sys
import threading
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._console_sink import Sink

if TYPE_CHECKING:
    from tracksdk._console_fd import FdCapture
    from tracksdk._writer import Writer

__all__ = ["Console", "after_fork_in_child", "start"]

DRAIN_WAIT = 2.0  # how long the end of a run waits for the pipes and the journal
DRAIN_WAIT_KILLED = 0.5  # the same, at a SIGTERM

_lock = threading.Lock()
_active: Console | None = None  # the capture of the outermost run, while it runs
_forwarding: list[FdCapture] = []  # fd captures whose pipes may outlive their run
_exit_hooked = False


def in_ipython() -> bool:
    """Whether this is an IPython shell or a Jupyter kernel (fd capture is unwelcome)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    try:
        return get is not None and get() is not None
    except Exception:
        return False


def start(settings: Any, writer: Writer, label: str) -> Console | None:
    """Capture the console for a top-level run; None when off, taken, or impossible."""
    global _active
    mode: str = settings.console
    if mode == "off":
        return None
    if mode == "fd" and in_ipython():
        mode = "python"
    with _lock:
        if _active is not None:
            return None  # another top-level run (another thread's) has the console
        console = Console(writer, mode)
        try:
            console.start()
        except Exception as exc:  # never a reason for the run not to go on
            _warn.warn(
                f"tracksdk: console output of run {label} is not captured: {exc}. The run "
                "goes on; TRACKSDK_CONSOLE=python or off silences this."
            )
            return None
        _active = console
    _hook_exit()
    return console


class Console:
    """The console capture of one top-level run.

    Args:
        writer: The run's writer, which journals the output.
        mode: ``fd`` or ``python``.
    """

    def __init__(self, writer: Writer, mode: str) -> None:
        self.mode = mode
        self.sink = Sink(writer)
        self._fd: FdCapture | None = None
        self._tees: list[_Tee] = []
        self._stopped = False

    def start(self) -> None:
        """Start capturing.

        Raises:
            OSError: The capture cannot start; nothing was changed.
        """
        try:
            if self.mode == "fd":
                from tracksdk._console_fd import FdCapture

                self._fd = FdCapture(self.sink)
                self._fd.start()
            else:
                for name in ("stdout", "stderr"):
                    original = getattr(sys, name)
                    if original is not None:
                        tee = _Tee(original, name, self.sink)
                        setattr(sys, name, tee)
                        self._tees.append(tee)
                if not self._tees:
                    raise OSError("sys.stdout and sys.stderr are None")
        except BaseException:
            for tee in self._tees:
                tee.restore()
            if self._fd is not None and self._fd.targets:
                self._fd.stop(0)
            raise

    def stop(self, status: str = "FINISHED") -> None:
        """Stop capturing and journal what is left (once; bounded, shorter when KILLED)."""
        global _active
        if self._stopped:
            return
        self._stopped = True
        wait = DRAIN_WAIT_KILLED if status == "KILLED" else DRAIN_WAIT
        try:
            if self._fd is not None:
                self._fd.stop(wait)
                _forwarding[:] = [c for c in (*_forwarding, self._fd) if c.forwarding()]
            for tee in self._tees:
                tee.restore()
            self.sink.close(wait)
        except Exception as exc:  # the run must still end
            _warn.warn(f"tracksdk: ending the console capture failed: {type(exc).__name__}: {exc}")
        finally:
            with _lock:
                if _active is self:
                    _active = None

    def after_fork_in_child(self) -> None:
        """In a forked child: this capture is the parent's; let go of it quietly."""
        self._stopped = True
        if self._fd is not None:
            self._fd.after_fork_in_child()
        for tee in self._tees:
            tee.sink = None


class _Tee:
    """``sys.stdout`` or ``sys.stderr`` in python mode: writes go on, and to the run."""

    def __init__(self, original: Any, stream: str, sink: Sink) -> None:
        self._original = original
        self._stream = stream
        self.sink: Sink | None = sink

    def write(self, text: str) -> int:
        """Write to the original stream, and keep a copy for the run."""
        written: int = self._original.write(text)
        sink = self.sink
        if sink is not None and isinstance(text, str):
            sink.feed(self._stream, text.encode("utf-8", "replace"))
        return written

    def writelines(self, lines: Any) -> None:
        """Write each line (see :meth:`write`)."""
        for line in lines:
            self.write(line)

    def restore(self) -> None:
        """Put the original stream back, unless something replaced this one meanwhile."""
        self.sink = None  # from now on, a pass-through wherever it still is
        if getattr(sys, self._stream) is self:
            setattr(sys, self._stream, self._original)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _hook_exit() -> None:
    """At exit: end a capture still running; pipes whose writers outlive us handed over."""
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    console = _active
    if console is not None:
        console.stop()  # a run never ended: restore the fds before Python's last flush
    for capture in _forwarding:
        if capture.forwarding(wait=0.2):  # (the last bytes of a writer that just exited)
            capture.hand_over()
    _forwarding.clear()


def after_fork_in_child() -> None:
    """In a forked child: the parent's capture is not this process's (tracksdk._fork)."""
    global _active, _lock
    _lock = threading.Lock()
    console, _active = _active, None
    if console is not None:
        console.after_fork_in_child()
    for capture in _forwarding:
        capture.after_fork_in_child()
    _forwarding.clear()
