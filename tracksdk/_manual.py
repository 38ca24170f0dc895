"""``tracksdk.start()`` and ``Run.end()``: a run opened and ended by hand, not by a block.

``start()`` opens the same :class:`~tracksdk._session.Session` as ``with tracked():``,
started the same way (a child of the current run, MLflow's active run, provenance, the
SIGTERM handler), and its run is current in the calling context until ``run.end()``.

A run of ``start()`` never ended is ended when the interpreter exits: FAILED after an
uncaught exception or a ``sys.exit`` with a non-zero code, else FINISHED. To tell them
apart, the first tracked ``start()`` chains ``sys.excepthook`` and ``sys.exit`` (each
records what it is given and calls the one it replaced; at an interactive prompt neither
records, the process going on) and registers an atexit handler. The handler is moved to
the end of atexit's list at each ``start()``: atexit runs last in, first out, so it runs
before the handlers registered meanwhile, MLflow's own (which ends MLflow's active run
FINISHED) and the console capture's among them, while the run's sender, a daemon thread,
still works. SIGTERM ends the run KILLED like any live run (:mod:`tracksdk._signals`).

``Run.end()`` also ends the run of a ``with tracked()`` block or a decorated call: the
block's end then finds it ended and does nothing. Ending a run first ends the runs of
``start()`` opened inside it and still open, innermost first, with the same status.

Loaded by ``import tracksdk``: it imports the lifecycle only when a run starts or ends.
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn, Unpack

from tracksdk import _context
from tracksdk._options import RunOptions, TrackedOptions

if TYPE_CHECKING:
    from types import TracebackType

    from tracksdk._run import Run
    from tracksdk._session import Session

__all__ = ["STATUSES", "check_status", "end", "start"]

STATUSES = ("FINISHED", "FAILED", "KILLED")

_lock = threading.Lock()
_open: list[Session] = []  # the sessions of start() not yet ended, oldest first
_hooked = False  # sys.excepthook and sys.exit are chained (once per process)
_uncaught: BaseException | None = None  # what ended the main thread, if anything did
_exited: SystemExit | None = None  # the last sys.exit of the main thread


def start(**options: Unpack[TrackedOptions]) -> Run:
    """Start a run and make it the current one until ``run.end()``: ``tracked`` without a block.

    For notebooks and scripts, where no function or ``with`` block spans the run. It
    takes ``tracked(...)``'s options and is the same run as ``with tracked(...)``: a
    child run when called inside a tracked run, MLflow's active run, provenance from the
    calling file. ``tracksdk.log_*`` calls write to it until it ends.

    A run never ended ends when the interpreter exits: FINISHED, or FAILED after an
    uncaught exception (recorded as for a decorated function) or ``sys.exit`` with a
    non-zero code (tag ``tracksdk.exit_code``); SIGTERM ends it KILLED.

    Args:
        **options: The options of :func:`~tracksdk.tracked` (``experiment``, ``run_name``,
            ``tags``, ``nested``, ``strict``, ``settings``, ``autolog``, ``key``,
            ``resume``, ``run_id``, ...).

    Returns:
        The :class:`~tracksdk.Run`; an untracked one when tracking is off.

    Raises:
        ConfigError: When settings or options are invalid.
        ResumeError: The run cannot be continued as ``resume=`` or ``run_id=`` asks.
        TypeError: An option that does not exist.
    """
    run_options = RunOptions(**options)
    return _start(run_options, sys._getframe(1).f_code.co_filename)


def _start(options: RunOptions, source_file: str) -> Run:
    from tracksdk import _guarded
    from tracksdk._session import Session

    session = Session(options, source_file=source_file)
    if not _guarded.start(session):  # an unexpected error: the run is untracked, and over
        return session.run
    with _lock:
        _open.append(session)  # an untracked run too: its end() takes it off the context
        if session.run.tracked:  # tracking off: nothing to end at exit, nothing hooked
            _hook_exit()
    return session.run


def check_status(status: str) -> str:
    """``status`` in capitals when it is one a run can end with; else ValueError."""
    upper = status.upper() if isinstance(status, str) else status
    if upper not in STATUSES:
        raise ValueError(
            f"Run.end() got status {status!r}; a run ends as one of {', '.join(STATUSES)}."
        )
    return str(upper)


def end(run: Run, status: str) -> None:
    """End ``run`` with ``status`` (``Run.end``); nothing when it has ended already."""
    from tracksdk import _guarded
    from tracksdk._session import _sessions

    status = check_status(status)
    with _lock:
        mine = next((s for s in _open if s.run is run), None)
        session = mine or _sessions.get(run)
        if session is None:
            return  # ended already, or never started (a null object)
        inside = [s for s in _open if s is not session and _within(s.run, run)]
        for gone in (*inside, session):
            if gone in _open:
                _open.remove(gone)
    for inner in reversed(inside):
        _guarded.end(inner, None, status)
    _guarded.end(session, None, status)


def _within(run: Run, outer: Run) -> bool:
    parent = run.parent
    while parent is not None:
        if parent is outer:
            return True
        parent = parent.parent
    return False


# -- the end of the process ------------------------------------------------------------


def _hook_exit() -> None:
    """Chain sys.excepthook and sys.exit (once); put the atexit handler last (each time).

    Called with ``_lock`` held, so two threads starting runs at once chain them once.
    """
    global _hooked
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    if _hooked:
        return
    _hooked = True
    previous_hook = sys.excepthook
    previous_exit = sys.exit

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> Any:
        global _uncaught
        if not _interactive():
            _uncaught = exc
        return previous_hook(kind, exc, tb)

    @functools.wraps(previous_exit)
    def exit(status: Any = None, /) -> NoReturn:  # any object, as sys.exit takes
        global _exited
        if threading.current_thread() is threading.main_thread() and not _interactive():
            _exited = SystemExit(status)  # a thread's sys.exit ends only that thread
        previous_exit(status)

    sys.excepthook = excepthook
    sys.exit = exit


def _interactive() -> bool:
    """At a prompt (``python -i``, IPython, Jupyter) the process outlives an error or exit."""
    from tracksdk.provenance.source import running_in_notebook

    return bool(sys.flags.interactive) or hasattr(sys, "ps1") or running_in_notebook()


def _at_exit() -> None:
    """End the runs of start() still open, innermost first, with the process's outcome."""
    from tracksdk import _guarded

    with _lock:
        sessions = _open[::-1]
        _open.clear()
    outcome = _uncaught if _uncaught is not None else _exited
    for session in sessions:
        _guarded.end(session, outcome)


def after_fork_in_child() -> None:
    """In a forked child: the parent's runs are not this process's to end at its exit."""
    global _lock, _uncaught, _exited
    _lock = threading.Lock()
    _open.clear()
    _uncaught = _exited = None


_context.ender = end  # what Run.end calls
