"""MLflow's own autolog state: read it, turn a flavor on for one run, put it back exactly.

MLflow keeps each flavor's autolog configuration in
``mlflow.utils.autologging_utils.AUTOLOGGING_INTEGRATIONS[flavor]``: the keyword arguments
of the last ``mlflow.<flavor>.autolog(...)`` call merged over the function's defaults.
:func:`enable_autolog` copies that entry before it changes anything, and the callable it
returns either calls ``autolog(**previous)`` again (the user had it on) or
``autolog(disable=True)`` and then puts the exact previous entry back. The same mechanism
switches MLflow's autolog off while tracksdk's engine runs in its place. Restores are meant
to run in reverse order of enables (nested runs).

This is the only part of :mod:`tracksdk.autolog` that imports MLflow, inside its
functions; :func:`mlflow_autolog_enabled` reads MLflow's state without importing it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from tracksdk._warn import warn
from tracksdk.autolog._patching import once

__all__ = [
    "drop_registered_model_name",
    "enable_autolog",
    "mlflow_accepts",
    "mlflow_autolog_enabled",
]

# MLflow's own lock (autologging_conf_lock) is held only inside one autolog() call; this one
# makes "read the previous state, then enable" a single step between two tracked runs
# starting in two threads of one process.
_LOCK = threading.RLock()


def mlflow_autolog_enabled(flavor: str) -> bool:
    """Whether MLflow's autolog is on for ``flavor`` in this process.

    Reads MLflow's state without importing MLflow: when its autolog module was never
    imported, nobody turned autolog on.
    """
    utils = sys.modules.get("mlflow.utils.autologging_utils")
    integrations = getattr(utils, "AUTOLOGGING_INTEGRATIONS", None) or {}
    return _enabled(integrations.get(flavor))


def _enabled(config: Mapping[str, Any] | None) -> bool:
    # MLflow's rule in autologging_is_disabled(): no config, or disable=True, is off.
    return config is not None and config.get("disable", True) is False


def mlflow_accepts(flavor: str, name: str) -> bool:
    """Whether the installed ``mlflow.<flavor>.autolog`` has an option ``name`` (imports it)."""
    autolog = importlib.import_module(f"mlflow.{flavor}").autolog
    return name in inspect.signature(autolog).parameters


def drop_registered_model_name(flavor: str, config: MutableMapping[str, Any]) -> None:
    """Remove ``registered_model_name`` from ``config``, with a warning when it was set."""
    if config.pop("registered_model_name", None) is not None:
        warn(
            f"tracksdk ignores registered_model_name in {flavor} autolog options: MLflow "
            "would register a new model version for every fit, tuning trials included. "
            "Register the model tracksdk saves for the run instead."
        )


def _merge_options(
    flavor: str,
    autolog: Callable[..., Any],
    defaults: Mapping[str, Any],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The keyword arguments for ``autolog``: defaults, then the user's options, checked."""
    config = {**defaults, **options}
    drop_registered_model_name(flavor, config)
    accepted = inspect.signature(autolog).parameters
    unknown = sorted(name for name in config if name not in accepted)
    if unknown:
        warn(
            f"Unknown {flavor} autolog option(s) ignored: {', '.join(unknown)}. "
            f"mlflow.{flavor}.autolog accepts: {', '.join(accepted)}."
        )
        for name in unknown:
            del config[name]
    return config


def enable_autolog(
    flavor: str,
    package: str,
    defaults: Mapping[str, Any],
    options: Mapping[str, Any],
) -> Callable[[], None]:
    """Call ``mlflow.<flavor>.autolog`` with ``defaults`` merged under ``options``.

    Args:
        flavor: MLflow flavor and autolog integration name, e.g. ``"sklearn"``.
        package: The framework's import name, e.g. ``"sklearn"``. It is imported first, so
            that hooks a user's earlier ``mlflow.autolog()`` left for that import have run
            and the state read here is the one the user set up.
        defaults: tracksdk's defaults for this flavor.
        options: The user's options; they win over ``defaults``. ``registered_model_name``
            is dropped with a warning, unknown names are dropped with a warning.

    Returns:
        A callable that restores the autolog state found before this call. Calling it more
        than once does nothing after the first time.
    """
    importlib.import_module(package)
    module = importlib.import_module(f"mlflow.{flavor}")
    from mlflow.utils import autologging_utils

    autolog: Callable[..., Any] = module.autolog
    config = _merge_options(flavor, autolog, defaults, options)
    integrations: dict[str, Any] = autologging_utils.AUTOLOGGING_INTEGRATIONS

    with _LOCK:
        previous = integrations.get(flavor)
        previous = dict(previous) if previous is not None else None
        was_enabled = _enabled(previous)
        autolog(**config)

    @once
    def restore() -> None:
        with _LOCK:
            if was_enabled and previous is not None:
                autolog(**previous)
            else:
                autolog(disable=True, silent=True)
                if previous is None:
                    integrations.pop(flavor, None)
                else:
                    integrations[flavor] = previous

    return restore
