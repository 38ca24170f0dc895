"""What a run is created with: its tags, its journal, and the rank that may create it.

Pure helpers of :class:`tracksdk._session.Session`'s start, kept apart so that the
lifecycle reads as one story.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tracksdk import _journal, _redact, stores
from tracksdk._journal import Journal
from tracksdk._schema import (
    FUNCTION_TAG,
    MAX_TAG_VALUE,
    REPRODUCES_TAG,
    RUN_NAME_TAG,
    USER_TAG,
)
from tracksdk._validate import Checker, safe_str
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk._options import RunOptions
    from tracksdk._run import Run
    from tracksdk._sender import Creation
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

__all__ = [
    "experiment_name",
    "open_journal",
    "run_tags",
    "sync_leftovers",
    "wait_created",
    "warn_not_created",
]


def experiment_name(
    explained: Explained,
    parent: Run | None,
    chosen: str | None,
    saved: Any,
    conn: Connection | None,
) -> str:
    """The run's experiment: a nested run's parent's, else the settings', MLflow's, the folder's."""
    if parent is not None and chosen is None:
        return parent.experiment_name or explained.root.name
    return explained.settings.experiment or _mlflow_experiment(saved, conn) or explained.root.name


def _mlflow_experiment(saved: Any, conn: Connection | None) -> str | None:
    """MLflow's active experiment (``mlflow.set_experiment``), when tracksdk names none."""
    in_mlflow = conn is None or stores.uses_mlflow(conn)
    if saved is None and ("mlflow" not in sys.modules or not in_mlflow):
        return os.environ.get("MLFLOW_EXPERIMENT_NAME") or None  # MLflow never ran here
    from tracksdk import _mlflow

    try:
        return _mlflow.active_experiment(saved, conn)
    except Exception:  # a best-effort reading: the default experiment then
        return None


def sync_leftovers(explained: Explained, conn: Connection) -> None:
    """Send, in the background, runs an earlier process left in the journal."""
    from tracksdk._context import active_run

    if active_run() is not None or not stores.uses_mlflow(conn):
        return  # the memory store lives in this process: earlier runs are not its own
    from tracksdk import _sync

    _sync.in_background(_journal.journal_dir(explained), conn, explained.settings.http_timeout)


def run_tags(
    options: RunOptions, function: Callable[..., Any] | None, checker: Checker, settings: Any
) -> tuple[dict[str, str], dict[str, str]]:
    """The tags the run is created with, and those too long for it (set right after)."""
    tags = {USER_TAG: _user()}
    if settings.reproduces:  # a rerun by `tracksdk reproduce --run`
        tags[REPRODUCES_TAG] = checker.text("tag", REPRODUCES_TAG, str(settings.reproduces))
    if function is not None:
        tags[FUNCTION_TAG] = _function_name(function)
    long_tags: dict[str, str] = {}  # kept whole in an artifact by Run.set_tags
    for raw_key, value in (options.tags or {}).items():
        key = checker.key("tag", raw_key)
        if key is not None:
            text = checker.text("tag", key, _redact.redact(safe_str(value)))
            if len(text) > MAX_TAG_VALUE:
                long_tags[key] = text
            else:
                tags[key] = text
    if options.run_name:
        tags[RUN_NAME_TAG] = options.run_name
    return tags, long_tags


def open_journal(
    explained: Explained,
    conn: Connection | None,
    parent: Run | None,
    client_id: str,
    experiment: str,
    run_name: str | None,
    run_key: str | None = None,
    attach_to: str | None = None,
) -> Journal:
    """The run's journal: on disk; in memory for the memory store or a broken disk.

    ``attach_to``: the run a spawned child's part adds to (:mod:`tracksdk._attach`).
    """
    folder = _journal.journal_dir(explained)
    meta = {
        "run_key": run_key,  # a later run with the key continues this one, even offline
        "client_id": client_id,
        "target": _journal.masked_target(conn.tracking_uri) if conn else None,
        "backend": conn.backend if conn is not None else None,
        "experiment": experiment,
        "run_name": run_name,
        "parent": parent.client_run_id if parent is not None else None,
        "console_max_bytes": explained.settings.console_max_mb << 20,  # logs/console.log
    }
    if attach_to is not None:
        meta["attach_to"] = attach_to
    max_bytes = explained.settings.journal.max_mb << 20
    try:
        if conn is not None and not stores.uses_mlflow(conn):
            # The memory store dies with the process: a journal on disk would outlive it.
            return _journal.Journal.in_memory(folder, meta, max_bytes=max_bytes, reason=None)
        return _journal.Journal.create(
            folder, meta, max_bytes=max_bytes, memory_fallback=conn is not None
        )
    except OSError as exc:
        if conn is None:  # offline: memory would die with the process
            raise TrackingError(
                f"The journal cannot be written in {folder} ({exc}); set "
                "TRACKSDK_JOURNAL__DIR to a writable folder"
            ) from None
        # The store can still take the run: keep its records in memory meanwhile.
        return _journal.Journal.in_memory(
            folder, meta, max_bytes=max_bytes, reason=f"{exc.strerror or exc} in {folder}"
        )


def _function_name(func: Any) -> str:
    """``module.qualname`` of a tracked callable, for the ``tracksdk.function`` tag.

    A ``functools.partial`` is named after the function it wraps, as
    ``functools.partial(module.name)``; a callable instance as ``module.Class.__call__``.
    """
    import functools

    if isinstance(func, functools.partial):
        return f"functools.partial({_function_name(func.func)})"
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str):
        cls = type(func)
        qualname, module = f"{cls.__qualname__}.__call__", cls.__module__
    return f"{module}.{qualname}" if module else qualname


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"


def wait_created(writer: Writer, conn: Connection | None, settings: Any) -> Creation | None:
    """Wait (bounded) for the store to create the run, so its id is known at once.

    MLflow's own APIs (``mlflow.log_*``, MLflow's autolog) need the run in the store;
    tracksdk's do not. When the store does not answer, the run goes on journaled.

    Returns:
        How the creation went; None offline.

    Raises:
        ResumeError: The store refused to continue the run as asked.
        TrackingError: Strict mode, and the store did not create the run.
    """
    from tracksdk import _continued

    sender = writer.sender
    if sender is None or conn is None:
        return None
    # A local store has no network to wait for, only a disk (and a first creation).
    wait = settings.start_timeout if conn.is_remote else max(settings.start_timeout, 120.0)
    creation = sender.await_creation(wait)
    if creation.created is not None:
        return creation
    _continued.check_refused(creation, writer)
    reason = creation.reason
    because = f": {reason}" if reason else f" within {wait:.0f} s"
    if settings.strict:
        sender.stop()
        raise TrackingError(f"The store at {conn.tracking_uri} did not create the run{because}")
    warn_not_created(conn, writer, creation, because)
    return creation


def warn_not_created(conn: Connection, writer: Writer, creation: Creation, because: str) -> None:
    """Say that the store did not create the run at its start, and what happens to it."""
    from tracksdk import _warn

    if creation.auth_error is not None:
        return  # the sender said which credential to fix
    if creation.stopped:
        _warn.warn(
            f"tracksdk: the store at {conn.tracking_uri} refused to create run "
            f"{writer.label}{because}. The function runs; everything it logs is kept in "
            f"the journal ({writer.journal.path}). Fix the cause (`tracksdk doctor`), "
            "then run `tracksdk sync`."
        )
        return
    _warn.warn(
        f"tracksdk: the store at {conn.tracking_uri} did not create run {writer.label}"
        f"{because}. The function runs; everything it logs is kept in the journal "
        f"({writer.journal.path}) and sent when the store answers. If this process ends "
        "first, `tracksdk sync` (or the next tracked run here) sends it."
    )


def wait_and_activate(
    writer: Writer, conn: Connection | None, settings: Any
) -> tuple[Creation | None, str | None]:
    """Wait for the run's creation, then put it on MLflow's active-run stack.

    The stack is what ``mlflow.log_*`` and MLflow's autolog write to. Returns the
    creation (:func:`wait_created`) and the run id pushed, if any.
    """
    creation = wait_created(writer, conn, settings)
    created = creation.created if creation is not None else None
    if created is not None and conn is not None and stores.uses_mlflow(conn):
        from tracksdk import _mlflow

        _mlflow.push_active(created)
        return creation, created.run_id
    return creation, None
