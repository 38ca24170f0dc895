"""Credentials for MLflow's HTTP calls, without putting tokens in ``os.environ``.

MLflow asks request-auth providers (entry-point group ``mlflow.request_auth_provider``)
for a ``requests`` auth object when ``MLFLOW_TRACKING_AUTH`` names one. tracksdk
registers itself there (see pyproject.toml) and sets ``MLFLOW_TRACKING_AUTH=tracksdk``
while a run is active: that variable holds a name, not a secret. The auth object adds the
``Authorization`` header only to requests whose URL starts with a registered tracking
URI, so a token is never sent to another host (a presigned artifact URL, say).

This module is imported by MLflow, never by ``import tracksdk``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk.backends import Credentials

_lock = threading.Lock()
_by_prefix: dict[str, Credentials] = {}


def register(base_url: str, credentials: Credentials) -> None:
    """Send ``credentials`` with every request under ``base_url``."""
    with _lock:
        _by_prefix[base_url.rstrip("/") + "/"] = credentials


def unregister(base_url: str) -> None:
    """Stop sending credentials under ``base_url``."""
    with _lock:
        _by_prefix.pop(base_url.rstrip("/") + "/", None)


def credentials_for(url: str) -> Credentials | None:
    """The credentials registered for the longest prefix of ``url``."""
    best: Credentials | None = None
    best_len = -1
    with _lock:
        for prefix, creds in _by_prefix.items():
            if (url + "/").startswith(prefix) and len(prefix) > best_len:
                best, best_len = creds, len(prefix)
    return best


class _ScopedAuth:
    """A ``requests`` auth callable: adds the header for registered URLs only."""

    def __call__(self, request: Any) -> Any:
        creds = credentials_for(str(request.url))
        if creds is not None:
            request.headers["Authorization"] = creds.header()
        return request


class TrackSDKAuthProvider:
    """MLflow request-auth provider named ``tracksdk``."""

    def get_name(self) -> str:
        """The value of ``MLFLOW_TRACKING_AUTH`` that selects this provider."""
        return "tracksdk"

    def get_auth(self) -> _ScopedAuth:
        """The auth object MLflow attaches to each request."""
        return _ScopedAuth()
