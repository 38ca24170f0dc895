"""The built-in ``pyfunc`` plugin: returned ``mlflow.pyfunc.PythonModel`` instances.

A custom model (a subclass of ``mlflow.pyfunc.PythonModel``) belongs to no framework, so
no installed framework plugin saves it. This plugin saves it with MLflow's own pyfunc
flavour, ``mlflow.pyfunc.save_model(python_model=...)``, into the run's ``model/``, where
``register=`` finds it like any other model.

It is a plugin, registered by :func:`tracksdk._plugins.manager` before the installed ones,
rather than code in the model path: ownership and saving go through the same two hooks
as every framework's model, so a third-party plugin that knows a ``PythonModel``
subclass better (it is asked first) takes it, a failing save is a warning naming the
plugin, and the run's code needs no special case. It is part of tracksdk because the
pyfunc flavour is part of MLflow, which tracksdk already requires.

It does not declare a framework (:func:`tracksdk_frameworks`): there is nothing to
autolog. Importing this module imports nothing heavy; the save imports MLflow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tracksdk.hookspecs import hookimpl

__all__ = ["FRAMEWORK", "PLUGIN_NAME", "tracksdk_model_framework", "tracksdk_save_model"]

#: The name the plugin is registered under, and the framework it reports.
PLUGIN_NAME = FRAMEWORK = "pyfunc"

# The requirements every saved PythonModel gets: MLflow loads it, cloudpickle unpickles
# it (MLflow pickles the instance with cloudpickle). MLflow's requirement inference would
# find the model's other imports, but it re-imports the model in a subprocess (seconds).
_DISTRIBUTIONS = ("mlflow", "cloudpickle")


def _is_python_model(model: Any) -> bool:
    """Whether ``model`` is a ``mlflow.pyfunc.PythonModel``, without importing MLflow."""
    return any(
        cls.__name__ == "PythonModel" and cls.__module__ == "mlflow.pyfunc.model"
        for cls in type(model).__mro__
    )


@hookimpl
def tracksdk_model_framework(model: Any) -> str | None:
    """``"pyfunc"`` for an instance of a ``PythonModel`` subclass, else None."""
    return FRAMEWORK if _is_python_model(model) else None


def pinned(distributions: tuple[str, ...] = _DISTRIBUTIONS) -> list[str]:
    """``name==version`` for each installed distribution in ``distributions``."""
    found = []
    for name in distributions:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return found


def _head(example: Any, rows: int = 5) -> Any:
    if example is None:
        return None
    if hasattr(example, "iloc"):
        return example.iloc[:rows]
    try:
        return example[:rows]
    except Exception:
        return None


# What MLflow logs on every such save, which is noise here: the pickling caution (the
# model is the user's own object, pickled to be loaded by the same user) and the
# signature step. (Its advice to add type hints to predict comes when the class is
# defined, not here, as in plain MLflow.)
_QUIET_LOGS = ("Passing a Python object as `python_model`", "Inferring model signature")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Drop MLflow's routine messages about saving a PythonModel object, for a while."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_QUIET_LOGS)

    logger = logging.getLogger("mlflow.pyfunc")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@hookimpl
def tracksdk_save_model(
    model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
) -> str | None:
    """Save with ``mlflow.pyfunc.save_model(python_model=model)`` and pinned requirements.

    The input example (the first rows of the call's first 2-D argument, or
    ``Result.input_example``) is saved with the model, and MLflow infers the signature
    from it by calling ``predict``; a ``predict`` that fails on it leaves the model
    without a signature (MLflow logs why).
    """
    if framework != FRAMEWORK:
        return None
    import mlflow.pyfunc

    from tracksdk import _warn

    requirements = pinned()
    example = _head(input_example)
    if example is not None and type(example).__module__.partition(".")[0] == "pandas":
        requirements += pinned(("pandas",))
    with _quiet():
        mlflow.pyfunc.save_model(
            str(path), python_model=model, input_example=example, pip_requirements=requirements
        )
    for extra in formats:
        _warn.warn(f"tracksdk: a PythonModel cannot be saved as {extra!r}; only model/ is saved.")
    return FRAMEWORK
