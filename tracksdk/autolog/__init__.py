"""Autolog machinery for framework plugins: engines, patched training calls, restores.

A plugin's ``tracksdk_autolog`` hook turns its framework's autolog on for one tracked run
and returns how to turn it off. This package does the framework-independent part, so a
plugin describes its framework once, in an :class:`AutologSpec`, and writes only what a
training call logs. tracksdk-sklearn, tracksdk-lightgbm and tracksdk-xgboost are built on
it; the last two patch their library with :func:`patch_boosting_library`.

Two engines (docs/autolog.md):

- ``"tracksdk"`` (the default): the plugin's ``install`` patches the framework's training
  calls with :func:`patch_attribute` and :func:`patched_call`. The outermost patched call
  in a run's own thread or task is handed to the plugin's ``log`` function, which logs
  cheap facts through ``tracksdk.log_params``, ``log_metrics``, ... around the original
  call, each step under :func:`guarded` (a failure is one warning, never an exception in
  the user's ``fit``). Patches are reference counted across runs (:func:`acquire_patches`).
- ``"mlflow"``: MLflow's ``mlflow.<flavor>.autolog`` with cheap defaults
  (:data:`COMMON_DEFAULTS`); the previous MLflow state, a user's own
  ``mlflow.<flavor>.autolog(...)`` included, is put back exactly (:func:`enable_autolog`).

:func:`start_autolog` chooses the engine from the options (:func:`choose_engine`), turns it
on and returns the restore callable; :class:`tracksdk.hookspecs.FrameworkHooks` makes it a
hook. A minimal engine for a framework whose models train with ``Model.fit``::

    import time

    import tracksdk
    from tracksdk.autolog import AutologSpec, guarded, patch_attribute, patched_call


    def log_fit(scope, original, args, kwargs):
        model = args[0]
        guarded(scope, "log the params", lambda: tracksdk.log_params(model.get_params()))
        start = time.perf_counter()
        result = original(*args, **kwargs)  # the user's fit: always called, exactly once
        elapsed = time.perf_counter() - start
        guarded(scope, "log the fit time", lambda: tracksdk.log_metric("fit_time_s", elapsed))
        return result


    def install(add_undo):
        import toyml

        undo = patch_attribute(
            toyml.Model, "fit", lambda original: patched_call("toyml", original, log_fit)
        )
        if undo is not None:
            add_undo(undo)


    def autolog_spec() -> AutologSpec:
        return AutologSpec(framework="toyml", engine_options={}, install=install)

Importing this package imports neither MLflow nor any framework; only the functions of
:mod:`tracksdk.autolog._handover` import MLflow, when called.
"""

from __future__ import annotations

from tracksdk.autolog._boosting import BoostingLibrary, SklearnTrainHook, patch_boosting_library
from tracksdk.autolog._engines import (
    COMMON_DEFAULTS,
    ENGINES,
    MLFLOW_ONLY,
    MLFLOW_OPTIONS,
    AddUndo,
    AutologSpec,
    choose_engine,
    skip_post_training_metrics,
    start_autolog,
)
from tracksdk.autolog._handover import enable_autolog, mlflow_autolog_enabled
from tracksdk.autolog._patching import (
    ENGINE_MLFLOW,
    ENGINE_OFF,
    ENGINE_TRACKSDK,
    Scope,
    acquire_patches,
    active_scope,
    bind_arguments,
    estimator_tags,
    guarded,
    once,
    open_scope,
    patch_attribute,
    patched_call,
    pickles_by_reference,
    tracked_run,
)

__all__ = [
    "COMMON_DEFAULTS",
    "ENGINES",
    "ENGINE_MLFLOW",
    "ENGINE_OFF",
    "ENGINE_TRACKSDK",
    "MLFLOW_ONLY",
    "MLFLOW_OPTIONS",
    "AddUndo",
    "AutologSpec",
    "BoostingLibrary",
    "Scope",
    "SklearnTrainHook",
    "acquire_patches",
    "active_scope",
    "bind_arguments",
    "choose_engine",
    "enable_autolog",
    "estimator_tags",
    "guarded",
    "mlflow_autolog_enabled",
    "once",
    "open_scope",
    "patch_attribute",
    "patch_boosting_library",
    "patched_call",
    "pickles_by_reference",
    "skip_post_training_metrics",
    "start_autolog",
    "tracked_run",
]
