"""A watchdog for the SIGTERM handler: a SIGTERM must end the runs while the main thread sleeps.

CPython runs a Python signal handler in the main thread, between two bytecodes. Two
ordinary situations delay it without bound:

- The signal lands just before the main thread enters a blocking call (``time.sleep``,
  a socket read): the C handler has already run, so the call is not interrupted, and
  the Python handler waits until it returns. A training script that prints a line and
  sleeps hit this (tests/test_signals_watch.py reproduces it).
- The kernel hands the signal to a thread that does not block it: a C library's thread
  (OpenBLAS, jemalloc) or one of the user's. The main thread is not interrupted either.

And a main thread inside long C code (a LightGBM ``train`` call) runs no bytecode at all
until that code returns, maybe after the scheduler's grace period and its SIGKILL.

CPython writes the number of every signal that has a Python handler to the "wakeup fd"
(:func:`signal.set_wakeup_fd`), whichever thread takes it. While tracksdk's handler is
installed and no one else uses the wakeup fd (asyncio does, for its loop), it is a pipe
read by this module's thread. When a SIGTERM comes and the handler has not started
after :data:`NUDGE_AFTER` s, the thread sends SIGTERM to the main thread itself, which
interrupts its blocking call. When the handler has still not started after
:data:`TAKE_OVER_AFTER` s, the main thread is busy in C code: the thread ends the runs
KILLED itself, and when the process had no SIGTERM handler of its own before tracksdk's,
ends the process the way SIGTERM would have (the default action), so the scheduler's
stop still stops it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable

from tracksdk._threads import Thread

__all__ = ["NUDGE_AFTER", "TAKE_OVER_AFTER", "Watch"]

# The handler normally starts within microseconds; these are generous for a loaded machine.
NUDGE_AFTER = 0.2
TAKE_OVER_AFTER = 2.0


class Watch:
    """The wakeup-fd pipe and the thread that reads it, for one installation of the handler.

    Args:
        started: Set by the handler when it starts (so the watch stays out of its way).
        take_over: Ends the runs KILLED from the watch's thread; returns whether the
            process should then end the way SIGTERM's default action ends it.
    """

    def __init__(self, started: threading.Event, take_over: Callable[[], bool]) -> None:
        self._started = started
        self._take_over = take_over
        self._read = self._write = -1
        self._previous_fd = -1
        self._thread: Thread | None = None

    def start(self) -> bool:
        """Install the pipe as the wakeup fd (main thread only); False when someone has one."""
        if not hasattr(signal, "pthread_kill"):  # Windows: no threads to send a signal to
            return False
        read, write = os.pipe()
        os.set_blocking(write, False)  # set_wakeup_fd's requirement
        try:
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread; nothing changed
            os.close(read)
            os.close(write)
            return False
        if previous != -1:  # asyncio's, or the user's: theirs stays, no watch
            signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            return False
        self._read, self._write = read, write
        self._thread = Thread(self._run, name="tracksdk-sigterm-watch")
        try:
            self._thread.start()
        except RuntimeError:  # no thread to be had (interpreter shutting down)
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """Give the wakeup fd back (main thread only) and let the thread end."""
        write, self._write = self._write, -1
        if write < 0:
            return
        with contextlib.suppress(ValueError, OSError):
            current = signal.set_wakeup_fd(-1)
            if current != write:  # replaced since (asyncio's): theirs is put back
                signal.set_wakeup_fd(current)
        os.close(write)  # the thread reads the end of the pipe, closes it, and ends

    def forget_in_child(self) -> None:
        """In a forked child: the pipe is the parent's, and its watch did not come along."""
        with contextlib.suppress(ValueError, OSError):
            current = signal.set_wakeup_fd(-1)
            if current not in (-1, self._write):  # set in the child meanwhile: kept
                signal.set_wakeup_fd(current)
        for fd in (self._read, self._write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read = self._write = -1

    def _run(self) -> None:
        read = self._read
        try:
            while True:
                try:
                    data = os.read(read, 64)
                except InterruptedError:
                    continue
                except OSError:
                    return
                if not data:
                    return  # stop() closed the write end
                if signal.SIGTERM in data:
                    self._follow()
        finally:
            with contextlib.suppress(OSError):
                os.close(read)

    def _follow(self) -> None:
        """A SIGTERM was taken: see that the handler runs, or do its work."""
        if self._started.wait(NUDGE_AFTER):
            return
        main = threading.main_thread().ident
        if main is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_kill(main, signal.SIGTERM)  # interrupts a blocking call
        deadline = time.monotonic() + TAKE_OVER_AFTER
        while time.monotonic() < deadline:
            if self._started.wait(0.05):
                return
            self._drain()  # the nudge's own byte
        if self._take_over():
            _default_action()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while select.select([self._read], [], [], 0)[0]:
                if not os.read(self._read, 64):
                    return


def _default_action() -> None:
    """End the process as an unhandled SIGTERM does (exit status -15), from any thread.

    :func:`signal.signal` works in the main thread only, and the main thread is stuck:
    the C library's ``signal`` puts the default action back, then the signal is raised.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal(int(signal.SIGTERM), None)  # None: a NULL pointer, SIG_DFL
    os.kill(os.getpid(), signal.SIGTERM)
