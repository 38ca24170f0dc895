"""One journal's run in one store: found or created, then each request performed there.

A :class:`Delivery` belongs to a :class:`~tracksdk._sender.Sender`. It knows which run
the journal's records go to (MLflow's run id once the run is created, found again by its
client id, or read from ``created.json``) and performs one planned request
(:mod:`tracksdk._send_plan`) as one attempt. A failure is the store's typed failure
(:mod:`tracksdk.stores.errors`); the sender's retry policy decides what to do with it.

A run whose create record cannot be read is created from ``meta.json`` instead, tagged
``tracksdk.recreated``. A forked child's journal never creates or ends a run of its own:
it adds to its parent's run (docs/offline.md, "Forked children").
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk import _console_log, _distributed, _resume
from tracksdk._console_log import ConsoleLog
from tracksdk._journal import folders, layout
from tracksdk._journal.records import Create, End, File, Input, Output, Register
from tracksdk._schema import (
    ARTIFACTS_NOT_RESENT_TAG,
    CLIENT_RUN_ID_TAG,
    CONSOLE_LOG_ERROR_TAG,
    PARENT_RUN_ID_TAG,
    RECREATED_TAG,
    RUN_KEY_TAG,
    RUN_PART_TAG,
    WRITE_FAILURES_TAG,
)
from tracksdk._send_plan import Batch, Op, Single
from tracksdk.exceptions import TrackingError
from tracksdk.stores.errors import Kind, Rejected, StoreError, Transient

if TYPE_CHECKING:
    from tracksdk._journal.journal import Journal
    from tracksdk.backends import Connection
    from tracksdk.stores import CreatedRun, RunState, Store

# (tracking URI, experiment name) -> id, for every experiment a run was created in by this
# process: looking the name up again costs a query (an HTTP round trip on a server) per
# run. A stale id (the experiment deleted since) is looked up again, once.
_experiment_ids: dict[tuple[str, str], str] = {}


class Delivery:
    """The run a journal's records go to, in one store, and the requests sent to it."""

    def __init__(
        self,
        path: Path,
        conn: Connection | None,
        *,
        journal: Journal | None,
        http_timeout: float,
        label: str,
    ) -> None:
        self.path = path
        self.conn = conn
        self.journal = journal
        self.http_timeout = http_timeout
        self.label = label
        self.client_id = path.name
        self.created: CreatedRun | None = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.status_sent: str | None = None
        self.ended = False  # the end record was handled (sent or refused)
        self.recreated: str | None = None  # why the run is created from meta.json
        self.lost_artifacts = 0  # uploaded to a store that lost the run, then freed
        self.restarted = False  # the store lost the run once: it is being sent again
        self._experiment: str | None = None
        self._transport: Store | None = None
        self._console: ConsoleLog | None = None  # logs/console.log, once output arrives
        # A keyed or continued run (tracked(key=...), tracksdk._resume): this part's name,
        # and the run as it was before this part continued it (None: created here).
        self.part: str | None = None
        self.resumed: RunState | None = None
        # False: a later part continued the run before this one was sent; None: unknown.
        self.latest: bool | None = True
        self._adopt = False  # logs/console.log starts with the earlier part's
        # A rank's part of a shared distributed run: (rank, world size, attempt).
        self.shared: tuple[int, int, str] | None = None
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
            part = created.get("part")
            self.part = part if isinstance(part, str) else None
            if self.part is not None:
                self.latest = None  # asked of the store at the first output

    def transport(self) -> Store:
        """The store, opened at the first request."""
        if self._transport is None:
            from tracksdk.stores import open_store

            assert self.conn is not None
            self._transport = open_store(self.conn, self.http_timeout)
        return self._transport

    def close(self) -> None:
        """Close the store (a later request opens it again)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def run_lost(self, exc: StoreError) -> bool:
        """Whether a 404 means the store lost the run (no run with our client id)."""
        if exc.kind is not Kind.NOT_FOUND or exc.subject != "run" or self.run_id is None:
            return False
        self.close()  # its experiment ids may be the lost store's
        try:
            transport = self.transport()
            experiment_id = transport.experiment_id(self.experiment_name())
            return transport.find_run(experiment_id, self.client_id) is None
        except TrackingError:
            return False

    def forget(self) -> str | None:
        """The store lost the run: forget it, to create it again. Its old MLflow id."""
        old = self.run_id
        self.restarted = True
        _resume.server_ids.pop(self.client_id, None)
        self.run_id = self.created = self.experiment_id = None
        self.status_sent = None
        self.ended = False
        with contextlib.suppress(OSError):
            (self.path / "created.json").unlink()
        return old

    def experiment_name(self) -> str:
        """The run's experiment: from its create record, else meta.json, else Default."""
        if self._experiment is not None:
            return self._experiment
        meta = layout.read_json(self.path / "meta.json") or {}
        name = meta.get("experiment")
        return name if isinstance(name, str) and name else "Default"

    def from_meta(self, reason: str) -> Create:
        """A create record rebuilt from meta.json, for a run whose own is unreadable."""
        meta = layout.read_json(self.path / "meta.json") or {}
        found = folders.Found(self.path, meta)
        created = found.created
        start = int(created * 1000) if created > 0 else self.death_time_ms()
        return Create(
            experiment=self.experiment_name(),
            start=start,
            run_name=found.text("run_name"),
            tags={RECREATED_TAG: reason[:5000]},
            parent=found.text("parent"),
            attach=self.attach_to,  # a forked child's part: find the parent's run
        )

    def death_time_ms(self) -> int:
        """When the journal's writer was last seen alive (now, when unknown)."""
        try:
            return int(float((self.path / "heartbeat").read_text()) * 1000)
        except (OSError, ValueError):
            return int(time.time() * 1000)

    # -- one request -------------------------------------------------------------------

    def perform(self, op: Op, *, rejected: int = 0, retried: bool = False) -> None:
        """Send ``op`` once; raises the store's failure.

        Args:
            op: The request.
            rejected: Requests refused so far: counted in a tag when the run ends.
            retried: An earlier attempt failed (its run may exist, its answer lost).
        """
        transport = self.transport()
        record = op.record if isinstance(op, Single) else None
        if isinstance(record, Create):
            self.create(record, retried=retried)
            return
        if self.run_id is None:
            # The create record is unreadable, or the store lost the run and the journal's
            # start is gone: create the run from meta.json, and say so in a tag.
            reason = self.recreated or (
                "the journal's create record could not be read; the run was created "
                "from the journal's meta.json"
            )
            self.recreated = reason
            self.create(self.from_meta(reason), retried=retried)
        run_id = self.run_id
        if run_id is None:
            raise TrackingError(f"run {self.label} could not be created")
        if isinstance(op, Batch):  # MLflow refuses a whole batch for one param it has
            earlier = self.resumed.params if self.resumed is not None else None
            _resume.log_batch(transport, run_id, op, earlier)
        elif isinstance(record, File):
            self._upload(transport, record)
        elif isinstance(record, Input):
            transport.log_input(run_id, record.dataset, record.context)
        elif isinstance(record, Register):
            self._register(record)
        elif isinstance(record, Output) and self.attach_to is None and self._is_latest(run_id):
            # (a forked child's output reaches its parent's pipes, never its journal; a
            # part synced after a later one would overwrite the later part's log)
            self.console().add(record.text, op.end)
            self.idle()
        elif isinstance(record, End) and self.attach_to is not None:
            self.status_sent = "attached"  # the parent's run ends with the parent
        elif isinstance(record, End):
            extra = dict(record.tags)
            if rejected:
                extra[WRITE_FAILURES_TAG] = str(rejected)
            if self.lost_artifacts:
                extra[ARTIFACTS_NOT_RESENT_TAG] = (
                    f"{self.lost_artifacts} artifact upload(s) reached the store that lost "
                    "this run and were freed from the journal; they could not be sent again"
                )
            if self.shared is not None:  # rank 0 writes the console log
                if self.shared[0] == 0:
                    extra.update(self._console_at_end(transport, run_id))
                self.status_sent = _distributed.end_rank(
                    transport, run_id, self.shared, record.status, int(record.end_ms), extra
                )
                self.ended = True
                return
            if self.part is not None and not _resume.is_latest(transport, run_id, self.part):
                # A later part continued the run: its end, not this one's, sets the status
                # (and its console log stays).
                self.status_sent = "continued"
                self.ended = True
                return
            extra.update(self._console_at_end(transport, run_id))
            if extra:
                transport.log_batch(run_id, [], {}, extra)
            transport.end_run(run_id, record.status, int(record.end_ms))
            self.status_sent = record.status
            self.ended = True
        # Unknown kinds come from a newer tracksdk: skipped, never a crash.

    def console(self) -> ConsoleLog:
        """The run's ``logs/console.log`` being built (:mod:`tracksdk._console_log`).

        A continued run's starts with its earlier part's, read from the store (a failure
        raises: the output is sent again; a log is never started anew over one).
        """
        if self._console is None:
            previous = None
            if self._adopt and self.conn is not None and self.run_id is not None:
                previous = _console_log.fetch_previous(self.conn, self.run_id)
            console = ConsoleLog.open(self.path, self.journal)
            console.adopt(previous)
            self._console, self._adopt = console, False
        return self._console

    def _is_latest(self, run_id: str) -> bool:
        """Whether this part is the run's latest (asked of the store once, when unknown)."""
        if self.latest is None:
            assert self.part is not None
            self.latest = _resume.is_latest(self.transport(), run_id, self.part)
        return self.latest

    def idle(self) -> None:
        """Upload ``logs/console.log`` when it is due; a failure waits for the next time."""
        console = self._console
        if console is not None and self.run_id is not None and console.due():
            with contextlib.suppress(TrackingError, OSError):
                console.upload(self.transport(), self.run_id)

    def _console_at_end(self, transport: Store, run_id: str) -> dict[str, str]:
        """Upload the console log as it ends; the tag saying why, when it cannot be."""
        console = self._console or ConsoleLog.existing(self.path)
        if console is None or not console.needs_upload(run_id):
            return {}
        try:
            console.upload(transport, run_id)
        except Transient as exc:
            if exc.network or exc.status not in (None, 500):
                raise  # the store is away: the end is sent again, and this with it
            return {CONSOLE_LOG_ERROR_TAG: str(exc)[:5000]}
        except (TrackingError, OSError) as exc:
            return {CONSOLE_LOG_ERROR_TAG: str(exc)[:5000]}
        console.discard()
        return {}

    def create(self, info: Create, *, retried: bool = False) -> None:
        """Create the run (or find the one an earlier attempt created), once."""
        self.shared = _distributed.parse_shared(info.shared)
        if self.shared is not None:
            self.latest = self.shared[0] == 0  # rank 0 writes the console log
        if self.run_id is not None:
            return
        transport = self.transport()
        self._experiment = info.experiment
        assert self.conn is not None
        key = (self.conn.tracking_uri, info.experiment)
        cached = _experiment_ids.get(key)
        try:
            self._create_in(
                transport, cached or transport.experiment_id(info.experiment), info, retried
            )
        except StoreError as exc:
            if cached is None or exc.kind not in (Kind.NOT_FOUND, Kind.REJECTED):
                raise
            _experiment_ids.pop(key, None)  # deleted, or made again under the same name
            self._create_in(transport, transport.experiment_id(info.experiment), info, retried)
        if self.experiment_id is not None:
            _experiment_ids[key] = self.experiment_id

    def _create_in(self, transport: Store, experiment_id: str, info: Create, retried: bool) -> None:
        if info.attach:
            self._attach(transport, experiment_id, info)
            return
        created = None
        if info.key or info.resume_id:
            opened = _resume.open_run(
                transport,
                experiment_id,
                info,
                self.client_id,
                lambda: self._new_run(transport, experiment_id, info, _resume.part_name),
            )
            created, self.part, self.resumed = opened.created, opened.part, opened.state
            self.latest = opened.latest if self.shared is None else self.shared[0] == 0
            # The run's console log goes on after the one its earlier part left: read when
            # the first output arrives, so that a long log never delays the run's start.
            self._adopt = opened.state is not None and opened.latest
        elif retried or self.journal is None:
            # An earlier attempt (or process) may have created it and lost the answer.
            created = transport.find_run(experiment_id, self.client_id)
        if created is None:
            created = self._new_run(transport, experiment_id, info)
        self.created = created
        self.experiment_id = created.experiment_id
        self.run_id = created.run_id
        _resume.server_ids[self.client_id] = created.run_id
        assert self.conn is not None
        with contextlib.suppress(OSError):  # a later sync finds the run by its client id
            layout.write_json(
                self.path / "created.json",
                {
                    "target": layout.masked_target(self.conn.tracking_uri),
                    "run_id": created.run_id,
                    "experiment_id": created.experiment_id,
                    "part": self.part,
                },
            )

    def _new_run(
        self,
        transport: Store,
        experiment_id: str,
        info: Create,
        part_name: Callable[[float, str], str] | None = None,
    ) -> CreatedRun:
        """Create the run ``info`` describes (a keyed one is tagged with its key and part)."""
        tags = dict(info.tags)
        if self.recreated:
            tags[RECREATED_TAG] = self.recreated[:5000]
        tags[CLIENT_RUN_ID_TAG] = self.client_id
        if info.key:
            tags[RUN_KEY_TAG] = info.key
        if part_name is not None:
            tags[RUN_PART_TAG] = part_name(info.start, self.client_id)
        parent = info.parent
        if parent:
            missing = f"the parent run {parent} is not in the store yet"
            tags[PARENT_RUN_ID_TAG] = _resume.run_id_of(
                transport, experiment_id, parent, info.parent_run_id, missing
            )
        return transport.create_run(experiment_id, info.run_name, tags, int(info.start))

    def _attach(self, transport: Store, experiment_id: str, info: Create) -> None:
        """Find the parent's run that a forked child's journal adds to."""
        parent = str(info.attach)
        missing = f"the run {parent[:8]} this child adds to is not in the store yet"
        self.run_id = _resume.run_id_of(transport, experiment_id, parent, info.run_id, missing)
        self.experiment_id = experiment_id
        self.attach_to = parent

    def _upload(self, transport: Store, record: File) -> None:
        assert self.run_id is not None
        local = self.path / "files" / record.path
        if not local.exists() and self.restarted:
            # Sent to the store that lost the run, then freed: it cannot be sent again.
            self.lost_artifacts += 1
            return
        if not local.exists():
            raise Rejected(f"spooled artifact {record.path} is missing from the journal")
        transport.upload(self.run_id, str(local), record.artifact_path)
        self.after_upload(local)

    def after_upload(self, local: Path) -> None:
        """Free the spooled copy of an uploaded artifact."""
        folder = local.parent
        size = layout.size_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if self.journal is not None:
            self.journal.files_bytes = max(0, self.journal.files_bytes - size)

    def _register(self, record: Register) -> None:
        assert self.conn is not None and self.run_id is not None
        if not self.transport().capabilities().registry:
            raise Rejected(f"{self.conn.tracking_uri} has no model registry")
        from tracksdk.registry import register_journaled

        register_journaled(self.conn, self.run_id, record.spec, record.metrics)
