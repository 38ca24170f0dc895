"""A non-zero rank's view of a shared distributed run: its series carry the rank.

In ``TRACKSDK_DISTRIBUTED__MODE=shared`` every rank writes to one run
(docs/distributed.md). Rank 0's metrics keep their names; rank N's become
``<name>/rank_N``, so that the ranks' series never mix. System metrics carry the rank
already, where MLflow's ``node_id`` goes (``system/rank_N/...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracksdk._run import D, Run

if TYPE_CHECKING:
    from tracksdk._distributed import Launch

__all__ = ["RankRun", "run_for"]


class RankRun(Run):
    """The run as rank ``rank`` (> 0) of a shared distributed run writes to it.

    Args:
        rank: This process's rank.
        **kwargs: :class:`~tracksdk._run.Run`'s.
    """

    def __init__(self, *, rank: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rank_suffix = f"/rank_{rank}"

    def _ranked(self, key: Any) -> Any:
        if isinstance(key, str) and not key.startswith("system/"):
            return key + self.rank_suffix
        return key  # not a name: the checks report it as they would

    def last_step(self, key: str, default: D = None) -> int | D:  # type: ignore[assignment]
        """This rank's highest step of metric ``key`` (its ``key/rank_N`` series)."""
        return super().last_step(self._ranked(key), default)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metric points at the same step, as this rank's series."""
        super().log_metrics({self._ranked(k): v for k, v in metrics.items()}, step=step)


def run_for(launch: Launch | None, **fields: Any) -> Run:
    """The run object of a new run: a :class:`RankRun` for ranks > 0 of a shared run."""
    if launch is not None and launch.rank != 0:
        return RankRun(rank=launch.rank, **fields)
    return Run(**fields)
