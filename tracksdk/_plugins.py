"""Loading framework plugins, one broken plugin at a time.

Plugins are found through the ``tracksdk`` entry-point group, the project's own
(``plugins/tracksdk-sklearn``, ``plugins/tracksdk-lightgbm``, separate distributions)
exactly like third-party ones. ``TRACKSDK_PLUGINS`` (a comma-separated list of
entry-point names) limits which load. One plugin is part of tracksdk itself and always
loaded: :mod:`tracksdk._pyfunc`, for returned ``mlflow.pyfunc.PythonModel`` instances.
A plugin that fails to import is a warning naming the plugin; the others load.

The hooks are called through the typed ``call_*`` functions of :mod:`tracksdk.hookspecs`,
where a hook that raises or returns the wrong type is a warning naming the plugin and the
other plugins and the run go on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from tracksdk import _warn, hookspecs

ENTRY_POINT_GROUP = "tracksdk"

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_manager_key: tuple[str, ...] | None = None


def manager(only: Iterable[str] | None = None) -> pluggy.PluginManager:
    """The plugin manager with every allowed plugin registered (built once per selection)."""
    global _manager, _manager_key
    key = tuple(sorted(only)) if only is not None else ("*",)
    with _lock:
        if _manager is not None and _manager_key == key:
            return _manager
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        # Built in, always loaded, and first: pluggy asks the last registered first, so
        # an installed plugin that owns a PythonModel subclass is asked before it.
        from tracksdk import _pyfunc

        pm.register(_pyfunc, name=_pyfunc.PLUGIN_NAME)
        allowed = None if only is None else set(only)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                _warn.warn(
                    f"tracksdk: plugin {ep.name!r} ({ep.value}) failed to load and is "
                    f"skipped: {type(exc).__name__}: {exc}"
                )
        _manager, _manager_key = pm, key
        return pm


def allowed() -> list[str] | None:
    """``TRACKSDK_PLUGINS``, or None (all) when settings cannot be read."""
    from tracksdk import _config

    try:
        return _config.resolve().settings.plugins
    except Exception:
        return None


def reset() -> None:
    """Forget loaded plugins (tests, and after installing one in a running process)."""
    global _manager, _manager_key
    with _lock:
        _manager, _manager_key = None, None


def frameworks(pm: pluggy.PluginManager) -> dict[str, str]:
    """Framework name to the plugin that provides it."""
    return hookspecs.call_frameworks(pm)


def framework_of(pm: pluggy.PluginManager, model: Any) -> str | None:
    """The framework that owns ``model``, or None."""
    return hookspecs.call_model_framework(pm, model)
