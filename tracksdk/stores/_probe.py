"""Which endpoints a tracking server has: probed once per tracking URI, then cached.

DagsHub's hosted MLflow has been reported at MLflow 2.x, without MLflow 3's logged-model
endpoints and sometimes without the model registry; tracksdk then falls back instead of
calling an endpoint that is not there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tracksdk.stores._http import session_for
from tracksdk.stores.base import Capabilities

if TYPE_CHECKING:
    from tracksdk.backends import Connection

API = "/api/2.0/mlflow"

_probed: dict[str, Capabilities] = {}
_probed_lock = threading.Lock()


def forget_probes() -> None:
    """Forget the cached capability probes (a server was replaced)."""
    with _probed_lock:
        _probed.clear()


def probe(conn: Connection, timeout: float = 10.0) -> Capabilities:
    """Probe the registry and logged-model endpoints; cached per tracking URI.

    A 404 means missing; any other answer means present, except a 403. A 403 says
    nothing about the route: MLflow 3's basic-auth app answers 403 "Permission denied"
    to a non-admin user on routes it does not know, and so may any auth proxy. On a 403
    the server's version (``GET /version``) decides: MLflow 3 has the logged-model
    endpoints, and every MLflow server has the registry. Without a version the
    capability counts as missing, since tracksdk's fallback for a missing one always
    works (a model saved as a run artifact, registration skipped with a warning), while
    calling a missing endpoint fails.
    """
    with _probed_lock:
        if conn.tracking_uri in _probed:
            return _probed[conn.tracking_uri]
    import requests

    base = conn.tracking_uri.rstrip("/")
    notes: list[str] = []
    version: list[str | None] = []
    with session_for(conn) as session:

        def status(method: str, path: str, **kwargs: Any) -> int | None:
            try:
                return session.request(method, base + path, timeout=timeout, **kwargs).status_code
            except requests.RequestException:
                return None  # unknown: let the real call report the failure

        def server_version() -> str | None:
            if not version:
                got = None
                try:
                    response = session.get(base + "/version", timeout=timeout)
                    text = response.text.strip()
                    if response.ok and 0 < len(text) < 40 and text[0].isdigit():
                        got = text
                except requests.RequestException:
                    pass
                version.append(got)
            return version[0]

        def present(label: str, method: str, path: str, needs_major: int, **kwargs: Any) -> bool:
            code = status(method, path, **kwargs)
            if code != 403:
                return code != 404
            found = server_version()
            if found is None:
                notes.append(
                    f"{label}: the endpoint answered 403 (permission denied, which says "
                    "nothing about whether it exists) and the server tells no version: "
                    "counted as missing"
                )
                return False
            major = int(found.split(".")[0]) if found.split(".")[0].isdigit() else 0
            notes.append(
                f"{label}: the endpoint answered 403 (permission denied); judged from the "
                f"server's version, MLflow {found}"
            )
            return major >= needs_major

        found = Capabilities(
            registry=present(
                "model registry", "GET", API + "/registered-models/search",
                1, params={"max_results": 1},
            ),
            logged_models=present(
                "logged models", "POST", API + "/logged-models/search",
                3, json={"max_results": 1},
            ),
            notes=tuple(notes),
        )  # fmt: skip
    with _probed_lock:
        _probed[conn.tracking_uri] = found
    return found
