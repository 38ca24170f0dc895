"""An in-process store for tests: ``TRACKSDK_BACKEND=memory``.

Runs live in the process's memory (:mod:`tracksdk.stores.memory`) and vanish with it.
:func:`tracksdk.testing.capture_runs` selects it; nothing is written to a database, and
MLflow is not imported unless the tracked code uses MLflow itself (autolog, models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracksdk.backends.base import Connection

if TYPE_CHECKING:
    from tracksdk.settings import Explained


class MemoryBackend:
    """Selected by ``TRACKSDK_BACKEND=memory``."""

    name = "memory"

    def connect(self, explained: Explained) -> Connection:
        """Point at the memory store selected now (``capture_runs``'s own, or the default)."""
        from tracksdk.stores.memory import current_uri

        uri = current_uri()
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            description=f"in-process memory store {uri} (runs vanish with the process)",
        )
