"""Switch an MLflow autolog flavor on for one run, and put the previous state back after.

Shared by tracksdk-sklearn and tracksdk-lightgbm. MLflow keeps each flavor's autolog
configuration in ``mlflow.utils.autologging_utils.AUTOLOGGING_INTEGRATIONS[flavor]``: the
keyword arguments of the last ``mlflow.<flavor>.autolog(...)`` call merged over the
function's defaults (an empty dict once the flavor module is imported and autolog was never
called). :func:`enable_autolog` copies that entry before it enables autolog, and the
callable it returns either calls ``autolog(**previous)`` again (the user had it on) or
``autolog(disable=True)`` and then puts the exact previous entry back (it was off or never
configured). Restores are meant to run in reverse order of enables (nested runs).

Only this module and the hook functions import MLflow, and only when called.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from tracksdk_sklearn.support import warn

__all__ = ["COMMON_DEFAULTS", "enable_autolog"]

#: Cheap defaults for every flavor, merged *under* the user's options. Model logging runs
#: MLflow's requirements-inference subprocess (seconds per fit); datasets, input examples
#: and signatures re-read the training data. ``exclusive=False`` because tracksdk's runs
#: are started by tracksdk, i.e. "user-created" runs in MLflow's terms. ``silent=True``
#: keeps MLflow's autolog chatter out of the user's output.
COMMON_DEFAULTS: dict[str, Any] = {
    "log_models": False,
    "log_datasets": False,
    "log_input_examples": False,
    "log_model_signatures": False,
    "silent": True,
    "exclusive": False,
}

# MLflow's own lock (autologging_conf_lock) is held only inside one autolog() call; this one
# makes "read the previous state, then enable" a single step between two tracked runs
# starting in two threads of one process.
_LOCK = threading.RLock()


def _merge_options(
    flavor: str,
    autolog: Callable[..., Any],
    defaults: Mapping[str, Any],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The keyword arguments for ``autolog``: defaults, then the user's options, checked."""
    config = {**defaults, **options}
    if config.pop("registered_model_name", None) is not None:
        warn(
            f"tracksdk ignores registered_model_name in {flavor} autolog options: MLflow "
            "would register a new model version for every fit, tuning trials included. "
            "Register the model tracksdk saves for the run instead."
        )
    import inspect

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
        # Same rule as autologging_is_disabled(): no config, or disable=True, means off.
        was_enabled = previous is not None and previous.get("disable", True) is False
        autolog(**config)

    restored = False

    def restore() -> None:
        nonlocal restored
        with _LOCK:
            if restored:
                return
            restored = True
            if was_enabled and previous is not None:
                autolog(**previous)
            else:
                autolog(disable=True, silent=True)
                if previous is None:
                    integrations.pop(flavor, None)
                else:
                    integrations[flavor] = previous

    return restore
