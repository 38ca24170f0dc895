"""Forked children of a tracked process: each adds its own journal to the parent's run.

After a fork (``multiprocessing``, DataLoader and joblib workers), a child drops what it
inherited of its parent's runs (:mod:`tracksdk._fork`) and, on its first write, journals
its records in a folder of its own whose create record attaches to the parent's run; its
sender adds them to that run, which ends with the parent (docs/offline.md, "Forked
children"). A child that never logs leaves no trace. At its end the parent sends what
children that have exited left unsent.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracksdk import _drainer, _warn
from tracksdk._drainer import STALL_SECONDS, Leftover, drainer
from tracksdk._journal import folders, layout
from tracksdk._journal.journal import Journal
from tracksdk._journal.layout import Position
from tracksdk._journal.records import Create

if TYPE_CHECKING:
    from tracksdk._writer import Writer

# A forked child flushes its own points for at most this long when it exits.
CHILD_EXIT_FLUSH = 10.0

# Every writer of this process, for fork handling (see after_fork_in_child).
_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


def register(writer: Writer) -> None:
    """Follow ``writer`` across forks of this process."""
    _writers.add(writer)


def forget_parent(writer: Writer) -> None:
    """In a forked child: forget the parent's sender; journal anew on the first write.

    Done by :func:`after_fork_in_child` for every writer the parent had. A child
    that never logs leaves no trace: no folder, no record, no warning.
    """
    if writer.terminated:
        return
    writer.parent_run_id = writer.run_id
    writer.child_of = writer.journal
    writer.sender = None
    writer.had_children = False


def _child_of_memory(writer: Writer, parent: Journal, meta: Mapping[str, Any]) -> None:
    """A forked child of a run on the memory store: its writes cannot reach the store.

    The store lives in the parent process's memory; the child's copy dies with the
    child. One warning says so; the child's records are kept in memory and dropped.
    """
    writer.journal = Journal.in_memory(
        parent.path.parent, {**meta}, max_bytes=parent.max_bytes, reason=None
    )
    writer.sender = None
    writer.conn = None
    _warn.warn(
        f"tracksdk: a forked child process logged to run {writer.label}, whose store is "
        "the memory store of the parent process (TRACKSDK_BACKEND=memory, the default of "
        "tracksdk.testing.capture_runs): the child's data cannot reach it and is dropped. "
        "Capture runs with forked workers with capture_runs(store='sqlite')."
    )


def start_child(writer: Writer) -> None:
    """A forked child's first write: its own journal, adding to the parent's run."""
    from tracksdk._sender import Sender

    parent = writer.child_of
    assert parent is not None
    writer.child_of = None
    meta = {
        "client_id": layout.new_client_id(),
        "target": parent.meta.get("target"),
        "backend": parent.meta.get("backend"),
        "experiment": parent.meta.get("experiment"),
        "run_name": parent.meta.get("run_name"),
        "parent": None,
        "attach_to": parent.client_id,
    }
    folder = parent.path.parent
    from tracksdk import stores

    if writer.conn is not None and not stores.uses_mlflow(writer.conn):
        _child_of_memory(writer, parent, meta)
        return
    try:
        journal = Journal.create(
            folder, meta, max_bytes=parent.max_bytes, memory_fallback=writer.conn is not None
        )
    except OSError as exc:
        journal = Journal.in_memory(
            folder, meta, max_bytes=parent.max_bytes, reason=f"{exc.strerror or exc}"
        )
    writer.journal = journal
    writer.failures = writer.dropped_points = 0
    writer.warned_degraded = False
    writer.attach_to = parent.client_id
    create = Create(
        experiment=str(meta["experiment"] or "Default"),  # as a sync would find it
        start=int(time.time() * 1000),
        attach=parent.client_id,
        run_id=writer.parent_run_id,
    )
    with contextlib.suppress(OSError):
        journal.append(create)
    if writer.conn is not None:
        writer.sender = Sender(
            journal.path,
            writer.conn,
            journal=journal,
            http_timeout=writer.http_timeout,
            label=f"{writer.label} (forked child {os.getpid()})",
        )
        writer.sender.start()
    hook_exit(writer)


def hook_exit(writer: Writer) -> None:
    """Send a child's points when it exits: atexit, and multiprocessing's exit."""
    if writer.exit_hooked:
        return
    writer.exit_hooked = True

    def finish() -> None:
        if not writer.terminated:
            with contextlib.suppress(Exception):
                writer.terminate("FINISHED")

    atexit.register(finish)
    # multiprocessing children leave through os._exit: atexit does not run, but
    # multiprocessing's own finalizers do.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, finish, exitpriority=10)


def finish_child(writer: Writer, end: Position) -> bool:
    """The end of a forked child's part: send it (bounded); the rest waits on disk."""
    sender = writer.sender
    if sender is None:
        writer.journal.release()
        return False
    sender.wake()
    sent = sender.flush(
        min(writer.flush_timeout, CHILD_EXIT_FLUSH),
        until=end,
        progress_delay=None,
        stall=STALL_SECONDS,
    )
    if sent:
        sender.join(5.0)
    else:
        sender.stop()
    # The parent's run end (or `tracksdk sync`) sends what is left once we are gone.
    writer.journal.release()
    return sent


def drain_children(writer: Writer, deadline: float) -> None:
    """Send what forked children that have exited left of this run, until ``deadline``."""
    from tracksdk._sender import Sender

    assert writer.conn is not None
    for found in folders.find(writer.journal.path.parent):
        if found.meta.get("attach_to") != writer.client_id:
            continue
        leftover = Leftover(found.path, writer.conn, writer.http_timeout, writer.label)
        if time.monotonic() >= deadline:
            drainer().add(leftover)  # the end does not wait any longer for them
            continue
        with folders.claim(found.path) as ours:
            if not ours:
                continue  # the child still runs and sends its own points
            sender = Sender(
                found.path,
                writer.conn,
                http_timeout=writer.http_timeout,
                label=f"{writer.label} (forked child)",
            )
            sender.start()
            sender.flush(
                max(0.5, deadline - time.monotonic()), progress_delay=None, stall=STALL_SECONDS
            )
            sender.stop()
            sender.join(max(0.1, deadline - time.monotonic()))
            done = sender.done
        if not done:
            # A request may still be in flight: the drainer waits for it to finish.
            leftover.previous = sender if sender.alive else None
            drainer().add(leftover)


def after_fork_in_child() -> None:
    """In a forked child: every live writer forgets the parent's journal and sender."""
    _drainer.after_fork_in_child()
    for writer in list(_writers):
        forget_parent(writer)


def after_fork_in_parent() -> None:
    """The parent forked: its live runs look for their children's journals at the end."""
    for writer in list(_writers):
        if not writer.terminated:
            writer.had_children = True
