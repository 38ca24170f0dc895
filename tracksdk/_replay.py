"""Replaying one journal whose process is gone into a store, and what came of it.

A journal is left behind when its process ended before the store had everything: the
server was down, the process was killed, or the run was offline. :func:`sync_one` claims
it (the lock its writer held) and sends its records in order with a
:class:`~tracksdk._sender.Sender`, which creates the run when it is missing (found again
by its client id when an earlier attempt created it), sends what was not acknowledged,
and ends the run with its true status, or KILLED when the process died before ending it.

What cannot be finished is never deleted: a journal with unreadable parts or refused
requests, or whose run or experiment was deleted in the store, is moved to
``<journal dir>/kept/`` with a note. A sync gives up on a store that makes no progress for
``timeout`` seconds, says why, and keeps the journal. ``tracksdk sync`` and the automatic
sync at a run's start (:mod:`tracksdk._sync`) report the outcomes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk._journal import folders, layout, records
from tracksdk._journal.reader import Damage, Reader
from tracksdk._journal.records import End, File, Input, Metrics, Params, Record, Register, Tags

if TYPE_CHECKING:
    from tracksdk._sender import Sender
    from tracksdk.backends import Connection

DEFAULT_TIMEOUT = 60.0  # seconds without progress before a sync gives up on a store


@dataclass
class Summary:
    """What a journal still holds, from its ack onwards."""

    client_id: str
    run_name: str | None
    experiment: str
    target: str | None
    created_as: str | None  # MLflow run id, when the run exists in ``target``
    records: Counter[type[Record]] = field(default_factory=Counter)  # by kind
    metric_points: int = 0
    status: str | None = None  # the run's end status, if the run ended
    end: layout.Position = layout.START
    damage: list[Damage] = field(default_factory=list)
    refused: int = 0  # lines in rejected.jsonl
    attach_to: str | None = None  # a forked child's part of this run (client id)

    @property
    def torn(self) -> bool:
        """Whether part of the journal could not be read."""
        return bool(self.damage)

    def describe(self) -> str:
        """One human line, e.g. for ``tracksdk sync --dry-run``."""
        name = self.run_name or self.client_id[:8]
        if self.created_as:
            what = f"append to run {self.created_as}"
        elif self.attach_to:
            what = f"add a forked child's points to run {self.attach_to[:8]}"
        else:
            what = f"create run {name!r} in experiment {self.experiment!r}"
        parts = [f"{self.metric_points} metric points"]
        kinds: tuple[tuple[type[Record], str], ...] = (
            (Params, "param batches"),
            (Tags, "tag batches"),
            (File, "artifacts"),
            (Input, "dataset inputs"),
            (records.Output, "console chunks"),
        )
        for kind, label in kinds:
            if self.records[kind]:
                parts.append(f"{self.records[kind]} {label}")
        if self.records[Register]:
            parts.append("a model registration")
        ending = f"end it {self.status}" if self.status else "end it KILLED (its process died)"
        if self.attach_to:
            ending = "its run ends with its parent process"
        return f"{self.client_id[:8]}  {what}: {', '.join(parts)}; {ending}"

    def describe_damage(self) -> list[str]:
        """What could not be read: a count, the bytes, and each byte range."""
        if not self.damage:
            return []
        lost = sum(d.end - d.start for d in self.damage)
        return [
            f"{len(self.damage)} unreadable part(s), {lost} B lost:",
            *(f"  {d.describe()}" for d in self.damage),
        ]


def summarize(found: folders.Found, *, final: bool = True) -> Summary:
    """Read a journal from its ack to its end, without sending anything (never raises).

    ``final``: the journal's writer is gone, so damaged parts are skipped and listed
    (a live journal is read up to its first incomplete record).
    """
    summary = _header(found)
    reader = Reader(found.path, layout.read_ack(found.path))
    try:
        while entries := reader.read(5000, final=final):
            for entry in entries:
                record = entry.record
                summary.records[type(record)] += 1
                if isinstance(record, Metrics):
                    summary.metric_points += len(record.points)
                elif isinstance(record, End):
                    summary.status = record.status
                summary.end = entry.end
        summary.damage = list(reader.damage)
    finally:
        reader.close()
    return summary


def _header(found: folders.Found) -> Summary:
    """A journal's summary from its meta files alone: no record is read."""
    created = layout.read_json(found.path / "created.json") or {}
    run_id = created.get("run_id")
    return Summary(
        client_id=found.client_id,
        run_name=found.text("run_name"),
        experiment=found.text("experiment") or "",
        target=layout.masked_target(found.text("target")),
        created_as=run_id if isinstance(run_id, str) else None,
        refused=layout.count_lines(found.path / "rejected.jsonl"),
        attach_to=found.text("attach_to"),
    )


@dataclass
class Outcome:
    """What happened to one journal."""

    summary: Summary
    # "sent", "kept" (sent as far as possible, then set aside), "retired" (the store
    # refused the run: set aside), "live" (someone holds it), "other-store", "failed",
    # "would-send" (dry run)
    state: str
    run_id: str | None = None
    message: str = ""
    kept_at: Path | None = None


def _other_store(found: folders.Found, conn: Connection, any_target: bool) -> str | None:
    target = found.text("target")
    if target is None or any_target or layout.same_target(target, conn.tracking_uri):
        return None
    return f"journaled for {layout.masked_target(target)}"


def sync_one(
    found: folders.Found,
    conn: Connection,
    *,
    http_timeout: float,
    any_target: bool = False,
    progress_delay: float | None = 2.0,
    timeout: float = DEFAULT_TIMEOUT,
    read_skipped: bool = True,
) -> Outcome:
    """Send one journal to ``conn`` unless its writer still runs.

    Gives up when nothing was acknowledged for ``timeout`` seconds (0: never) while the
    store keeps failing; the journal is kept. ``read_skipped=False``: a journal that is
    not sent (live, or for another store) is summarized from its meta files only; the
    automatic sync, which reports nothing about those, would otherwise read every
    concurrent job's journal at every run's start.
    """
    from tracksdk._sender import Sender

    def skipped() -> Summary:
        return summarize(found, final=False) if read_skipped else _header(found)

    other = _other_store(found, conn, any_target)
    if other is not None:
        return Outcome(skipped(), "other-store", message=other)
    with folders.claim(found.path) as ours:
        if not ours:
            holder = folders.holder(found.path, found.meta)
            return Outcome(skipped(), "live", message=holder)
        summary = summarize(found)
        label = summary.run_name or found.client_id[:8]
        sender = Sender(found.path, conn, http_timeout=http_timeout, label=label)
        sender.quiet = True  # the outcome is reported by the caller
        sender.start()
        finished = _wait(sender, summary, timeout, progress_delay)
        if sender.done:
            if sender.kept_at is not None:
                lines = summary.describe_damage()
                refused = layout.count_lines(sender.kept_at / "rejected.jsonl")
                if refused:
                    lines.append(f"{refused} request(s) refused by the store, kept in full")
                return Outcome(
                    summary,
                    "kept",
                    run_id=sender.run_id,
                    message="; ".join(line.strip() for line in lines),
                    kept_at=sender.kept_at,
                )
            return Outcome(summary, "sent", run_id=sender.run_id)
        sender.stop()
        sender.join(5.0)
        error = sender.auth_error or sender.last_error
        if not finished:
            return Outcome(
                summary,
                "failed",
                run_id=sender.run_id,
                message=(
                    f"gave up after {timeout:.0f} s without progress (last error: "
                    f"{error or 'none'})"
                ),
            )
        if _refused_run(sender):
            kept = folders.set_aside(
                found.path,
                f"the store refused the run: {error}",
                [
                    "Nothing more of this run was sent. Restore the run or its experiment",
                    "in the store (MLflow UI, `mlflow experiments restore`), then run",
                    "`tracksdk sync --rejected`.",
                ],
            )
            return Outcome(
                summary, "retired", run_id=sender.run_id, message=str(error), kept_at=kept
            )
        return Outcome(summary, "failed", run_id=sender.run_id, message=str(error or "stopped"))


def _refused_run(sender: Sender) -> bool:
    """The store refused the run itself because it or its experiment is deleted."""
    from tracksdk.stores.errors import Rejected

    error = sender.last_error
    return (
        sender.auth_error is None
        and isinstance(error, Rejected)
        and error.code == "INVALID_STATE"
        and error.subject in ("run", "experiment")
    )


def _wait(sender: Sender, summary: Summary, timeout: float, progress_delay: float | None) -> bool:
    """Wait for the sender to finish; False when it made no progress for ``timeout`` s."""
    from tracksdk._progress import Progress

    progress = None
    if progress_delay is not None:
        progress = Progress(
            f"tracksdk: sending run {summary.run_name or summary.client_id[:8]}",
            layout.distance(sender.acked, summary.end),
            unit="B",
            delay=progress_delay,
        )
    start = last = sender.acked
    last_restarts = sender.restarts
    since = time.monotonic()
    try:
        while sender.alive and not sender.done:
            sender.wait_change(0.25)
            if sender.acked != last or sender.restarts != last_restarts:
                last, last_restarts, since = sender.acked, sender.restarts, time.monotonic()
            elif timeout > 0 and sender.failing and time.monotonic() - since > timeout:
                return False
            if progress is not None:
                progress.update(layout.distance(start, sender.acked))
        return True
    finally:
        if progress is not None:
            progress.close()


def sync_all(
    folder: Path,
    conn: Connection,
    *,
    http_timeout: float,
    any_target: bool = False,
    dry_run: bool = False,
    progress_delay: float | None = 2.0,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Outcome]:
    """Send (or, with ``dry_run``, list) every journal under ``folder``.

    One journal that fails never stops the others.
    """
    outcomes = []
    for found in folders.find(folder):
        try:
            if dry_run:
                outcomes.append(_dry_run(found, conn, any_target))
                continue
            outcomes.append(
                sync_one(
                    found,
                    conn,
                    http_timeout=http_timeout,
                    any_target=any_target,
                    progress_delay=progress_delay,
                    timeout=timeout,
                )
            )
        except Exception as exc:  # a bug must not stop the other journals
            summary = Summary(found.client_id, None, "", None, None)
            outcomes.append(
                Outcome(summary, "failed", message=f"{type(exc).__name__}: {exc} (a bug)")
            )
    return outcomes


def _dry_run(found: folders.Found, conn: Connection, any_target: bool) -> Outcome:
    with folders.claim(found.path) as ours:
        summary = summarize(found, final=ours)
    other = _other_store(found, conn, any_target)
    if other is not None:
        return Outcome(summary, "other-store", message=other)
    if not ours:
        return Outcome(summary, "live", message=folders.holder(found.path, found.meta))
    return Outcome(summary, "would-send")
