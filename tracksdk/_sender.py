"""The background sender: replays a journal into a store, in order, exactly once.

One :class:`Sender` per journal, with a daemon thread (:mod:`tracksdk._send_loop`: how
records are read, grouped, sent, retried and acknowledged). A live run's sender tails
the journal its run appends to; ``tracksdk sync`` runs the same code over a journal whose
writer is gone. This module is what other threads call: start and stop it, wait for the
run's creation (a run's start) or for records to be sent (a flush, a run's end), and
send refused records again (``tracksdk sync --rejected``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracksdk._journal import layout
from tracksdk._journal.reader import Entry
from tracksdk._journal.records import from_json
from tracksdk._send_loop import SendLoop
from tracksdk._send_plan import creates, plan
from tracksdk._threads import Thread
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk.stores import CreatedRun, RunState

WAKE_AFTER = 500  # records the training thread may write before it wakes the sender


@dataclass(frozen=True)
class Creation:
    """How a run's creation in the store went, for its start (:meth:`Sender.await_creation`).

    Attributes:
        created: The run as the store created it; None when it does not exist (yet).
        auth_error: The credential failure that stopped the sender, if there was one.
        last_error: The last failure of any kind, if there was one.
        stopped: The sender gave up (a refused create, a credential): waiting cannot help.
        resumed: A continued run (``tracked(key=...)``) as it was before this process
            continued it; None when this process created it.
    """

    created: CreatedRun | None
    auth_error: TrackingError | None
    last_error: TrackingError | None
    stopped: bool
    resumed: RunState | None = None

    @property
    def reason(self) -> TrackingError | None:
        """Why the run was not created: the credential failure, else the last failure."""
        return self.auth_error or self.last_error


class Sender(SendLoop):
    """Sends one journal's records to one store from a daemon thread."""

    # -- control (other threads) -----------------------------------------------------

    def start(self) -> None:
        """Start the daemon thread."""
        self._thread = Thread(self._main, name=f"tracksdk-sender-{self.client_id[:8]}")
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
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (a sync gives up only then)."""
        return self._attempts > 0 or self.stopped

    @property
    def in_outage(self) -> bool:
        """Whether nothing answered the last two attempts (refused, unknown host, no route).

        A timeout or a 5xx is not an outage here: such a store may answer any moment.
        """
        return self._attempts >= 2 and self._unreachable

    def wait_change(self, timeout: float) -> None:
        """Wait until something changes (an ack, the end), at most ``timeout``."""
        with self._changed:
            self._changed.wait(timeout)

    def wait_created(self, timeout: float) -> bool:
        """Wait until the run exists in the store, or the first attempt failed."""
        self.first_outcome.wait(timeout)
        return self.run_id is not None

    def await_creation(self, timeout: float) -> Creation:
        """Wait, at most ``timeout`` seconds, for the store to create the run: a run's start.

        The caller reports a failure itself, so while it waits the sender warns neither
        of a refused create nor of an outage; when the run is not created, the outage
        counts as reported (the caller's warning says it). The sender goes on either way
        (the run's records are sent when the store answers); :meth:`stop` gives up.

        Returns:
            What happened: ``created`` is None when the run does not exist in the store.
        """
        self.start_watched = True
        try:
            self.first_outcome.wait(timeout)
        finally:
            self.start_watched = False
        created = self.created if self.run_id is not None else None
        if created is None:
            self._warned_outage = True
        resumed = self._delivery.resumed if created is not None else None
        return Creation(created, self.auth_error, self.last_error, self.stopped, resumed)

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

    def resend(self, records: list[Any]) -> TrackingError | None:
        """Send refused records again, once each, from the calling thread.

        For ``tracksdk sync --rejected``: the run is found (or created from meta.json)
        first. Returns None when all were sent, else the error that stopped them.
        """
        parsed = [from_json(r) for r in records]
        entries = [Entry(r, layout.START) for r in parsed if r is not None]
        if len(entries) != len(records):
            return TrackingError("the line holds records this tracksdk cannot read")
        delivery = self._delivery
        try:
            if delivery.run_id is None:
                delivery.create(
                    delivery.from_meta(
                        "its refused requests were sent by `tracksdk sync --rejected`, and the "
                        "store had no run with its client id; the run was created from the "
                        "journal's meta.json"
                    ),
                    retried=self._attempts > 0,
                )
            for op in plan(entries):
                if not creates(op):
                    delivery.perform(op, rejected=self.rejected, retried=self._attempts > 0)
        except TrackingError as exc:
            return exc
        except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
            return TrackingError(f"{type(exc).__name__}: {exc}")
        return None
