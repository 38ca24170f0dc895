"""The current tracked run per thread and asyncio task, and the runs open in the process.

The current run lives in a ContextVar; the process-wide list serves the threads and
tasks that have no run of their own.

Kept apart from :mod:`tracksdk._run` so that ``import tracksdk`` stays light.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from tracksdk._schema import DROPPED_LOG_CALLS_TAG

if TYPE_CHECKING:
    from tracksdk._run import Run

current: contextvars.ContextVar[tuple[Run, ...]] = contextvars.ContextVar(
    "tracksdk_runs", default=()
)

# Process-wide state (the only such state of this module): every run open in this
# process, in any thread or task, mapped to the run it was opened inside in its own
# context (None: opened at the top of its context). Module-level ``tracksdk.log_*``
# calls from a thread or task without a run of its own are sent by it to the only open
# chain of runs (see :func:`process_run`). A forked child must call
# :func:`reset_after_fork`: the threads that opened these runs do not exist there, and
# the lock may have been held at fork time.
_open_lock = threading.Lock()
_open: dict[Run, Run | None] = {}
# Per open run: the module-level calls dropped while it was open (see count_dropped).
_dropped: dict[Run, int] = {}
# Bumped when a run opens: a new "no run is open" episode warns again.
generation = 0
# What ``Run.end`` calls: set by :mod:`tracksdk._manual`, which ``import tracksdk`` loads
# (the run cannot import the lifecycle that ends it: the lifecycle imports the run).
ender: Callable[[Run, str], None] | None = None


class Ending:
    """What :class:`~tracksdk._run.Run` inherits its ``end`` from, through :data:`ender`."""

    def end(self, status: str = "FINISHED") -> None:
        """End the run now with ``status``: FINISHED, FAILED or KILLED, in any case.

        The pair of ``tracksdk.start()`` (docs/quickstart.md); it ends the run of a
        ``with tracked()`` block or a decorated call too. Ending an ended run does
        nothing. An untracked run stores nothing, and stops being the current run.

        Raises:
            ValueError: Another status; the run stays open.
        """
        if ender is not None:  # None only while tracksdk/__init__ runs: no run exists
            ender(cast("Run", self), status)


def active_run() -> Run | None:
    """The innermost tracked run of this thread or asyncio task, or None.

    A thread or task without a run of its own gets None here, even when its module-level
    ``tracksdk.log_*`` calls go to the process's only open run (see docs/quickstart.md).
    """
    runs = current.get()
    return runs[-1] if runs else None


def opened(run: Run) -> None:
    """Record ``run``, just pushed on this context's stack, as open in the process."""
    global generation
    runs = current.get()
    outer = runs[-2] if len(runs) > 1 and runs[-1] is run else None
    with _open_lock:
        _open[run] = outer
        generation += 1


def closed(run: Run) -> None:
    """Forget ``run``; report the calls from run-less threads dropped while it was open."""
    with _open_lock:
        _open.pop(run, None)
        dropped = _dropped.pop(run, 0)
    if not dropped:
        return
    from tracksdk import _warn

    run.set_tag(DROPPED_LOG_CALLS_TAG, str(dropped))
    _warn.warn(
        f"tracksdk: {dropped} tracksdk.log_* call(s) from threads or tasks without a run of "
        "their own were dropped while this run was open, because several runs were open "
        "at once in other threads or tasks and none could be chosen (counted in tag "
        "tracksdk.dropped_log_calls). Pass the Run object to the thread and call "
        "run.log_metric(...) on it."
    )


def count_dropped(run: Run) -> int:
    """Count one call dropped while ``run`` was open (reported when it closes); the total."""
    with _open_lock:
        _dropped[run] = count = _dropped.get(run, 0) + 1
    return count


def process_run() -> tuple[Run | None, list[Run]]:
    """The run a thread or task without a run of its own logs to.

    Returns:
        ``(run, [])`` when the process has exactly one chain of open runs (one top-level
        run, with at most one open child at each level): ``run`` is its innermost run,
        the one the code that owns the chain is in. ``(None, tops)`` otherwise: ``tops``
        are the open top-level runs (empty when no run is open), to count the drop on.
    """
    with _open_lock:
        items = [(r, o) for r, o in _open.items() if r.status in ("RUNNING", "UNTRACKED")]
    tops = [r for r, o in items if o is None]
    if len(tops) != 1:
        return None, tops
    run = tops[0]
    while True:
        inner = [r for r, o in items if o is run]
        if not inner:
            return run, []
        if len(inner) > 1:  # children open in parallel: which one is meant is unknown
            return None, tops
        run = inner[0]


def reset_after_fork() -> None:
    """In a forked child: a fresh lock and no open runs of the parent's threads."""
    global _open_lock, _open, _dropped
    _open_lock = threading.Lock()
    _open = {}
    _dropped = {}
