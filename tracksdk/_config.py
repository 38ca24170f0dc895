"""Process-wide configuration: ``configure()``, and resolved settings cached per environment.

Resolving settings costs a few milliseconds (pydantic-settings reads the environment,
``.env`` and ``pyproject.toml``), so the result is cached. The cache key is everything
that can change the answer cheaply: the ``configure()`` generation, the working directory
and the relevant environment variables. Edits to ``.env`` or ``pyproject.toml`` inside a
running process are picked up after ``tracksdk.configure()`` or ``tracksdk.reset()``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

_lock = threading.Lock()
_overrides: dict[str, Any] = {}
_generation = 0
_cache: dict[tuple[Any, ...], tuple[Explained, Connection | None]] = {}
# MLFLOW_TRACKING_* holds the URI and, for the mlflow-env backend, credentials and TLS.
_PREFIXES = ("TRACKSDK_", "MLFLOW_TRACKING_", "DAGSHUB_")


def configure(**settings: Any) -> None:
    """Set tracksdk settings for this process, above the environment and files.

    Nested sections are dicts: ``configure(backend="server", server={"uri": "..."})``.
    Values given to ``tracked(...)`` still win over these.

    Raises:
        ConfigError: A value is invalid (checked at once, not at the next run).
    """
    global _generation
    from tracksdk.settings import deep_merge, load_settings

    merged = deep_merge(_overrides, settings)
    load_settings(merged)  # fail now, where the mistake was made
    with _lock:
        _overrides.clear()
        _overrides.update(merged)
        _generation += 1
        _cache.clear()


def reset() -> None:
    """Forget ``configure()`` values and cached settings.

    Also points MLflow back at its default store when a finished run had left MLflow's
    tracking URI on the run's store (see docs/quickstart.md).
    """
    global _generation
    with _lock:
        _overrides.clear()
        _generation += 1
        _cache.clear()
    import sys

    mlflow_state = sys.modules.get("tracksdk._mlflow")  # never imported just for this
    if mlflow_state is not None:
        mlflow_state.forget_left()


_mode_generation = -1
_mode_value: object = None
_mode_disabled = False

# os.environ.get encodes the key and decodes the value: ~0.5 us, a quarter of the
# disabled budget. os.environ keeps the raw bytes in its _data dict on POSIX; reading it
# directly is ~20x faster. Anything unexpected falls back to os.environ.get.
_RAW_ENV: Any = getattr(os.environ, "_data", None)
_RAW_KEY: Any = b"TRACKSDK_MODE" if os.name == "posix" else "TRACKSDK_MODE"
if not isinstance(_RAW_ENV, dict):
    _RAW_ENV = os.environ
    _RAW_KEY = "TRACKSDK_MODE"


def is_disabled() -> bool:
    """Whether ``TRACKSDK_MODE`` resolves to ``disabled``: the decorator's fast path.

    Keyed on the ``configure()`` generation and the ``TRACKSDK_MODE`` variable only, so a
    disabled call costs about a microsecond. A mode set in ``.env`` or ``pyproject.toml``
    is read once per process (and again after ``configure()`` or ``reset()``).
    """
    global _mode_generation, _mode_value, _mode_disabled
    value = _RAW_ENV.get(_RAW_KEY)
    if _mode_generation == _generation and value == _mode_value:
        return _mode_disabled
    try:
        disabled = resolve().settings.mode == "disabled"
    except Exception:
        disabled = False  # the run's own start reports the bad setting
    _mode_generation, _mode_value, _mode_disabled = _generation, value, disabled
    return _mode_disabled


def _fingerprint(extra: Mapping[str, Any]) -> tuple[Any, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_PREFIXES)))
    return (_generation, os.getcwd(), env, repr(sorted(extra.items())))


def resolve(extra: Mapping[str, Any] | None = None) -> Explained:
    """Settings with ``configure()`` values and ``extra`` (from ``tracked(...)``) on top."""
    return _resolve(extra or {})[0]


def resolve_with_connection(extra: Mapping[str, Any] | None = None) -> tuple[Explained, Connection]:
    """Settings and the backend connection they select."""
    explained, conn = _resolve(extra or {}, connect=True)
    assert conn is not None
    return explained, conn


def _resolve(
    extra: Mapping[str, Any], connect: bool = False
) -> tuple[Explained, Connection | None]:
    from tracksdk.backends import resolve as resolve_backend
    from tracksdk.backends import third_party_names
    from tracksdk.settings import deep_merge, load_settings

    key = _fingerprint(extra)
    hit = _cache.get(key)
    if hit is not None and (hit[1] is not None or not connect):
        return hit
    if hit is not None:  # loaded without a connection (the mode's check): only connect
        explained = hit[0]
    else:
        explained = load_settings(
            deep_merge(_overrides, extra), extra_env_prefixes=third_party_names()
        )
    conn = resolve_backend(explained) if connect else None
    with _lock:
        if len(_cache) > 32:
            _cache.clear()
        _cache[key] = (explained, conn)
    return explained, conn
