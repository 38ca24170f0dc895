"""The untracked run: what a block gets when it is not tracked, where every call does nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tracksdk._run import D, Run

__all__ = ["UNTRACKED_REF", "UntrackedRun"]

UNTRACKED_REF = '{"v":1,"untracked":true}'


def _no_value(run: Run) -> str | None:
    return None


class UntrackedRun(Run):
    """The run of a block that is not tracked: every method does nothing.

    What ``with tracked()`` gives when tracking is off (``TRACKSDK_MODE=disabled``, a
    non-zero rank, a run that could not start), and what module-level ``tracksdk.log_*``
    calls reach when no run is open. ``tracked`` is False and every id is None.
    """

    def __init__(self, *, parent: Run | None = None) -> None:
        self.parent = parent
        self.experiment_name = None
        self.status = "UNTRACKED"
        self.resumed = False

    def __repr__(self) -> str:
        return "Run(untracked)"

    def ref(self) -> str:
        return UNTRACKED_REF  # tracksdk.attach of it gives an untracked run

    # Every id and link is None: one getter for all six.
    run_id = name = experiment_id = client_run_id = tracking_uri = url = property(_no_value)

    @property
    def tracked(self) -> bool:
        return False

    @property
    def latest_metrics(self) -> dict[str, float]:
        return {}

    def flush(self, timeout: float | None = None) -> bool:
        return False

    def last_step(self, key: str, default: D = None) -> int | D:  # type: ignore[assignment]
        return default

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass

    def log_input(
        self,
        dataset: Any,
        context: str | None = None,
        *,
        name: str | None = None,
        targets: str | None = None,
    ) -> None:
        pass

    def log_checkpoint(self, model: Any, step: int) -> str | None:
        return None
