"""Fork safety: what a forked child inherits from a tracked process, and must not use.

``multiprocessing`` forks by default on Linux, and DataLoader and joblib workers are
forked children of the training process. A child gets copies of the parent's journal
mappings and write positions, of locks that a thread of the parent may have held, of
the SIGTERM handler and of the list of live runs. Without care it overwrites the
parent's journal, deadlocks, or ends the parent's run when it exits.

After a fork the child drops all of these (each module resets its own state), keeps
its view of the current run, and, on its first write, journals its records in a folder
of its own that adds to the parent's run (docs/offline.md, "Forked children"). A child
that never logs leaves no trace.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Register the at-fork handlers once per process (at the first tracked run)."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:
            os.register_at_fork(after_in_parent=_after_in_parent, after_in_child=_after_in_child)
            _installed = True


def _after_in_parent() -> None:
    writer = sys.modules.get("tracksdk._writer")
    if writer is not None:
        writer.after_fork_in_parent()


# Module-level locks a thread of the parent may have held at the fork: the child gets
# fresh ones (its copy would stay locked for ever).
_LOCKS = (
    ("tracksdk._auth", "_lock"),
    ("tracksdk._config", "_lock"),
    ("tracksdk._plugins", "_lock"),
    ("tracksdk._redact", "_lock"),
    ("tracksdk._sync", "_background_lock"),
    ("tracksdk.stores._client", "_clients_lock"),
    ("tracksdk.stores._sqlite_fast", "_fast_lock"),
    ("tracksdk.stores._probe", "_probed_lock"),
    ("tracksdk.stores.memory", "_stores_lock"),
)
# Modules with more state than a lock to reset, in this order.
_HOOKS = (
    ("tracksdk._journal", "after_fork_in_child"),
    ("tracksdk._context", "reset_after_fork"),
    ("tracksdk._writer", "after_fork_in_child"),
    ("tracksdk._run", "after_fork_in_child"),
    ("tracksdk._signals", "after_fork_in_child"),
    ("tracksdk._manual", "after_fork_in_child"),
    ("tracksdk._capture", "after_fork_in_child"),
    ("tracksdk._console", "after_fork_in_child"),
    ("tracksdk._sync", "after_fork_in_child"),
    ("tracksdk.stores.local", "after_fork_in_child"),
    ("tracksdk.stores._sqlite_fast", "after_fork_in_child"),
    ("tracksdk.stores.memory", "after_fork_in_child"),
)


def _after_in_child() -> None:
    # Each step is guarded: a failure here must never break the user's child process.
    for module_name, name in _LOCKS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, name):
            setattr(module, name, threading.Lock())
    for module_name, function in _HOOKS:
        module = sys.modules.get(module_name)
        hook = getattr(module, function, None) if module is not None else None
        if hook is not None:
            with contextlib.suppress(Exception):
                hook()
