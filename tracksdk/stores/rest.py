"""MLflow's REST API, spoken directly: one attempt per call, failures typed.

MLflow's own client retries inside each call and hides why a call failed; the journal's
sender needs one attempt with a timeout and a typed answer, so that it owns the retry
policy (backoff with jitter, Retry-After, no retry on 401/403). The requests are MLflow's
documented JSON endpoints (``/api/2.0/mlflow/...``), so this module imports no MLflow;
only artifact uploads go through MLflow's artifact repositories, which know every
artifact scheme (``mlflow-artifacts:``, ``s3:``, ...).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tracksdk import _redact
from tracksdk._schema import CLIENT_RUN_ID_TAG, USER_TAG, part_tag
from tracksdk.stores import _rest_resume
from tracksdk.stores._http import session_for
from tracksdk.stores.base import (
    DATASET_FIELDS,
    Capabilities,
    Claim,
    CreatedRun,
    ModelVersion,
    RunState,
)
from tracksdk.stores.errors import NotFound, Rejected, Transient, describe, from_answer, unreachable

if TYPE_CHECKING:
    from tracksdk.backends import Connection

API = "/api/2.0/mlflow"
REGISTRY_ATTEMPTS = 3


def _subject(endpoint: str) -> str:
    """What a request to ``endpoint`` concerns, for a not-found or refused answer."""
    if "registered-models" in endpoint or "model-versions" in endpoint:
        return "model"
    if "/experiments/" in endpoint:
        return "experiment"
    return "run"


def _double(value: float) -> float | str:
    """A metric value as MLflow's JSON carries it: NaN and infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class RestStore:
    """A tracking server reached over HTTP (see the module docstring).

    Args:
        conn: The connection (URI, credentials, TLS).
        timeout: Seconds each request may take.
    """

    def __init__(self, conn: Connection, timeout: float = 30.0) -> None:
        self.conn = conn
        self.timeout = timeout
        self._session = session_for(conn)
        self._experiments: dict[str, str] = {}
        self._run_experiments: dict[str, str] = {}  # run id -> experiment id, for messages

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    # -- one request -----------------------------------------------------------------

    def call(self, method: str, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One request to ``endpoint`` (below ``/api/2.0/mlflow``); its JSON answer.

        Tracking calls are one attempt: the journal's sender owns their retries. Registry
        calls are made from the training thread, outside the journal, so a transient
        failure is tried again up to :data:`REGISTRY_ATTEMPTS` times in all, as MLflow's
        own client does, honouring Retry-After (at most 5 s).

        Raises:
            StoreError: Of the kind :func:`~tracksdk.stores.errors.kind_of` gives.
        """
        retries = REGISTRY_ATTEMPTS - 1 if _subject(endpoint) == "model" else 0
        for attempt in range(retries):
            try:
                return self._call_once(method, endpoint, body)
            except Transient as exc:
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
                time.sleep(min(wait, 5.0))
        return self._call_once(method, endpoint, body)

    def _call_once(self, method: str, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        import requests

        where = API + endpoint
        # The registry may live elsewhere than the runs (MLflow's registry URI).
        base = self.conn.registry_uri if _subject(endpoint) == "model" else self.conn.tracking_uri
        url = base.rstrip("/") + where
        try:
            if method == "GET":
                response = self._session.get(url, params=dict(body), timeout=self.timeout)
            else:
                response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Transient(describe(exc), unreachable=unreachable(exc), network=True) from None
        status = response.status_code
        if status == 200:
            try:
                answer = response.json() if response.text.strip() else {}
            except ValueError:
                # Not MLflow answering (a login page of a proxy, say): sending the same
                # request again cannot help.
                raise Rejected(
                    f"{where}: HTTP 200 with a body that is not JSON", status=200
                ) from None
            return answer if isinstance(answer, dict) else {}
        try:
            error = response.json()
        except ValueError:
            error = {}
        error = error if isinstance(error, dict) else {}
        code = str(error.get("error_code", ""))
        text = _redact.redact(str(error.get("message", response.text[:200])))
        raise from_answer(
            self.conn,
            where,
            status,
            code,
            f"HTTP {status} {code}: {text}",
            retry_header=response.headers.get("Retry-After"),
            target=self._target(endpoint, body),
            subject=_subject(endpoint),
        )

    def _target(self, endpoint: str, body: Mapping[str, Any]) -> str | None:
        """The experiment or model a request is for, named for a person, when known."""
        if _subject(endpoint) == "model":
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

    # -- the store's calls -----------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created when missing; refused when it is deleted."""
        if name in self._experiments:
            return self._experiments[name]
        for _ in range(3):
            try:
                answer = self.call("GET", "/experiments/get-by-name", {"experiment_name": name})
                experiment = answer.get("experiment") or {}
                if experiment.get("lifecycle_stage") == "deleted":
                    raise Rejected(
                        f"Experiment {name!r} is deleted (in the trash): restore it in the "
                        "MLflow UI or choose another name",
                        code="INVALID_STATE",
                        subject="experiment",
                    )
                found = str(experiment.get("experiment_id"))
                break
            except NotFound:
                pass
            try:
                answer = self.call("POST", "/experiments/create", {"name": name})
                found = str(answer["experiment_id"])
                break
            except Rejected as exc:
                if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile: read it again
                    raise
        else:
            raise Transient(f"Experiment {name!r} could not be read or created")
        self._experiments[name] = found
        return found

    def find_run(self, experiment_id: str, client_id: str) -> CreatedRun | None:
        """The run an earlier attempt created for ``client_id``, or that it continued."""
        runs: list[Any] = []
        for tag in (CLIENT_RUN_ID_TAG, part_tag(client_id)):
            body = {
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{tag}` = '{client_id}'",
                "run_view_type": "ALL",
                "max_results": 1,
            }
            runs = self.call("POST", "/runs/search", body).get("runs") or []
            if runs:
                break
        if not runs:
            return None
        created = _rest_resume.created(runs[0])
        self._run_experiments[created.run_id] = created.experiment_id
        return created

    def create_run(
        self, experiment_id: str, run_name: str | None, tags: Mapping[str, str], start_ms: int
    ) -> CreatedRun:
        """Create a RUNNING run."""
        answer = self.call(
            "POST",
            "/runs/create",
            {
                "experiment_id": experiment_id,
                "user_id": tags.get(USER_TAG, ""),
                "start_time": start_ms,
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
                "run_name": run_name or "",
            },
        )
        created = _rest_resume.created(answer.get("run") or {})
        self._run_experiments[created.run_id] = created.experiment_id
        return created

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> None:
        """Write one batch (the caller keeps MLflow's per-request limits)."""
        body = {
            "run_id": run_id,
            "metrics": [
                {"key": k, "value": _double(float(v)), "timestamp": int(ts), "step": int(step)}
                for k, v, ts, step in metrics
            ],
            "params": [{"key": k, "value": v} for k, v in params.items()],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        self.call("POST", "/runs/log-batch", body)

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Set the run's final status and end time."""
        self.call(
            "POST",
            "/runs/update",
            {"run_id": run_id, "run_uuid": run_id, "status": status, "end_time": end_ms},
        )

    def log_input(self, run_id: str, dataset: Mapping[str, Any], context: str | None) -> None:
        """Record a dataset input described by ``describe_dataset``."""
        entry: dict[str, Any] = {
            "dataset": {k: dataset[k] for k in DATASET_FIELDS if dataset.get(k) is not None}
        }
        if context:
            entry["tags"] = [{"key": "mlflow.data.context", "value": context}]
        self.call("POST", "/runs/log-inputs", {"run_id": run_id, "datasets": [entry]})

    def upload(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Upload a file, or a folder's contents, through MLflow's artifact repository."""
        from tracksdk.stores._client import upload_through_mlflow

        upload_through_mlflow(self.conn, run_id, path, artifact_path)

    def capabilities(self) -> Capabilities:
        """The registry and logged-model endpoints' presence (see ``_probe.probe``)."""
        from tracksdk.stores._probe import probe

        return probe(self.conn, self.timeout)

    # -- resuming a run (stores/_rest_resume.py) ------------------------------------

    def keyed_runs(self, experiment_id: str, key: str) -> list[RunState]:
        """The active runs tagged ``tracksdk.run_key = key``, oldest first."""
        return _rest_resume.keyed_runs(self, experiment_id, key)

    def get_run(self, run_id: str) -> RunState:
        """The run with ``run_id``, in any lifecycle stage; NotFound when there is none."""
        return _rest_resume.get_run(self, run_id)

    def set_running(self, run_id: str) -> None:
        """Set a run's status back to RUNNING (MLflow keeps its end time)."""
        self.call(
            "POST", "/runs/update", {"run_id": run_id, "run_uuid": run_id, "status": "RUNNING"}
        )

    def delete_run(self, run_id: str) -> None:
        """Move a run to the trash."""
        self.call("POST", "/runs/delete", {"run_id": run_id})

    def claim(self, name: str) -> Claim:
        """Create the marker experiment ``name`` unless it exists (see ``Store.claim``)."""
        return _rest_resume.claim(self, name)

    def release(self, name: str) -> None:
        """Move the marker experiment ``name`` to the trash."""
        _rest_resume.release(self, name)

    # -- the model registry (stores.base.Registry) -----------------------------------

    def ensure_registered_model(self, name: str) -> None:
        """Create the registered model unless it exists (another process may race)."""
        if self.has_registered_model(name):
            return
        try:
            self.call("POST", "/registered-models/create", {"name": name})
        except Rejected as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile: fine
                raise

    def has_registered_model(self, name: str) -> bool:
        """Whether the registered model exists."""
        try:
            self.call("GET", "/registered-models/get", {"name": name})
        except NotFound:
            return False
        return True

    def create_model_version(self, name: str, source: str, run_id: str) -> ModelVersion:
        """Register ``source`` as a new version of ``name``."""
        body = {"name": name, "source": source, "run_id": run_id}
        return _version(self.call("POST", "/model-versions/create", body).get("model_version"))

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        """One version (its status, run, tags)."""
        body = {"name": name, "version": version}
        return _version(self.call("GET", "/model-versions/get", body).get("model_version"))

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        try:
            answer = self.call("GET", "/registered-models/alias", {"name": name, "alias": alias})
        except NotFound:
            return None
        except Rejected as exc:
            # MLflow answers an alias that is not set with 400 INVALID_PARAMETER_VALUE.
            if exc.code == "INVALID_PARAMETER_VALUE":
                return None
            raise
        return _version(answer.get("model_version"))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        body = {"name": name, "alias": alias, "version": version}
        self.call("POST", "/registered-models/alias", body)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag on a version."""
        body = {"name": name, "version": version, "key": key, "value": value}
        self.call("POST", "/model-versions/set-tag", body)

    def model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name`` with its aliases, newest first."""
        found: list[ModelVersion] = []
        body: dict[str, Any] = {"filter": f"name='{name}'", "max_results": 200}
        while True:
            answer = self.call("GET", "/model-versions/search", body)
            found.extend(_version(v) for v in answer.get("model_versions") or [])
            if not answer.get("next_page_token"):
                break
            body["page_token"] = answer["next_page_token"]
        if not found:
            return []
        model = self.call("GET", "/registered-models/get", {"name": name})
        aliases: dict[str, list[str]] = {}
        for entry in (model.get("registered_model") or {}).get("aliases") or []:
            aliases.setdefault(str(entry.get("version")), []).append(str(entry.get("alias")))
        return sorted(
            (replace(v, aliases=tuple(sorted(aliases.get(v.version, [])))) for v in found),
            key=lambda v: int(v.version) if v.version.isdigit() else 0,
            reverse=True,
        )

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of a run."""
        run = self.call("GET", "/runs/get", {"run_id": run_id}).get("run") or {}
        metrics = (run.get("data") or {}).get("metrics") or []
        return {str(m["key"]): float(m["value"]) for m in metrics}


def _version(data: Mapping[str, Any] | None) -> ModelVersion:
    """A model version from the registry's JSON."""
    data = data or {}
    return ModelVersion(
        name=str(data.get("name", "")),
        version=str(data.get("version", "")),
        run_id=data.get("run_id") or None,
        status=str(data.get("status", "READY")),
        source=str(data.get("source", "")),
        created_ms=int(data.get("creation_timestamp") or 0),
        tags={str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or []},
        aliases=tuple(str(a) for a in data.get("aliases") or []),
    )
