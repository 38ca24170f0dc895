"""Replaying journals whose process is gone: ``tracksdk sync`` and the automatic sync.

A journal is left behind when its process ended before the store had everything: the
server was down, the process was killed, or the run was offline. Its records are sent in
order by a :class:`~tracksdk._sender.Sender`, which creates the run when it is missing
(found again by its client id when an earlier attempt created it), sends what was not
acknowledged, and ends the run with its true status, or KILLED when the process died
before ending it.

What cannot be finished is never deleted: a journal with unreadable parts or refused
requests, or whose run or experiment was deleted in the store, is moved to
``<journal dir>/kept/`` with a note, and ``tracksdk sync --rejected`` sends it again once
the cause is fixed. A sync gives up on a store that makes no progress for ``timeout``
seconds, says why, and keeps the journal.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tracksdk import _warn
from tracksdk._journal import folders, layout
from tracksdk._journal.reader import Damage, Reader
from tracksdk._journal.records import End, File, Input, Metrics, Params, Record, Register, Tags

if TYPE_CHECKING:
    from tracksdk._sender import Sender
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

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
    created = layout.read_json(found.path / "created.json") or {}
    run_id = created.get("run_id")
    summary = Summary(
        client_id=found.client_id,
        run_name=found.text("run_name"),
        experiment=found.text("experiment") or "",
        target=layout.masked_target(found.text("target")),
        created_as=run_id if isinstance(run_id, str) else None,
        refused=layout.count_lines(found.path / "rejected.jsonl"),
        attach_to=found.text("attach_to"),
    )
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
) -> Outcome:
    """Send one journal to ``conn`` unless its writer still runs.

    Gives up when nothing was acknowledged for ``timeout`` seconds (0: never) while the
    store keeps failing; the journal is kept.
    """
    from tracksdk._sender import Sender

    other = _other_store(found, conn, any_target)
    if other is not None:
        return Outcome(summarize(found, final=False), "other-store", message=other)
    with folders.claim(found.path) as ours:
        if not ours:
            holder = folders.holder(found.path, found.meta)
            return Outcome(summarize(found, final=False), "live", message=holder)
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


_background: dict[tuple[str, str], threading.Thread] = {}
_background_lock = threading.Lock()
BACKGROUND_TIMEOUT = DEFAULT_TIMEOUT


def in_background(folder: Path, conn: Connection, http_timeout: float) -> None:
    """Send leftover journals for ``conn`` from a daemon thread (the automatic sync).

    Only journals recorded for this same store are sent: an offline run waits for an
    explicit ``tracksdk sync``, which says where it goes. The thread gives up when the
    store makes no progress for a minute; a journal set aside (damaged, refused, its run
    deleted) is said once, by one warning, and not tried again.
    """
    try:
        if not any(folder.iterdir()):
            return
    except OSError:
        return
    key = (str(folder), layout.masked_target(conn.tracking_uri) or "")
    with _background_lock:
        thread = _background.get(key)
        if thread is not None and thread.is_alive():
            return

        def work() -> None:
            for found in folders.find(folder):
                if not layout.same_target(found.text("target"), conn.tracking_uri):
                    continue
                try:
                    outcome = sync_one(
                        found,
                        conn,
                        http_timeout=http_timeout,
                        progress_delay=None,
                        timeout=BACKGROUND_TIMEOUT,
                    )
                except Exception:  # never disturb the run that started us
                    continue
                if outcome.kept_at is not None:
                    _warn.warn(f"tracksdk: {_kept_message(outcome)}")
                if outcome.state == "failed" and outcome.message.startswith("gave up"):
                    return  # the store makes no progress: the next run tries again

        thread = threading.Thread(target=work, name="tracksdk-autosync", daemon=True)
        _background[key] = thread
        thread.start()


def _kept_message(outcome: Outcome) -> str:
    summary = outcome.summary
    name = summary.run_name or summary.client_id[:8]
    if outcome.state == "retired":
        return (
            f"run {name} could not be sent: {outcome.message}. Its data is kept in "
            f"{outcome.kept_at}; restore the run or experiment in the store, then run "
            "`tracksdk sync --rejected`. It is not sent automatically any more."
        )
    return (
        f"run {name} was sent as run {outcome.run_id}, but not in full: {outcome.message}. "
        f"The journal is kept in {outcome.kept_at} (see KEPT.txt there); "
        "`tracksdk sync --rejected` sends refused requests again once the cause is fixed."
    )


def replay_rejected(
    folder: Path,
    conn: Connection,
    *,
    http_timeout: float,
    any_target: bool,
    timeout: float,
    out: TextIO,
) -> int:
    """``tracksdk sync --rejected``: send kept journals and refused requests again."""
    from tracksdk._sender import Sender

    kept = folders.find(folder / layout.KEPT)
    if not kept:
        print(f"Nothing kept in {folder / layout.KEPT}.", file=out)
        return 0
    print(
        f"Sending {len(kept)} kept journal(s) from {folder / layout.KEPT} to "
        f"{layout.masked_target(conn.tracking_uri)}",
        file=out,
    )
    failed = 0
    for found in kept:
        name = found.client_id[:8]
        try:
            outcome = sync_one(
                found,
                conn,
                http_timeout=http_timeout,
                any_target=any_target,
                progress_delay=0.0,
                timeout=timeout,
            )
        except Exception as exc:  # a bug must not stop the other journals
            failed += 1
            print(f"  FAILED {name}: {type(exc).__name__}: {exc} (kept)", file=out)
            continue
        if outcome.state in ("live", "other-store", "failed", "retired"):
            failed += 1
            print(f"  FAILED {name}: {outcome.message} (kept)", file=out)
            continue
        path = outcome.kept_at or found.path
        rejected = path / "rejected.jsonl"
        lines = _read_lines(rejected)
        if not lines:
            print(f"  sent {name} as run {outcome.run_id}", file=out)
            continue
        with folders.claim(path) as ours:
            if not ours:
                failed += 1
                print(f"  skipped {name}: {folders.holder(path, found.meta)}", file=out)
                continue
            sender = Sender(path, conn, http_timeout=http_timeout, label=name)
            sender.quiet = True
            left: list[str] = []
            error = None
            for line in lines:
                records = line.get("records") if isinstance(line, dict) else None
                if error is not None or not isinstance(records, list):
                    left.append(json.dumps(line))
                    continue
                error = sender.resend(records)
                if error is not None:
                    left.append(json.dumps(line))
            sent = len(lines) - len(left)
            if left:
                failed += 1
                layout.write_lines(rejected, left)
                why = f": {error}" if error is not None else " (lines without records)"
                print(
                    f"  FAILED {name}: sent {sent} of {len(lines)} refused request(s) to run "
                    f"{sender.run_id}; {len(left)} still refused{why} (kept in {path})",
                    file=out,
                )
                continue
            rejected.unlink(missing_ok=True)
            damaged = (path / "damage.json").exists()
            if not damaged:
                folders.remove(path)
            print(
                f"  sent {sent} refused request(s) of {name} to run {sender.run_id}"
                + (f"; kept in {path} for its unreadable parts" if damaged else ""),
                file=out,
            )
    return 1 if failed else 0


def _read_lines(path: Path) -> list[Any]:
    out: list[Any] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"unreadable": raw})
    return out


def command(
    explained: Explained,
    conn: Connection,
    *,
    dry_run: bool,
    any_target: bool,
    out: TextIO,
    timeout: float = DEFAULT_TIMEOUT,
    rejected: bool = False,
) -> int:
    """``tracksdk sync``: send (or list) this project's journals; the exit code."""
    from tracksdk import _mlflow

    folder = layout.journal_dir(explained)
    settings = explained.settings
    uri = layout.masked_target(conn.tracking_uri)
    found = [] if rejected else folders.find(folder)
    if not found and not rejected:
        print(f"Nothing to sync in {folder}.", file=out)
        _mention_kept(folder, out)
        return 0
    if not rejected:
        verb = "Would send" if dry_run else "Sending"
        print(f"{verb} {len(found)} journaled run(s) from {folder} to {uri}", file=out)
    saved = (
        None
        if dry_run
        else _mlflow.activate(
            conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
        )
    )
    try:
        if rejected:
            return replay_rejected(
                folder,
                conn,
                http_timeout=settings.http_timeout,
                any_target=any_target,
                timeout=timeout,
                out=out,
            )
        outcomes = sync_all(
            folder,
            conn,
            http_timeout=settings.http_timeout,
            any_target=any_target,
            dry_run=dry_run,
            progress_delay=0.0,  # asked for explicitly: show the bar at once
            timeout=timeout,
        )
    finally:
        if saved is not None:
            _mlflow.restore(saved)
    failed = 0
    for outcome in outcomes:
        summary = outcome.summary
        short = summary.client_id[:8]
        if outcome.state == "would-send":
            print(f"  {summary.describe()}", file=out)
            if summary.damage:
                failed += 1
                print("    DAMAGED (the rest would be sent, the journal kept):", file=out)
                for line in summary.describe_damage():
                    print(f"    {line}", file=out)
        elif outcome.state == "sent":
            print(f"  sent {short} as run {outcome.run_id}", file=out)
        elif outcome.state == "live":
            print(f"  skipped {short}: {outcome.message}", file=out)
        elif outcome.state == "other-store":
            print(
                f"  skipped {short}: {outcome.message}; sync with that "
                "store's settings, or pass --all to send it here",
                file=out,
            )
        elif outcome.state == "kept":
            failed += 1
            print(f"  sent {short} as run {outcome.run_id}, NOT IN FULL:", file=out)
            for line in summary.describe_damage():
                print(f"    {line}", file=out)
            refused = layout.count_lines((outcome.kept_at or Path()) / "rejected.jsonl")
            if refused:
                print(f"    {refused} request(s) refused by the store, kept in full", file=out)
            print(f"    kept in {outcome.kept_at} (see KEPT.txt there)", file=out)
        elif outcome.state == "retired":
            failed += 1
            print(
                f"  FAILED {short}: the store refused the run: {outcome.message}. Kept in "
                f"{outcome.kept_at}; restore the run or experiment, then run "
                "`tracksdk sync --rejected`",
                file=out,
            )
        else:
            failed += 1
            print(f"  FAILED {short}: {outcome.message} (kept)", file=out)
    if not dry_run:
        _mention_kept(folder, out)
    return 1 if failed else 0


def _mention_kept(folder: Path, out: TextIO) -> None:
    kept = folders.find(folder / layout.KEPT)
    if kept:
        print(
            f"{len(kept)} journal(s) kept in {folder / layout.KEPT} (see KEPT.txt in each); "
            "`tracksdk sync --rejected` sends them again.",
            file=out,
        )


def after_fork_in_child() -> None:
    """In a forked child: the parent's background syncs do not run here."""
    _background.clear()
