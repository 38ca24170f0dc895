"""The threads tracksdk starts: daemon threads that leave the process's signals to the main thread.

CPython runs a Python signal handler in the main thread only, but the kernel hands a signal
sent to the process (``kill``, a scheduler's stop, Ctrl-C) to any thread that does not block
it. When it picks one of tracksdk's threads, CPython's C handler there only sets a flag: a
main thread blocked in ``time.sleep()`` or a read is not interrupted, and the handler
(tracksdk's SIGTERM handler that ends the run KILLED, Python's KeyboardInterrupt) runs only
when that call returns, maybe much later than the scheduler's grace period. So every thread
tracksdk starts (:class:`Thread`, :class:`Timer`; ``tests/test_threads.py`` checks that no
module starts one otherwise) blocks :data:`MAIN_THREAD_SIGNALS`, and the kernel delivers them
to a thread that takes them: the main thread, whose blocking call they interrupt.

A subprocess inherits the signal mask of the thread that starts it (through fork and exec;
``Popen``'s ``restore_signals`` resets dispositions, not the mask): a subprocess started from
one of these threads does so inside :func:`child_signals`, or it would ignore SIGTERM.

POSIX only: where there is no ``signal.pthread_sigmask`` (Windows) these are plain threads.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

__all__ = ["MAIN_THREAD_SIGNALS", "Thread", "Timer", "child_signals"]

# The process-directed signals a Python handler commonly takes, and that must therefore
# reach the main thread: SIGTERM (tracksdk's handler; schedulers' stop), SIGINT (Python's
# KeyboardInterrupt), SIGHUP, SIGUSR1 and SIGUSR2 (SLURM's --signal, Lightning's requeue
# handler), SIGALRM (signal.alarm() time limits, pytest-timeout). Blocking them here costs
# nothing when they keep their default action: it acts on the whole process whichever
# thread the kernel picks. Signals a thread causes itself (SIGSEGV, SIGPIPE, SIGFPE...)
# are never blocked: they are delivered to that thread, and must be.
_NAMES = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM")
MAIN_THREAD_SIGNALS: frozenset[signal.Signals] = (
    frozenset(getattr(signal, name) for name in _NAMES if hasattr(signal, name))
    if hasattr(signal, "pthread_sigmask")
    else frozenset()
)

# In a thread of this module: the mask its subprocesses get (see child_signals).
_local = threading.local()


class _Masked(threading.Thread):
    """A thread born with :data:`MAIN_THREAD_SIGNALS` blocked."""

    _spawn_mask: Collection[int] | None = None

    def start(self) -> None:
        """Start the thread with the signals blocked from its first instruction on.

        A new thread inherits the mask of the thread that creates it, so the signals are
        blocked here, around the start, and unblocked again at once: blocking them only in
        the new thread's body would leave its first moments open. A signal arriving
        meanwhile waits, pending, and reaches this thread when they are unblocked.
        """
        if not MAIN_THREAD_SIGNALS:
            super().start()
            return
        before = signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
        # Started from another of these threads: its subprocesses get the mask that
        # thread's subprocesses get (the one outside tracksdk), not that thread's own.
        inherited: Collection[int] | None = getattr(_local, "spawn_mask", None)
        self._spawn_mask = before if inherited is None else inherited
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def run(self) -> None:
        _local.spawn_mask = self._spawn_mask
        super().run()


class Thread(_Masked):
    """A daemon thread of tracksdk: it leaves :data:`MAIN_THREAD_SIGNALS` to the main thread.

    Args:
        target: What the thread runs.
        name: The thread's name (``tracksdk-...``: what a stack dump shows).
        args: ``target``'s arguments.
    """

    def __init__(
        self, target: Callable[..., object], *, name: str, args: tuple[Any, ...] = ()
    ) -> None:
        super().__init__(target=target, name=name, args=args, daemon=True)


class Timer(_Masked, threading.Timer):
    """A daemon :class:`threading.Timer` that leaves :data:`MAIN_THREAD_SIGNALS` to the main thread.

    Args:
        interval: Seconds to wait before calling ``function`` (unless cancelled).
        function: What to call.
        name: The thread's name.
    """

    def __init__(self, interval: float, function: Callable[[], object], *, name: str) -> None:
        threading.Timer.__init__(self, interval, function)
        self.name = name
        self.daemon = True


@contextlib.contextmanager
def child_signals() -> Iterator[None]:
    """Start subprocesses inside this block: they get the signal mask of a normal process.

    In a thread of this module, the thread's mask is what it was before tracksdk blocked
    the signals, until the block ends; elsewhere (the main thread, the user's threads) the
    block changes nothing. For that short while (a ``Popen``, a few milliseconds) the
    thread takes the signals again, and one landing there is handled as late as without
    this module; the ways without that window are worse: ``preexec_fn`` is unsafe in a
    process with threads, and ``os.posix_spawn``'s ``setsigmask`` has none of ``Popen``'s
    pipes and waiting.
    """
    mask: Collection[int] | None = getattr(_local, "spawn_mask", None)
    if mask is None:
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
