"""Replaying journals whose process is gone: ``tracksdk sync`` and the automatic sync.

A journal is left behind when its process ended before the store had everything: the
server was down, the process was killed, or the run was offline. Its records are sent in
order by a :class:`~tracksdk._sender.Sender`, which creates the run when it is missing
(found again by its client id when an earlier attempt created it), sends what was not
acknowledged, and ends the run with its true status, or KILLED when the process died
before ending it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tracksdk import _journal

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained


@dataclass
class Summary:
    """What a journal still holds, from its ack onwards."""

    client_id: str
    run_name: str | None
    experiment: str
    target: str | None
    created_as: str | None  # MLflow run id, when the run exists in ``target``
    records: Counter[str] = field(default_factory=Counter)
    metric_points: int = 0
    status: str | None = None  # the run's end status, if the run ended
    end: _journal.Position = _journal.START
    torn: bool = False

    def describe(self) -> str:
        """One human line, e.g. for ``tracksdk sync --dry-run``."""
        name = self.run_name or self.client_id[:8]
        if self.created_as:
            what = f"append to run {self.created_as}"
        else:
            what = f"create run {name!r} in experiment {self.experiment!r}"
        parts = [f"{self.metric_points} metric points"]
        for kind, label in (("p", "param batches"), ("t", "tag batches"), ("f", "artifacts")):
            if self.records[kind]:
                parts.append(f"{self.records[kind]} {label}")
        if self.records["i"]:
            parts.append(f"{self.records['i']} dataset inputs")
        if self.records["r"]:
            parts.append("a model registration")
        ending = f"end it {self.status}" if self.status else "end it KILLED (its process died)"
        return f"{self.client_id[:8]}  {what}: {', '.join(parts)}; {ending}"


def summarize(found: _journal.Found) -> Summary:
    """Read a journal from its ack to its end, without sending anything."""
    meta = found.meta
    created = _journal.read_json(found.path / "created.json") or {}
    summary = Summary(
        client_id=found.client_id,
        run_name=meta.get("run_name"),
        experiment=str(meta.get("experiment", "")),
        target=meta.get("target"),
        created_as=created.get("run_id"),
    )
    reader = _journal.Reader(found.path, _journal.read_ack(found.path))
    try:
        while entries := reader.read(5000):
            for entry in entries:
                kind = entry.record[0]
                summary.records[kind] += 1
                if kind == "m":
                    summary.metric_points += len(entry.record[1])
                elif kind == "e":
                    summary.status = str(entry.record[1])
                summary.end = entry.end
        summary.torn = reader.torn
    finally:
        reader.close()
    return summary


@dataclass
class Outcome:
    """What happened to one journal."""

    summary: Summary
    state: str  # "sent", "live" (its process still runs), "other-store", "failed"
    run_id: str | None = None
    message: str = ""


def sync_one(
    found: _journal.Found,
    conn: Connection,
    *,
    http_timeout: float,
    any_target: bool = False,
    progress_delay: float | None = 2.0,
) -> Outcome:
    """Send one journal to ``conn`` unless its writer still runs."""
    from tracksdk._sender import Sender

    summary = summarize(found)
    target = found.meta.get("target")
    if target not in (None, conn.tracking_uri) and not any_target:
        return Outcome(summary, "other-store", message=f"journaled for {target}")
    with _journal.claim(found.path) as ours:
        if not ours:
            pid = found.meta.get("pid")
            return Outcome(summary, "live", message=f"its process (pid {pid}) is still running")
        label = summary.run_name or found.client_id[:8]
        sender = Sender(found.path, conn, http_timeout=http_timeout, label=label)
        sender.start()
        sender.flush(float("inf"), until=summary.end, progress_delay=progress_delay)
        while sender.alive and not sender.stopped:
            sender.flush(1.0, progress_delay=None)
        if sender.done:
            return Outcome(summary, "sent", run_id=sender.run_id)
        sender.stop()
        error = sender.auth_error or sender.last_error
        return Outcome(summary, "failed", run_id=sender.run_id, message=str(error or "stopped"))


def sync_all(
    folder: Path,
    conn: Connection,
    *,
    http_timeout: float,
    any_target: bool = False,
    dry_run: bool = False,
    progress_delay: float | None = 2.0,
) -> list[Outcome]:
    """Send (or, with ``dry_run``, list) every journal under ``folder``."""
    outcomes = []
    for found in _journal.find(folder):
        if dry_run:
            summary = summarize(found)
            target = found.meta.get("target")
            with _journal.claim(found.path) as ours:
                state = "would-send" if ours else "live"
            if target not in (None, conn.tracking_uri) and not any_target:
                state = "other-store"
            outcomes.append(Outcome(summary, state, message=f"journaled for {target}"))
            continue
        outcomes.append(
            sync_one(
                found,
                conn,
                http_timeout=http_timeout,
                any_target=any_target,
                progress_delay=progress_delay,
            )
        )
    return outcomes


_background: dict[tuple[str, str], threading.Thread] = {}
_background_lock = threading.Lock()


def in_background(folder: Path, conn: Connection, http_timeout: float) -> None:
    """Send leftover journals for ``conn`` from a daemon thread (the automatic sync).

    Only journals recorded for this same store are sent: an offline run waits for an
    explicit ``tracksdk sync``, which says where it goes.
    """
    try:
        if not any(folder.iterdir()):
            return
    except OSError:
        return
    key = (str(folder), conn.tracking_uri)
    with _background_lock:
        thread = _background.get(key)
        if thread is not None and thread.is_alive():
            return

        def work() -> None:
            for found in _journal.find(folder):
                if found.meta.get("target") != conn.tracking_uri:
                    continue
                try:
                    sync_one(found, conn, http_timeout=http_timeout, progress_delay=None)
                except Exception:  # never disturb the run that started us
                    continue

        thread = threading.Thread(target=work, name="tracksdk-autosync", daemon=True)
        _background[key] = thread
        thread.start()


def command(
    explained: Explained, conn: Connection, *, dry_run: bool, any_target: bool, out: TextIO
) -> int:
    """``tracksdk sync``: send (or list) this project's journals; the exit code."""
    from tracksdk import _mlflow
    from tracksdk._run import journal_dir

    folder = journal_dir(explained)
    found = _journal.find(folder)
    if not found:
        print(f"Nothing to sync in {folder}.", file=out)
        return 0
    settings = explained.settings
    verb = "Would send" if dry_run else "Sending"
    print(f"{verb} {len(found)} journaled run(s) from {folder} to {conn.tracking_uri}", file=out)
    saved = (
        None
        if dry_run
        else _mlflow.activate(
            conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
        )
    )
    try:
        outcomes = sync_all(
            folder,
            conn,
            http_timeout=settings.http_timeout,
            any_target=any_target,
            dry_run=dry_run,
            progress_delay=0.0,  # asked for explicitly: show the bar at once
        )
    finally:
        if saved is not None:
            _mlflow.restore(saved)
    failed = 0
    for outcome in outcomes:
        summary = outcome.summary
        if outcome.state == "would-send":
            print(f"  {summary.describe()}", file=out)
        elif outcome.state == "sent":
            print(f"  sent {summary.client_id[:8]} as run {outcome.run_id}", file=out)
        elif outcome.state == "live":
            print(f"  skipped {summary.client_id[:8]}: {outcome.message}", file=out)
        elif outcome.state == "other-store":
            print(
                f"  skipped {summary.client_id[:8]}: {outcome.message}; sync with that "
                "store's settings, or pass --all to send it here",
                file=out,
            )
        else:
            failed += 1
            print(f"  FAILED {summary.client_id[:8]}: {outcome.message} (kept)", file=out)
    return 1 if failed else 0


def after_fork_in_child() -> None:
    """In a forked child: the parent's background syncs do not run here."""
    global _background_lock
    _background.clear()
    _background_lock = threading.Lock()
