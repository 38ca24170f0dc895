"""The run's lifecycle: one implementation behind ``@tracked`` and ``with tracked():``.

A :class:`Session` is one execution of a tracked block. ``start()`` resolves settings and
the backend, creates the run (a child of the current tracked run when there is one),
records params, starts the provenance capture (:mod:`tracksdk._capture`) and makes the
run MLflow's active run so autolog and ``mlflow.log_*`` write to it. ``finish()`` ends it
FINISHED, FAILED or KILLED and puts MLflow's global state back as it found it.

The session makes the run's :class:`~tracksdk._writer.Writer` and keeps it: the
:class:`~tracksdk._run.Run` users hold writes through the same writer, and the session
ends the run through it. Neither reads the other's private state.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracksdk import (
    _attach,
    _context,
    _continued,
    _creation,
    _distributed,
    _lineage,
    _outcome,
    _seed,
    _signals,
    _warn,
    stores,
)
from tracksdk._context import active_run
from tracksdk._context import current as _current
from tracksdk._journal.records import Create
from tracksdk._options import RunOptions
from tracksdk._rank_run import run_for
from tracksdk._run import Run
from tracksdk._schema import CLIENT_RUN_ID_TAG, EXIT_CODE_TAG
from tracksdk._untracked import UntrackedRun
from tracksdk._validate import Checker
from tracksdk.exceptions import ConfigError, ResumeError, TrackingError

if TYPE_CHECKING:
    from tracksdk._autolog_run import Switch
    from tracksdk._capture import Capture
    from tracksdk._console import Console
    from tracksdk._mlflow import SavedState
    from tracksdk._outcome import Outcome
    from tracksdk._sender import Creation
    from tracksdk._system_metrics import Sampler
    from tracksdk._writer import Writer
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

__all__ = ["Session"]

# How long the end of a run waits for a provenance capture still running (a huge
# repository's git status), and how long a SIGTERM leaves it.
CAPTURE_WAIT = 60.0
CAPTURE_WAIT_KILLED = 1.0

# The session of each tracked run: a nested run's session finds its parent's here (its
# store, and where to report its result for ``best=``) without touching the Run.
_sessions: weakref.WeakKeyDictionary[Run, Session] = weakref.WeakKeyDictionary()


class Session:
    """One execution of a tracked function or block.

    Args:
        options: The ``tracked(...)`` options.
        function: The tracked function (for the ``tracksdk.function`` tag), if any.
        params: The function's arguments to log as params.
        source_file: The file of the tracked code (for provenance).
        arguments: The call's arguments (a model's input example is taken from them).
    """

    def __init__(
        self,
        options: RunOptions,
        *,
        function: Callable[..., Any] | None = None,
        params: Mapping[str, str] | None = None,
        source_file: str | None = None,
        arguments: tuple[Any, ...] = (),
        datasets: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.options = options
        self.function = function
        self.params = params or {}
        self.source_file = source_file
        self.arguments = arguments
        self.datasets = datasets or []  # the call's data arguments (tracksdk/_lineage.py)
        self.explained: Explained | None = None
        self.run: Run = UntrackedRun()
        self._conn: Connection | None = None
        self._writer: Writer | None = None
        self._capture: Capture | None = None
        self._sampler: Sampler | None = None
        self._console: Console | None = None  # the top-level run's console capture
        self._outcome: Outcome | None = None
        self._autolog: Switch | None = None  # set once autolog is on
        self._saved: SavedState | None = None
        self._token: contextvars.Token[tuple[Run, ...]] | None = None
        self._finished = False
        self._pushed: str | None = None  # the run id put on MLflow's active-run stack
        self._launch: _distributed.Launch | None = None  # a rank of a shared run
        self._published: tuple[str | None, str | None] | None = None  # _attach.publish's
        # The finished child runs, for ``best=``.
        self.children = _outcome.Children()

    # -- start -----------------------------------------------------------------------

    def start(self) -> Run:
        """Create the run; return an untracked Run when tracking is off or failed."""
        from tracksdk import _config, _fork

        _fork.install()
        parent = active_run() if self.options.nested is not False else None
        overrides = self.options.overrides()
        explained = _config.resolve(overrides)
        settings = explained.settings
        seed = _seed.for_run(self.options.seed, settings.seed, nested=parent is not None)
        self.params = _seed.at_start(seed, self.params)  # tracked or not
        if settings.mode == "disabled":
            return self._push(self.run)
        untracked, self._launch = _distributed.for_run(settings, nested=parent is not None)
        if untracked:  # another rank's run: cheap, nothing is resolved nor started
            return self._push(self.run)
        conn: Connection | None
        outer = _sessions.get(parent) if parent is not None else None
        if parent is not None and outer is not None:
            conn = outer._conn  # None: the parent is offline, and so is its child
        elif settings.mode == "offline":
            parent, conn = None, None  # no backend is contacted, nor resolved
        else:
            parent = None
            explained, conn = _config.resolve_with_connection(overrides)
            _creation.sync_leftovers(explained, conn)
        try:
            run = self._create(explained, conn, parent)
        except (ResumeError, ConfigError):  # the user's mistake: said before the body runs
            self.restore_mlflow()
            raise
        except TrackingError as exc:
            self.restore_mlflow()
            if settings.strict:
                raise
            _warn.warn(
                f"tracksdk: {exc}. The function runs untracked; nothing of this run is "
                "stored. Check the backend with `tracksdk doctor`."
            )
            return self._push(self.run)
        self.run = run
        _sessions[run] = self
        _signals.enter(self)
        if parent is None:  # spawned children started meanwhile join it (docs/distributed.md)
            self._published = _attach.publish(run)
        return self._push(run)

    def _push(self, run: Run) -> Run:
        self._token = _current.set((*_current.get(), run))
        _context.opened(run)  # for threads without a run of their own (docs/quickstart.md)
        return run

    def _create(self, explained: Explained, conn: Connection | None, parent: Run | None) -> Run:
        from tracksdk import _console, _journal, _system_metrics
        from tracksdk._capture import Capture
        from tracksdk._writer import Writer

        settings = explained.settings
        self._conn = conn
        if parent is None and conn is not None and stores.uses_mlflow(conn):
            from tracksdk import _mlflow

            self._saved = _mlflow.activate(
                conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
            )
        experiment = _creation.experiment_name(
            explained, parent, self.options.experiment, self._saved, conn
        )

        checker = Checker(strict=settings.strict)
        tags, long_tags = _creation.run_tags(self.options, self.function, checker, settings)
        client_id = _journal.new_client_id()
        tags[CLIENT_RUN_ID_TAG] = client_id
        target = _journal.masked_target(conn.tracking_uri) if conn is not None else None
        launch, shared = self._launch, None
        if launch is not None:
            shared = f"{launch.rank}/{launch.world_size}/{launch.attempt}"
            tags.update(_distributed.creation_tags(launch))
        key, resume, continued = _continued.prepare(
            self.options,
            explained,
            parent is not None,
            experiment,
            target,
            shared_key=_distributed.shared_key(launch, self.options.key, settings.run_key),
        )
        writer = self._writer = Writer(
            _creation.open_journal(
                explained, conn, parent, client_id, experiment, self.options.run_name, key
            ),
            conn,
            strict=settings.strict,
            flush_timeout=settings.flush_timeout,
            http_timeout=settings.http_timeout,
            label=self.options.run_name or client_id[:8],
        )
        try:
            writer.create(
                Create(
                    experiment=experiment,
                    run_name=self.options.run_name,
                    tags=tags,
                    parent=parent.client_run_id if parent is not None else None,
                    parent_run_id=parent.run_id if parent is not None else None,
                    start=int(time.time() * 1000),
                    key=key,
                    resume=resume,
                    resume_id=self.options.run_id,
                    shared=shared,
                )
            )
            run = run_for(launch, conn=conn, writer=writer, checker=checker, parent=parent,
                          name=self.options.run_name, experiment_name=experiment)  # fmt: skip
            other_rank = launch is not None and launch.rank != 0  # provenance is rank 0's
            continuing = key is not None or self.options.run_id is not None
            if self.params and not continuing:
                run.log_params(self.params)
            if settings.capture.datasets and not other_rank and _lineage.wanted(conn):
                _lineage.log(run, self.datasets)
            if long_tags:
                run.set_tags(long_tags)
            self.explained = explained
            if writer.journal.degraded is not None:
                writer.warn_degraded()
            writer.start()
            creation = self._wait_created(writer, settings)
            if continuing:
                # The params are checked against those the earlier parts logged.
                run._continue_from(_continued.settle(creation, continued, resume, key))
                if launch is not None:  # the ranks of one launch join, they do not resume
                    run.resumed = _distributed.resumed(creation, launch)
                if self.params:
                    run.log_params(self.params)
            # Git and friends run while the body starts: not before the run is created,
            # where their subprocesses and the GIL would slow the creation down.
            if not other_rank:
                self._capture = Capture(explained, self.source_file, writer, {*tags, *long_tags})
                self._capture.start()
                # Autolog logs through MLflow under its own names: rank 0's only.
                self._enable_autolog(settings, run)
            if parent is None and not other_rank:  # nested runs share their top's capture
                self._console = _console.start(settings, writer, writer.label)
            self._sampler = _system_metrics.start(run, settings, conn)  # last: never raises
        except BaseException as exc:
            # The function will run untracked (or the error reaches the caller in strict
            # mode): the sender stops and what was journaled waits for `tracksdk sync`.
            if self._capture is not None:
                self._capture.join(0)
            writer.abandon()
            if isinstance(exc, ResumeError):  # nothing of a refused run is kept
                _continued.discard(writer.journal.path)
            raise
        return run

    def _wait_created(self, writer: Writer, settings: Any) -> Creation | None:
        """Wait for the store to create the run (:func:`tracksdk._creation.wait_created`)."""
        creation, pushed = _creation.wait_and_activate(writer, self._conn, settings)
        self._pushed = pushed or self._pushed
        return creation

    def _enable_autolog(self, settings: Any, run: Run) -> None:
        """Turn on the selected frameworks' autolog for this run only."""
        from tracksdk import _autolog_run

        chosen = _autolog_run.selection(settings.autolog)
        if not chosen:
            return
        # MLflow's own autolog writes to MLflow's active run: only where tracksdk made one
        # (not on the memory store, which MLflow cannot reach).
        in_mlflow_run = run.run_id is not None and (
            self._conn is None or stores.uses_mlflow(self._conn)
        )
        self._autolog = _autolog_run.Switch()
        self._autolog.on(chosen, settings.plugins, self._conn, in_mlflow_run)

    # -- finish ----------------------------------------------------------------------

    def finish(self, exc: BaseException | None, status: str | None = None) -> None:
        """End the run with ``status``, else the one ``exc`` implies; restore global state.

        Never raises on a store failure unless strict, and never replaces ``exc``.
        """
        if self._finished:
            return
        self._finished = True
        self.leave_context()
        _context.closed(self.run)
        run = self.run
        if self._writer is None:
            return
        try:
            status = status or _outcome.status_for(exc)
            if status == "FINISHED":  # a failed trial is never a search's best
                self._report_to_parent()
            self._record_best()
            if status == "FAILED" and exc is not None and not isinstance(exc, SystemExit):
                _outcome.record_error(run, exc)
            elif isinstance(exc, SystemExit):
                run.set_tag(EXIT_CODE_TAG, str(exc.code))
            self.end(status)
        except TrackingError:
            if exc is None:
                raise  # strict mode, and the function itself succeeded
        finally:
            self._cleanup()

    def leave_context(self) -> None:
        """Take the run off this context's stack of current runs (once).

        Taken out, not reset to the stack it was pushed on: runs of ``tracksdk.start()``
        end in any order, and a reset would make a run ended meanwhile current again.
        """
        token, self._token = self._token, None
        if token is not None:
            _current.set(tuple(r for r in _current.get() if r is not self.run))

    def kill(self) -> None:
        """End the run KILLED at once (SIGTERM): no result handling, a short wait."""
        self._finished = True
        try:
            settings = self.explained.settings if self.explained else None
            self.end("KILLED", settings.sigterm_timeout if settings else 10.0)
        finally:
            self._cleanup()

    def end_anyway(self, exc: BaseException | None, status: str | None = None) -> None:
        """End the run after an unexpected error in :meth:`finish`, so it is not left open."""
        self._finished = True
        self.end(status or _outcome.status_for(exc))

    def _report_to_parent(self) -> None:
        run = self.run
        run_id = run.run_id or run.client_run_id
        outer = _sessions.get(run.parent) if run.parent is not None else None
        if outer is not None and run_id is not None:
            outer.children.add(run_id, run.latest_metrics)

    def _record_best(self) -> None:
        if self.options.best is not None:
            self.children.record_best(self.run, self.options.best)

    def end(self, status: str, timeout: float | None = None) -> None:
        """Journal the end of the run with ``status`` and wait (bounded) until it is sent."""
        if self._sampler is not None:  # first: its summary describes the body, not the end
            self._sampler.stop(killed=status == "KILLED")
        self._stop_capture(CAPTURE_WAIT if status != "KILLED" else CAPTURE_WAIT_KILLED)
        if self._autolog is not None:
            self._autolog.off()
        if self._pushed is not None:
            from tracksdk import _mlflow

            _mlflow.pop_active(self._pushed)
            self._pushed = None
        self.run.status = status
        if self._console is not None:
            self._console.stop(status)
        if self._writer is not None:
            self._writer.terminate(status, timeout)

    def _stop_capture(self, wait: float) -> None:
        """Wait for the provenance records, then say what went wrong capturing them."""
        capture, self._capture = self._capture, None
        if capture is None:
            return
        for message in capture.join(wait):
            _warn.warn(f"tracksdk: {message}")

    def _cleanup(self) -> None:
        _signals.leave(self)
        published, self._published = self._published, None
        if published is not None:
            _attach.unpublish(published)
        self.restore_mlflow()

    def restore_mlflow(self) -> None:
        """Put MLflow's global state back as the session found it (once)."""
        if self._saved is not None:
            from tracksdk import _mlflow

            _mlflow.restore(self._saved)
            self._saved = None

    # -- the returned value ----------------------------------------------------------

    def handle_result(self, result: Any) -> None:
        """Log what the tracked function returned (see :meth:`tracksdk._outcome.Outcome.handle`)."""
        if self._writer is None or self._finished:  # ended by hand (Run.end) in the body
            return
        from tracksdk import _autolog_run
        from tracksdk._outcome import Outcome

        settings = self.explained.settings if self.explained else None
        if self._outcome is None:
            self._outcome = Outcome(
                self.run,
                self._writer,
                self._conn,
                self.options,
                arguments=self.arguments,
                plugins=settings.plugins if settings else None,
                autolog=_autolog_run.selection(settings.autolog) if settings else None,
                strict=settings.strict if settings else False,
            )
        self._outcome.handle(result)
