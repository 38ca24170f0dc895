"""``tracksdk sync`` and the automatic sync: journals whose process is gone, sent and reported.

Each journal is replayed by :func:`tracksdk._replay.sync_one`; this module finds them,
reports what became of each, sends the journals kept in ``<journal dir>/kept/`` again
(``tracksdk sync --rejected``, once the cause is fixed), and runs the automatic sync a
tracked run starts in the background.

A journal folder written by a newer tracksdk (a newer journal format in its marker) is
never read, sent, moved or deleted here: it is reported, once, so that it is not lost
silently ("upgrade tracksdk to send it").
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tracksdk import _warn
from tracksdk._journal import folders, layout
from tracksdk._replay import DEFAULT_TIMEOUT, Outcome, sync_all, sync_one
from tracksdk._threads import Thread

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

_background: dict[tuple[str, str], threading.Thread] = {}
_background_lock = threading.Lock()
BACKGROUND_TIMEOUT = DEFAULT_TIMEOUT
_said_newer: set[Path] = set()  # journals of a newer tracksdk already reported here


def in_background(folder: Path, conn: Connection, http_timeout: float) -> None:
    """Send leftover journals for ``conn`` from a daemon thread (the automatic sync).

    Only journals recorded for this same store are sent: an offline run waits for an
    explicit ``tracksdk sync``, which says where it goes. The thread gives up when the
    store makes no progress for a minute; a journal set aside (damaged, refused, its run
    deleted) is said once, by one warning, and not tried again. So is, once per process,
    a journal written by a newer tracksdk, which is left as it is.
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
            journals, newer = folders.scan(folder)
            _warn_newer(newer)
            for found in journals:
                if not layout.same_target(found.text("target"), conn.tracking_uri):
                    continue
                try:
                    outcome = sync_one(
                        found,
                        conn,
                        http_timeout=http_timeout,
                        progress_delay=None,
                        timeout=BACKGROUND_TIMEOUT,
                        read_skipped=False,
                    )
                except Exception:  # never disturb the run that started us
                    continue
                if outcome.kept_at is not None:
                    _warn.warn(f"tracksdk: {_kept_message(outcome)}")
                if outcome.state == "failed" and outcome.message.startswith("gave up"):
                    return  # the store makes no progress: the next run tries again

        thread = Thread(work, name="tracksdk-autosync")
        _background[key] = thread
        thread.start()


def _warn_newer(newer: list[folders.Newer]) -> None:
    """One warning per journal of a newer tracksdk, the first time this process sees it."""
    with _background_lock:
        unsaid = [journal for journal in newer if journal.path not in _said_newer]
        _said_newer.update(journal.path for journal in unsaid)
    for journal in unsaid:
        _warn.warn(f"tracksdk: {journal.describe()}.")


def _report_newer(newer: list[folders.Newer], out: TextIO) -> int:
    """List the journals of a newer tracksdk for ``tracksdk sync``; how many there are."""
    for journal in newer:
        print(f"  NOT SENT {journal.path.name[:8]}: {journal.describe()}", file=out)
    return len(newer)


def _kept_message(outcome: Outcome) -> str:
    summary = outcome.summary
    name = summary.run_name or summary.client_id[:8]
    reason = outcome.message or "the store refused some of its requests"
    if outcome.state == "retired":
        return (
            f"run {name} could not be sent: {reason}. Its data is kept in "
            f"{outcome.kept_at}; restore the run or experiment in the store, then run "
            "`tracksdk sync --rejected`. It is not sent automatically any more."
        )
    return (
        f"run {name} was sent as run {outcome.run_id}, but not in full: {reason}. "
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

    kept, newer = folders.scan(folder / layout.KEPT)
    if not kept:
        if not newer:
            print(f"Nothing kept in {folder / layout.KEPT}.", file=out)
            return 0
        print(f"Nothing this tracksdk can send in {folder / layout.KEPT}:", file=out)
        _report_newer(newer, out)
        return 1
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
    failed += _report_newer(newer, out)
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
    found, newer = ([], []) if rejected else folders.scan(folder)
    if not found and not rejected:
        if newer:
            print(f"Nothing this tracksdk can send in {folder}:", file=out)
            _report_newer(newer, out)
        else:
            print(f"Nothing to sync in {folder}.", file=out)
        _mention_kept(folder, out)
        return 1 if newer else 0
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
    failed += _report_newer(newer, out)
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
