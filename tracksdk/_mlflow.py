"""The only module that imports MLflow.

Everything MLflow-specific lives here: the process-wide MLflow state a run sets and
restores, the calls that write to a store, and the translation of MLflow's exceptions into
:class:`~tracksdk.exceptions.TrackingError`. The rest of tracksdk speaks its own types.
Importing this module imports mlflow (1-2 s), so it is only imported when a run starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# MLflow 3.17 ships usage telemetry. tracksdk turns it off unless the user chose
# otherwise: tracking code should not phone home, and this machine has no network.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from tracksdk import _auth, _redact
from tracksdk.exceptions import TrackingError

if TYPE_CHECKING:
    from tracksdk.backends import Connection

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


def describe(exc: BaseException) -> str:
    """A short, secret-free description of an exception from MLflow or the network."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 300:
        text = text[:300] + "…"
    name = type(exc).__name__
    return _redact.strip_userinfo(_redact.redact(f"{name}: {text}" if text else name))


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


def _internals() -> tuple[Any, Any, Any]:
    """MLflow's private modules that hold its global state (typed Any: not public API)."""
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return fluent, registry_utils, tracking_utils


def activate(conn: Connection, *, http_timeout: float, http_retries: int) -> SavedState:
    """Point MLflow's global state at ``conn``; return what to restore afterwards."""
    fluent, registry_utils, tracking_utils = _internals()

    saved = SavedState(
        tracking_uri=tracking_utils._tracking_uri,
        registry_uri=registry_utils._registry_uri,
        experiment_id=fluent._active_experiment_id,
        env={key: os.environ.get(key) for key in _ENV_KEYS},
    )
    if conn.credentials is not None:
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
    """Undo :func:`activate`."""
    fluent, registry_utils, tracking_utils = _internals()

    if saved.auth_prefix is not None:
        _auth.unregister(saved.auth_prefix)
    if saved.tracking_uri is None:
        tracking_utils._tracking_uri = None
    else:
        mlflow.set_tracking_uri(saved.tracking_uri)
    registry_utils._registry_uri = saved.registry_uri
    fluent._active_experiment_id = saved.experiment_id
    for key, value in saved.env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_clients: dict[tuple[str, str], MlflowClient] = {}
_clients_lock = threading.Lock()


def client(conn: Connection) -> MlflowClient:
    """One MlflowClient per store, reused across runs."""
    key = (conn.tracking_uri, conn.registry_uri)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = MlflowClient(tracking_uri=conn.tracking_uri, registry_uri=key[1])
        return _clients[key]


_experiments: dict[tuple[str, str], str] = {}


def ensure_experiment(conn: Connection, name: str) -> str:
    """Return the id of experiment ``name``, creating it if needed."""
    key = (conn.tracking_uri, name)
    if key in _experiments:
        return _experiments[key]
    with errors(f"Opening experiment {name!r} on {conn.tracking_uri}"):
        if conn.artifact_root is not None:
            experiment_id = _ensure_local_experiment(conn, name, conn.artifact_root)
        else:
            experiment_id = _get_or_create(client(conn), name)
    _experiments[key] = experiment_id
    return experiment_id


def _get_or_create(store: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = store.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"Experiment {name!r} is deleted (in the trash). Restore it in the MLflow UI "
                "or with `mlflow experiments restore`, or choose another name"
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
    """Create the sqlite store and the experiment under a file lock.

    Several processes creating a new sqlite store at once break its schema migration
    (FACTS.md); the lock makes the first creation serial. The store is built with the
    project's artifact root so new experiments keep artifacts in ``<root>/mlruns``.
    """
    from filelock import FileLock

    tracking_utils = _internals()[2]

    root = Path(artifact_root).parent
    lock_dir = root / ".tracksdk"
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    import logging

    # "Creating initial MLflow database tables..." is noise on a store tracksdk manages.
    db_logger = logging.getLogger("mlflow.store.db.utils")
    level = db_logger.level
    db_logger.setLevel(logging.WARNING)
    try:
        with FileLock(str(lock_dir / "store.lock"), timeout=120):
            store = tracking_utils._get_store(conn.tracking_uri, artifact_root)
            return _get_or_create(store, name)
    finally:
        db_logger.setLevel(level)


@dataclass(frozen=True)
class CreatedRun:
    """What tracksdk keeps of a run MLflow created."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    entity: Any = field(repr=False)


def create_run(
    conn: Connection, experiment_id: str, run_name: str | None, tags: Mapping[str, str]
) -> CreatedRun:
    """Create a RUNNING run with ``tags``."""
    with errors(f"Creating a run on {conn.tracking_uri}"):
        run = client(conn).create_run(experiment_id, tags=dict(tags), run_name=run_name)
    return CreatedRun(run.info.run_id, run.info.experiment_id, run.info.artifact_uri, run)


def push_active(created: CreatedRun) -> None:
    """Make the run MLflow's active run, so autolog and ``mlflow.log_*`` write to it."""
    fluent = _internals()[0]

    fluent._active_run_stack.get().append(fluent.ActiveRun(created.entity))
    fluent._active_experiment_id = created.experiment_id


def pop_active(run_id: str) -> None:
    """Remove the run from MLflow's active-run stack without ending it."""
    fluent = _internals()[0]

    stack = fluent._active_run_stack.get()
    stack[:] = [r for r in stack if r.info.run_id != run_id]
    fluent._last_active_run_id.set(run_id)


def log_batch(
    conn: Connection,
    run_id: str,
    metrics: Sequence[tuple[str, float, int, int]] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Write metrics ``(key, value, timestamp_ms, step)``, params and tags in one batch."""
    with errors("Logging to the run"):
        client(conn).log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step) for k, v, ts, step in metrics],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
            synchronous=True,
        )


def log_artifact(conn: Connection, run_id: str, path: str, artifact_path: str | None) -> None:
    """Upload a file or a folder's contents."""
    with errors(f"Uploading {path}"):
        if Path(path).is_dir():
            client(conn).log_artifacts(run_id, path, artifact_path)
        else:
            client(conn).log_artifact(run_id, path, artifact_path)


def log_text(conn: Connection, run_id: str, text: str, artifact_file: str) -> None:
    """Write ``text`` as an artifact file."""
    with errors(f"Writing artifact {artifact_file}"):
        client(conn).log_text(run_id, text, artifact_file)


def log_texts(conn: Connection, run_id: str, files: Mapping[str, str]) -> None:
    """Write several text artifacts with one upload call."""
    import tempfile

    if not files:
        return
    with errors("Writing artifacts"), tempfile.TemporaryDirectory(prefix="tracksdk-") as tmp:
        for artifact_file, text in files.items():
            path = Path(tmp, artifact_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        client(conn).log_artifacts(run_id, tmp)


def log_dict(conn: Connection, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
    """Write ``data`` as a JSON or YAML artifact (by the file's extension)."""
    with errors(f"Writing artifact {artifact_file}"):
        client(conn).log_dict(run_id, dict(data), artifact_file)


def log_figure(conn: Connection, run_id: str, figure: Any, artifact_file: str) -> None:
    """Write a matplotlib or plotly figure as an image artifact."""
    with errors(f"Writing figure {artifact_file}"):
        client(conn).log_figure(run_id, figure, artifact_file)


def log_input(
    conn: Connection,
    run_id: str,
    data: Any,
    *,
    context: str | None,
    name: str | None,
    targets: str | None,
) -> None:
    """Record a pandas DataFrame or numpy array as a dataset input of the run."""
    import warnings

    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with errors("Logging a dataset input"), warnings.catch_warnings():
        # MLflow's hint about integer columns concerns model signatures, not a dataset
        # record; it would otherwise print once per logged input.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        if hasattr(data, "columns") and hasattr(data, "dtypes"):
            from mlflow.data.pandas_dataset import from_pandas

            dataset: Any = from_pandas(data, name=name, targets=targets)
        else:
            import numpy as np
            from mlflow.data.numpy_dataset import from_numpy

            dataset = from_numpy(np.asarray(data), name=name)
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)] if context else []
        client(conn).log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(), tags)])


def set_terminated(conn: Connection, run_id: str, status: str) -> None:
    """End the run with ``status`` (FINISHED, FAILED or KILLED)."""
    with errors("Ending the run"):
        client(conn).set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))


def search_runs(conn: Connection, experiment_name: str, max_results: int) -> list[Any]:
    """The experiment's most recent runs, newest first."""
    with errors(f"Listing runs of {experiment_name!r}"):
        experiment = client(conn).get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        return list(
            client(conn).search_runs(
                [experiment.experiment_id],
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
            )
        )


def model_versions(conn: Connection, name: str) -> tuple[list[Any], dict[str, list[str]]]:
    """Every version of a registered model, newest first, and each version's aliases."""
    from mlflow.exceptions import MlflowException

    with errors(f"Listing versions of model {name!r}"):
        versions = client(conn).search_model_versions(f"name='{name}'")
        aliases: dict[str, list[str]] = {}
        if versions:
            try:
                registered = client(conn).get_registered_model(name)
            except MlflowException:
                registered = None
            # search_model_versions leaves aliases out; the registered model has them.
            for alias, version in (getattr(registered, "aliases", None) or {}).items():
                aliases.setdefault(str(version), []).append(alias)
    return sorted(versions, key=lambda v: int(v.version), reverse=True), aliases


def download_model(conn: Connection, model_uri: str, dst: str) -> str:
    """Download a model (``runs:/``, ``models:/`` or any artifact URI) into ``dst``."""
    from mlflow.artifacts import download_artifacts

    with errors(f"Downloading model {model_uri}"):
        return str(
            download_artifacts(artifact_uri=model_uri, dst_path=dst, tracking_uri=conn.tracking_uri)
        )


@dataclass(frozen=True)
class Capabilities:
    """What a tracking server supports, probed once per connection.

    DagsHub's hosted MLflow has been reported at MLflow 2.x, without MLflow 3's
    logged-model endpoints and sometimes without the model registry.
    """

    registry: bool = True
    logged_models: bool = True


_capabilities: dict[str, Capabilities] = {}


def capabilities(conn: Connection, timeout: float = 10.0) -> Capabilities:
    """Probe the registry and logged-model endpoints (404 means missing); cached."""
    if not conn.is_remote:
        return Capabilities()
    if conn.tracking_uri in _capabilities:
        return _capabilities[conn.tracking_uri]
    import requests

    headers = {"Authorization": conn.credentials.header()} if conn.credentials else {}
    verify: bool | str = conn.ca_bundle or conn.verify_tls
    base = conn.tracking_uri + "/api/2.0/mlflow"

    def answers(method: str, path: str, **kwargs: Any) -> bool:
        try:
            response = requests.request(
                method, base + path, headers=headers, timeout=timeout, verify=verify, **kwargs
            )
        except requests.RequestException:
            return True  # unknown: let the real call report the failure
        return response.status_code != 404

    found = Capabilities(
        registry=answers("GET", "/registered-models/search", params={"max_results": 1}),
        logged_models=answers("POST", "/logged-models/search", json={"max_results": 1}),
    )
    _capabilities[conn.tracking_uri] = found
    return found
