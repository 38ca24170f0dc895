"""Helpers for testing your own tracked code.

:func:`capture_runs` points every tracked call inside it at a fresh store and reads back
what was logged::

    from tracksdk.testing import capture_runs

    def test_train_logs_auc():
        with capture_runs() as captured:
            train(learning_rate=0.1)
        run = captured.only()
        assert run.params["learning_rate"] == "0.1"
        assert run.metrics["val_auc"] > 0.5
        assert run.status == "FINISHED"

By default the store is tracksdk's memory store (:mod:`tracksdk.stores.memory`): no
database, no MLflow import, a few milliseconds per run, and MLflow's rules for params,
metrics and tags. ``capture_runs(store="sqlite")`` uses a real MLflow sqlite store instead,
for tests that need MLflow's own storage (``mlflow.log_*`` calls, autolog, the registry).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracksdk import _config
from tracksdk._schema import PARENT_RUN_ID_TAG

__all__ = ["NO_PROVENANCE", "CapturedRun", "CapturedRuns", "capture_runs"]

#: ``tracksdk.configure(capture=NO_PROVENANCE)``: runs capture no git state, diff,
#: untracked files, sources, command, environment, requirements, CI tags nor dataset
#: inputs from arguments. A test's runs are then faster and hold only what the code
#: under test logs.
NO_PROVENANCE: dict[str, bool] = {
    "git": False,
    "diff": False,
    "untracked": False,
    "source": False,
    "command": False,
    "environment": False,
    "requirements": False,
    "ci": False,
    "datasets": False,
}


@dataclass(frozen=True)
class CapturedRun:
    """One run as read back from the store.

    Attributes:
        run_id: MLflow's id.
        name: The run's name.
        status: FINISHED, FAILED, KILLED or RUNNING.
        experiment: The experiment's name.
        params: Param values (strings, as MLflow stores them).
        metrics: The latest value of each metric.
        tags: Every tag, MLflow's and tracksdk's included.
        artifacts: Every artifact file path, e.g. ``"source/diff.txt"``.
        parent_run_id: The parent's id for a child run.
    """

    run_id: str
    name: str
    status: str
    experiment: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[str]
    parent_run_id: str | None
    _store: CapturedRuns = field(repr=False, compare=False)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` point of a metric, ordered as MLflow orders them.

        That is by timestamp, then step: the order they were logged in, except that
        points logged in the same millisecond come by step.
        """
        memory = self._store._memory()
        if memory is not None:
            points = memory.runs[self.run_id].metric_history(key)
            return [(step, value) for step, _, value in points]
        client = self._store._client()
        return [(m.step, m.value) for m in client.get_metric_history(self.run_id, key)]

    def artifact_text(self, path: str) -> str:
        """The content of a text artifact."""
        memory = self._store._memory()
        if memory is not None:
            try:
                return str(memory.runs[self.run_id].artifacts[path].decode("utf-8"))
            except KeyError:
                raise FileNotFoundError(f"run {self.run_id} has no artifact {path!r}") from None
        client = self._store._client()
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(self.run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8")


class CapturedRuns:
    """The runs logged inside :func:`capture_runs`, read fresh from the store.

    Attributes:
        root: The sqlite store's folder; None for the memory store.
        tracking_uri: ``sqlite:///<root>/mlflow.db``, or ``memory://<name>``.
    """

    def __init__(self, root: Path | None, tracking_uri: str | None = None) -> None:
        self.root = root
        if tracking_uri is None:
            assert root is not None
            tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.tracking_uri = tracking_uri

    def _client(self) -> Any:
        """MLflow's client on the captured sqlite store (the local store's own)."""
        from tracksdk.backends import Connection
        from tracksdk.stores._client import mlflow_client

        uri = self.tracking_uri
        return mlflow_client(Connection(backend="local", tracking_uri=uri, registry_uri=uri))

    def _memory(self) -> Any:
        """The memory store, or None for a sqlite store."""
        if self.root is not None:
            return None
        from tracksdk.backends import Connection
        from tracksdk.stores.memory import MemoryStore

        uri = self.tracking_uri
        return MemoryStore.named(Connection(backend="memory", tracking_uri=uri, registry_uri=uri))

    def _memory_runs(self, memory: Any) -> list[CapturedRun]:
        experiments, runs = memory.snapshot()  # consistent while other threads still log
        found = sorted(runs, key=lambda r: r.start_time)
        return [
            CapturedRun(
                run_id=run.run_id,
                name=run.run_name,
                status=run.status,
                experiment=experiments[run.experiment_id][0],
                params=dict(run.params),
                metrics=run.metrics,
                tags=dict(run.tags),
                artifacts=sorted(run.artifacts),
                parent_run_id=run.tags.get(PARENT_RUN_ID_TAG),
                _store=self,
            )
            for run in found
            if run.lifecycle_stage == "active"
        ]

    @property
    def runs(self) -> list[CapturedRun]:
        """Every run, oldest first."""
        memory = self._memory()
        if memory is not None:
            return self._memory_runs(memory)
        assert self.root is not None
        if not (self.root / "mlflow.db").exists():
            return []
        from tracksdk import _mlflow  # noqa: F401 - applies tracksdk's MLflow defaults

        client = self._client()
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        if not experiments:
            return []
        found = client.search_runs(list(experiments), order_by=["attributes.start_time ASC"])
        return [self._read(client, run, experiments) for run in found]

    def _read(self, client: Any, run: Any, experiments: dict[str, str]) -> CapturedRun:
        def walk(path: str | None) -> list[str]:
            out: list[str] = []
            for info in client.list_artifacts(run.info.run_id, path):
                out.extend(walk(info.path) if info.is_dir else [info.path])
            return out

        return CapturedRun(
            run_id=run.info.run_id,
            name=run.info.run_name,
            status=run.info.status,
            experiment=experiments.get(run.info.experiment_id, ""),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            artifacts=sorted(walk(None)),
            parent_run_id=run.data.tags.get(PARENT_RUN_ID_TAG),
            _store=self,
        )

    def __iter__(self) -> Iterator[CapturedRun]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> CapturedRun:
        return self.runs[index]

    def only(self) -> CapturedRun:
        """The single run logged; AssertionError if there were none or several."""
        runs = self.runs
        assert len(runs) == 1, f"expected exactly one run, found {len(runs)}"
        return runs[0]


@contextlib.contextmanager
def capture_runs(
    root: str | Path | None = None, store: Literal["memory", "sqlite"] | None = None
) -> Iterator[CapturedRuns]:
    """Send every tracked run inside the block to a fresh store of its own.

    Overrides the backend, the local root and the mode (always online) for the block,
    above environment variables and files; other settings (experiment, capture, strict)
    still apply. Settings given to ``tracked(settings=...)`` still win.

    Args:
        root: Folder for a sqlite store (implies ``store="sqlite"``). When omitted, a
            temporary folder that lives as long as the yielded object, so runs can be
            inspected after the block.
        store: ``"memory"`` (the default without ``root``): tracksdk's in-process store,
            no MLflow import. ``"sqlite"``: MLflow's own sqlite store and artifact folder.

    Yields:
        A :class:`CapturedRuns`; its ``runs`` are read from the store on each access.

    Raises:
        ValueError: ``root`` given with ``store="memory"``, or an unknown ``store``.
    """
    if store is None:
        store = "sqlite" if root is not None else "memory"
    if store not in ("memory", "sqlite"):
        raise ValueError(f"capture_runs(store={store!r}): use 'memory' or 'sqlite'")
    if store == "memory" and root is not None:
        raise ValueError(
            "capture_runs(root=...) keeps a sqlite store in that folder; the memory store "
            "has no folder. Drop root=, or use store='sqlite'."
        )
    saved = dict(_config._overrides)
    if store == "memory":
        from tracksdk.stores import memory

        uri = f"memory://capture-{uuid.uuid4().hex}"
        captured = CapturedRuns(None, uri)
        # The runs stay readable after the block; the store goes with the object.
        weakref.finalize(captured, memory.forget, uri)
        memory.push_uri(uri)
        _config.configure(backend="memory", mode="online")
        try:
            yield captured
        finally:
            memory.pop_uri(uri)
            _config.reset()
            if saved:
                _config.configure(**saved)
        return
    folder = Path(root or tempfile.mkdtemp(prefix="tracksdk-")).resolve()
    captured = CapturedRuns(folder)
    if root is None:
        # The runs stay readable after the block; the folder goes with the object.
        weakref.finalize(captured, shutil.rmtree, folder, True)
    _config.configure(backend="local", local={"root": str(folder)}, mode="online")
    try:
        yield captured
    finally:
        _config.reset()
        if saved:
            _config.configure(**saved)
