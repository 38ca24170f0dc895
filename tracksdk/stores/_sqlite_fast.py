"""The local store's fast path for metrics on sqlite (see :mod:`tracksdk.stores.local`).

MLflow's ``log_batch`` on sqlite writes metrics through SQLAlchemy's ORM, one object per
row, then reads and updates the latest value row by row. Here the same rows are written
with two statements per batch on MLflow's own engine and table objects: an
``INSERT OR IGNORE`` into ``metrics`` and an upsert into ``latest_metrics`` that keeps
MLflow's latest-value rule. ``tests/test_stores.py`` compares both on random batches.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tracksdk.stores._client import mlflow_client
from tracksdk.stores.errors import NotFound, Rejected

if TYPE_CHECKING:
    from tracksdk.backends import Connection

# The columns MLflow's schema has today; another set (a future migration) means the
# fast path is not used for that database.
_METRIC_COLUMNS = {"key", "value", "timestamp", "step", "is_nan", "run_uuid"}
_fast: dict[str, Any] = {}  # tracking URI -> engine, or None when the fast path is off
_fast_lock = threading.Lock()


def engine_for(conn: Connection) -> Any:
    """The SQLAlchemy engine of a sqlite store with MLflow's metric schema, else None."""
    with _fast_lock:
        if conn.tracking_uri in _fast:
            return _fast[conn.tracking_uri]
    engine = None
    store = mlflow_client(conn)._tracking_client.store
    candidate = getattr(store, "engine", None)
    if candidate is not None and candidate.dialect.name == "sqlite":
        import sqlalchemy

        inspector = sqlalchemy.inspect(candidate)
        try:
            metrics = {c["name"] for c in inspector.get_columns("metrics")}
            latest = {c["name"] for c in inspector.get_columns("latest_metrics")}
        except sqlalchemy.exc.SQLAlchemyError:
            return None  # a busy database, say: decided on a later batch, not cached
        if metrics == latest == _METRIC_COLUMNS:
            engine = candidate
    with _fast_lock:
        _fast[conn.tracking_uri] = engine
    return engine


def active_model() -> bool:
    """Whether MLflow 3 links metrics to an active logged model (``set_active_model``).

    MLflow's ``log_batch`` then also writes the model's metric rows, which the fast path
    does not: such batches take MLflow's path.
    """
    import mlflow

    return bool(mlflow.get_active_model_id())


_statements: list[Any] = []


def _sql() -> tuple[Any, Any, Any]:
    """The three statements of the fast path, built once."""
    if not _statements:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
        from sqlalchemy.dialects.sqlite import insert

        metrics = SqlMetric.__table__
        latest = SqlLatestMetric.__table__
        stage: Any = sa.select(SqlRun.lifecycle_stage).where(SqlRun.run_uuid == sa.bindparam("run"))
        rows = insert(metrics).prefix_with("OR IGNORE")
        upsert = insert(latest)
        new = upsert.excluded
        upsert = upsert.on_conflict_do_update(
            index_elements=[latest.c.key, latest.c.run_uuid],
            set_={"value": new.value, "timestamp": new.timestamp, "step": new.step,
                  "is_nan": new.is_nan},
            # MLflow keeps the row that is largest by (step, timestamp, value).
            where=sa.tuple_(new.step, new.timestamp, new.value)
            > sa.tuple_(latest.c.step, latest.c.timestamp, latest.c.value),
        )  # fmt: skip
        _statements[:] = [stage, rows, upsert]
    return _statements[0], _statements[1], _statements[2]


_MAX_DOUBLE = sys.float_info.max


def insert_metrics(engine: Any, run_id: str, metrics: Sequence[Sequence[Any]]) -> None:
    """Write metric rows as ``SqlAlchemyStore.log_batch`` would, in one transaction.

    MLflow's rules, kept: keys and values are validated by MLflow's own validator; NaN
    is stored as 0 with ``is_nan``; infinities as the largest double; a row identical to
    a stored one is ignored; the run must exist and be active.
    """
    import importlib

    validation: Any = importlib.import_module("mlflow.utils.validation")
    stage, insert_rows, upsert = _sql()
    rows: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for index, (key, raw, timestamp, step) in enumerate(metrics):
        value = float(raw)
        validation._validate_metric(key, value, int(timestamp), int(step), path=f"metrics[{index}]")
        is_nan = math.isnan(value)
        if is_nan:
            value = 0.0
        elif math.isinf(value):
            value = math.copysign(_MAX_DOUBLE, value)
        row = {"key": key, "value": value, "timestamp": int(timestamp), "step": int(step),
               "is_nan": is_nan, "run_uuid": run_id}  # fmt: skip
        rows.append(row)
        old = latest.get(key)
        if old is None or (row["step"], row["timestamp"], value) > (
            old["step"],
            old["timestamp"],
            old["value"],
        ):
            latest[key] = row
    with engine.begin() as connection:
        # MLflow sets these on each of its sessions; a pooled connection it never used
        # would otherwise wait only sqlite's default 5 s on a store another process writes.
        connection.exec_driver_sql("PRAGMA busy_timeout = 20000")
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        found = connection.execute(stage, {"run": run_id}).scalar()
        if found is None:
            raise NotFound(
                f"Logging to the run: run with id={run_id} not found",
                code="RESOURCE_DOES_NOT_EXIST",
                subject="run",
            )
        if found != "active":
            raise Rejected(
                f"Logging to the run: the run {run_id} must be in the 'active' state; "
                f"it is {found}",
                code="INVALID_PARAMETER_VALUE",
                subject="run",
            )
        connection.execute(insert_rows, rows)
        connection.execute(upsert, list(latest.values()))


def after_fork_in_child() -> None:
    """In a forked child: decide again (the parent's engines are disposed of)."""
    _fast.clear()
