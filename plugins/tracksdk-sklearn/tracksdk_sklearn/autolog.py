"""Autolog for one tracked run: choose the engine, turn it on, put everything back after.

Shared by tracksdk-sklearn and tracksdk-lightgbm. Each framework has two engines:

- ``"tracksdk"`` (the default): tracksdk's own lightweight engine
  (:mod:`tracksdk_sklearn.engine`), which logs cheap facts through tracksdk's API and
  leaves the costly extras opt-in.
- ``"mlflow"``: MLflow's ``mlflow.<flavor>.autolog``, with tracksdk's cheap defaults
  (:data:`COMMON_DEFAULTS`) merged under the user's options.

:func:`start_autolog` picks one (:func:`choose_engine`): the ``engine`` option when given;
else MLflow's when the user already has MLflow's autolog on for that flavor in this process
(their own ``mlflow.autolog()``, or a parent run's MLflow engine: tracksdk does not run a
second engine next to it); else MLflow's when an option asks for something only MLflow's
engine does (:data:`MLFLOW_ONLY`: ``log_models``, ``log_post_training_metrics`` or
``exclusive`` set to true); else tracksdk's.

MLflow keeps each flavor's autolog configuration in
``mlflow.utils.autologging_utils.AUTOLOGGING_INTEGRATIONS[flavor]``: the keyword arguments
of the last ``mlflow.<flavor>.autolog(...)`` call merged over the function's defaults.
:func:`enable_autolog` copies that entry before it changes anything, and the callable it
returns either calls ``autolog(**previous)`` again (the user had it on) or
``autolog(disable=True)`` and then puts the exact previous entry back. The same mechanism
switches MLflow's autolog off while tracksdk's engine runs in its place. Restores are meant
to run in reverse order of enables (nested runs).

Only the hook functions and this module's functions import MLflow, and only when called.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracksdk_sklearn.engine import (
    ENGINE_MLFLOW,
    ENGINE_OFF,
    ENGINE_TRACKSDK,
    acquire_patches,
    open_scope,
)
from tracksdk_sklearn.support import warn

__all__ = [
    "COMMON_DEFAULTS",
    "ENGINES",
    "MLFLOW_ONLY",
    "AutologSpec",
    "choose_engine",
    "enable_autolog",
    "mlflow_autolog_enabled",
    "start_autolog",
]

#: Cheap defaults for MLflow's engine, merged *under* the user's options. Model logging
#: runs MLflow's requirements-inference subprocess (seconds per fit); datasets, input
#: examples and signatures re-read the training data. ``exclusive=False`` because
#: tracksdk's runs are started by tracksdk, i.e. "user-created" runs in MLflow's terms.
#: ``silent=True`` keeps MLflow's autolog chatter out of the user's output.
COMMON_DEFAULTS: dict[str, Any] = {
    "log_models": False,
    "log_datasets": False,
    "log_input_examples": False,
    "log_model_signatures": False,
    "silent": True,
    "exclusive": False,
}

#: The values of the ``engine`` option.
ENGINES = (ENGINE_TRACKSDK, ENGINE_MLFLOW)

#: Options that ask, when true, for what only MLflow's engine does: a logged model per
#: fit, metrics from every ``sklearn.metrics`` call after the fit, nothing logged into
#: tracksdk's runs. Without ``engine``, any of them set to true selects MLflow's engine.
MLFLOW_ONLY = ("log_models", "log_post_training_metrics", "exclusive")

# Options of mlflow.<flavor>.autolog that tracksdk's engine accepts and that change
# nothing there: they only matter with log_models (input examples, signatures,
# serialization), for runs MLflow creates itself (extra_tags), or for MLflow's own
# messages and version checks.
_NO_EFFECT = (
    "silent",
    "log_input_examples",
    "log_model_signatures",
    "serialization_format",
    "extra_tags",
    "disable_for_unsupported_versions",
)

# MLflow's own lock (autologging_conf_lock) is held only inside one autolog() call; this one
# makes "read the previous state, then enable" a single step between two tracked runs
# starting in two threads of one process.
_LOCK = threading.RLock()


@dataclass(frozen=True)
class AutologSpec:
    """How one framework's autolog is turned on, under either engine.

    Attributes:
        framework: The framework name, also MLflow's flavor and autolog integration
            name (``"sklearn"``, ``"lightgbm"``).
        package: The framework's import name. It is imported first, so that hooks a
            user's earlier ``mlflow.autolog()`` left for that import have run and the
            MLflow state read here is the one the user set up.
        mlflow_options: The option names of ``mlflow.<flavor>.autolog`` in the supported
            MLflow version (a name outside it is looked up in the installed MLflow).
        mlflow_defaults: tracksdk's defaults for MLflow's engine.
        engine_options: tracksdk's engine's options and their defaults.
        mlflow_extras: tracksdk's own options for MLflow's engine and their defaults
            (e.g. ``training_plots``); not passed to ``mlflow.<flavor>.autolog``.
        mlflow_always: Options of tracksdk's engine that MLflow's engine cannot turn off,
            each with what MLflow's engine does instead (for the warning).
        install: Installs tracksdk's engine's patches (see
            :func:`tracksdk_sklearn.engine.acquire_patches`).
        enable_mlflow_extras: Applies ``mlflow_extras`` once MLflow's autolog is on;
            returns the callable undoing that.
    """

    framework: str
    package: str
    mlflow_options: tuple[str, ...]
    mlflow_defaults: Mapping[str, Any]
    engine_options: Mapping[str, Any]
    install: Callable[[Callable[[Callable[[], None]], None]], None]
    mlflow_extras: Mapping[str, Any] = field(default_factory=dict)
    mlflow_always: Mapping[str, str] = field(default_factory=dict)
    enable_mlflow_extras: Callable[[Mapping[str, Any]], Callable[[], None]] | None = None


def mlflow_autolog_enabled(flavor: str) -> bool:
    """Whether MLflow's autolog is on for ``flavor`` in this process.

    Reads MLflow's state without importing MLflow: when its autolog module was never
    imported, nobody turned autolog on.
    """
    utils = sys.modules.get("mlflow.utils.autologging_utils")
    integrations = getattr(utils, "AUTOLOGGING_INTEGRATIONS", None) or {}
    config = integrations.get(flavor)
    # Same rule as MLflow's autologging_is_disabled(): no config, or disable=True, is off.
    return config is not None and config.get("disable", True) is False


def _mlflow_accepts(spec: AutologSpec, name: str) -> bool:
    if name in spec.mlflow_options:
        return True
    # A newer MLflow may have more options: ask the installed one (imports the flavor).
    import inspect

    autolog = importlib.import_module(f"mlflow.{spec.framework}").autolog
    return name in inspect.signature(autolog).parameters


def choose_engine(spec: AutologSpec, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Pick the engine for ``options`` and return it with the options it understands.

    ``registered_model_name`` is dropped with a warning under either engine (a version per
    fit, tuning trials included). Unknown names are dropped with a warning listing the
    accepted ones. Options the chosen engine cannot honour are dropped with a warning:
    :data:`MLFLOW_ONLY` ones under ``engine="tracksdk"``, and under MLflow's engine the
    ``spec.mlflow_always`` ones asked to be off. ``disable=True`` gives the engine
    ``"off"``.

    Returns:
        ``(engine, options)``: for tracksdk's engine its options with defaults merged;
        for MLflow's the user's options (defaults are merged by :func:`enable_autolog`).
    """
    framework = spec.framework
    config = dict(options)
    engine = config.pop("engine", None)
    if config.pop("registered_model_name", None) is not None:
        warn(
            f"tracksdk ignores registered_model_name in {framework} autolog options: MLflow "
            "would register a new model version for every fit, tuning trials included. "
            "Register the model tracksdk saves for the run instead."
        )
    ours = set(spec.engine_options) | set(spec.mlflow_extras)
    unknown = sorted(k for k in config if k not in ours and not _mlflow_accepts(spec, k))
    if unknown:
        accepted = sorted({"engine", *ours, *spec.mlflow_options} - {"registered_model_name"})
        warn(
            f"Unknown {framework} autolog option(s) ignored: {', '.join(unknown)}. "
            f"Accepted: {', '.join(accepted)} (see docs/autolog.md)."
        )
        for name in unknown:
            del config[name]
    if engine is not None and engine not in ENGINES:
        warn(
            f"Unknown {framework} autolog engine {engine!r} ignored: use 'tracksdk' (the "
            "default, lightweight) or 'mlflow' (MLflow's own autolog)."
        )
        engine = None
    if config.get("disable"):
        return ENGINE_OFF, {}
    config.pop("disable", None)
    wants_mlflow = sorted(name for name in MLFLOW_ONLY if config.get(name))
    if engine is None:
        if mlflow_autolog_enabled(framework) or wants_mlflow:
            engine = ENGINE_MLFLOW
        else:
            engine = ENGINE_TRACKSDK
    if engine == ENGINE_MLFLOW:
        always = sorted(name for name in spec.mlflow_always if name in config and not config[name])
        if always:
            what = "; ".join(spec.mlflow_always[name] for name in always)
            warn(
                f"{framework} autolog with engine='mlflow' ignores {', '.join(always)}=False: "
                f"MLflow's engine always does it ({what}). Leave engine unset (tracksdk's "
                "engine) to go without."
            )
        # tracksdk's engine's own options mean nothing to mlflow.<flavor>.autolog.
        for name in list(config):
            if name in spec.engine_options and not (
                name in spec.mlflow_extras or name in spec.mlflow_options
            ):
                del config[name]
        return ENGINE_MLFLOW, config
    if wants_mlflow:
        warn(
            f"{framework} autolog with engine='tracksdk' ignores "
            f"{', '.join(f'{name}=True' for name in wants_mlflow)}: only MLflow's engine "
            "does that. Use engine='mlflow' (or leave engine unset) for it."
        )
    chosen = {**spec.engine_options}
    chosen.update({k: v for k, v in config.items() if k in spec.engine_options})
    return ENGINE_TRACKSDK, chosen


def start_autolog(
    spec: AutologSpec, options: Mapping[str, Any], *, in_store: bool = True
) -> Callable[[], None]:
    """Turn on ``spec.framework``'s autolog for one tracked run; return how to undo it.

    Called by the plugins' ``tracksdk_autolog`` hooks. The returned callable restores
    everything this call changed, newest first; calling it again does nothing.

    Args:
        spec: The framework's autolog description.
        options: The run's options for the framework.
        in_store: False when the run exists only in tracksdk's journal (offline, or the
            store did not answer). MLflow's engine writes to MLflow's active run and would
            create runs of its own: tracksdk's engine is used instead, with a warning.
    """
    importlib.import_module(spec.package)
    engine, config = choose_engine(spec, options)
    if engine == ENGINE_MLFLOW and not in_store:
        warn(
            f"{spec.framework} autolog uses tracksdk's engine in this run: MLflow's engine "
            "needs the run in a store, and this one is only journaled (offline, or the "
            "store did not answer)."
        )
        forced = {k: v for k, v in options.items() if k not in MLFLOW_ONLY}
        engine, config = choose_engine(spec, {**forced, "engine": ENGINE_TRACKSDK})
    framework = spec.framework
    undo: list[Callable[[], None]] = []
    try:
        undo.append(open_scope(framework, engine, config if engine == ENGINE_TRACKSDK else {}))
        if engine == ENGINE_MLFLOW:
            extras = {**spec.mlflow_extras}
            extras.update({k: config.pop(k) for k in list(config) if k in spec.mlflow_extras})
            undo.append(enable_autolog(framework, spec.package, spec.mlflow_defaults, config))
            if spec.enable_mlflow_extras is not None:
                undo.append(spec.enable_mlflow_extras(extras))
        else:
            # tracksdk's engine replaces MLflow's for this run (or, with disable=True,
            # nothing is autologged): MLflow's own autolog, when the user explicitly chose
            # engine="tracksdk" over it, is off until the run ends.
            if mlflow_autolog_enabled(framework):
                undo.append(
                    enable_autolog(framework, spec.package, {}, {"disable": True, "silent": True})
                )
            if engine == ENGINE_TRACKSDK:
                undo.append(acquire_patches(framework, spec.install))
    except BaseException:
        _run_all(undo)
        raise
    done = False

    def restore() -> None:
        nonlocal done
        if not done:
            done = True
            _run_all(undo)

    return restore


def _run_all(steps: Iterable[Callable[[], None]]) -> None:
    """Run undo steps newest first; every step runs, the first error is raised after."""
    error: BaseException | None = None
    for step in reversed(list(steps)):
        try:
            step()
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


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
