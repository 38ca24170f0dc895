"""Spawned processes join a run of their parent: ``run.ref()`` and ``tracksdk.attach()``.

A forked child inherits its parent's runs (:mod:`tracksdk._forked`); a ``spawn`` or
``forkserver`` child (a DataLoader worker with ``multiprocessing_context="spawn"``, a
``ProcessPoolExecutor`` on macOS, a subprocess) starts a new interpreter and inherits
nothing but its arguments and its environment. So a run hands out a reference,
``run.ref()``: a short JSON text with the run's ids, experiment and masked store, never
a credential. In the child, ``tracksdk.attach(ref)`` opens the parent's run as a part of
its own, journaled in its own folder like a forked child's: its points, params and tags
go to the parent's run, and its end never ends that run.

A top-level run also puts its reference in the environment (:data:`ENV_VAR`) while it
is open, so a child started meanwhile joins without a change of code: its first
``tracksdk.log_*`` outside a run of its own attaches to the parent's run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk._run import Run

__all__ = ["ENV_VAR", "attach", "from_environment", "publish", "unpublish"]

ENV_VAR = "TRACKSDK_PARENT_RUN"
_OWNER_VAR = "_TRACKSDK_PARENT_RUN_OWNER"  # the pid whose run the variable names
_lock = threading.Lock()
_attached: dict[str, Run] = {}  # a reference -> its run attached in this process
_refused: set[str] = set()  # references in the environment that could not be attached


def _parse(ref: str) -> dict[str, Any]:
    try:
        value = json.loads(ref)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict) or value.get("v") != 1 or not value.get("client_id"):
        raise ConfigError(
            f"tracksdk.attach({str(ref)[:60]!r}): this is not a run reference. Pass what "
            "run.ref() returned in the parent process (docs/distributed.md)"
        )
    return value


def attach(ref: str) -> Run:
    """Open the parent's run (``ref`` from its ``run.ref()``) in this process.

    The returned run is this process's run for ``tracksdk.log_*`` calls made outside a
    run of their own; the same ``ref`` again returns it again. At exit its points are
    sent (bounded); the parent's run goes on, and its status stays the parent's.

    Raises:
        ConfigError: ``ref`` is not a run reference, or this process's settings name
            another store than the parent's run is in.
    """
    from tracksdk._untracked import UNTRACKED_REF, UntrackedRun

    if ref == UNTRACKED_REF:  # the parent's run is not tracked: neither is the child's
        return UntrackedRun()
    reference = _parse(ref)
    with _lock:
        run = _attached.get(ref)
        if run is None:
            run = _attached[ref] = _open(reference)
        return run


def _open(reference: dict[str, Any]) -> Run:
    from tracksdk import _config, _context, _journal
    from tracksdk._journal.records import Create
    from tracksdk._run import Run
    from tracksdk._validate import Checker
    from tracksdk._writer import Writer

    target = reference.get("target")
    if target is None:
        explained, conn = _config.resolve({"mode": "offline"}), None
    else:
        explained, conn = _config.resolve_with_connection()
        here = _journal.masked_target(conn.tracking_uri)
        if here != target:
            raise ConfigError(
                f"tracksdk.attach(): the parent's run is in {target}, but this process's "
                f"settings name {here}. Give the child the parent's TRACKSDK_* settings "
                "(environment, .env or pyproject.toml)"
            )
    settings = explained.settings
    parent = str(reference["client_id"])
    run_name = reference.get("run_name")
    experiment = str(reference.get("experiment") or "Default")
    from tracksdk import _creation, _forked

    journal = _creation.open_journal(
        explained, conn, None, _journal.new_client_id(), experiment, run_name, attach_to=parent
    )
    label = f"{run_name or parent[:8]} (process {os.getpid()})"
    writer = Writer(
        journal, conn, strict=settings.strict, flush_timeout=settings.flush_timeout,
        http_timeout=settings.http_timeout, label=label,
    )  # fmt: skip
    writer.attach_to = parent
    run_id = reference.get("run_id")
    writer.create(
        Create(
            experiment=experiment,
            start=int(time.time() * 1000),
            attach=parent,
            run_id=str(run_id) if run_id else None,
        )
    )
    writer.start()
    if writer.sender is not None:
        # The store opened now, not in a short-lived child's exit, where the interpreter
        # is shutting down and MLflow cannot start (it registers at-exit hooks).
        writer.sender.await_creation(settings.start_timeout)
    _forked.hook_exit(writer)
    run = Run(conn=conn, writer=writer, checker=Checker(strict=settings.strict),
              name=run_name, experiment_name=experiment)  # fmt: skip
    _context.opened(run)  # the process's run for threads without one
    return run


def from_environment() -> Run | None:
    """The parent's run named by :data:`ENV_VAR`, attached at the first call; None without.

    Not in the process that published it (its own runs are open there), and never
    raising: a reference that cannot be attached is warned about once.
    """
    ref = os.environ.get(ENV_VAR)
    if not ref or os.environ.get(_OWNER_VAR) == str(os.getpid()):
        return None
    if ref in _refused:
        return None
    try:
        return attach(ref)
    except Exception as exc:
        from tracksdk import _warn

        _refused.add(ref)
        _warn.warn(f"tracksdk: the parent's run ({ENV_VAR}) cannot be joined: {exc}")
        return None


def publish(run: Run) -> tuple[str | None, str | None] | None:
    """Put ``run``'s reference in the environment, for children started while it is open.

    Returns:
        What to give :func:`unpublish` at the run's end; None when another run of this
        process has published its own (it stays).
    """
    if os.environ.get(_OWNER_VAR) == str(os.getpid()):
        return None
    saved = os.environ.get(ENV_VAR), os.environ.get(_OWNER_VAR)
    os.environ[ENV_VAR] = run.ref()
    os.environ[_OWNER_VAR] = str(os.getpid())
    return saved


def unpublish(saved: tuple[str | None, str | None]) -> None:
    """Put back what the environment held before :func:`publish`."""
    for name, value in zip((ENV_VAR, _OWNER_VAR), saved, strict=True):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
