"""The store protocol and the values stores return (imported by every implementation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tracksdk.backends import Connection

#: The fields of a dataset input, as MLflow's ``Dataset`` entity has them.
DATASET_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")

#: One metric point as the journal keeps it: key, value, timestamp (ms), step.
MetricRow = tuple[str, float, int, int]


@dataclass(frozen=True)
class CreatedRun:
    """What tracksdk keeps of a run a store created or found.

    Attributes:
        run_id: The store's run id.
        experiment_id: The run's experiment.
        artifact_uri: Where its artifacts go.
        run_name: The name the store gave it.
        entity: The store's own description of the run (an MLflow ``Run`` for the local
            store, the REST answer's JSON for the REST store), for MLflow's active run.
    """

    run_id: str
    experiment_id: str
    artifact_uri: str
    run_name: str | None = None
    entity: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RunState:
    """A run as a store holds it, read back to resume it (``tracked(key=...)``).

    Attributes:
        run: Its id, experiment and artifact location.
        status: ``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``.
        lifecycle_stage: ``active`` or ``deleted`` (in the trash).
        start_ms: Its start time, in milliseconds since the epoch.
        params: Its params.
        tags: Its tags.
        last_steps: The step of each metric's latest point (MLflow's latest point is the
            one with the highest step), for ``Run.last_step``.
    """

    run: CreatedRun
    status: str
    lifecycle_stage: str = "active"
    start_ms: int = 0
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    last_steps: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`Store.claim`.

    Attributes:
        won: This call created the marker: no one else holds it.
        created_ms: When the marker was created (by anyone), in ms since the epoch; None
            when the store does not say.
        released: The marker is in the trash: its holder is done with it.
    """

    won: bool
    created_ms: int | None = None
    released: bool = False


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


class Store(Protocol):
    """The calls tracksdk makes to a tracking store.

    Each call is one attempt: it returns, or raises a
    :class:`~tracksdk.stores.errors.StoreError` whose ``kind`` says whether retrying can
    help. Implementations keep MLflow's semantics: identical metric rows and identical
    params are de-duplicated, so a request resent after a lost answer is harmless.
    """

    conn: Connection

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing; refused when deleted."""
        ...

    def find_run(self, experiment_id: str, client_id: str) -> CreatedRun | None:
        """The run tagged ``tracksdk.client_run_id = client_id``, in any lifecycle stage.

        Else the run that process continued (``tracksdk.part.<client_id>``, docs/resume.md).
        """
        ...

    def create_run(
        self, experiment_id: str, run_name: str | None, tags: Mapping[str, str], start_ms: int
    ) -> CreatedRun:
        """Create a RUNNING run with its tags."""
        ...

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]],
        params: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> None:
        """Write metrics (:data:`MetricRow`), params and tags within MLflow's batch limits."""
        ...

    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Set the run's final status and end time."""
        ...

    def upload(self, run_id: str, path: str, artifact_path: str | None) -> None:
        """Upload a file, or a folder's contents, into the run's artifacts."""
        ...

    def log_input(self, run_id: str, dataset: Mapping[str, Any], context: str | None) -> None:
        """Record a dataset input (name, digest, source_type, source, schema, profile)."""
        ...

    def capabilities(self) -> Capabilities:
        """What the store supports (registry, MLflow 3 logged models)."""
        ...

    # -- resuming a run (tracksdk._resume) ----------------------------------------------

    def keyed_runs(self, experiment_id: str, key: str) -> list[RunState]:
        """The active runs (not in the trash) tagged ``tracksdk.run_key = key``, oldest first.

        Oldest means lowest ``(start_ms, run_id)``.
        """
        ...

    def get_run(self, run_id: str) -> RunState:
        """The run with ``run_id``, in any lifecycle stage; NotFound when there is none."""
        ...

    def set_running(self, run_id: str) -> None:
        """Set a run's status back to RUNNING (its end time is left: MLflow cannot clear it)."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Move a run to the trash, as ``MlflowClient.delete_run`` does."""
        ...

    def claim(self, name: str) -> Claim:
        """Create the marker ``name`` unless it exists, atomically across processes.

        The marker is an experiment named ``name`` (the one create-if-absent MLflow's API
        makes atomic on every store): exactly one of several concurrent callers wins.
        """
        ...

    def release(self, name: str) -> None:
        """Move the marker ``name`` to the trash: hidden, and still held."""
        ...

    def close(self) -> None:
        """Free connections; the store may not be used afterwards."""
        ...


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model, as the registry describes it.

    Attributes:
        name: The registered model.
        version: Its version number, as a string ("3").
        run_id: The run it was registered from, when known.
        status: ``READY``, ``PENDING_REGISTRATION`` or ``FAILED_REGISTRATION``.
        source: Where the model's files are (``runs:/<id>/model``).
        created_ms: When it was registered, in milliseconds since the epoch.
        tags: The version's tags (the gate's verdict, alias audit tags).
        aliases: The aliases pointing at it, when the registry said.
    """

    name: str
    version: str
    run_id: str | None = None
    status: str = "READY"
    source: str = ""
    created_ms: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


@runtime_checkable
class Registry(Protocol):
    """The model registry calls tracksdk makes; the REST and local stores implement them.

    Like the :class:`Store` calls, each is one attempt and fails with a typed
    :class:`~tracksdk.stores.errors.StoreError`.
    """

    conn: Connection

    def ensure_registered_model(self, name: str) -> None:
        """Create the registered model unless it exists (another process may race)."""
        ...

    def has_registered_model(self, name: str) -> bool:
        """Whether the registered model exists."""
        ...

    def create_model_version(self, name: str, source: str, run_id: str) -> ModelVersion:
        """Register ``source`` as a new version of ``name``."""
        ...

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        """One version (its status, run, tags)."""
        ...

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        ...

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        ...

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag on a version."""
        ...

    def model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name`` with its aliases, newest first."""
        ...

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of a run (the champion gate compares them)."""
        ...

    def close(self) -> None:
        """Free connections; the registry may not be used afterwards."""
        ...
