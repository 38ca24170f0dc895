"""A complete tracking store in this process, for tests of tracked code.

It keeps what MLflow's stores keep (experiments, runs with params, metric histories and
latest values, tags, status, artifacts, dataset inputs) with MLflow's rules: a param's
value cannot change, identical metric rows are stored once, the latest value of a metric
is its largest ``(step, timestamp, value)``, a deleted run or experiment refuses writes.
It imports no MLflow, so :func:`tracksdk.testing.capture_runs` runs tracked code without
MLflow's import time or a database.

Stores are named (``memory://<name>``) and live as long as the process, or until
:func:`forget` drops one.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk._schema import CLIENT_RUN_ID_TAG, RUN_NAME_TAG, part_tag
from tracksdk.stores._keyed import exactly
from tracksdk.stores.base import DATASET_FIELDS, Capabilities, Claim, CreatedRun, RunState
from tracksdk.stores.errors import NotFound, Rejected

if TYPE_CHECKING:
    from tracksdk.backends import Connection


@dataclass
class StoredRun:
    """One run as the memory store keeps it.

    Attributes:
        run_id: The run's id (32 hex digits, like MLflow's).
        experiment_id: Its experiment.
        run_name: Its name (given, or made up like MLflow's ``adjective-noun-N``).
        status: RUNNING, FINISHED, FAILED or KILLED.
        start_time: Milliseconds since the epoch.
        end_time: Milliseconds since the epoch, once ended.
        lifecycle_stage: ``active`` or ``deleted``.
        params: Param values.
        tags: Tag values.
        history: Every metric point per key, as ``(step, timestamp, value)``, in the order
            they were stored.
        latest: The latest value of each metric.
        artifacts: Artifact files by path.
        inputs: Dataset inputs: the dataset's fields and its ``context``.
    """

    run_id: str
    experiment_id: str
    run_name: str
    status: str = "RUNNING"
    start_time: int = 0
    end_time: int | None = None
    lifecycle_stage: str = "active"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)
    latest: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[tuple[str, int, int, float, bool]] = field(default_factory=set, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric."""
        return {key: value for key, (_, _, value) in self.latest.items()}

    def metric_history(self, key: str) -> list[tuple[int, int, float]]:
        """A metric's points as MLflow returns them: by timestamp, step, then value.

        NaN is stored as 0 flagged ``is_nan``, so it ties with a real 0; the sqlite index
        MLflow reads through puts the unflagged row first.
        """
        return sorted(
            self.history.get(key, []),
            key=lambda p: (p[1], p[0], _order(p[2]), math.isnan(p[2])),
        )


def _order(value: float) -> float:
    # MLflow compares NaN as stored: 0 (is_nan), so the comparison never sees a NaN.
    return 0.0 if math.isnan(value) else value


class MemoryStore:
    """An in-process store (see the module docstring). Thread-safe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self.experiments: dict[str, tuple[str, str]] = {}  # id -> (name, lifecycle stage)
        # id -> creation time (ms), beside ``experiments`` so snapshot() keeps its shape.
        self.experiment_times: dict[str, int] = {}
        self.runs: dict[str, StoredRun] = {}

    @classmethod
    def named(cls, conn: Connection) -> MemoryStore:
        """The process's store for ``conn.tracking_uri``, created on first use."""
        with _stores_lock:
            store = _stores.get(conn.tracking_uri)
            if store is None:
                store = _stores[conn.tracking_uri] = cls(conn)
            return store

    def close(self) -> None:
        """Nothing to close: the store lives with the process."""

    # -- the Store protocol ----------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created when missing; refused when it is deleted."""
        with self._lock:
            for experiment_id, (known, stage) in self.experiments.items():
                if known == name:
                    if stage == "deleted":
                        raise Rejected(
                            f"Experiment {name!r} is deleted",
                            code="INVALID_STATE",
                            subject="experiment",
                        )
                    return experiment_id
            return self._new_experiment(name)

    def find_run(self, experiment_id: str, client_id: str) -> CreatedRun | None:
        """The run tagged with ``client_id`` (or continued by it), in any lifecycle stage."""
        with self._lock:
            for tag in (CLIENT_RUN_ID_TAG, part_tag(client_id)):
                for run in self.runs.values():
                    if run.experiment_id == experiment_id and run.tags.get(tag) == client_id:
                        return self._created(run)
        return None

    def create_run(
        self, experiment_id: str, run_name: str | None, tags: Mapping[str, str], start_ms: int
    ) -> CreatedRun:
        """Create a RUNNING run with its tags."""
        with self._lock:
            if experiment_id not in self.experiments:
                raise NotFound(
                    f"No experiment with id {experiment_id}",
                    code="RESOURCE_DOES_NOT_EXIST",
                    subject="experiment",
                )
            run_id = uuid.uuid4().hex
            name = run_name or tags.get(RUN_NAME_TAG) or f"run-{len(self.runs) + 1}"
            run = StoredRun(run_id, experiment_id, name, start_time=start_ms)
            run.tags.update(tags)
            run.tags[RUN_NAME_TAG] = name
            self.runs[run_id] = run
            return self._created(run)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> None:
        """Write metrics, params and tags with MLflow's rules (see the module docstring)."""
        with self._lock:
            run = self._active(run_id)
            for key, value in params.items():
                old = run.params.get(key)
                if old is not None and old != value:
                    raise Rejected(
                        f"Changing param values is not allowed. Param with key={key!r} was "
                        f"already logged with value={old!r} for run ID={run_id!r}. Attempted "
                        f"logging new value {value!r}.",
                        code="INVALID_PARAMETER_VALUE",
                        subject="run",
                    )
            run.params.update(params)
            for key, raw, timestamp, step in metrics:
                number = float(raw)
                identity = (key, int(timestamp), int(step), _order(number), math.isnan(number))
                if identity in run._seen:
                    continue
                run._seen.add(identity)
                point = (int(step), int(timestamp), number)
                run.history.setdefault(key, []).append(point)
                old_point = run.latest.get(key)
                if old_point is None or (point[0], point[1], _order(number)) > (
                    old_point[0],
                    old_point[1],
                    _order(old_point[2]),
                ):
                    run.latest[key] = point
            run.tags.update(tags)
            if RUN_NAME_TAG in tags:  # MLflow renames a run whose mlflow.runName tag is set
                run.run_name = tags[RUN_NAME_TAG]

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Set the run's final status and end time."""
        with self._lock:
            run = self._active(run_id)
            run.status = status
            run.end_time = end_ms

    def upload(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Copy a file, or a folder's files, into the run's artifacts."""
        source = Path(path)
        prefix = f"{artifact_path.strip('/')}/" if artifact_path else ""
        if source.is_dir():
            files = {
                prefix + str(f.relative_to(source)): f.read_bytes()
                for f in sorted(source.rglob("*"))
                if f.is_file()
            }
        else:
            files = {prefix + source.name: source.read_bytes()}
        with self._lock:
            self._active(run_id).artifacts.update(files)

    def log_input(self, run_id: str, dataset: Mapping[str, Any], context: str | None) -> None:
        """Record a dataset input."""
        entry = {k: dataset.get(k) for k in DATASET_FIELDS}
        entry["context"] = context
        with self._lock:
            run = self._active(run_id)
            if entry not in run.inputs:
                run.inputs.append(entry)

    def capabilities(self) -> Capabilities:
        """No model registry and no MLflow 3 logged models: a model stays a run artifact."""
        return Capabilities(registry=False, logged_models=False)

    # -- resuming a run --------------------------------------------------------------

    def keyed_runs(self, experiment_id: str, key: str) -> list[RunState]:
        """The active runs tagged ``tracksdk.run_key = key``, oldest first."""
        with self._lock:
            found = [self._state(r) for r in self.runs.values() if r.experiment_id == experiment_id]
        return exactly(found, key)

    def get_run(self, run_id: str) -> RunState:
        """The run with ``run_id``, in any lifecycle stage; NotFound when there is none."""
        with self._lock:
            return self._state(self._run(run_id))

    def set_running(self, run_id: str) -> None:
        """Set a run's status back to RUNNING; its end time stays, as on MLflow."""
        with self._lock:
            self._active(run_id).status = "RUNNING"

    def claim(self, name: str) -> Claim:
        """Create the marker experiment ``name`` unless one of that name exists."""
        with self._lock:
            for experiment_id, (known, stage) in self.experiments.items():
                if known == name:
                    return Claim(
                        won=False,
                        created_ms=self.experiment_times.get(experiment_id),
                        released=stage == "deleted",
                    )
            self._new_experiment(name)
            return Claim(won=True)

    def release(self, name: str) -> None:
        """Move the marker experiment ``name`` to the trash (nothing to do when it is)."""
        with self._lock:
            for experiment_id, (known, _) in self.experiments.items():
                if known == name:
                    self.experiments[experiment_id] = (name, "deleted")

    # -- reading and test set-up -----------------------------------------------------

    def snapshot(self) -> tuple[dict[str, tuple[str, str]], list[StoredRun]]:
        """Copies of the experiments and the runs, read under the store's lock."""
        import copy

        with self._lock:
            return dict(self.experiments), [copy.deepcopy(r) for r in self.runs.values()]

    def delete_run(self, run_id: str) -> None:
        """Move a run to the trash, as ``MlflowClient.delete_run`` does."""
        with self._lock:
            self._run(run_id).lifecycle_stage = "deleted"

    def _run(self, run_id: str) -> StoredRun:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(
                f"Run with id={run_id} not found", code="RESOURCE_DOES_NOT_EXIST", subject="run"
            )
        return run

    def _active(self, run_id: str) -> StoredRun:
        run = self._run(run_id)
        if run.lifecycle_stage != "active":
            raise Rejected(
                f"The run {run_id} must be in the 'active' state. Current state is "
                f"{run.lifecycle_stage}.",
                code="INVALID_PARAMETER_VALUE",
                subject="run",
            )
        return run

    def _new_experiment(self, name: str) -> str:
        experiment_id = str(len(self.experiments))
        self.experiments[experiment_id] = (name, "active")
        self.experiment_times[experiment_id] = int(time.time() * 1000)
        return experiment_id

    def _state(self, run: StoredRun) -> RunState:
        return RunState(
            run=self._created(run),
            status=run.status,
            lifecycle_stage=run.lifecycle_stage,
            start_ms=run.start_time,
            params=dict(run.params),
            tags=dict(run.tags),
            last_steps={key: step for key, (step, _, _) in run.latest.items()},
        )

    def _created(self, run: StoredRun) -> CreatedRun:
        return CreatedRun(
            run.run_id,
            run.experiment_id,
            f"{self.conn.tracking_uri}/{run.run_id}/artifacts",
            run.run_name,
        )


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def after_fork_in_child() -> None:
    """In a forked child: fresh locks (a thread of the parent may have held one)."""
    for store in list(_stores.values()):
        store._lock = threading.Lock()


def forget(uri: str) -> None:
    """Drop the memory store at ``uri`` and everything in it."""
    with _stores_lock:
        _stores.pop(uri, None)


_current: list[str] = []


def current_uri() -> str:
    """The memory store that ``TRACKSDK_BACKEND=memory`` selects now.

    Inside :func:`tracksdk.testing.capture_runs`, that capture's own store; otherwise the
    process's ``memory://default``.
    """
    return _current[-1] if _current else "memory://default"


def push_uri(uri: str) -> None:
    """Select ``uri`` for ``TRACKSDK_BACKEND=memory`` until :func:`pop_uri`."""
    _current.append(uri)


def pop_uri(uri: str) -> None:
    """Undo :func:`push_uri` of ``uri``."""
    if uri in _current:
        _current.remove(uri)
