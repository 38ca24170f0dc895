"""The journals this process writes: their heartbeat, and what a forked child drops.

A journal's heartbeat file tells a sync on another host (a shared spool folder) that its
writer is alive; one daemon thread refreshes the heartbeat of every journal this process
writes, whatever its sender is doing.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

from tracksdk._threads import Thread

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal

HEARTBEAT_EVERY = 5.0

_live: weakref.WeakSet[Journal] = weakref.WeakSet()
_live_lock = threading.Lock()
_heart: threading.Thread | None = None


def track(journal: Journal) -> None:
    """Keep ``journal``'s heartbeat fresh while this process writes it."""
    global _heart
    with _live_lock:
        _live.add(journal)
        if _heart is None or not _heart.is_alive():
            _heart = Thread(_beat_forever, name="tracksdk-heartbeat")
            _heart.start()


def untrack(journal: Journal) -> None:
    """Stop refreshing ``journal``'s heartbeat (it is released or about to be deleted)."""
    with _live_lock:
        _live.discard(journal)


def _beat_forever() -> None:
    """Refresh every live journal's heartbeat, whatever its sender is doing.

    An offline run has no sender, and a sender may have stopped (a 401) or be stuck in
    a request: the heartbeat tells a sync on another host that the writer lives.
    """
    while True:
        time.sleep(HEARTBEAT_EVERY)
        with _live_lock:
            journals = [j for j in _live if j.durable]
        for journal in journals:
            journal.beat()


def after_fork_in_child() -> None:
    """Drop the parent's journals in a forked child (see tracksdk._fork)."""
    global _heart, _live_lock
    _live_lock = threading.Lock()
    _heart = None
    inherited = list(_live)
    _live.clear()
    for journal in inherited:
        journal.abandon_in_child()
