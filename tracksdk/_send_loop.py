"""The sender's thread: reads a journal, sends each request with the retry policy, acks.

:class:`SendLoop` is what runs on a :class:`~tracksdk._sender.Sender`'s daemon thread
(the sender adds what other threads call). Records are read in the order they were
written, grouped into requests (:mod:`tracksdk._send_plan`) and performed in the store
(:mod:`tracksdk._delivery`). After each request the position it reached is written (the
ack), so a restart resends at most the one request whose answer was lost, and the store
de-duplicates identical metric rows and params.

Failures (kinds of :mod:`tracksdk.stores.errors`):

- transient (unreachable, timeout, 5xx, 429): retried with exponential backoff and
  jitter, at most ``MAX_BACKOFF`` seconds apart, or after the server's Retry-After;
- 401/403: the sender stops at once and says which credential to fix; the data stays
  in the journal for ``tracksdk sync``;
- any other refusal: that request is recorded in full in ``rejected.jsonl`` (its
  records, replayable with ``tracksdk sync --rejected``) and counted in the run's
  ``tracksdk.write_failures`` tag, and the sender moves on. At the end the journal is
  kept (``<journal dir>/kept/``) and one warning says what was refused
  (:mod:`tracksdk._kept`);
- a run the store no longer has (404 on a run it created, and no run with the client
  id: the store was replaced or reset) is created again from the journal's start.

A journal with unreadable parts is sent as far as it can be read and then kept, never
deleted.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk import _kept, _warn
from tracksdk._delivery import Delivery
from tracksdk._journal import layout
from tracksdk._journal.reader import Damage, Reader, TailReader, first_held
from tracksdk._journal.records import Create, End, File, Register
from tracksdk._send_plan import Op, Single, creates, plan
from tracksdk.exceptions import TrackingError
from tracksdk.stores.errors import AuthFailed, Rejected, Transient

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal
    from tracksdk.backends import Connection
    from tracksdk.stores import CreatedRun

MAX_BACKOFF = 10.0
POLL = 0.5
POISON_TRIES = 5  # internal errors on the same request before it is set aside
MAX_RESTARTS = 2  # times a run the store lost is created again from the journal
START_ATTEMPTS = 3  # failed attempts before a run's start stops waiting for the store
BUSY_QUIET = 60.0  # seconds of 429s (a store shedding load) before it is said

# The retry jitter's own generator: drawing from the random module's would change the
# state a user seeded (random.seed(0)) from a background thread, at unforeseeable times.
_jitter = random.Random()


class _RunLost(Exception):
    """The store no longer has the run (it was replaced or reset)."""


class SendLoop:
    """One journal's records sent to one store: the state and work of the sender's thread."""

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
        self._delivery = Delivery(
            path, conn, journal=journal, http_timeout=http_timeout, label=self.label
        )
        self.acked: layout.Position = layout.read_ack(path)
        if journal is None and layout.read_ended(path):
            self._delivery.status_sent = "sent before"  # only the deletion was missed
        if self._delivery.run_id is None and journal is None and self.acked != layout.START:
            # Part of it went to another store (`tracksdk sync --all`): this store gets a
            # run of its own, so everything is sent from the start.
            self.acked = layout.START
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
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._warned_outage = False
        self._busy_since: float | None = None  # since when the store has answered "busy"
        self.start_watched = False  # the run's start is waiting and reports failures itself
        self._attempts = 0
        self._thread: threading.Thread | None = None
        self._progress_at = time.monotonic()  # when an ack last moved (see flush's stall)
        self._unreachable = False  # the last failure: nothing answered (see in_outage)

    # -- the run in the store ----------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        """MLflow's run id, once the run is created (or found) in the store."""
        return self._delivery.run_id

    @property
    def created(self) -> CreatedRun | None:
        """The run as this sender created (or found) it in the store."""
        return self._delivery.created

    @property
    def experiment_id(self) -> str | None:
        """The run's experiment id in the store, once the run exists there."""
        return self._delivery.experiment_id

    @property
    def attach_to(self) -> str | None:
        """A forked child's journal: the client id of the run it adds to."""
        return self._delivery.attach_to

    @property
    def status_sent(self) -> str | None:
        """The run's end status as the store has it, once the end was sent."""
        return self._delivery.status_sent

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
            self._delivery.close()
            with self._changed:
                self._changed.notify_all()

    def _reader(self, start: layout.Position) -> Reader | TailReader:
        if self.journal is not None:
            return self.journal.reader(start)
        return Reader(self.path, start)

    def _loop(self) -> None:
        journal = self.journal
        reader = self._reader(self.acked)
        try:
            while not self._stop.is_set():
                # Read "final" only once the journal can grow no more (closed, or its
                # writer is gone): a live journal's bad header is a record not written
                # yet, to be read again, not damage to skip.
                final = journal is None or journal.closed
                entries = reader.read(2000, final=final)
                self.damage = reader.damage
                try:
                    if not entries:
                        if journal is not None:
                            journal.free_acknowledged()  # caught up: give the disk back
                        self._delivery.idle()  # logs/console.log, when due
                        if final and self._finished_reading():
                            break
                        self._wake.wait(POLL)
                        self._wake.clear()
                        continue
                    for op in plan(entries):
                        if not self._send(op):
                            self.stopped = True
                            return
                        if op.end is not None:
                            self._ack(op.end, ended=self._delivery.ended)
                except _RunLost as lost:
                    reader.close()
                    reader = self._reader(self._restart(str(lost)))
            else:
                self.stopped = True
        finally:
            reader.close()

    def _finished_reading(self) -> bool:
        """Everything readable was read from a final journal: end the run, then clean up.

        A fully sent journal is deleted; one with unreadable parts or refused requests
        is set aside in ``<journal dir>/kept/`` with a note, and said once.
        """
        delivery = self._delivery
        # Replaying a journal whose process died before ending the run: KILLED. When
        # nothing readable created the run, it is created from meta.json first. A forked
        # child's journal has no end of its own: it adds to its parent's run.
        unended = (
            self.journal is None
            and delivery.status_sent is None
            and not delivery.ended
            and delivery.attach_to is None
        )
        if unended and not self._send(Single(End("KILLED", delivery.death_time_ms()), None)):
            self.stopped = True
            return True
        if self.journal is not None:
            self.journal.retire()  # no heartbeat may write into it while it moves or goes
        kept = _kept.finish(self.path, self.damage, delivery.recreated)
        if kept is not None:
            self.kept_at = kept.path
            if not self.quiet:
                _warn.warn(kept.warning(self.label))
        self.done = True
        with self._changed:
            self._changed.notify_all()
        return True

    def _restart(self, why: str) -> layout.Position:
        """Send the run again from the journal's start, to a store that lost it."""
        self.restarts += 1
        self._attempts = 0
        old = self._delivery.forget()
        start, gone = first_held(self.path, self.journal)
        if gone is not None:
            self._delivery.recreated = f"the store lost it and {gone}"
        with contextlib.suppress(OSError):
            layout.write_ack(self.path, start)
        self.acked = start
        if self.journal is not None:
            numbers = layout.segment_numbers(self.path)
            self.journal.acked_segment = numbers[0] if numbers else 1
        if not self.quiet:
            _warn.warn(
                f"tracksdk: the store no longer has run {self.label} ({old}; {why}): it was "
                "replaced or reset. The run is created there again from its journal."
            )
        return start

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

    # -- one request, with the retry policy ------------------------------------------

    def _send(self, op: Op) -> bool:
        """Send ``op`` until it succeeds or is refused; False when the sender must stop."""
        delay = 0.5
        odd_failures = 0
        while not self._stop.is_set():
            try:
                self._delivery.perform(op, rejected=self.rejected, retried=self._attempts > 0)
                self._attempts = 0
                self._busy_since = None
                self.first_outcome.set()
                return True
            except Transient as exc:
                self.last_error = exc
                self._attempts += 1
                self._unreachable = exc.unreachable
                # One lost answer is not an outage. Neither is a busy server: it answered
                # "come back later", so a run's start keeps waiting for the run, within
                # TRACKSDK_START_TIMEOUT, rather than warn at every job of a busy team.
                if self._attempts >= START_ATTEMPTS and not _busy(exc):
                    self.first_outcome.set()
                self._report_outage(exc)
                if _poison(op, exc):
                    odd_failures += 1
                    if odd_failures >= POISON_TRIES:
                        self._reject(op, exc)
                        return True
                wait = exc.retry_after if exc.retry_after is not None else delay
                wait = max(0.05, min(wait, 300.0))
                if exc.retry_after is None:
                    wait *= _jitter.uniform(0.5, 1.0)  # jitter: clients do not retry in step
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
                return not creates(op) and self.run_id is not None
            except Rejected as exc:
                self.first_outcome.set()
                if (
                    not creates(op)
                    and self.restarts < MAX_RESTARTS
                    and self._delivery.run_lost(exc)
                ):
                    raise _RunLost(str(exc)) from None
                if creates(op) or self.run_id is None:  # the run could not be created
                    self.last_error = exc
                    # A refused resume is the start's ResumeError, or a sync's report line.
                    resume = exc.code == "TRACKSDK_RESUME"
                    if not self.start_watched and not self.quiet and not resume:
                        _warn.warn(
                            f"tracksdk: the store refused to create run {self.label}: {exc}. "
                            f"Its data is kept in the journal ({self.path})."
                        )
                    return False
                self._reject(op, exc)
                return True
        return False

    def _report_outage(self, exc: Transient) -> None:
        if self.journal is None or self._warned_outage or self.start_watched:
            return
        if self._attempts < 2:
            return
        if _busy(exc):
            # Shedding load is routine for a team server: said only when it lasts.
            now = time.monotonic()
            if self._busy_since is None:
                self._busy_since = now
            if now - self._busy_since < BUSY_QUIET:
                return
            self._warned_outage = True
            _warn.warn(
                f"tracksdk: the store has been too busy to take run {self.label} for "
                f"{now - self._busy_since:.0f} s ({exc}). Logging goes on into the journal "
                f"({self.path}); it is sent as the store takes it."
            )
            return
        self._warned_outage = True
        _warn.warn(
            f"tracksdk: cannot reach the store for run {self.label} ({exc}). Logging goes "
            f"on into the journal ({self.path}) and is sent when the store answers."
        )

    def _reject(self, op: Op, exc: TrackingError) -> None:
        self.rejected += 1
        if isinstance(op, Single) and isinstance(op.record, End):
            self._delivery.ended = True
        _kept.write_rejected(self.path, op, exc)
        if self.rejected == 1 and self.journal is not None and not self.quiet:
            _warn.warn(
                f"tracksdk: the store refused part of run {self.label}: {exc}. The run goes "
                "on; refused requests are kept in full in the journal and counted in its "
                "tracksdk.write_failures tag."
            )


def _poison(op: Op, exc: Transient) -> bool:
    """Whether a transient failure is this request's own, not the store's.

    A store that answers, and answers this one request with an internal error each time
    (a value its database refuses), or an upload failing on a disk error, is not in an
    outage: after a few tries the request is set aside instead of blocking everything
    behind it. A create is never set aside: the run's tags and parent live in it.
    """
    record = op.record if isinstance(op, Single) else None
    if isinstance(record, Create):
        return False
    disk = isinstance(record, File | Register) and exc.status is None and not exc.network
    return exc.status == 500 or disk


def _busy(exc: Transient) -> bool:
    """A server that is up and asks to come back later: 429, or 503 with Retry-After.

    A 503 without Retry-After is as often a proxy whose server is down, so it counts
    toward the start's give-up like an unreachable store.
    """
    return exc.status == 429 or (exc.status == 503 and exc.retry_after is not None)
