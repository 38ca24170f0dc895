"""The current tracked run, per thread and per asyncio task (a ContextVar).

Kept apart from :mod:`tracksdk._run` so that ``import tracksdk`` stays light.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracksdk._run import Run

current: contextvars.ContextVar[tuple[Run, ...]] = contextvars.ContextVar(
    "tracksdk_runs", default=()
)


def active_run() -> Run | None:
    """The innermost tracked run in this context, or None outside any tracked run."""
    runs = current.get()
    return runs[-1] if runs else None
