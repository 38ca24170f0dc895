"""The REST store's calls for resuming a run (``tracked(key=...)``), over MLflow's JSON API.

:class:`~tracksdk.stores.rest.RestStore` keeps the public methods and hands them here, so
that ``rest.py`` stays one screenful of request plumbing. Each function is one attempt per
request, failures typed by ``RestStore.call``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracksdk.stores._keyed import exactly, key_filter
from tracksdk.stores.base import Claim, CreatedRun, RunState
from tracksdk.stores.errors import NotFound, Rejected, Transient

if TYPE_CHECKING:
    from tracksdk.stores.rest import RestStore

#: Runs per page of ``runs/search``: a key names a handful of runs, so one page is usual.
PAGE = 1000


def created(run: Mapping[str, Any]) -> CreatedRun:
    """The run an answer's ``run`` object describes."""
    info = run.get("info") or {}
    if not (info.get("run_id") or info.get("run_uuid")):
        raise Transient("the store's answer names no run id")  # not MLflow answering
    return CreatedRun(
        run_id=str(info.get("run_id") or info.get("run_uuid")),
        experiment_id=str(info.get("experiment_id")),
        artifact_uri=str(info.get("artifact_uri", "")),
        run_name=info.get("run_name") or None,
        entity=dict(run),
    )


def state(store: RestStore, run: Mapping[str, Any]) -> RunState:
    """A run from its JSON; MLflow's latest metrics carry their step."""
    info = run.get("info") or {}
    data = run.get("data") or {}
    made = created(run)
    store._run_experiments[made.run_id] = made.experiment_id
    return RunState(
        run=made,
        status=str(info.get("status", "")),
        lifecycle_stage=str(info.get("lifecycle_stage") or "active"),
        start_ms=int(info.get("start_time") or 0),
        params={str(p["key"]): str(p.get("value", "")) for p in data.get("params") or []},
        tags={str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or []},
        last_steps={str(m["key"]): int(m.get("step") or 0) for m in data.get("metrics") or []},
    )


def keyed_runs(store: RestStore, experiment_id: str, key: str) -> list[RunState]:
    """The active runs tagged with ``key``, oldest first, every page read."""
    body: dict[str, Any] = {
        "experiment_ids": [experiment_id],
        "filter": key_filter(key),
        "run_view_type": "ACTIVE_ONLY",
        "max_results": PAGE,
    }
    found: list[RunState] = []
    while True:
        answer = store.call("POST", "/runs/search", body)
        found.extend(state(store, run) for run in answer.get("runs") or [])
        token = answer.get("next_page_token")
        if not token:
            return exactly(found, key)
        body["page_token"] = token


def get_run(store: RestStore, run_id: str) -> RunState:
    """The run with ``run_id``, in any lifecycle stage; NotFound when there is none.

    MLflow's basic-auth app answers a run id that does not exist with 403 to a user who
    is not an admin (its answers must not tell which run ids exist): PermissionDenied.
    """
    run = store.call("GET", "/runs/get", {"run_id": run_id}).get("run")
    if not run:
        raise NotFound(f"Run {run_id} not found", code="RESOURCE_DOES_NOT_EXIST", subject="run")
    return state(store, run)


def claim(store: RestStore, name: str) -> Claim:
    """Create experiment ``name`` as a marker; whoever's create succeeds won.

    The marker's id is not kept in the store's name cache: it is no experiment runs go to.
    """
    try:
        store.call("POST", "/experiments/create", {"name": name})
    except Rejected as exc:
        if exc.code != "RESOURCE_ALREADY_EXISTS":
            raise
    else:
        return Claim(won=True)
    # get-by-name finds deleted experiments too, so a released marker still answers.
    marker = _marker(store, name)
    when = marker.get("creation_time")
    return Claim(
        won=False,
        created_ms=int(when) if when is not None else None,
        released=marker.get("lifecycle_stage") == "deleted",
    )


def release(store: RestStore, name: str) -> None:
    """Move marker ``name`` to the trash; nothing to do when it is there or missing."""
    try:
        marker = _marker(store, name)
    except NotFound:
        return
    if marker.get("lifecycle_stage") == "deleted":
        return
    try:
        store.call("POST", "/experiments/delete", {"experiment_id": marker["experiment_id"]})
    except Rejected:
        # Another process released it first (MLflow refuses to delete it twice).
        if _marker(store, name).get("lifecycle_stage") != "deleted":
            raise


def _marker(store: RestStore, name: str) -> dict[str, Any]:
    answer = store.call("GET", "/experiments/get-by-name", {"experiment_name": name})
    marker = answer.get("experiment")
    if not isinstance(marker, dict) or "experiment_id" not in marker:
        raise Transient(f"the store's answer for experiment {name!r} names no experiment")
    return marker
