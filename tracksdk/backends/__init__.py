"""Backends: how to reach a tracking store, as data.

A backend turns settings into a :class:`Connection`: tracking URI, registry URI and
credentials. It never calls MLflow; :mod:`tracksdk._mlflow` does that with the
connection. The built-ins are ``local``, ``dagshub``, ``server`` and ``memory``; a third party adds
one through the ``tracksdk.backends`` entry-point group, naming a class (instantiated
without arguments) or an object that satisfies :class:`Backend`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from tracksdk import _warn
from tracksdk.backends.base import (
    Backend,
    Connection,
    Credentials,
    check_http_url,
    is_loopback,
)
from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.settings import Explained

__all__ = [
    "Backend",
    "Connection",
    "Credentials",
    "available_backends",
    "check_http_url",
    "get_backend",
    "is_loopback",
]

ENTRY_POINT_GROUP = "tracksdk.backends"


def _builtin() -> dict[str, Backend]:
    from tracksdk.backends.dagshub import DagsHubBackend
    from tracksdk.backends.local import LocalBackend
    from tracksdk.backends.memory import MemoryBackend
    from tracksdk.backends.server import ServerBackend

    backends = (LocalBackend(), DagsHubBackend(), ServerBackend(), MemoryBackend())
    return {b.name: b for b in backends}


_third_party: dict[str, Backend] | None = None


def _load_third_party() -> dict[str, Backend]:
    global _third_party
    if _third_party is None:
        found: dict[str, Backend] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                backend = obj() if isinstance(obj, type) else obj
                found[getattr(backend, "name", ep.name)] = backend
            except Exception as exc:  # a broken plugin must not break tracking
                _warn.warn(
                    f"tracksdk: backend plugin {ep.name!r} ({ep.value}) failed to load: "
                    f"{type(exc).__name__}: {exc}"
                )
        _third_party = found
    return _third_party


def available_backends() -> dict[str, Backend]:
    """Every backend that can be selected, built-ins first."""
    return {**_load_third_party(), **_builtin()}


def third_party_names() -> tuple[str, ...]:
    """Names of installed third-party backends."""
    return tuple(_load_third_party())


def get_backend(name: str, source: str) -> Backend:
    """Return the backend called ``name``; ``source`` says where the name came from."""
    backends = available_backends()
    try:
        return backends[name]
    except KeyError:
        valid = ", ".join(sorted(backends))
        raise ConfigError(
            f"Unknown backend {name!r} in TRACKSDK_BACKEND (from {source}). "
            f"Valid backends: {valid}. Set TRACKSDK_BACKEND to one of them, or install "
            "the plugin that provides this one."
        ) from None


def resolve(explained: Explained) -> Connection:
    """Pick the backend the settings name and connect it.

    ``TRACKSDK_BACKEND`` wins; when no source sets it, ``MLFLOW_TRACKING_URI`` is used as
    it is (existing setups keep working); when neither is set, the local store.
    """
    import os

    name = explained.settings.backend
    if name is None:
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if env_uri:
            from tracksdk.backends.server import EnvironmentBackend

            return EnvironmentBackend().connect(explained, env_uri)
        name = "local"
    conn = get_backend(name, explained.source_of("backend")).connect(explained)
    if conn.credentials is not None:
        # A third-party backend's secret is masked like the built-ins' ones.
        from tracksdk._redact import add_secret

        add_secret(conn.credentials.secret)
    return conn
