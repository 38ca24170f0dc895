"""SIGTERM ends every live run KILLED, then the process's own handler acts.

A scheduler's stop (SLURM, Kubernetes, ``kill``) sends SIGTERM: without this, runs would
stay RUNNING in the store for ever. The first session started in the main thread while
none is live installs the handler, never over ``SIG_IGN`` (a process that ignores SIGTERM
keeps ignoring it); the main thread puts the previous one back once no session is live.
Python lets only the main thread set a handler: a run of another thread is ended by it
while a run started in the main thread has installed it. The handler ends each live
session (innermost first), restores the previous handler and delivers the signal again.
While it is installed, a watchdog (:mod:`tracksdk._sigterm_watch`) sees that a SIGTERM
does not wait for a main thread asleep in a blocking call or busy in C code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from tracksdk._sigterm_watch import Watch

if TYPE_CHECKING:
    from tracksdk._session import Session

__all__ = ["after_fork_in_child", "enter", "leave"]

# Re-entrant: the SIGTERM handler runs on the main thread, which may hold it already.
_live_lock = threading.RLock()
_live: list[Session] = []  # the sessions started and not yet ended, oldest first
_installer: Session | None = None  # the session that installed the handler
_previous: Any = None  # the handler before it
_pid = 0  # the process that installed the handler
_started = threading.Event()  # the handler started (the watch leaves the work to it)
_killing = threading.Lock()  # held while live sessions are ended, by the handler or watch
_watch: Watch | None = None


def enter(session: Session) -> None:
    """Count ``session`` as live; install the handler when it is the outermost one."""
    global _installer, _previous, _pid
    with _live_lock:
        _live.append(session)
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_IGN or current is _on_sigterm:
        return
    global _watch
    _installer, _previous, _pid = session, current, os.getpid()
    _started.clear()
    signal.signal(signal.SIGTERM, _on_sigterm)
    if _watch is None:
        watch = Watch(_started, _take_over)
        if watch.start():
            _watch = watch


def leave(session: Session) -> None:
    """Forget ``session``; put the previous handler back once no session is live.

    Not when the session that installed it ends while others live on (a run of another
    thread, a ``tracksdk.start()`` run): only the main thread can install it again.
    """
    global _installer, _previous
    with _live_lock:
        if session in _live:
            _live.remove(session)
        idle = not _live
    if idle and _installer is not None and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # else: replaced since, kept
            signal.signal(signal.SIGTERM, _previous)
        _installer, _previous = None, None
        _stop_watch()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End every live run KILLED, restore the previous handler, and re-deliver."""
    global _installer, _previous
    if os.getpid() != _pid:  # a forked child the at-fork hook did not reach
        _restore_inherited()
        os.kill(os.getpid(), signum)
        return
    _started.set()
    previous = _previous if _previous is not None else signal.SIG_DFL
    _kill_live()
    _installer, _previous = None, None
    _stop_watch()
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def _kill_live() -> None:
    """End every live session KILLED, innermost first (the handler's or the watch's work).

    The one that comes second waits for the first to finish (bounded: each session's end
    is), so the process is not ended under a run that is still being sent.
    """
    with _killing:
        with _live_lock:
            sessions = list(reversed(_live))
            _live.clear()
        for session in sessions:
            with contextlib.suppress(Exception):  # the process is going down; never block it
                session.kill()


def _take_over() -> bool:
    """The watch's work when the main thread does not run the handler in time.

    Returns:
        Whether the process should end as SIGTERM's default action ends it: it had no
        handler of its own (a handler of the user's runs when the main thread can).
    """
    if _started.is_set():
        return False
    previous = _previous
    _kill_live()
    return not _started.is_set() and (previous is None or previous == signal.SIG_DFL)


def _stop_watch() -> None:
    global _watch
    watch, _watch = _watch, None
    if watch is not None:
        with contextlib.suppress(Exception):
            watch.stop()


def _restore_inherited() -> None:
    """Put back the SIGTERM handler the process had before the outermost run."""
    global _installer, _previous
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        previous = _previous if _previous is not None else signal.SIG_DFL
        with contextlib.suppress(ValueError):  # not the main thread: nothing to undo there
            signal.signal(signal.SIGTERM, previous)
    _installer, _previous = None, None


def after_fork_in_child() -> None:
    """In a forked child: none of the parent's runs live here.

    The child keeps its view of the current run (``tracksdk.log_*`` writes to the
    parent's run through a journal of its own), but it must not end those runs: no
    SIGTERM handler of the parent's, no live sessions, a fresh lock.
    """
    global _live_lock, _killing, _watch
    if _watch is not None:
        _watch.forget_in_child()
        _watch = None
    _restore_inherited()
    _live.clear()
    _live_lock = threading.RLock()
    _killing = threading.Lock()
