"""The only module that imports MLflow.

Everything MLflow-specific lives here: the process-wide MLflow state a run sets and
restores, the calls that write to a store, and the translation of MLflow's exceptions into
:class:`~tracksdk.exceptions.TrackingError`. The rest of tracksdk speaks its own types.
Importing this module imports mlflow (1-2 s), so it is only imported when a run starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
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
from tracksdk._schema import CLIENT_RUN_ID_TAG, USER_TAG
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
            # Rejected (a TrackingError): the sender must not retry this for ever.
            raise Rejected(
                f"Experiment {name!r} is deleted (in the trash). Restore it in the MLflow UI "
                "or with `mlflow experiments restore`, or choose another name",
                "INVALID_STATE",
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


# Runs made MLflow's active run, and their experiment ids: an experiment id tracksdk set
# (for an open run in another thread or task, or an outer run) is not the user's choice.
_pushed: dict[str, str] = {}


def _user_experiment_id(experiment_id: str | None) -> str | None:
    return None if experiment_id in _pushed.values() else experiment_id


def push_active(created: CreatedRun) -> None:
    """Make the run MLflow's active run, so autolog and ``mlflow.log_*`` write to it."""
    fluent = _internals()[0]

    fluent._active_run_stack.get().append(fluent.ActiveRun(created.entity))
    fluent._active_experiment_id = created.experiment_id
    _pushed[created.run_id] = created.experiment_id


def pop_active(run_id: str) -> None:
    """Remove the run from MLflow's active-run stack without ending it."""
    fluent = _internals()[0]
    _pushed.pop(run_id, None)

    stack = fluent._active_run_stack.get()
    stack[:] = [r for r in stack if r.info.run_id != run_id]
    fluent._last_active_run_id.set(run_id)


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

    Attributes:
        registry: The model registry endpoints exist.
        logged_models: MLflow 3's logged-model endpoints exist.
        notes: Why a capability was judged from something other than its endpoint's
            answer (a 403), one line each, for ``tracksdk doctor``.
    """

    registry: bool = True
    logged_models: bool = True
    notes: tuple[str, ...] = ()


_capabilities: dict[str, Capabilities] = {}


def capabilities(conn: Connection, timeout: float = 10.0) -> Capabilities:
    """Probe the registry and logged-model endpoints; cached per tracking URI.

    A 404 means missing; any other answer means present, except a 403. A 403 says
    nothing about the route: MLflow 3's basic-auth app answers 403 "Permission denied"
    to a non-admin user on routes it does not know, and so may any auth proxy. On a 403
    the server's version (``GET /version``) decides: MLflow 3 has the logged-model
    endpoints, and every MLflow server has the registry. Without a version the
    capability counts as missing, since tracksdk's fallback for a missing one always
    works (a model saved as a run artifact, registration skipped with a warning), while
    calling a missing endpoint fails.
    """
    if not conn.is_remote:
        return Capabilities()
    if conn.tracking_uri in _capabilities:
        return _capabilities[conn.tracking_uri]
    import requests

    headers = {"Authorization": conn.credentials.header()} if conn.credentials else {}
    verify: bool | str = conn.ca_bundle or conn.verify_tls

    def status(method: str, path: str, **kwargs: Any) -> int | None:
        try:
            response = requests.request(
                method, conn.tracking_uri + path, headers=headers, timeout=timeout,
                verify=verify, **kwargs,
            )  # fmt: skip
        except requests.RequestException:
            return None  # unknown: let the real call report the failure
        return response.status_code

    version: list[str | None] = []

    def server_version() -> str | None:
        if not version:
            got = None
            try:
                response = requests.get(
                    conn.tracking_uri + "/version", headers=headers, timeout=timeout,
                    verify=verify,
                )  # fmt: skip
                text = response.text.strip()
                if response.ok and 0 < len(text) < 40 and text[0].isdigit():
                    got = text
            except requests.RequestException:
                pass
            version.append(got)
        return version[0]

    notes: list[str] = []

    def present(label: str, method: str, path: str, needs_major: int, **kwargs: Any) -> bool:
        code = status(method, path, **kwargs)
        if code != 403:
            return code != 404
        found = server_version()
        if found is None:
            notes.append(
                f"{label}: the endpoint answered 403 (permission denied, which says nothing "
                "about whether it exists) and the server tells no version: counted as "
                "missing"
            )
            return False
        major = int(found.split(".")[0]) if found.split(".")[0].isdigit() else 0
        notes.append(
            f"{label}: the endpoint answered 403 (permission denied); judged from the "
            f"server's version, MLflow {found}"
        )
        return major >= needs_major

    prefix = "/api/2.0/mlflow"
    found = Capabilities(
        registry=present(
            "model registry", "GET", prefix + "/registered-models/search", 1,
            params={"max_results": 1},
        ),
        logged_models=present(
            "logged models", "POST", prefix + "/logged-models/search", 3,
            json={"max_results": 1},
        ),
        notes=tuple(notes),
    )  # fmt: skip
    _capabilities[conn.tracking_uri] = found
    return found


# -- the journal's sender: store calls with failures classified --------------------------


class Transient(TrackingError):
    """The store could not be reached or asked to come back later: retry.

    ``unreachable`` is set when nothing answered at all (connection refused, a name that
    does not resolve, no route): unlike a timeout or a 5xx, waiting a little longer at
    the end of a run cannot help then.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


def _unreachable(exc: BaseException) -> bool:
    """Whether a network error means that nothing answered: no connection was made.

    A connection refused or a name that does not resolve, not a timeout, and not a
    connection the server accepted and then dropped.
    """
    import socket

    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.Timeout | TimeoutError):
        return False
    if isinstance(exc, ConnectionRefusedError | socket.gaierror | NewConnectionError):
        return True
    for arg in getattr(exc, "args", ())[:1]:
        reason = getattr(arg, "reason", arg)  # requests wraps urllib3's MaxRetryError
        if isinstance(reason, NewConnectionError | ConnectionRefusedError | socket.gaierror):
            return True
    return False


class AuthFailed(TrackingError):
    """The store refused the credentials (401/403): retrying cannot help."""


class Rejected(TrackingError):
    """The store refused the request itself (4xx): retrying the same request cannot help."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        import time as _time

        return max(0.0, parsedate_to_datetime(value).timestamp() - _time.time())
    except (TypeError, ValueError):
        return None


def auth_message(conn: Connection, status: int, target: str | None = None) -> str:
    """Say why the store refused a request and how to fix it. Never shows the secret.

    A 401 means the credentials are missing or wrong. A 403 with credentials means they
    were accepted but lack a permission on ``target`` (an experiment or a model, when
    known): fixing the password cannot help.
    """
    creds = conn.credentials
    where = f"{conn.display_uri} answered HTTP {status}"
    if status == 403 and creds is not None:
        what = target or "the experiment or model this request is for"
        if conn.backend == "dagshub":
            return (
                f"{where}: the DagsHub token (from {creds.source}) was accepted, but "
                f"{creds.username or 'its user'!r} may not write to this repository "
                f"({what}). Ask the repository's owner for write access, or log to a "
                "repository of yours (TRACKSDK_DAGSHUB__OWNER, TRACKSDK_DAGSHUB__REPO)"
            )
        who = repr(creds.username) if creds.username else "the bearer token's user"
        return (
            f"{where}: the credentials were accepted ({who}, from {creds.source}), but "
            f"they lack permission on {what}. Ask the server's admin to give {who} EDIT "
            "or MANAGE permission on it, or log to an experiment you may write to "
            "(TRACKSDK_EXPERIMENT, or tracked(experiment=...))"
        )
    if conn.backend == "dagshub":
        fix = (
            "fix the DagsHub token (TRACKSDK_DAGSHUB__TOKEN or DAGSHUB_USER_TOKEN; "
            f"now from {creds.source if creds else 'nowhere'}) and check that it may write "
            "to the repository"
        )
    elif creds is None and conn.backend == "mlflow-env":
        fix = (
            "the server needs credentials: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or use "
            "TRACKSDK_BACKEND=server with TRACKSDK_SERVER__USERNAME and "
            "TRACKSDK_SERVER__PASSWORD"
        )
    elif creds is None:
        fix = (
            "the server needs credentials: set TRACKSDK_SERVER__TOKEN, or "
            "TRACKSDK_SERVER__USERNAME and TRACKSDK_SERVER__PASSWORD"
        )
    elif creds.kind == "bearer":
        fix = f"the bearer token was refused: fix it (from {creds.source})"
    else:
        fix = (
            f"the user name or password was refused: fix the password of "
            f"{creds.username!r} (user name and password from {creds.source})"
        )
    return f"{where}: {fix}"


def _classify(conn: Connection, exc: BaseException, action: str) -> TrackingError:
    """Sort an exception from MLflow or the network into the sender's three cases."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (Transient, AuthFailed, Rejected)):
        return exc
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        response = getattr(item, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            if status in (401, 403):
                return AuthFailed(auth_message(conn, status))
            if status in (408, 429) or status >= 500:
                headers = getattr(response, "headers", None) or {}
                return Transient(
                    f"{action}: HTTP {status}", _retry_after(headers.get("Retry-After"))
                )
        if isinstance(item, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return Transient(f"{action}: {describe(item)}", unreachable=_unreachable(item))
    if not conn.is_remote:
        for item in chain:
            # A local store that cannot be written (a file where a folder should be, no
            # permission) will not heal by retrying; "database is locked" is no OSError.
            if isinstance(item, OSError) and not isinstance(item, ConnectionError):
                return Rejected(f"{action}: {describe(item)}", "LOCAL_STORE")
    if isinstance(exc, MlflowException):
        code = str(exc.error_code)
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return AuthFailed(auth_message(conn, 401 if code == "UNAUTHENTICATED" else 403))
        if code in (
            "INVALID_PARAMETER_VALUE",
            "RESOURCE_DOES_NOT_EXIST",
            "RESOURCE_ALREADY_EXISTS",
            "INVALID_STATE",
            "BAD_REQUEST",
        ):
            return Rejected(f"{action}: {describe(exc)}", code)
    return Transient(f"{action}: {describe(exc)}")


class Transport:
    """The sender's calls to one store.

    Over HTTP it speaks MLflow's REST API itself, with one attempt per call, a timeout,
    and the credentials as a header: the sender owns the retry policy (backoff with
    jitter, Retry-After, no retry on 401/403), which MLflow's client hides. A local store
    is written through MlflowClient. Every failure is raised as :class:`Transient`,
    :class:`AuthFailed` or :class:`Rejected`.
    """

    def __init__(self, conn: Connection, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self._experiments: dict[str, str] = {}
        self._run_experiments: dict[str, str] = {}  # run id -> experiment id, for messages
        self._session: Any = None
        if conn.is_remote:
            import requests

            session = requests.Session()
            if conn.credentials is not None:
                session.headers["Authorization"] = conn.credentials.header()
            session.verify = conn.ca_bundle or conn.verify_tls
            self._session = session

    def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            self._session.close()

    # -- REST ------------------------------------------------------------------------

    def _call(self, api: Any, message: Any) -> Any:
        import json

        import requests
        from mlflow.store.tracking.rest_store import RestStore
        from mlflow.utils.proto_json_utils import message_to_json, parse_dict

        endpoint, method = RestStore._METHOD_TO_INFO[api]
        body = json.loads(message_to_json(message))
        url = self.conn.tracking_uri.rstrip("/") + endpoint
        try:
            if method == "GET":
                response = self._session.get(url, params=body, timeout=self.timeout)
            else:
                response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Transient(describe(exc), unreachable=_unreachable(exc)) from None
        status = response.status_code
        if status == 200:
            reply = api.Response()
            parse_dict(  # type: ignore[no-untyped-call]
                js_dict=response.json() if response.text.strip() else {}, message=reply
            )
            return reply
        if status in (401, 403):
            raise AuthFailed(auth_message(self.conn, status, self._target(endpoint, body)))
        if status in (408, 429) or status >= 500:
            raise Transient(
                f"{endpoint}: HTTP {status}", _retry_after(response.headers.get("Retry-After"))
            )
        try:
            error = response.json()
        except ValueError:
            error = {}
        code = str(error.get("error_code", ""))
        text = _redact.redact(str(error.get("message", response.text[:200])))
        raise Rejected(f"{endpoint}: HTTP {status} {code}: {text}", code)

    def _target(self, endpoint: str, body: Mapping[str, Any]) -> str | None:
        """The experiment or model a request is for, named for a person, when known."""
        if "registered-models" in endpoint or "model-versions" in endpoint:
            return f"model {body['name']!r}" if body.get("name") else None
        experiment_id = body.get("experiment_id") or self._run_experiments.get(
            str(body.get("run_id") or body.get("run_uuid") or "")
        )
        ids = body.get("experiment_ids")
        if not experiment_id and isinstance(ids, list) and len(ids) == 1:
            experiment_id = ids[0]
        name = body.get("experiment_name") or (
            body.get("name") if endpoint.endswith("/experiments/create") else None
        )
        if not name and experiment_id:
            names = {v: k for k, v in self._experiments.items()}
            name = names.get(str(experiment_id))
        if name:
            return f"experiment {name!r}"
        return f"experiment id {experiment_id}" if experiment_id else None

    # -- operations ------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created when missing."""
        if name in self._experiments:
            return self._experiments[name]
        if not self.conn.is_remote:
            try:
                found = ensure_experiment(self.conn, name)
            except TrackingError as exc:
                raise _classify(self.conn, exc.__cause__ or exc, "Opening experiment") from None
        else:
            found = self._rest_experiment(name)
        self._experiments[name] = found
        return found

    def _rest_experiment(self, name: str) -> str:
        from mlflow.protos.service_pb2 import CreateExperiment, GetExperimentByName

        for _ in range(3):
            try:
                reply = self._call(GetExperimentByName, GetExperimentByName(experiment_name=name))
                if reply.experiment.lifecycle_stage == "deleted":
                    raise Rejected(
                        f"Experiment {name!r} is deleted (in the trash): restore it in the "
                        "MLflow UI or choose another name",
                        "INVALID_STATE",
                    )
                return str(reply.experiment.experiment_id)
            except Rejected as exc:
                if exc.code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:
                reply = self._call(CreateExperiment, CreateExperiment(name=name))
                return str(reply.experiment_id)
            except Rejected as exc:
                if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile: read it again
                    raise
        raise Transient(f"Experiment {name!r} could not be read or created")

    def find_run(self, experiment_id: str, client_id: str) -> CreatedRun | None:
        """The run an earlier attempt created for ``client_id``, if any."""
        query = f"tags.`{CLIENT_RUN_ID_TAG}` = '{client_id}'"
        if self.conn.is_remote:
            from mlflow.entities import Run as RunEntity
            from mlflow.entities import ViewType
            from mlflow.protos.service_pb2 import SearchRuns

            reply = self._call(
                SearchRuns,
                SearchRuns(
                    experiment_ids=[experiment_id],
                    filter=query,
                    run_view_type=ViewType.to_proto(ViewType.ALL),  # type: ignore[arg-type]
                    max_results=1,
                ),
            )
            runs = [RunEntity.from_proto(r) for r in reply.runs]
        else:
            try:
                runs = list(
                    client(self.conn).search_runs(
                        [experiment_id], query, run_view_type=3, max_results=1
                    )
                )
            except Exception as exc:
                raise _classify(self.conn, exc, "Looking for the run") from None
        if not runs:
            return None
        run = runs[0]
        self._run_experiments[run.info.run_id] = run.info.experiment_id
        return CreatedRun(run.info.run_id, run.info.experiment_id, run.info.artifact_uri, run)

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None,
        tags: Mapping[str, str],
        start_ms: int,
    ) -> CreatedRun:
        """Create a RUNNING run."""
        if self.conn.is_remote:
            from mlflow.entities import Run as RunEntity
            from mlflow.protos.service_pb2 import CreateRun

            reply = self._call(
                CreateRun,
                CreateRun(
                    experiment_id=experiment_id,
                    user_id=tags.get(USER_TAG, ""),
                    start_time=start_ms,
                    tags=[RunTag(k, v).to_proto() for k, v in tags.items()],
                    run_name=run_name or "",
                ),
            )
            run = RunEntity.from_proto(reply.run)
        else:
            try:
                run = client(self.conn).create_run(
                    experiment_id, start_time=start_ms, tags=dict(tags), run_name=run_name
                )
            except Exception as exc:
                raise _classify(self.conn, exc, "Creating the run") from None
        self._run_experiments[run.info.run_id] = run.info.experiment_id
        return CreatedRun(run.info.run_id, run.info.experiment_id, run.info.artifact_uri, run)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> None:
        """Write one batch (the caller keeps MLflow's per-request limits)."""
        metric_list = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics]
        param_list = [Param(k, v) for k, v in params.items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        if self.conn.is_remote:
            from mlflow.protos.service_pb2 import LogBatch

            self._call(
                LogBatch,
                LogBatch(
                    run_id=run_id,
                    metrics=[m.to_proto() for m in metric_list],
                    params=[p.to_proto() for p in param_list],
                    tags=[t.to_proto() for t in tag_list],
                ),
            )
            return
        try:
            client(self.conn).log_batch(
                run_id, metrics=metric_list, params=param_list, tags=tag_list, synchronous=True
            )
        except Exception as exc:
            raise _classify(self.conn, exc, "Logging to the run") from None

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Set the run's final status and end time."""
        if self.conn.is_remote:
            from mlflow.protos.service_pb2 import UpdateRun

            self._call(
                UpdateRun,
                UpdateRun(
                    run_id=run_id,
                    run_uuid=run_id,
                    status=RunStatus.from_string(status),  # type: ignore[arg-type]
                    end_time=end_ms,
                ),
            )
            return
        try:
            client(self.conn).set_terminated(run_id, status, end_time=end_ms)
        except Exception as exc:
            raise _classify(self.conn, exc, "Ending the run") from None

    def upload(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Upload a file, or a folder's contents, into the run's artifacts."""
        try:
            if Path(path).is_dir():
                client(self.conn).log_artifacts(run_id, path, artifact_path)
            else:
                client(self.conn).log_artifact(run_id, path, artifact_path)
        except Exception as exc:
            raise _classify(self.conn, exc, f"Uploading {Path(path).name}") from None

    def log_input(self, run_id: str, dataset: Mapping[str, Any], context: str | None) -> None:
        """Record a dataset input described by :func:`describe_dataset`."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        entity = Dataset(**{k: dataset.get(k) for k in _DATASET_FIELDS})  # type: ignore[arg-type]
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)] if context else []
        item = DatasetInput(entity, tags)
        if self.conn.is_remote:
            from mlflow.protos.service_pb2 import LogInputs

            self._call(LogInputs, LogInputs(run_id=run_id, datasets=[item.to_proto()]))
            return
        try:
            client(self.conn).log_inputs(run_id, [item])
        except Exception as exc:
            raise _classify(self.conn, exc, "Logging a dataset input") from None


_DATASET_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")


def describe_dataset(data: Any, *, name: str | None, targets: str | None) -> dict[str, Any]:
    """What MLflow records of a DataFrame or array: name, digest, source, schema, profile.

    Computed on the training thread, when the data is what the user logged.
    """
    import warnings

    with errors("Describing a dataset input"), warnings.catch_warnings():
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
        entity = dataset._to_mlflow_entity()
    return {k: getattr(entity, k) for k in _DATASET_FIELDS}


def after_fork_in_child() -> None:
    """In a forked child: no database connection or HTTP session of the parent's.

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
