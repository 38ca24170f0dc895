"""Helpers for testing your own tracked code.

:func:`capture_runs` points every tracked call inside it at a fresh local store in a
temporary folder and reads back what was logged, as MLflow stored it::

    from tracksdk.testing import capture_runs

    def test_train_logs_auc():
        with capture_runs() as captured:
            train(learning_rate=0.1)
        run = captured.only()
        assert run.params["learning_rate"] == "0.1"
        assert run.metrics["val_auc"] > 0.5
        assert run.status == "FINISHED"

The store is real (sqlite and a folder of artifacts), so what you assert is what a user
would see in the MLflow UI.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracksdk import _config
from tracksdk._schema import PARENT_RUN_ID_TAG

__all__ = ["CapturedRun", "CapturedRuns", "capture_runs"]


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
        """Every ``(step, value)`` point of a metric, in logged order."""
        client = self._store._client()
        return [(m.step, m.value) for m in client.get_metric_history(self.run_id, key)]

    def artifact_text(self, path: str) -> str:
        """The content of a text artifact."""
        client = self._store._client()
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(self.run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8")


class CapturedRuns:
    """The runs logged inside :func:`capture_runs`, read fresh from the store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    @property
    def runs(self) -> list[CapturedRun]:
        """Every run, oldest first."""
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
def capture_runs(root: str | Path | None = None) -> Iterator[CapturedRuns]:
    """Send every tracked run inside the block to a temporary local store.

    Overrides the backend, the local root and the mode (always online) for the block,
    above environment variables and files; other settings (experiment, capture, strict)
    still apply. Settings given to ``tracked(settings=...)`` still win.

    Args:
        root: Folder for the store. When omitted, a temporary folder that lives as long as
            the yielded object, so runs can be inspected after the block.

    Yields:
        A :class:`CapturedRuns`; its ``runs`` are read from the store on each access.
    """
    saved = dict(_config._overrides)
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
