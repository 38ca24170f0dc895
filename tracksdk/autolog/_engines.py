"""Autolog for one tracked run: choose the engine, turn it on, put everything back after.

Each framework has two engines:

- ``"tracksdk"`` (the default): tracksdk's own lightweight engine
  (:mod:`tracksdk.autolog._patching`), which logs cheap facts through tracksdk's API and
  leaves the costly extras opt-in.
- ``"mlflow"``: MLflow's ``mlflow.<flavor>.autolog``, with tracksdk's cheap defaults
  (:data:`COMMON_DEFAULTS`) merged under the user's options.

:func:`start_autolog` picks one (:func:`choose_engine`): the ``engine`` option when given;
else MLflow's when the user already has MLflow's autolog on for that flavor in this process
(their own ``mlflow.autolog()``, or a parent run's MLflow engine: tracksdk does not run a
second engine next to it); else MLflow's when an option asks for something only MLflow's
engine does (:data:`MLFLOW_ONLY`: ``log_models``, ``log_post_training_metrics`` or
``exclusive`` set to true); else tracksdk's. MLflow's state is saved and restored by
:mod:`tracksdk.autolog._handover`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracksdk._warn import warn
from tracksdk.autolog._handover import (
    drop_registered_model_name,
    enable_autolog,
    mlflow_accepts,
    mlflow_autolog_enabled,
)
from tracksdk.autolog._patching import (
    ENGINE_MLFLOW,
    ENGINE_OFF,
    ENGINE_TRACKSDK,
    acquire_patches,
    once,
    open_scope,
)

__all__ = [
    "COMMON_DEFAULTS",
    "ENGINES",
    "MLFLOW_ONLY",
    "MLFLOW_OPTIONS",
    "AutologSpec",
    "choose_engine",
    "skip_post_training_metrics",
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

#: The options every ``mlflow.<flavor>.autolog`` takes (MLflow 3.17): the default of
#: ``AutologSpec.mlflow_options``; a flavor with more lists them too.
MLFLOW_OPTIONS = (
    "log_input_examples",
    "log_model_signatures",
    "log_models",
    "log_datasets",
    "disable",
    "exclusive",
    "disable_for_unsupported_versions",
    "silent",
    "registered_model_name",
    "extra_tags",
)

#: What ``AutologSpec.install`` receives: ``add_undo(step)`` records one undo step.
AddUndo = Callable[[Callable[[], None]], None]


@dataclass(frozen=True)
class AutologSpec:
    """How one framework's autolog is turned on, under either engine.

    Attributes:
        framework: The framework name, also MLflow's flavor and autolog integration
            name (``"sklearn"``, ``"lightgbm"``).
        engine_options: tracksdk's engine's options and their defaults.
        install: Installs tracksdk's engine's patches, calling ``add_undo`` with each
            undo step (see :func:`~tracksdk.autolog.acquire_patches`).
        mlflow_options: The option names of ``mlflow.<flavor>.autolog`` in the supported
            MLflow version (default :data:`MLFLOW_OPTIONS`; a name outside them is looked
            up in the installed MLflow).
        package: The framework's import name (default: ``framework``). It is imported
            first, so that hooks a user's earlier ``mlflow.autolog()`` left for that import
            have run and the MLflow state read here is the one the user set up.
        mlflow_defaults: tracksdk's defaults for MLflow's engine (default
            :data:`COMMON_DEFAULTS`).
        mlflow_switches: tracksdk's own boolean options for MLflow's engine (not passed to
            ``mlflow.<flavor>.autolog``), each false by default, with the switch that
            turns off what MLflow would otherwise always do. While the option is false,
            the switch is called when MLflow's autolog is on, and returns its undo.
        mlflow_always: Options of tracksdk's engine that MLflow's engine cannot turn off,
            each with what MLflow's engine does instead (for the warning).
    """

    framework: str
    engine_options: Mapping[str, Any]
    install: Callable[[AddUndo], None]
    mlflow_options: tuple[str, ...] = MLFLOW_OPTIONS
    package: str = ""
    mlflow_defaults: Mapping[str, Any] = field(default_factory=lambda: dict(COMMON_DEFAULTS))
    mlflow_switches: Mapping[str, Callable[[], Callable[[], None]]] = field(default_factory=dict)
    mlflow_always: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.package:
            object.__setattr__(self, "package", self.framework)


def _mlflow_accepts(spec: AutologSpec, name: str) -> bool:
    # A newer MLflow may have more options: ask the installed one (imports the flavor).
    return name in spec.mlflow_options or mlflow_accepts(spec.framework, name)


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
    drop_registered_model_name(framework, config)
    ours = set(spec.engine_options) | set(spec.mlflow_switches)
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
                name in spec.mlflow_switches or name in spec.mlflow_options
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

    Called by the plugins' ``tracksdk_autolog`` hooks (see
    :meth:`tracksdk.hookspecs.FrameworkHooks.autolog`). The returned callable restores
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
            keep = {name: bool(config.pop(name, False)) for name in spec.mlflow_switches}
            undo.append(enable_autolog(framework, spec.package, spec.mlflow_defaults, config))
            for name, switch_off in spec.mlflow_switches.items():
                if not keep[name]:
                    undo.append(switch_off())
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
    return once(lambda: _run_all(undo))


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


def skip_post_training_metrics(framework: str, owns: Callable[[Any], bool]) -> Callable[[], None]:
    """Keep MLflow's post-training metrics off for one framework's models; return the undo.

    ``mlflow.<framework>.autolog`` turns MLflow's post-training metrics on for scikit-learn
    API models and has no option to turn them off: after every fit, each ``sklearn.metrics``
    call and ``score`` on the model's predictions is logged again as a metric named after
    the variable (``accuracy_score_X``), with a ``metric_info.json``. MLflow does that for
    the models its patched ``fit`` registers with
    ``_AUTOLOGGING_METRICS_MANAGER.register_model``; while this is in place, models
    ``owns`` accepts are not registered, so nothing is logged for their predictions; other
    models (sklearn autolog with ``log_post_training_metrics=True``) still are. It relies
    on an MLflow internal: if it is gone in another MLflow version, this warns and MLflow
    logs the post-training metrics.

    Args:
        framework: The plugin's framework, for the warning (``"lightgbm"``).
        owns: Whether a model is the framework's.
    """
    from tracksdk.saving import import_mlflow

    manager = getattr(import_mlflow("mlflow.sklearn"), "_AUTOLOGGING_METRICS_MANAGER", None)
    register = getattr(manager, "register_model", None)
    if manager is None or register is None:
        warn(
            "tracksdk: mlflow.sklearn._AUTOLOGGING_METRICS_MANAGER.register_model is gone: "
            f"{framework} autolog with engine='mlflow' will log post-training metrics."
        )
        return lambda: None

    def register_model(model: Any, *args: Any, **kwargs: Any) -> Any:
        if owns(model):
            return None
        return register(model, *args, **kwargs)

    # An instance attribute over the bound method. A nested run's switch (of this plugin
    # or another's) goes over this one and puts it back when it ends; the outermost
    # removes the attribute.
    previous = manager.__dict__.get("register_model")
    manager.register_model = register_model

    @once
    def restore() -> None:
        if manager.__dict__.get("register_model") is register_model:
            if previous is None:
                del manager.register_model
            else:
                manager.register_model = previous

    return restore
