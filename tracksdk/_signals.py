"""SIGTERM ends every live run KILLED, then the process's own handler acts.

A scheduler's stop (SLURM, Kubernetes, ``kill``) sends SIGTERM: without this, runs would
stay RUNNING in the store for ever. The first session started in the main thread while
none is live installs the handler, never over ``SIG_IGN`` (a process that ignores SIGTERM
keeps ignoring it); the main thread puts the previous one back once no session is live.
Python lets only the main thread set a handler: a run of another thread is ended by it
while a run started in the main thread has installed it. The handler ends each live
session (innermost first), restores the previous handler and delivers the signal again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk._session import Session

__all__ = ["after_fork_in_child", "enter", "leave"]

# Re-entrant: the SIGTERM handler runs on the main thread, which may hold it already.
_live_lock = threading.RLock()
_live: list[Session] = []  # the sessions started and not yet ended, oldest first
_installer: Session | None = None  # the session that installed the handler
_previous: Any = None  # the handler before it
_pid = 0  # the process that installed the handler


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
    _installer, _previous, _pid = session, current, os.getpid()
    signal.signal(signal.SIGTERM, _on_sigterm)


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


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End every live run KILLED, restore the previous handler, and re-deliver."""
    global _installer, _previous
    if os.getpid() != _pid:  # a forked child the at-fork hook did not reach
        _restore_inherited()
        os.kill(os.getpid(), signum)
        return
    with _live_lock:
        sessions = list(reversed(_live))
        _live.clear()
    previous = _previous if _previous is not None else signal.SIG_DFL
    for session in sessions:
        with contextlib.suppress(Exception):  # the process is going down; never block it
            session.kill()
    _installer, _previous = None, None
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


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
    global _live_lock
    _restore_inherited()
    _live.clear()
    _live_lock = threading.RLock()
