"""The seam between tracksdk and a tracking store, like httpx's transports.

Everything that writes to or reads from a store (the journal's sender, ``tracksdk sync``,
the model registry, ``tracksdk doctor``) talks to a :class:`Store`. Three implement it:

- :class:`tracksdk.stores.rest.RestStore`: MLflow's REST API spoken directly, one attempt
  per call (the sender owns the retry policy), no MLflow import;
- :class:`tracksdk.stores.local.LocalStore`: a local database through MLflow, with a fast
  path for metrics on sqlite;
- :class:`tracksdk.stores.memory.MemoryStore`: a complete store in this process, for
  tests of tracked code.

Every failure is a :class:`tracksdk.stores.errors.StoreError` of one of five kinds
(:mod:`tracksdk.stores.errors`). :func:`open_store` picks the implementation for a
:class:`~tracksdk.backends.Connection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracksdk.stores.base import (
    Capabilities,
    Claim,
    CreatedRun,
    MetricRow,
    ModelVersion,
    Registry,
    RunState,
    Store,
)

if TYPE_CHECKING:
    from tracksdk.backends import Connection

__all__ = [
    "Capabilities",
    "Claim",
    "CreatedRun",
    "MetricRow",
    "ModelVersion",
    "Registry",
    "RunState",
    "Store",
    "capabilities",
    "open_registry",
    "open_store",
    "uses_mlflow",
]


def uses_mlflow(conn: Connection) -> bool:
    """Whether runs on ``conn`` set MLflow's global state (all stores but memory)."""
    return not conn.tracking_uri.startswith("memory://")


def open_store(conn: Connection, timeout: float = 30.0) -> Store:
    """The store implementation for ``conn``: memory, REST over HTTP, else local.

    Args:
        conn: The resolved connection.
        timeout: Seconds each HTTP request may take.
    """
    if not uses_mlflow(conn):
        from tracksdk.stores.memory import MemoryStore

        return MemoryStore.named(conn)
    if conn.is_remote:
        from tracksdk.stores.rest import RestStore

        return RestStore(conn, timeout)
    from tracksdk.stores.local import LocalStore

    return LocalStore(conn)


def capabilities(conn: Connection, timeout: float = 10.0) -> Capabilities:
    """What the store behind ``conn`` supports; a server is probed once per URI."""
    if not uses_mlflow(conn):
        return open_store(conn).capabilities()
    if not conn.is_remote:
        return Capabilities()
    from tracksdk.stores._probe import probe

    return probe(conn, timeout)


def open_registry(conn: Connection, timeout: float = 30.0) -> Registry:
    """The model registry behind ``conn``: the REST or the local store.

    Raises:
        TrackingError: The memory store, which has no registry.
    """
    store = open_store(conn, timeout)
    if not isinstance(store, Registry):
        from tracksdk.exceptions import TrackingError

        raise TrackingError(f"{conn.display_uri} has no model registry")
    return store
