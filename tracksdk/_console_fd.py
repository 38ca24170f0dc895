"""Console capture at the file-descriptor level: fds 1 and 2 into pipes, teed by a thread.

What a process writes to fds 1 and 2 (Python's ``print``, a C library's ``printf``, a
subprocess that inherited them) goes into pipes put in their place with ``dup2``. One
daemon thread reads the pipes, writes every byte to the original fds at once (the
terminal, a file, pytest's capture: they show what they showed before) and hands it to
the run's :class:`~tracksdk._console_sink.Sink`. When fds 1 and 2 are the same file (a
terminal, ``2>&1``), they share one pipe, so the order of the two streams is kept.

At the end of the run the original fds are put back (only where the pipe is still in
place: whoever replaced it meanwhile keeps theirs) and the thread reads what is left in
the pipes before it lets the sink go. A process that inherited the pipe and outlives the
run (a forked worker, a subprocess) keeps writing into it: the thread goes on forwarding
to the original fds until the last writer is gone (its output is no longer journaled),
so the writer never meets a closed pipe. When this process exits first, a small
forwarder process takes the pipes over (:func:`FdCapture.hand_over`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from tracksdk._threads import Thread, child_signals

if TYPE_CHECKING:
    from tracksdk._console_sink import Sink

READ_SIZE = 256 << 10
PIPE_SIZE = 1 << 20  # a bigger pipe: writers holding the GIL get far before they block
_F_SETPIPE_SZ = 1031  # Linux's fcntl
_libc: Any = None  # the C library, for fflush

# The forwarder that takes the pipes over when this process exits before their writers:
# argv holds "read_fd:destination_fd" pairs.
_FORWARDER = """
import os, select, sys
pairs = dict(tuple(map(int, a.split(":"))) for a in sys.argv[1:])
poller = select.poll()
for fd in pairs:
    poller.register(fd, select.POLLIN)
while pairs:
    for fd, _ in poller.poll():
        try:
            data = os.read(fd, 262144)
        except OSError:  # a terminal whose last writer is gone: EIO
            data = b""
        if not data:
            poller.unregister(fd)
            del pairs[fd]
            continue
        try:
            while data:
                data = data[os.write(pairs[fd], data):]
        except OSError:
            pass
"""


def flush_python_and_c() -> None:
    """Write out what Python's and the C library's buffers hold, before fds change."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):  # None, closed, or re-entered from a signal
            if stream is not None:
                stream.flush()
    global _libc
    with contextlib.suppress(Exception):
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.fflush(None)  # printf's buffer, when fd 1 is a pipe


def _high(fd: int) -> int:
    """``fd`` moved to a number above 2 (fds 0-2 may be closed, and a pipe land there)."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _pipe() -> tuple[int, int]:
    read, write = os.pipe()
    read, write = _high(read), _high(write)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_SIZE)
    return read, write


def _terminal(original: int) -> tuple[int, int]:
    """A pseudo-terminal in place of the terminal ``original``: its (master, slave).

    Code that asks whether it writes to a terminal (colours, progress bars) and how wide
    it is gets the same answers as before. The slave passes bytes through as written (no
    output processing: a newline stays a newline).
    """
    import termios

    master, slave = os.openpty()
    master, slave = _high(master), _high(slave)
    with contextlib.suppress(OSError, termios.error):
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    _copy_size(original, slave)
    return master, slave


def _copy_size(source: int, target: int) -> None:
    """Give terminal ``target`` the window size of terminal ``source`` (when it changed)."""
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        if fcntl.ioctl(target, termios.TIOCGWINSZ, b"\0" * 8) != size:
            fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


class FdCapture:
    """Fds 1 and 2 redirected into pipes for one run, and the thread that tees them."""

    def __init__(self, sink: Sink) -> None:
        self.sink: Sink | None = sink
        self.saved: dict[int, int] = {}  # 1, 2 -> a copy of the original fd
        self.pipes: dict[int, tuple[str, int]] = {}  # read end -> (stream, destination fd)
        self.targets: dict[int, tuple[int, int]] = {}  # 1, 2 -> the identity of its pipe
        self.terminals: list[tuple[int, int]] = []  # (our terminal's master, the real one)
        self._wake_r = self._wake_w = -1
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = False  # the original fds are back
        self._eof = False  # every writer is gone: the thread ended
        self._handed_over = False
        self.drained = threading.Event()
        self._thread = Thread(self._run, name="tracksdk-console-tee")

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        """Put the pipes in place and start the thread.

        Raises:
            OSError: The fds cannot be redirected (fd 1 or 2 not open); nothing changed.
        """
        for fd, name in ((1, "output"), (2, "error")):
            try:
                flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                raise OSError(f"file descriptor {fd} is not open") from None
            if flags & fcntl.FD_CLOEXEC:
                # Standard streams are inherited; files this process opens are not
                # (PEP 446): fd 1 or 2 was closed, and a file of this process has its
                # number now. Redirecting it would break that file.
                raise OSError(f"file descriptor {fd} is not the standard {name}")
        same = os.path.samestat(os.fstat(1), os.fstat(2))
        flush_python_and_c()
        ends: list[tuple[int, tuple[int, ...]]] = []
        try:
            for target in (1, 2):
                self.saved[target] = fcntl.fcntl(target, fcntl.F_DUPFD_CLOEXEC, 3)
            groups: list[tuple[str, tuple[int, ...]]] = (
                [("console", (1, 2))] if same else [("stdout", (1,)), ("stderr", (2,))]
            )
            for stream, targets in groups:
                original = self.saved[targets[0]]
                read, write = _terminal(original) if os.isatty(original) else _pipe()
                ends.append((write, targets))
                self.pipes[read] = (stream, original)
                if os.isatty(original):
                    self.terminals.append((read, original))  # a master takes the size too
            wake_r, wake_w = os.pipe()
            self._wake_r, self._wake_w = _high(wake_r), _high(wake_w)
            for write, targets in ends:
                for target in targets:
                    os.dup2(write, target)
                    self.targets[target] = _identity(target)
        except OSError:
            self._undo()
            raise
        finally:
            for write, _ in ends:
                with contextlib.suppress(OSError):
                    os.close(write)
        self._thread.start()

    def _undo(self) -> None:
        """A failed start: the original fds back, every fd opened here closed."""
        for target, saved in self.saved.items():
            if target in self.targets:
                with contextlib.suppress(OSError):
                    os.dup2(saved, target)
        for fd in [*self.saved.values(), *self.pipes, self._wake_r, self._wake_w]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.saved, self.pipes, self.targets = {}, {}, {}

    # -- the tee thread ------------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        for fd in (*self.pipes, self._wake_r):
            poller.register(fd, select.POLLIN)
        open_pipes = dict(self.pipes)
        try:
            # A terminal's window size is copied each second (a resized terminal).
            timeout = 1000 if self.terminals else None
            sized = time.monotonic()
            while open_pipes and not self._handed_over:
                if self.terminals and not self._stopped and time.monotonic() - sized >= 1.0:
                    sized = time.monotonic()
                    for master, real in self.terminals:
                        _copy_size(real, master)
                for fd, _ in poller.poll(timeout):
                    if fd == self._wake_r:
                        with contextlib.suppress(OSError):
                            os.read(fd, 64)
                        continue
                    if not self._pump(fd, open_pipes[fd]):
                        poller.unregister(fd)
                        del open_pipes[fd]
                if self._stopping and not self.drained.is_set():
                    # The run ended: once nothing written before the end is left in the
                    # pipes, later writes (a forked child's) are forwarded only.
                    ready = {fd for fd, _ in poller.poll(0)} & set(open_pipes)
                    if not ready:
                        self.sink = None
                        self.drained.set()
        finally:
            self.sink = None
            self.drained.set()
            self._finish()

    def _pump(self, fd: int, where: tuple[str, int]) -> bool:
        """Move what the pipe ``fd`` holds on; False at its end (every writer is gone)."""
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:
            return False
        if not data:
            return False
        stream, destination = where
        _forward(destination, data)
        sink = self.sink
        if sink is not None:
            sink.feed(stream, data)
        return True

    def _finish(self) -> None:
        """The thread ends: close what it owns (the saved fds once they were put back)."""
        for fd in (*self.pipes, self._wake_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        with self._lock:
            self._eof = True
            if self._stopped:
                self._close_saved()

    def _close_saved(self) -> None:
        for fd in self.saved.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.close(self._wake_w)

    # -- the end of the run ----------------------------------------------------------------

    def stop(self, wait: float) -> None:
        """Put the original fds back; wait (at most ``wait`` s) for the pipes to drain."""
        flush_python_and_c()
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            for target, identity in self.targets.items():
                with contextlib.suppress(OSError):
                    if _identity(target) == identity:  # else someone else's is in place
                        os.dup2(self.saved[target], target)
            if self._eof:
                self._close_saved()
                return
            self._stopping = True
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        self.drained.wait(wait)
        self.sink = None  # a writer that never stops: its output is forwarded only

    def forwarding(self, wait: float = 0.0) -> bool:
        """Whether a writer that outlived the run still holds the pipes (after ``wait`` s)."""
        if wait > 0:
            self._thread.join(wait)
        return self._thread.is_alive()

    def hand_over(self) -> None:
        """This process exits before the pipes' writers: a forwarder process takes over.

        Without it, the writers' next write would fail (EPIPE, SIGPIPE) once this
        process, which holds the pipes' read ends, is gone.
        """
        pairs = {fd: destination for fd, (_, destination) in self.pipes.items()}
        command = [sys.executable, "-I", "-S", "-c", _FORWARDER]
        try:
            # At exit, on the main thread: a no-op there; from a tracksdk thread, the
            # forwarder must not inherit its blocked SIGTERM (tracksdk._threads).
            with child_signals():
                subprocess.Popen(
                    [*command, *(f"{read}:{write}" for read, write in pairs.items())],
                    pass_fds=(*pairs, *pairs.values()),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        except (OSError, ValueError):
            return  # this thread forwards until the process is gone
        self._handed_over = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(1.0)

    def after_fork_in_child(self) -> None:
        """In a forked child: the pipes' read ends and the saved fds are the parent's."""
        self.sink = None
        for fd in (*self.pipes, *self.saved.values(), self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pipes, self.saved, self.targets = {}, {}, {}
        self._stopped = True


def _forward(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``; a destination that fails is given up on."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a non-blocking terminal: wait until it takes more
            select.select([], [fd], [], 1.0)
        except OSError:  # closed, or its reader is gone (EPIPE): the run still gets it
            return
