"""MLflow's client for the stores: one per store, its exceptions classified, uploads.

MLflow's artifact repositories know every artifact scheme (``mlflow-artifacts:``, ``s3:``,
a local folder), so both stores upload through them.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk.stores.errors import (
    Kind,
    Rejected,
    StoreError,
    Transient,
    describe,
    from_answer,
    kind_of,
    unreachable,
)

# MLflow 3.17 ships usage telemetry; tracksdk turns it off unless the user chose otherwise
# (set before any store imports MLflow, whichever imports it first).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tracksdk.backends import Connection

_clients: dict[tuple[str, str], MlflowClient] = {}
_clients_lock = threading.Lock()


def mlflow_client(conn: Connection) -> MlflowClient:
    """One MlflowClient per store, reused across runs."""
    from mlflow import MlflowClient

    key = (conn.tracking_uri, conn.registry_uri)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = MlflowClient(tracking_uri=conn.tracking_uri, registry_uri=key[1])
        return _clients[key]


def classify(conn: Connection, exc: BaseException, action: str, subject: str = "") -> StoreError:
    """Sort an exception from MLflow's client or the network into a failure kind.

    ``subject`` is what a refusal concerns (``"run"`` for calls on an existing run).
    """
    import requests
    from mlflow.exceptions import MlflowException
    from urllib3.exceptions import MaxRetryError

    if isinstance(exc, StoreError):
        return exc
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        response = getattr(item, "response", None)
        status = getattr(response, "status_code", None)
        # An answer that means the same whatever its body (401, 403, 408, 429, 5xx).
        if isinstance(status, int) and kind_of(status) in (
            Kind.AUTH,
            Kind.PERMISSION,
            Kind.TRANSIENT,
        ):
            headers = getattr(response, "headers", None) or {}
            return from_answer(conn, action, status, retry_header=headers.get("Retry-After"))
        if isinstance(item, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return Transient(
                f"{action}: {describe(item)}", unreachable=unreachable(item), network=True
            )
        if isinstance(item, (requests.exceptions.RetryError, MaxRetryError)):
            # MLflow's own retries ran out on 429/5xx answers: an outage, not a refusal.
            return Transient(f"{action}: {describe(item)}", network=True)
    if not conn.is_remote:
        for item in chain:
            # A local store that cannot be written (a file where a folder should be, no
            # permission) will not heal by retrying; "database is locked" is no OSError.
            if isinstance(item, OSError) and not isinstance(item, ConnectionError):
                return Rejected(f"{action}: {describe(item)}", code="LOCAL_STORE")
    if isinstance(exc, MlflowException):
        code = str(exc.error_code)
        return from_answer(conn, action, None, code, describe(exc), subject=subject)
    return Transient(f"{action}: {describe(exc)}")


@contextlib.contextmanager
def classified(conn: Connection, action: str, subject: str = "") -> Iterator[None]:
    """Raise any exception of the block as the :class:`StoreError` it means."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise classify(conn, exc, action, subject) from None


def upload_through_mlflow(
    conn: Connection, run_id: str, path: str, artifact_path: str | None
) -> None:
    """Upload a file, or a folder's contents, with MLflow's artifact repository."""
    with classified(conn, f"Uploading {Path(path).name}", "run"):
        if Path(path).is_dir():
            mlflow_client(conn).log_artifacts(run_id, path, artifact_path)
        else:
            mlflow_client(conn).log_artifact(run_id, path, artifact_path)


# MLflow's store names a run given no name with the random module's generator, here from
# the sender's thread: the sequence of a user who seeded it (random.seed(0)) would shift
# at unforeseeable times. The same kind of name (predicate-noun-number), from our own.
_names = random.Random()


def run_name_for_new() -> str:
    """A name like those MLflow gives (``bedecked-penguin-221``), leaving ``random`` alone."""
    from mlflow.utils import name_utils

    try:
        predicate = _names.choice(name_utils._GENERATOR_PREDICATES)
        noun = _names.choice(name_utils._GENERATOR_NOUNS)
    except (AttributeError, IndexError):  # MLflow renamed its word lists
        predicate, noun = "run", "part"
    return f"{predicate}-{noun}-{_names.randint(0, 1000)}".lower()[:20]
