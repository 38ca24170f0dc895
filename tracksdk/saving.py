"""Saving a model as an MLflow model in about 0.1 s: for plugins' ``tracksdk_save_model``.

MLflow's ``log_model`` takes seconds because it infers the model's pip requirements in a
subprocess that re-imports the model. :func:`save_mlflow_model` gives MLflow the
requirements pinned from the installed versions instead (:func:`pinned_requirements`),
with a signature and an input example from the first rows of the training input. The
scikit-learn and LightGBM plugins save through it; a plugin for another flavor does too::

    from tracksdk.saving import save_mlflow_model


    def save(model, path, input_example, formats):
        save_mlflow_model(
            "xgboost", model, path, input_example, ["xgboost"], serialization_format=None
        )

Nothing here imports a framework or MLflow at module level.
"""

from __future__ import annotations

import functools
import importlib
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tracksdk._warn import warn

__all__ = [
    "EXAMPLE_ROWS",
    "head",
    "import_mlflow",
    "infer_signature",
    "pin",
    "pinned_requirements",
    "quiet_logger",
    "save_mlflow_model",
    "used_modules",
]

#: Rows of the input example kept in the saved model (``input_example.json``).
EXAMPLE_ROWS = 5

# MLflow warns about its own code while some of its modules are imported:
# mlflow.types.responses (imported by mlflow.pyfunc, which every save_model loads) infers a
# schema from its own pydantic models at import time and warns "Any type hint is inferred
# as AnyType" (a UserWarning; the message starts with a colour code, hence the ``.*``).
# Under `python -W error::UserWarning`, or pytest with filterwarnings=error, that warning
# is raised inside the import, the import fails, and so does every model save, also on
# later attempts (a failed import is retried). It says nothing about the user's model:
# it is ignored while these modules are imported.
_IMPORT_TIME_WARNINGS = (r".*Any type hint is inferred as AnyType",)

# MLflow's hint about integer columns, raised by its schema inference. MLflow catches any
# exception there and saves the model with an ``AnyType`` input schema instead: under
# `-W error::UserWarning` the hint would silently cost the model its real signature. It is
# kept a warning (shown once, as without -W error) while a signature is inferred.
_SCHEMA_HINTS = (r"Hint: Inferred schema contains integer column",)

# Import name -> distribution name, for the common cases; anything else is looked up.
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "imblearn": "imbalanced-learn",
    "category_encoders": "category-encoders",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "catboost": "catboost",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "cloudpickle": "cloudpickle",
}


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def pin(distribution: str) -> str | None:
    """``"<distribution>==<installed version>"``, or None when it is not installed."""
    installed = _version(distribution)
    return None if installed is None else f"{distribution}=={installed}"


@functools.cache
def _all_distributions() -> dict[str, list[str]]:
    # ~0.5 s here: it reads every installed distribution's file list. Only reached for a
    # module that is neither well known nor named like its distribution.
    from importlib.metadata import packages_distributions

    return dict(packages_distributions())


def _distribution_of(module: str) -> str | None:
    top = module.partition(".")[0]
    if not top or top in sys.stdlib_module_names or top in {"__main__", "builtins"}:
        return None
    if top in _DISTRIBUTIONS:
        return _DISTRIBUTIONS[top]
    if _version(top) is not None:
        return top
    found = _all_distributions().get(top)
    return found[0] if found else None


def used_modules(model: Any) -> set[str]:
    """Modules of ``model``'s class and of every estimator or function in its parameters.

    ``get_params(deep=True)`` reaches the steps of a Pipeline, the transformers of a
    ColumnTransformer, the members of an ensemble and ``FunctionTransformer(func=...)``.
    """
    modules = {type(model).__module__}
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            params: dict[str, Any] = get_params(deep=True)
        except Exception:  # a third-party estimator with a broken get_params
            params = {}
        for value in params.values():
            if isinstance(value, str | int | float | bool | type(None)):
                continue
            if hasattr(value, "get_params"):
                modules.add(type(value).__module__)
            elif callable(value):
                modules.add(str(getattr(value, "__module__", None) or type(value).__module__))
    return modules


def pinned_requirements(
    distributions: Iterable[str], modules: Iterable[str] = (), example: Any = None
) -> list[str]:
    """Pinned pip requirements: MLflow, ``distributions``, those of ``modules``, pandas.

    pandas is added when ``example`` is a pandas object. Distributions that are not
    installed are left out. Giving MLflow this list skips its requirement inference, a
    subprocess that re-imports the model and takes seconds.
    """
    names: list[str] = []
    names.append("mlflow" if pin("mlflow") else "mlflow-skinny")
    names.extend(distributions)
    for module in sorted(set(modules)):
        dist = _distribution_of(module)
        if dist is not None:
            names.append(dist)
    if example is not None and type(example).__module__.partition(".")[0] == "pandas":
        names.append("pandas")
    requirements: list[str] = []
    for name in dict.fromkeys(names):
        pinned = pin(name)
        if pinned is not None:
            requirements.append(pinned)
    return requirements


def head(example: Any, rows: int = EXAMPLE_ROWS) -> Any:
    """The first ``rows`` rows of ``example`` (DataFrame, array, sparse matrix, list)."""
    if example is None:
        return None
    if hasattr(example, "iloc"):
        return example.iloc[:rows]
    if isinstance(example, dict):
        return {key: value[:rows] for key, value in example.items()}
    try:
        return example[:rows]
    except Exception:
        return example


def import_mlflow(module: str) -> Any:
    """Import an MLflow module without failing on MLflow's own import-time warnings.

    ``mlflow.pyfunc`` is imported first: every flavor's ``save_model`` loads it lazily, and
    it is the import that warns. Once imported, later calls are plain lookups.
    """
    loaded = sys.modules.get(module)
    if loaded is not None and "mlflow.pyfunc" in sys.modules:
        return loaded
    # catch_warnings swaps the process-wide filter list for the duration of the import;
    # this happens once per process, on the first save.
    with warnings.catch_warnings():
        for pattern in _IMPORT_TIME_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        importlib.import_module("mlflow.pyfunc")
        return importlib.import_module(module)


def infer_signature(model: Any, example: Any, predict: Any = None) -> Any:
    """``mlflow.models.infer_signature(example, predict(example))``; None without example.

    A model that cannot predict on its own example gets no signature and a warning,
    rather than no saved model.
    """
    if example is None:
        return None
    mlflow_infer_signature = import_mlflow("mlflow.models").infer_signature

    try:
        output = (predict or model.predict)(example)
        with warnings.catch_warnings():
            for pattern in _SCHEMA_HINTS:
                warnings.filterwarnings("default", message=pattern, category=UserWarning)
            return mlflow_infer_signature(example, output)
    except Exception as error:
        warn(
            f"No signature saved for {type(model).__name__}: predicting on the input example "
            f"failed ({type(error).__name__}: {error})."
        )
        return None


def save_mlflow_model(
    flavor: str,
    model: Any,
    path: str | Path,
    input_example: Any,
    distributions: Iterable[str],
    *,
    modules: Iterable[str] = (),
    quiet: Iterable[str] = (),
    serialization_format: str | None = "cloudpickle",
) -> Any:
    """Save ``model`` with ``mlflow.<flavor>.save_model``, the fast way; return the example.

    The project's plugins save through here: cloudpickle serialization (why:
    tracksdk-sklearn's README), a signature inferred from the first :data:`EXAMPLE_ROWS` rows of
    ``input_example`` (none without one), those rows as the input example, and
    requirements pinned from the installed versions, so MLflow's requirement inference (a
    subprocess, seconds) never runs. A ``Booster`` ignores ``serialization_format``: MLflow
    writes it in LightGBM's own text format.

    Args:
        flavor: The MLflow flavor module's name: ``"sklearn"``, ``"lightgbm"``, ...
        model: The fitted model.
        path: The new folder to save into.
        input_example: A sample of the training input, or None.
        distributions: Distributions to pin besides ``mlflow`` (and ``pandas`` for a
            pandas example).
        modules: Modules the model uses; their distributions are pinned too.
        quiet: Prefixes of ``mlflow.<flavor>`` log messages to drop during the save.
        serialization_format: Passed to ``save_model``; None for flavors without that
            argument (they write their framework's own format).

    Returns:
        The input example actually saved (the first rows), for extra formats.
    """
    module = import_mlflow(f"mlflow.{flavor}")
    example = head(input_example)
    requirements = pinned_requirements(distributions, modules=modules, example=example)
    extra = {} if serialization_format is None else {"serialization_format": serialization_format}
    with quiet_logger(f"mlflow.{flavor}", *quiet):
        module.save_model(
            model,
            str(path),
            signature=infer_signature(model, example),
            input_example=example,
            pip_requirements=requirements,
            **extra,
        )
    return example


class quiet_logger:
    """Drop records of logger ``name`` that start with one of ``prefixes``, for a while.

    A context manager; logging is imported only when it is entered.
    """

    def __init__(self, name: str, *prefixes: str) -> None:
        self.name = name
        self.prefixes = prefixes
        self._filter: Any = None

    def __enter__(self) -> None:
        import logging

        prefixes = self.prefixes

        def keep(record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(prefixes)

        self._filter = keep
        logging.getLogger(self.name).addFilter(keep)

    def __exit__(self, *exc_info: object) -> None:
        import logging

        logging.getLogger(self.name).removeFilter(self._filter)
