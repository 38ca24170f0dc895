"""The embedded local store: ``<root>/mlflow.db`` and ``<root>/mlruns``.

These are MLflow's own defaults, made absolute, so that ``mlflow ui`` started in the
project root shows the runs whatever folder the training script ran from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracksdk.backends import Connection

if TYPE_CHECKING:
    from tracksdk.settings import Explained


class LocalBackend:
    """Selected by ``TRACKSDK_BACKEND=local`` or by nothing at all."""

    name = "local"

    def connect(self, explained: Explained) -> Connection:
        """Point at the sqlite store in the configured or discovered project root."""
        root = explained.settings.local.root
        if root is None:
            root = explained.root
        root = root.expanduser()
        if not root.is_absolute():
            root = explained.root / root  # relative to the project, not the working directory
        root = root.resolve()
        uri = f"sqlite:///{root / 'mlflow.db'}"
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            artifact_root=str(root / "mlruns"),
            # `tracksdk ui` (and `mlflow ui`) serve on this port by default.
            ui_url="http://127.0.0.1:5000",
            description=f"local sqlite store {root / 'mlflow.db'}, artifacts {root / 'mlruns'}",
        )
