"""The embedded local store: ``<root>/mlflow.db`` and ``<root>/mlruns``.

These are MLflow's own defaults, made absolute, so that ``mlflow ui`` started in the
project root shows the runs whatever folder the training script ran from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracksdk.backends.base import Connection, check_http_url

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
        # `tracksdk ui` serves here by default; run links (run.url) point here.
        ui_url = explained.settings.local.ui_url.rstrip("/")
        check_http_url(ui_url, "TRACKSDK_LOCAL__UI_URL", explained.source_of("local.ui_url"), False)
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            artifact_root=str(root / "mlruns"),
            ui_url=ui_url,
            description=f"local sqlite store {root / 'mlflow.db'}, artifacts {root / 'mlruns'}",
        )
