"""MLflow's process-wide state: the one module besides the stores that imports MLflow.

What a run sets and restores (tracking URI, credentials hand-over, the active run that
autolog and ``mlflow.log_*`` write to, the active experiment), and MLflow's helpers for
reading runs and models and describing datasets. Writes to a store go through
:mod:`tracksdk.stores`. Importing this module imports mlflow (1-2 s), so it is only
imported when a run starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# MLflow 3.17 ships usage telemetry. tracksdk turns it off unless the user chose
# otherwise: tracking code should not phone home, and this machine has no network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow.tracking import MlflowClient

from tracksdk import _auth, _redact
from tracksdk.exceptions import TrackingError
from tracksdk.stores import errors as _errors
from tracksdk.stores._client import mlflow_client
from tracksdk.stores.base import DATASET_FIELDS

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.stores import CreatedRun

MLFLOW_VERSION: str = mlflow.__version__

# Environment variables a run may change; all are restored when the outermost run ends.
_ENV_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
)


describe = _errors.describe
client = mlflow_client


@contextlib.contextmanager
def errors(action: str) -> Iterator[None]:
    """Turn any exception from MLflow into a TrackingError that says what failed."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"{action} failed: {describe(exc)}") from None


@dataclass
class SavedState:
    """MLflow's process-wide state before a run changed it."""

    tracking_uri: str | None
    registry_uri: str | None
    experiment_id: str | None
    env: dict[str, str | None] = field(default_factory=dict)
    auth_prefix: str | None = None
    # What mlflow.get_tracking_uri() answered before the run: where a user's
    # mlflow.set_experiment() looked its experiment up.
    previous_uri: str | None = None
    # The store of the run: left as MLflow's tracking URI afterwards when the user had
    # set none of their own (docs/quickstart.md, "Plain MLflow inside a tracked run").
    run_uri: str | None = None
    run_registry_uri: str | None = None


# Process-wide: the (tracking URI, registry URI, auth prefix) a finished run left as
# MLflow's own, so that mlflow.last_active_run() and MlflowClient() read that run. A
# later run treats it as "not set by the user". Forgotten by tracksdk.reset().
_left: tuple[str, str | None, str | None] | None = None
# Tracking URIs set by runs still open (runs in concurrent threads or tasks activate and
# restore out of order): never mistaken for the user's own.
_activated: dict[str, int] = {}


def _internals() -> tuple[Any, Any, Any]:
    """MLflow's private modules that hold its global state (typed Any: not public API)."""
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return fluent, registry_utils, tracking_utils


def activate(conn: Connection, *, http_timeout: float, http_retries: int) -> SavedState:
    """Point MLflow's global state at ``conn``; return what to restore afterwards."""
    fluent, registry_utils, tracking_utils = _internals()

    user_uri = tracking_utils._tracking_uri
    user_registry = registry_utils._registry_uri
    left = _left
    if (left is not None and user_uri == left[0]) or user_uri in _activated:
        user_uri = None  # what an earlier or concurrent run set is not the user's choice
        user_registry = None
    saved = SavedState(
        tracking_uri=user_uri,
        registry_uri=user_registry,
        experiment_id=_user_experiment_id(fluent._active_experiment_id),
        env={key: os.environ.get(key) for key in _ENV_KEYS},
        previous_uri=mlflow.get_tracking_uri(),  # a string: creates no store
        run_uri=conn.tracking_uri,
        run_registry_uri=conn.registry_uri,
    )
    if saved.env.get("MLFLOW_TRACKING_URI") in _activated:
        saved.env["MLFLOW_TRACKING_URI"] = None  # exported by a concurrent run's activation
    _activated[conn.tracking_uri] = _activated.get(conn.tracking_uri, 0) + 1
    if conn.credentials is not None and not conn.credentials.in_environment:
        _auth.register(conn.tracking_uri, conn.credentials)
        saved.auth_prefix = conn.tracking_uri
        os.environ["MLFLOW_TRACKING_AUTH"] = "tracksdk"
        # MLflow prefers these over an auth provider; the connection's credentials win.
        for key in (
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
        ):
            os.environ.pop(key, None)
    if not conn.verify_tls:
        os.environ["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
    if conn.ca_bundle:
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = conn.ca_bundle
    if conn.is_remote:
        # MLflow's defaults retry for minutes (7 retries, 120 s timeout); a user's own
        # MLFLOW_HTTP_* values are kept.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(http_timeout))))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    mlflow.set_tracking_uri(conn.tracking_uri)
    mlflow.set_registry_uri(conn.registry_uri)
    return saved


def restore(saved: SavedState) -> None:
    """Undo :func:`activate`, except that MLflow keeps pointing at the run's store.

    When the user had set no tracking URI of their own (neither
    ``mlflow.set_tracking_uri`` nor an ``MLFLOW_TRACKING_URI`` naming another store),
    MLflow's in-process tracking and registry URI stay on the run's store, so that
    ``mlflow.last_active_run()`` and ``MlflowClient()`` read the run instead of creating
    ``./mlflow.db``. Environment variables are always restored, so child processes and
    tracksdk's own backend choice see the user's environment.
    """
    global _left
    fluent, registry_utils, tracking_utils = _internals()

    if saved.run_uri is not None:
        count = _activated.pop(saved.run_uri, 0) - 1
        if count > 0:
            _activated[saved.run_uri] = count
    env_uri = saved.env.get("MLFLOW_TRACKING_URI")
    leave = (
        saved.tracking_uri is None
        and saved.run_uri is not None
        and env_uri in (None, saved.run_uri)
        and saved.env.get("MLFLOW_TRACKING_AUTH") in (None, "tracksdk")
    )
    if leave:
        assert saved.run_uri is not None
        # Module globals only: mlflow.set_tracking_uri would also export
        # MLFLOW_TRACKING_URI, which tracksdk itself reads to choose a backend.
        tracking_utils._tracking_uri = saved.run_uri
        registry_utils._registry_uri = saved.run_registry_uri
        _left = (saved.run_uri, saved.run_registry_uri, saved.auth_prefix)
    else:
        if saved.auth_prefix is not None:
            _auth.unregister(saved.auth_prefix)
        if saved.tracking_uri is None:
            tracking_utils._tracking_uri = None
        else:
            mlflow.set_tracking_uri(saved.tracking_uri)
        registry_utils._registry_uri = saved.registry_uri
        _left = None
    for key, value in saved.env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if leave and saved.auth_prefix is not None:
        # MLflow picks the credential provider by this name (not a secret); the
        # credentials themselves stay in this process.
        os.environ["MLFLOW_TRACKING_AUTH"] = "tracksdk"
    fluent._active_experiment_id = saved.experiment_id


def forget_left() -> None:
    """Point MLflow back at its default store if a finished run left it on its own."""
    global _left
    left = _left
    if left is None:
        return
    _left = None
    _fluent, registry_utils, tracking_utils = _internals()
    if tracking_utils._tracking_uri == left[0]:
        tracking_utils._tracking_uri = None
    if registry_utils._registry_uri == left[1]:
        registry_utils._registry_uri = None
    if left[2] is not None:
        _auth.unregister(left[2])
        if os.environ.get("MLFLOW_TRACKING_AUTH") == "tracksdk":
            os.environ.pop("MLFLOW_TRACKING_AUTH", None)


_warned_experiment = False


def active_experiment(saved: SavedState | None, conn: Connection | None) -> str | None:
    """The name of MLflow's active experiment, set before the run by the user.

    MLflow's own order: ``mlflow.set_experiment`` (an id, looked up in the store it was
    set against), ``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_EXPERIMENT_ID``. Only a local
    store, or the run's own store, is read: nothing is created, and no other server is
    contacted. When the name cannot be read, one warning per process says so.
    """
    global _warned_experiment
    fluent = _internals()[0]
    if saved is not None:
        experiment_id = saved.experiment_id
        env_id = saved.env.get("MLFLOW_EXPERIMENT_ID")
        previous_uri = saved.previous_uri
    else:  # offline: nothing was activated
        experiment_id = fluent._active_experiment_id
        env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
        previous_uri = mlflow.get_tracking_uri()
    if experiment_id is None:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name:
            return name
        experiment_id = env_id
    if not experiment_id or previous_uri is None:
        return None
    problem = ""
    try:
        if conn is not None and previous_uri == conn.tracking_uri:
            store: Any = client(conn)
        elif previous_uri.startswith("sqlite:///"):
            if not Path(previous_uri[len("sqlite:///") :]).is_file():
                raise FileNotFoundError(f"{previous_uri} does not exist")
            store = MlflowClient(tracking_uri=previous_uri)
        else:
            raise ValueError(
                f"tracksdk reads only the run's store or a local one, not {previous_uri}"
            )
        experiment = store.get_experiment(str(experiment_id))
        if experiment.lifecycle_stage != "deleted":
            return str(experiment.name)
        problem = f"experiment {experiment.name!r} is deleted"
    except Exception as exc:
        problem = describe(exc)
    if not _warned_experiment:
        _warned_experiment = True
        from tracksdk import _warn

        _warn.warn(
            f"tracksdk: MLflow's active experiment (id {experiment_id}, from "
            f"mlflow.set_experiment or MLFLOW_EXPERIMENT_ID) could not be read from "
            f"{_redact.strip_userinfo(previous_uri)} ({problem}), so the run goes to "
            "tracksdk's default experiment (warned once). Name it with "
            "tracked(experiment=...) or TRACKSDK_EXPERIMENT."
        )
    return None


# Runs made MLflow's active run, and their experiment ids: an experiment id tracksdk set
# (for an open run in another thread or task, or an outer run) is not the user's choice.
_pushed: dict[str, str] = {}


def _user_experiment_id(experiment_id: str | None) -> str | None:
    return None if experiment_id in _pushed.values() else experiment_id


def push_active(created: CreatedRun) -> None:
    """Make the run MLflow's active run, so autolog and ``mlflow.log_*`` write to it."""
    fluent = _internals()[0]

    entity = created.entity
    if isinstance(entity, dict):  # the REST store's JSON answer
        from mlflow.entities import Run
        from mlflow.protos.service_pb2 import Run as RunProto
        from mlflow.utils.proto_json_utils import parse_dict

        proto = RunProto()
        parse_dict(js_dict=entity, message=proto)  # type: ignore[no-untyped-call]
        entity = Run.from_proto(proto)
    fluent._active_run_stack.get().append(fluent.ActiveRun(entity))
    fluent._active_experiment_id = created.experiment_id
    _pushed[created.run_id] = created.experiment_id


def pop_active(run_id: str) -> None:
    """Remove the run from MLflow's active-run stack without ending it."""
    fluent = _internals()[0]
    _pushed.pop(run_id, None)

    variable = fluent._active_run_stack
    stacks = [variable.get()]
    # The stack is per thread, and the thread that ends a run may not be the one that
    # pushed it (the SIGTERM watch ends runs from its own thread): a run left on the
    # main thread's stack would be ended FINISHED by MLflow's atexit hook.
    every = getattr(variable, "get_all_thread_values", None)
    if every is not None:
        stacks.extend(every().values())
    for stack in stacks:
        stack[:] = [r for r in stack if r.info.run_id != run_id]
    fluent._last_active_run_id.set(run_id)


def download_model(conn: Connection, model_uri: str, dst: str) -> str:
    """Download a model (``runs:/``, ``models:/`` or any artifact URI) into ``dst``."""
    from mlflow.artifacts import download_artifacts

    with errors(f"Downloading model {model_uri}"):
        return str(
            download_artifacts(artifact_uri=model_uri, dst_path=dst, tracking_uri=conn.tracking_uri)
        )


def describe_dataset(data: Any, *, name: str | None, targets: str | None) -> dict[str, Any]:
    """What MLflow records of a DataFrame or array: name, digest, source, schema, profile.

    Computed on the training thread, when the data is what the user logged.
    """
    import warnings

    with errors("Describing a dataset input"), warnings.catch_warnings():
        # MLflow's hint about integer columns concerns model signatures, not a dataset
        # record; it would otherwise print once per logged input.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # pandas' deprecations of MLflow's own digest code: nothing the user can change.
        warnings.filterwarnings("ignore", module=r"mlflow\.data\.digest_utils")
        if hasattr(data, "columns") and hasattr(data, "dtypes"):
            from mlflow.data.pandas_dataset import from_pandas

            dataset: Any = from_pandas(data, name=name, targets=targets)
        else:
            import numpy as np
            from mlflow.data.numpy_dataset import from_numpy

            dataset = from_numpy(np.asarray(data), name=name)
        entity = dataset._to_mlflow_entity()
    return {k: getattr(entity, k) for k in DATASET_FIELDS}
