"""The background sender: replays a journal into a store, in order, exactly once.

One :class:`Sender` per journal. A live run's sender tails the journal its run appends
to; ``tracksdk sync`` runs the same code over a journal whose writer is gone. Records are
sent in the order they were written. Consecutive metrics, params and tags are merged into
``log_batch`` requests within MLflow's limits. After each request the sender writes the
journal position it reached (the ack), so a restart resends at most the one request
whose answer was lost, and the store de-duplicates identical metric rows and params.

Failures (kinds of :mod:`tracksdk.stores.errors`):

- transient (unreachable, timeout, 5xx, 429): retried with exponential backoff and
  jitter, at most ``MAX_BACKOFF`` seconds apart, or after the server's Retry-After;
- 401/403: the sender stops at once and says which credential to fix; the data stays
  in the journal for ``tracksdk sync``;
- any other refusal: that request is recorded in full in ``rejected.jsonl`` (its
  records, replayable with ``tracksdk sync --rejected``) and counted in the run's
  ``tracksdk.write_failures`` tag, and the sender moves on. At the end the journal is
  kept (``<journal dir>/kept/``) and one warning says what was refused;
- a run the store no longer has (404 on a run it created, and no run with the client
  id: the store was replaced or reset) is created again from the journal's start.

A run whose create record cannot be read is created from ``meta.json`` instead, tagged
``tracksdk.recreated``. A journal with unreadable parts is sent as far as it can be read
and then kept, never deleted (:func:`tracksdk._journal.folders.set_aside`).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._journal import folders, layout
from tracksdk._journal.reader import Damage, Entry, Reader, TailReader
from tracksdk._journal.records import (
    Create,
    End,
    File,
    Input,
    MetricPoint,
    Metrics,
    Params,
    Record,
    Register,
    Tags,
    from_json,
)
from tracksdk._schema import (
    ARTIFACTS_NOT_RESENT_TAG,
    BATCH_MAX_BYTES,
    BATCH_MAX_ENTITIES,
    BATCH_MAX_METRICS,
    BATCH_MAX_PARAMS,
    BATCH_MAX_TAGS,
    CLIENT_RUN_ID_TAG,
    PARENT_RUN_ID_TAG,
    RECREATED_TAG,
    WRITE_FAILURES_TAG,
)
from tracksdk.exceptions import TrackingError
from tracksdk.stores.errors import AuthFailed, Kind, Rejected, StoreError, Transient

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal
    from tracksdk.backends import Connection
    from tracksdk.stores import CreatedRun, Store

MAX_BACKOFF = 10.0
POLL = 0.5
POISON_TRIES = 5  # internal errors on the same request before it is set aside
MAX_RESTARTS = 2  # times a run the store lost is created again from the journal
START_ATTEMPTS = 3  # failed attempts before a run's start stops waiting for the store
WAKE_AFTER = 500  # records the training thread may write before it wakes the sender

# client run id -> MLflow run id, for every run created by this process (nested runs).
_server_ids: dict[str, str] = {}


@dataclass(slots=True)
class _Batch:
    """Consecutive metrics, params and tags merged into one ``log_batch`` request."""

    end: layout.Position | None = None  # ack up to here once done; None: more of a record
    metrics: list[MetricPoint] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def records(self) -> list[Record]:
        """The journal records this request was built from (to keep a refused one)."""
        out: list[Record] = []
        if self.params:
            out.append(Params(self.params))
        if self.tags:
            out.append(Tags(self.tags))
        if self.metrics:
            out.append(Metrics(self.metrics))
        return out

    def describe(self) -> str:
        return (
            f"log_batch of {len(self.metrics)} metrics, {len(self.params)} params, "
            f"{len(self.tags)} tags"
        )


@dataclass(frozen=True, slots=True)
class _Single:
    """One record sent on its own: a create, an upload, an input, a registration, an end."""

    record: Record
    end: layout.Position | None

    def records(self) -> list[Record]:
        """The journal record this request was built from (to keep a refused one)."""
        return [self.record]

    def describe(self) -> str:
        return json.dumps(self.record.as_json())[:300]


_Op = _Batch | _Single


def _plan(entries: list[Entry]) -> Iterator[_Op]:
    """Group records into requests: batches of m/p/t within limits, the rest one by one."""
    batch: _Batch | None = None
    size = 0

    def full(extra_bytes: int, metrics: int = 0, params: int = 0, tags: int = 0) -> bool:
        assert batch is not None
        return (
            len(batch.metrics) + metrics > BATCH_MAX_METRICS
            or len(batch.params) + params > BATCH_MAX_PARAMS
            or len(batch.tags) + tags > BATCH_MAX_TAGS
            or len(batch.metrics) + len(batch.params) + len(batch.tags) + metrics + params + tags
            > BATCH_MAX_ENTITIES
            or size + extra_bytes > BATCH_MAX_BYTES
        )

    for entry in entries:
        record = entry.record
        if not isinstance(record, Metrics | Params | Tags):
            if batch is not None:
                yield batch
                batch = None
            yield _Single(record, entry.end)
            continue
        m, p = isinstance(record, Metrics), isinstance(record, Params)
        t = not (m or p)
        items: Iterable[Any] = (
            record.points if isinstance(record, Metrics) else record.values.items()
        )
        for item in items:
            item_bytes = len(str(item)) + 16
            if batch is None:
                batch, size = _Batch(), 0
            elif full(item_bytes, m, p, t):
                yield batch
                batch, size = _Batch(), 0
            if m:
                batch.metrics.append(item)
            elif p:
                batch.params[item[0]] = item[1]
            else:
                batch.tags[item[0]] = item[1]
            size += item_bytes
        if batch is None:  # an empty record
            batch, size = _Batch(), 0
        batch.end = entry.end
    if batch is not None:
        yield batch


def _creates(op: _Op) -> bool:
    """Whether ``op`` creates the run (never set aside: its tags and parent live in it)."""
    return isinstance(op, _Single) and isinstance(op.record, Create)


class _RunLost(Exception):
    """The store no longer has the run (it was replaced or reset)."""


class Sender:
    """Sends one journal's records to one store from a daemon thread."""

    def __init__(
        self,
        path: Path,
        conn: Connection | None,
        *,
        journal: Journal | None = None,
        http_timeout: float = 30.0,
        label: str = "",
    ) -> None:
        self.path = path
        self.conn = conn
        self.journal = journal  # set for a live run: tail it while it grows
        self.http_timeout = http_timeout
        self.label = label or path.name
        self.client_id = path.name
        self.created: CreatedRun | None = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.acked: layout.Position = layout.read_ack(path)
        self.status_sent: str | None = None
        if journal is None and layout.read_ended(path):
            self.status_sent = "sent before"  # only the journal's deletion was missed
        self.done = False  # every record reached the store and the journal is gone
        self.stopped = False  # gave up: auth failure, or asked to stop
        self.auth_error: TrackingError | None = None
        self.last_error: TrackingError | None = None
        self.first_outcome = threading.Event()  # created, or the first attempt failed
        self.rejected = 0
        self.quiet = False  # a sync reports outcomes itself: no warnings from here
        self.damage: list[Damage] = []  # byte ranges that could not be read
        self.kept_at: Path | None = None  # where the journal was set aside, if it was
        self.restarts = 0
        self._lost_artifacts = 0  # uploaded to a store that lost the run, then freed
        self._ended = False  # the end record was handled (sent or refused)
        self._recreated: str | None = None  # why the run is created from meta.json
        self._experiment: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._warned_outage = False
        self.start_watched = False  # the run's start is waiting and reports failures itself
        self._attempts = 0
        self._thread: threading.Thread | None = None
        self._transport: Store | None = None
        self._progress_at = time.monotonic()  # when an ack last moved (see flush's stall)
        self._unreachable = False  # the last failure: nothing answered (see in_outage)
        # A forked child's journal adds to its parent's run (docs/offline.md, "Fork"):
        # it never creates or ends a run of its own.
        meta = journal.meta if journal is not None else layout.read_json(path / "meta.json")
        attach = (meta or {}).get("attach_to")
        self.attach_to: str | None = str(attach) if attach else None
        created = layout.read_json(path / "created.json") or {}
        if (
            conn is not None
            and layout.same_target(created.get("target"), conn.tracking_uri)
            and isinstance(created.get("run_id"), str)
            and isinstance(created.get("experiment_id"), str)
        ):
            self.run_id = str(created["run_id"])
            self.experiment_id = str(created["experiment_id"])
        elif journal is None and self.acked != layout.START:
            # Part of it went to another store (`tracksdk sync --all`): this store gets a
            # run of its own, so everything is sent from the start.
            self.acked = layout.START

    # -- control (other threads) -----------------------------------------------------

    def start(self) -> None:
        """Start the daemon thread."""
        self._thread = threading.Thread(
            target=self._main, name=f"tracksdk-sender-{self.client_id[:8]}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Tell the sender there is more to send now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current request; what is unsent stays in the journal."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (after the last record, it deletes the journal)."""
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout)

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (a sync gives up only then)."""
        return self._attempts > 0 or self.stopped

    def wait_change(self, timeout: float) -> None:
        """Wait until something changes (an ack, the end), at most ``timeout``."""
        with self._changed:
            self._changed.wait(timeout)

    def resend(self, records: list[Any]) -> TrackingError | None:
        """Send refused records again, once each, from the calling thread.

        For ``tracksdk sync --rejected``: the run is found (or created from meta.json)
        first. Returns None when all were sent, else the error that stopped them.
        """
        parsed = [from_json(r) for r in records]
        entries = [Entry(r, layout.START) for r in parsed if r is not None]
        if len(entries) != len(records):
            return TrackingError("the line holds records this tracksdk cannot read")
        try:
            transport = self._transport_for()
            if self.run_id is None:
                self._create(
                    transport,
                    self._info_from_meta(
                        "its refused requests were sent by `tracksdk sync --rejected`, and the "
                        "store had no run with its client id; the run was created from the "
                        "journal's meta.json"
                    ),
                )
            for op in _plan(entries):
                if not _creates(op):
                    self._do(op)
        except TrackingError as exc:
            return exc
        except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
            return TrackingError(f"{type(exc).__name__}: {exc}")
        return None

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait_created(self, timeout: float) -> bool:
        """Wait until the run exists in the store, or the first attempt failed."""
        self.first_outcome.wait(timeout)
        return self.run_id is not None

    def flush(
        self,
        timeout: float,
        until: layout.Position | None = None,
        *,
        progress_delay: float | None = 2.0,
        stall: float | None = None,
    ) -> bool:
        """Wait until everything up to ``until`` (default: all) is sent, at most ``timeout``.

        Shows a progress bar on stderr when this takes more than ``progress_delay``
        seconds (None: never). With ``stall``, stop waiting early when the store cannot
        be reached (the sender is in an outage) and nothing was acknowledged for
        ``stall`` seconds: waiting longer cannot help the caller.
        """
        from tracksdk._progress import Progress

        began = time.monotonic()
        deadline = began + timeout
        progress: Progress | None = None
        start = self.acked
        try:
            while True:
                target = until or (self.journal.position if self.journal else None)
                if self.done or (target is not None and self.acked >= target):
                    return True
                if self.stopped or not self.alive:
                    return self.done
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    return False
                since = now - max(self._progress_at, began)
                if stall is not None and self.in_outage and since >= stall:
                    return False
                if target is not None and progress_delay is not None:
                    total = layout.distance(start, target)
                    if progress is None:
                        progress = Progress(
                            f"tracksdk: sending run {self.label}",
                            total,
                            unit="B",
                            delay=progress_delay,
                        )
                    progress.update(layout.distance(start, self.acked), total)
                self._wake.set()
                with self._changed:
                    self._changed.wait(min(0.1, remaining))
        finally:
            if progress is not None:
                progress.close()

    @property
    def in_outage(self) -> bool:
        """Whether nothing answered the last two attempts (refused, unknown host, no route).

        A timeout or a 5xx is not an outage here: such a store may answer any moment.
        """
        return self._attempts >= 2 and self._unreachable

    # -- the thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must never reach the user's code
            _warn.warn(
                f"tracksdk: the sender of run {self.label} stopped: {type(exc).__name__}: "
                f"{exc}. Its data is kept in {self.path}; `tracksdk sync` sends it."
            )
            self.stopped = True
        finally:
            self.first_outcome.set()
            if self._transport is not None:
                self._transport.close()
            with self._changed:
                self._changed.notify_all()

    def _final(self) -> bool:
        """Whether the journal can grow no more (closed, or its writer is gone)."""
        return self.journal is None or self.journal.closed

    def _loop(self) -> None:
        journal = self.journal
        reader: Reader | TailReader = (
            journal.reader(self.acked) if journal is not None else Reader(self.path, self.acked)
        )
        try:
            while not self._stop.is_set():
                # Read "final" only once the journal is: a live journal's bad header is a
                # record not written yet, to be read again, not damage to skip.
                final = self._final()
                entries = reader.read(2000, final=final)
                self.damage = reader.damage
                try:
                    if not entries:
                        if journal is not None:
                            journal.free_acknowledged()  # caught up: give the disk back
                        if final and self._finished_reading():
                            break
                        self._wake.wait(POLL)
                        self._wake.clear()
                        continue
                    for op in _plan(entries):
                        if not self._send(op):
                            self.stopped = True
                            return
                        if op.end is not None:
                            self._ack(op.end, ended=self._ended)
                except _RunLost as lost:
                    reader.close()
                    restart = self._restart(str(lost))
                    reader = (
                        journal.reader(restart)
                        if journal is not None
                        else Reader(self.path, restart)
                    )
            else:
                self.stopped = True
        finally:
            reader.close()

    def _finished_reading(self) -> bool:
        """Everything readable was read from a final journal: end the run, then clean up.

        A fully sent journal is deleted; one with unreadable parts or refused requests
        is set aside in ``<journal dir>/kept/`` with a note, and said once.
        """
        # Replaying a journal whose process died before ending the run: KILLED. When
        # nothing readable created the run, it is created from meta.json first.
        killed = _Single(End("KILLED", self._death_time_ms()), None)
        # A forked child's journal has no end of its own: it adds to its parent's run.
        unended = (
            self.journal is None
            and self.status_sent is None
            and not self._ended
            and self.attach_to is None
        )
        if unended and not self._send(killed):
            self.stopped = True
            return True
        refused = layout.count_lines(self.path / "rejected.jsonl")
        damaged_before = (self.path / "damage.json").exists()  # kept, resent by --rejected
        if self.journal is not None:
            self.journal.retire()  # no heartbeat may write into it while it moves or goes
        if self.damage or refused or damaged_before:
            self._keep(refused)
        else:
            folders.remove(self.path)
        self.done = True
        with self._changed:
            self._changed.notify_all()
        return True

    def _keep(self, refused: int) -> None:
        lines: list[str] = []
        reasons: list[str] = []
        if self.damage:
            with contextlib.suppress(OSError):
                layout.write_json(
                    self.path / "damage.json",
                    {"damage": [d.as_dict() for d in self.damage]},
                )
            lost = sum(d.end - d.start for d in self.damage)
            reasons.append(f"{len(self.damage)} unreadable part(s), {lost} B")
            lines.append("Unreadable parts (their records could not be sent):")
            lines.extend(f"  {d.describe()}" for d in self.damage)
            lines.append("Everything else was sent.")
        if not self.damage and (self.path / "damage.json").exists():
            reasons.append("unreadable parts found before (damage.json)")
            lines.append("damage.json lists the parts that could not be read.")
        if refused:
            reasons.append(f"{refused} request(s) refused by the store")
            lines.append(
                f"rejected.jsonl holds the {refused} request(s) the store refused, in full, "
                "with the store's answer."
            )
        if self._recreated:
            lines.append(f"The run was created again: {self._recreated}.")
        self.kept_at = folders.set_aside(self.path, "; ".join(reasons), lines)
        if self.quiet:
            return
        what = " and ".join(reasons)
        if refused:
            how = "fix the cause, then run `tracksdk sync --rejected` to send them."
        else:
            how = "the rest of the run was sent."
        _warn.warn(
            f"tracksdk: run {self.label} was not sent in full: {what}. They are kept in "
            f"{self.kept_at}; {how}"
        )

    def _restart(self, why: str) -> layout.Position:
        """Send the run again from the journal's start, to a store that lost it."""
        self.restarts += 1
        old = self.run_id
        _server_ids.pop(self.client_id, None)
        self.run_id = self.created = self.experiment_id = None
        self.status_sent = None
        self._ended = False
        self._attempts = 0
        with contextlib.suppress(OSError):
            (self.path / "created.json").unlink()
        numbers = layout.segment_numbers(self.path)
        first = numbers[0] if numbers else 1
        start: layout.Position = (first, 0)
        if first != 1:
            self._recreated = (
                f"the store lost it and the journal's segments 1-{first - 1} had already "
                "been sent and deleted, so their records are missing from it"
            )
        journal = self.journal
        if journal is not None:
            memory = journal._memory
            if memory is not None and not numbers:
                # Every disk segment was sent and deleted before the disk filled up.
                start = (memory.segment, memory.base)
                self._recreated = (
                    "the store lost it and the records it had already taken were no longer "
                    "kept (the journal's disk was full), so they are missing from it"
                )
            elif journal.punched_at is not None and start < journal.punched_at:
                start = journal.punched_at  # the bytes before it were freed once sent
                self._recreated = (
                    "the store lost it and the records it had already taken from the "
                    "journal's start were freed, so they are missing from it"
                )
        with contextlib.suppress(OSError):
            layout.write_ack(self.path, start)
        self.acked = start
        if self.journal is not None:
            self.journal.acked_segment = first
        if not self.quiet:
            _warn.warn(
                f"tracksdk: the store no longer has run {self.label} ({old}; {why}): it was "
                "replaced or reset. The run is created there again from its journal."
            )
        return start

    def _death_time_ms(self) -> int:
        try:
            return int(float((self.path / "heartbeat").read_text()) * 1000)
        except (OSError, ValueError):
            return int(time.time() * 1000)

    def _ack(self, position: layout.Position, *, ended: bool = False) -> None:
        durable = True
        try:
            layout.write_ack(self.path, position, ended=ended)
        except OSError:  # a resend after a crash is de-duplicated
            durable = False
        self.acked = position
        self._progress_at = time.monotonic()
        if self.journal is not None:
            self.journal.acknowledge(position, durable=durable)
        with self._changed:
            self._changed.notify_all()

    def _transport_for(self) -> Store:
        if self._transport is None:
            from tracksdk.stores import open_store

            assert self.conn is not None
            self._transport = open_store(self.conn, self.http_timeout)
        return self._transport

    # -- one request, with the retry policy ------------------------------------------

    def _send(self, op: _Op) -> bool:
        """Send ``op`` until it succeeds or is refused; False when the sender must stop."""
        delay = 0.5
        odd_failures = 0
        while not self._stop.is_set():
            try:
                self._do(op)
                self._attempts = 0
                self.first_outcome.set()
                return True
            except Transient as exc:
                self.last_error = exc
                self._attempts += 1
                self._unreachable = exc.unreachable
                if self._attempts >= START_ATTEMPTS:  # one lost answer is not an outage
                    self.first_outcome.set()
                self._report_outage(exc)
                # A store that answers, and answers this one request with an internal error
                # each time (a value its database refuses), or an upload failing on a disk
                # error, is not an outage: after a few tries the request is set aside
                # instead of blocking everything behind it.
                # A create is never set aside: the run's tags and parent live in it.
                record = op.record if isinstance(op, _Single) else None
                poison = not isinstance(record, Create) and (
                    exc.status == 500
                    or (
                        isinstance(record, File | Register)
                        and exc.status is None
                        and not exc.network
                    )
                )
                if poison:
                    odd_failures += 1
                    if odd_failures >= POISON_TRIES:
                        self._reject(op, exc)
                        return True
                wait = exc.retry_after if exc.retry_after is not None else delay
                wait = max(0.05, min(wait, 300.0))
                if exc.retry_after is None:
                    wait *= random.uniform(0.5, 1.0)  # jitter: clients do not retry in step
                delay = min(delay * 2, MAX_BACKOFF)
                if self._stop.wait(wait):
                    return False
            except AuthFailed as exc:
                self.first_outcome.set()
                self.auth_error = exc
                self.last_error = exc
                _warn.warn(
                    f"tracksdk: {exc}. Nothing more is sent for run {self.label}; its data "
                    f"is kept in the journal ({self.path}). After fixing the credential, run "
                    "`tracksdk sync`."
                )
                return False
            except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
                # A record the request cannot be built from (a value out of MLflow's
                # range): set aside, like a request the store refused.
                self.first_outcome.set()
                self._reject(op, Rejected(f"{type(exc).__name__}: {exc}"))
                return not _creates(op) and self.run_id is not None
            except Rejected as exc:
                self.first_outcome.set()
                if not _creates(op) and self._run_lost(exc):
                    raise _RunLost(str(exc)) from None
                if _creates(op) or self.run_id is None:  # the run could not be created
                    self.last_error = exc
                    if not self.start_watched and not self.quiet:
                        _warn.warn(
                            f"tracksdk: the store refused to create run {self.label}: {exc}. "
                            f"Its data is kept in the journal ({self.path})."
                        )
                    return False
                self._reject(op, exc)
                return True
        return False

    def _run_lost(self, exc: StoreError) -> bool:
        """Whether a 404 means the store lost the run (no run with our client id)."""
        if exc.kind is not Kind.NOT_FOUND or exc.subject != "run" or self.run_id is None:
            return False
        if self.restarts >= MAX_RESTARTS:
            return False
        if self._transport is not None:  # its experiment ids may be the lost store's
            self._transport.close()
            self._transport = None
        try:
            transport = self._transport_for()
            experiment_id = transport.experiment_id(self._experiment_name())
            return transport.find_run(experiment_id, self.client_id) is None
        except TrackingError:
            return False

    def _experiment_name(self) -> str:
        if self._experiment is not None:
            return self._experiment
        meta = layout.read_json(self.path / "meta.json") or {}
        name = meta.get("experiment")
        return name if isinstance(name, str) and name else "Default"

    def _info_from_meta(self, reason: str) -> Create:
        """A create record rebuilt from meta.json, for a run whose own is unreadable."""
        meta = layout.read_json(self.path / "meta.json") or {}
        found = folders.Found(self.path, meta)
        created = found.created
        start = int(created * 1000) if created > 0 else self._death_time_ms()
        return Create(
            experiment=self._experiment_name(),
            start=start,
            run_name=found.text("run_name"),
            tags={RECREATED_TAG: reason[:5000]},
            parent=found.text("parent"),
            attach=self.attach_to,  # a forked child's part: find the parent's run
        )

    def _report_outage(self, exc: TrackingError) -> None:
        if self.journal is None or self._warned_outage or self.start_watched:
            return
        if self._attempts < 2:
            return
        self._warned_outage = True
        _warn.warn(
            f"tracksdk: cannot reach the store for run {self.label} ({exc}). Logging goes "
            f"on into the journal ({self.path}) and is sent when the store answers."
        )

    def _reject(self, op: _Op, exc: TrackingError) -> None:
        self.rejected += 1
        if isinstance(op, _Single) and isinstance(op.record, End):
            self._ended = True
        line = {
            "at": int(time.time() * 1000),
            "request": op.describe(),
            "error": str(exc),
            # In full: `tracksdk sync --rejected` replays them.
            "records": [record.as_json() for record in op.records()],
        }
        with contextlib.suppress(OSError, ValueError, TypeError):
            layout.append_line(self.path / "rejected.jsonl", json.dumps(line))
        if self.rejected == 1 and self.journal is not None and not self.quiet:
            _warn.warn(
                f"tracksdk: the store refused part of run {self.label}: {exc}. The run goes "
                "on; refused requests are kept in full in the journal and counted in its "
                "tracksdk.write_failures tag."
            )

    def _do(self, op: _Op) -> None:
        transport = self._transport_for()
        record = op.record if isinstance(op, _Single) else None
        if isinstance(record, Create):
            self._create(transport, record)
            return
        if self.run_id is None:
            # The create record is unreadable, or the store lost the run and the journal's
            # start is gone: create the run from meta.json, and say so in a tag.
            reason = self._recreated or (
                "the journal's create record could not be read; the run was created "
                "from the journal's meta.json"
            )
            self._recreated = reason
            self._create(transport, self._info_from_meta(reason))
        run_id = self.run_id
        if run_id is None:
            raise TrackingError(f"run {self.label} could not be created")
        if isinstance(op, _Batch):
            transport.log_batch(run_id, op.metrics, op.params, op.tags)
        elif isinstance(record, File):
            self._upload(transport, record)
        elif isinstance(record, Input):
            transport.log_input(run_id, record.dataset, record.context)
        elif isinstance(record, Register):
            self._register(record)
        elif isinstance(record, End) and self.attach_to is not None:
            self.status_sent = "attached"  # the parent's run ends with the parent
        elif isinstance(record, End):
            extra = dict(record.tags)
            if self.rejected:
                extra[WRITE_FAILURES_TAG] = str(self.rejected)
            if self._lost_artifacts:
                extra[ARTIFACTS_NOT_RESENT_TAG] = (
                    f"{self._lost_artifacts} artifact upload(s) reached the store that lost "
                    "this run and were freed from the journal; they could not be sent again"
                )
            if extra:
                transport.log_batch(run_id, [], {}, extra)
            transport.end_run(run_id, record.status, int(record.end_ms))
            self.status_sent = record.status
            self._ended = True
        # Unknown kinds come from a newer tracksdk: skipped, never a crash.

    def _create(self, transport: Store, info: Create) -> None:
        if self.run_id is not None:
            return
        self._experiment = info.experiment
        experiment_id = transport.experiment_id(self._experiment)
        if info.attach:
            self._attach(transport, experiment_id, info)
            return
        created = None
        if self._attempts > 0 or self.journal is None:
            # An earlier attempt (or process) may have created it and lost the answer.
            created = transport.find_run(experiment_id, self.client_id)
        if created is None:
            tags = dict(info.tags)
            if self._recreated:
                tags[RECREATED_TAG] = self._recreated[:5000]
            tags[CLIENT_RUN_ID_TAG] = self.client_id
            parent = info.parent
            if parent:
                parent_id = info.parent_run_id or _server_ids.get(parent)
                if parent_id is None:
                    found = transport.find_run(experiment_id, parent)
                    if found is None:
                        raise Transient(f"the parent run {parent} is not in the store yet")
                    parent_id = found.run_id
                tags[PARENT_RUN_ID_TAG] = str(parent_id)
            created = transport.create_run(experiment_id, info.run_name, tags, int(info.start))
        self.created = created
        self.experiment_id = created.experiment_id
        self.run_id = created.run_id
        _server_ids[self.client_id] = created.run_id
        assert self.conn is not None
        with contextlib.suppress(OSError):  # a later sync finds the run by its client id
            layout.write_json(
                self.path / "created.json",
                {
                    "target": layout.masked_target(self.conn.tracking_uri),
                    "run_id": created.run_id,
                    "experiment_id": created.experiment_id,
                },
            )

    def _attach(self, transport: Store, experiment_id: str, info: Create) -> None:
        """Find the parent's run that a forked child's journal adds to."""
        parent = str(info.attach)
        run_id = info.run_id or _server_ids.get(parent)
        if run_id is None:
            found = transport.find_run(experiment_id, parent)
            if found is None:
                raise Transient(f"the run {parent[:8]} this child adds to is not in the store yet")
            run_id = found.run_id
        self.run_id = str(run_id)
        self.experiment_id = experiment_id
        self.attach_to = parent

    def _upload(self, transport: Store, record: File) -> None:
        assert self.run_id is not None
        local = self.path / "files" / record.path
        if not local.exists() and self.restarts:
            # Sent to the store that lost the run, then freed: it cannot be sent again.
            self._lost_artifacts += 1
            return
        if not local.exists():
            raise Rejected(f"spooled artifact {record.path} is missing from the journal")
        transport.upload(self.run_id, str(local), record.artifact_path)
        self.after_upload(local)

    def after_upload(self, local: Path) -> None:
        """Free the spooled copy of an uploaded artifact."""
        import shutil

        folder = local.parent
        size = layout.size_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if self.journal is not None:
            self.journal.files_bytes = max(0, self.journal.files_bytes - size)

    def _register(self, record: Register) -> None:
        from tracksdk import registry
        from tracksdk.stores._client import classify

        assert self.conn is not None and self.run_id is not None
        if not self._transport_for().capabilities().registry:
            raise Rejected(f"{self.conn.tracking_uri} has no model registry")
        from tracksdk.settings import find_project_root

        spec = registry.Register.from_dict(record.spec)
        model_uri = f"runs:/{self.run_id}/model"
        lock_dir = find_project_root() / ".tracksdk"
        try:
            registry.register_version(
                self.conn, self.run_id, model_uri, spec, dict(record.metrics), lock_dir
            )
        except TrackingError as exc:
            raise classify(self.conn, exc.__cause__ or exc, "Registering") from None
