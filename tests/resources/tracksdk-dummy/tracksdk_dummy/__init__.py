"""A third-party tracksdk extension, as a user would write one."""

from __future__ import annotations

import os
from pathlib import Path

from tracksdk.backends import Connection
from tracksdk.exceptions import ConfigError


class FolderBackend:
    """``TRACKSDK_BACKEND=folder``: a sqlite store in ``TRACKSDK_FOLDER__PATH``."""

    name = "folder"

    def connect(self, explained: object) -> Connection:
        """Resolve the store from this backend's own variable."""
        path = os.environ.get("TRACKSDK_FOLDER__PATH")
        if not path:
            raise ConfigError("TRACKSDK_BACKEND=folder needs TRACKSDK_FOLDER__PATH.")
        folder = Path(path).resolve()
        uri = f"sqlite:///{folder / 'store.db'}"
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            artifact_root=str(folder / "artifacts"),
            description=f"folder store {folder}",
        )
