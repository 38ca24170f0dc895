"""The local store: a database MLflow's own client opens (sqlite, or any database URI).

Metrics are what a training loop writes most, and MLflow's ``log_batch`` on sqlite writes
them through SQLAlchemy's ORM, one object per row, then reads and updates the latest value
row by row (about 7,000 points/s here). On a sqlite store whose schema is MLflow's, this
module writes the same rows with two statements per batch instead (about 35,000/s): an
``INSERT OR IGNORE`` into ``metrics`` (MLflow de-duplicates identical rows the same way)
and an upsert into ``latest_metrics`` that keeps the row MLflow would keep (the largest
``(step, timestamp, value)``). Tables and columns come from MLflow's own models, the schema
is checked once per database, and anything else goes through ``MlflowClient.log_batch``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk._schema import CLIENT_RUN_ID_TAG, part_tag
from tracksdk.stores import _sqlite_fast
from tracksdk.stores._client import (
    _clients,
    classified,
    mlflow_client,
    run_name_for_new,
    upload_through_mlflow,
)
from tracksdk.stores._keyed import exactly, key_filter
from tracksdk.stores.base import (
    DATASET_FIELDS,
    Capabilities,
    Claim,
    CreatedRun,
    ModelVersion,
    RunState,
)
from tracksdk.stores.errors import (
    NotFound,
    Rejected,
)

if TYPE_CHECKING:
    from tracksdk.backends import Connection


class LocalStore:
    """A store MLflow's client opens itself (see the module docstring).

    Args:
        conn: The connection; ``conn.artifact_root`` is where new experiments keep
            their artifacts.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._experiments: dict[str, str] = {}

    def close(self) -> None:
        """Nothing to close: MLflow keeps one engine per database for the process."""

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created when missing; refused when it is deleted."""
        if name not in self._experiments:
            with classified(self.conn, f"Opening experiment {name!r}"):
                if self.conn.artifact_root is not None:
                    found = _ensure_local_experiment(self.conn, name, self.conn.artifact_root)
                else:
                    found = _get_or_create(mlflow_client(self.conn), name)
            self._experiments[name] = found
        return self._experiments[name]

    def find_run(self, experiment_id: str, client_id: str) -> CreatedRun | None:
        """The run an earlier attempt created for ``client_id``, or that it continued."""
        for tag in (CLIENT_RUN_ID_TAG, part_tag(client_id)):
            query = f"tags.`{tag}` = '{client_id}'"
            with classified(self.conn, "Looking for the run"):
                runs = list(
                    mlflow_client(self.conn).search_runs(
                        [experiment_id], query, run_view_type=3, max_results=1
                    )
                )
            if runs:
                return _created(runs[0])
        return None

    def create_run(
        self, experiment_id: str, run_name: str | None, tags: Mapping[str, str], start_ms: int
    ) -> CreatedRun:
        """Create a RUNNING run."""
        with classified(self.conn, "Creating the run"):
            run = mlflow_client(self.conn).create_run(
                experiment_id,
                start_time=start_ms,
                tags=dict(tags),
                run_name=run_name or run_name_for_new(),
            )
        return _created(run)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> None:
        """Write one batch: metrics alone on the fast path when the store allows it."""
        with classified(self.conn, "Logging to the run", "run"):
            if metrics and not params and not tags and not _sqlite_fast.active_model():
                engine = _sqlite_fast.engine_for(self.conn)
                if engine is not None:
                    _sqlite_fast.insert_metrics(engine, run_id, metrics)
                    return
            from mlflow.entities import Metric, Param, RunTag

            mlflow_client(self.conn).log_batch(
                run_id,
                metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
                synchronous=True,
            )

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Set the run's final status and end time."""
        with classified(self.conn, "Ending the run", "run"):
            mlflow_client(self.conn).set_terminated(run_id, status, end_time=end_ms)

    def upload(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Upload a file, or a folder's contents, into the run's artifacts."""
        upload_through_mlflow(self.conn, run_id, path, artifact_path)

    def log_input(self, run_id: str, dataset: Mapping[str, Any], context: str | None) -> None:
        """Record a dataset input (name, digest, source_type, source, schema, profile)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        with classified(self.conn, "Logging a dataset input", "run"):
            entity = Dataset(**{k: dataset.get(k) for k in DATASET_FIELDS})  # type: ignore[arg-type]
            tags = [InputTag("mlflow.data.context", context)] if context else []
            mlflow_client(self.conn).log_inputs(run_id, [DatasetInput(entity, tags)])

    def capabilities(self) -> Capabilities:
        """A local store has the registry and MLflow 3's logged models."""
        return Capabilities()

    # -- resuming a run (tracksdk._resume) ----------------------------------------------

    def keyed_runs(self, experiment_id: str, key: str) -> list[RunState]:
        """The active runs tagged ``tracksdk.run_key = key``, oldest first."""
        client = mlflow_client(self.conn)
        found: list[Any] = []
        token = None
        with classified(self.conn, "Looking for the runs of the key"):
            while True:  # a key names a handful of runs: one page, as a rule
                page = client.search_runs(
                    [experiment_id], key_filter(key), run_view_type=1, page_token=token
                )  # 1: ViewType.ACTIVE_ONLY; MLflow's default page holds 1,000 runs
                found.extend(page)
                token = page.token
                if not token:
                    break
        return exactly((_state(r) for r in found), key)

    def get_run(self, run_id: str) -> RunState:
        """The run with ``run_id``, in any lifecycle stage; NotFound when there is none."""
        with classified(self.conn, f"Reading run {run_id}", "run"):
            return _state(mlflow_client(self.conn).get_run(run_id))

    def set_running(self, run_id: str) -> None:
        """Set a run's status back to RUNNING (MLflow keeps its end time)."""
        with classified(self.conn, "Resuming the run", "run"):
            mlflow_client(self.conn).update_run(run_id, status="RUNNING")

    def delete_run(self, run_id: str) -> None:
        """Move a run to the trash."""
        with classified(self.conn, "Deleting the run", "run"):
            mlflow_client(self.conn).delete_run(run_id)

    def claim(self, name: str) -> Claim:
        """Create the marker experiment ``name`` unless it exists (see ``Store.claim``).

        The database's unique experiment name makes the create atomic; on the project's
        sqlite store it is also made under the store's file lock, like ``experiment_id``,
        so that concurrent claims never meet sqlite's "database is locked".
        """
        from mlflow.exceptions import MlflowException

        with (
            classified(self.conn, f"Claiming {name!r}", "experiment"),
            _tracking(self.conn) as store,
        ):
            try:
                store.create_experiment(name)
                return Claim(won=True)
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                    raise
            marker = store.get_experiment_by_name(name)  # deleted ones too
        if marker is None:  # removed for good (``mlflow gc``) since: held by no one now
            return Claim(won=False)
        return Claim(
            won=False,
            created_ms=marker.creation_time,
            released=marker.lifecycle_stage == "deleted",
        )

    def release(self, name: str) -> None:
        """Move the marker experiment ``name`` to the trash (nothing to do when it is)."""
        with (
            classified(self.conn, f"Releasing {name!r}", "experiment"),
            _tracking(self.conn) as store,
        ):
            marker = store.get_experiment_by_name(name)
            if marker is not None and marker.lifecycle_stage != "deleted":
                store.delete_experiment(marker.experiment_id)

    # -- the model registry (stores.base.Registry) -----------------------------------

    def ensure_registered_model(self, name: str) -> None:
        """Create the registered model unless it exists (another process may race)."""
        if self.has_registered_model(name):
            return
        from mlflow.exceptions import MlflowException

        client = mlflow_client(self.conn)
        with classified(self.conn, f"Creating model {name!r}", "model"):
            try:
                client.create_registered_model(name)
            except MlflowException:
                client.get_registered_model(name)  # created meanwhile by another process

    def has_registered_model(self, name: str) -> bool:
        """Whether the registered model exists."""
        try:
            with classified(self.conn, f"Reading model {name!r}", "model"):
                mlflow_client(self.conn).get_registered_model(name)
        except NotFound:
            return False
        return True

    def create_model_version(self, name: str, source: str, run_id: str) -> ModelVersion:
        """Register ``source`` as a new version of ``name``."""
        with classified(self.conn, f"Registering model {name!r}", "model"):
            created = mlflow_client(self.conn).create_model_version(name, source, run_id=run_id)
        return _version(created)

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        """One version (its status, run, tags)."""
        with classified(self.conn, f"Reading version {version} of model {name!r}", "model"):
            return _version(mlflow_client(self.conn).get_model_version(name, version))

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        try:
            with classified(self.conn, f"Reading alias {alias!r} of model {name!r}", "model"):
                return _version(mlflow_client(self.conn).get_model_version_by_alias(name, alias))
        except Rejected as exc:
            # An alias that is not set: RESOURCE_DOES_NOT_EXIST or INVALID_PARAMETER_VALUE.
            if exc.code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        with classified(self.conn, f"Setting alias {alias!r} of model {name!r}", "model"):
            mlflow_client(self.conn).set_registered_model_alias(name, alias, version)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag on a version."""
        with classified(self.conn, f"Tagging version {version} of model {name!r}", "model"):
            mlflow_client(self.conn).set_model_version_tag(name, version, key, value)

    def model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name`` with its aliases, newest first."""
        client = mlflow_client(self.conn)
        with classified(self.conn, f"Listing versions of model {name!r}", "model"):
            versions = [_version(v) for v in client.search_model_versions(f"name='{name}'")]
            if not versions:
                return []
            # search_model_versions leaves aliases out; the registered model has them.
            registered = client.get_registered_model(name)
        aliases: dict[str, list[str]] = {}
        for alias, version in (getattr(registered, "aliases", None) or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        return sorted(
            (replace(v, aliases=tuple(sorted(aliases.get(v.version, [])))) for v in versions),
            key=lambda v: int(v.version) if v.version.isdigit() else 0,
            reverse=True,
        )

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of a run."""
        with classified(self.conn, f"Reading run {run_id}", "run"):
            return dict(mlflow_client(self.conn).get_run(run_id).data.metrics)


def _version(entity: Any) -> ModelVersion:
    """A model version from MLflow's entity."""
    return ModelVersion(
        name=str(entity.name),
        version=str(entity.version),
        run_id=entity.run_id or None,
        status=str(entity.status or "READY"),
        source=str(entity.source or ""),
        created_ms=int(entity.creation_timestamp or 0),
        tags=dict(entity.tags or {}),
        aliases=tuple(entity.aliases or ()),
    )


def _created(run: Any) -> CreatedRun:
    return CreatedRun(
        run.info.run_id, run.info.experiment_id, run.info.artifact_uri, run.info.run_name, run
    )


def _state(run: Any) -> RunState:
    """A run from MLflow's entity; its latest metrics (``_metric_objs``) carry their step."""
    return RunState(
        run=_created(run),
        status=str(run.info.status),
        lifecycle_stage=str(run.info.lifecycle_stage),
        start_ms=int(run.info.start_time or 0),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        last_steps={m.key: int(m.step) for m in run.data._metric_objs},
    )


def _get_or_create(store: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = store.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise Rejected(
                f"Experiment {name!r} is deleted (in the trash). Restore it in the MLflow UI "
                "or with `mlflow experiments restore`, or choose another name",
                code="INVALID_STATE",
                subject="experiment",
            )
        return str(experiment.experiment_id)
    try:
        return str(store.create_experiment(name))
    except MlflowException:
        # Another process created it between our read and our write.
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _ensure_local_experiment(conn: Connection, name: str, artifact_root: str) -> str:
    """Create the sqlite store and the experiment under a file lock (see :func:`_locked`)."""
    with _locked(conn, artifact_root) as store:
        return _get_or_create(store, name)


@contextlib.contextmanager
def _tracking(conn: Connection) -> Iterator[Any]:
    """MLflow's tracking store for experiment calls: under the file lock when it has one."""
    if conn.artifact_root is None:
        yield mlflow_client(conn)
        return
    with _locked(conn, conn.artifact_root) as store:
        yield store


@contextlib.contextmanager
def _locked(conn: Connection, artifact_root: str) -> Iterator[Any]:
    """MLflow's store for the sqlite database, held under the project's file lock.

    Several processes creating a new sqlite store at once break its schema migration
    (FACTS.md); the lock makes the first creation serial. The store is built with the
    project's artifact root so new experiments keep artifacts in ``<root>/mlruns``.
    """
    import importlib
    import logging

    from filelock import FileLock

    # MLflow's private store factory: the only way to pass the artifact root (typed Any).
    tracking_utils: Any = importlib.import_module("mlflow.tracking._tracking_service.utils")

    lock_dir = Path(artifact_root).parent / ".tracksdk"
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # "Creating initial MLflow database tables..." is noise on a store tracksdk manages.
    db_logger = logging.getLogger("mlflow.store.db.utils")
    level = db_logger.level
    db_logger.setLevel(logging.WARNING)
    try:
        with FileLock(str(lock_dir / "store.lock"), timeout=120):
            yield tracking_utils._get_store(conn.tracking_uri, artifact_root)
    finally:
        db_logger.setLevel(level)


def after_fork_in_child() -> None:
    """In a forked child: no database connection of the parent's.

    SQLAlchemy's pooled connections must not be shared across a fork (its docs:
    ``Engine.dispose(close=False)`` in the child); the parent keeps using them. MLflow
    caches one engine per database URI on the store class.
    """
    _clients.clear()
    store_module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(store_module, "SqlAlchemyStore", None), "_engine_map", None)
    for engine in list((engines or {}).values()):
        with contextlib.suppress(Exception):
            engine.dispose(close=False)
