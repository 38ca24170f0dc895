"""Helpers shared by the scikit-learn and LightGBM plugins.

Warnings that point at the user's line, pinned requirements, input examples, signatures.
Nothing here imports a framework or MLflow at module level.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = [
    "EXAMPLE_ROWS",
    "head",
    "infer_signature",
    "pin",
    "pinned_requirements",
    "quiet_logger",
    "used_modules",
    "warn",
]

#: Rows of the input example kept in the saved model (``input_example.json``).
EXAMPLE_ROWS = 5

# Frames of these packages are skipped so a warning points at the user's line.
_INTERNAL = frozenset({"tracksdk", "tracksdk_sklearn", "tracksdk_lightgbm", "pluggy"})

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


def warn(message: str) -> None:
    """Warn (``TrackSDKWarning``) at the first caller outside tracksdk, its plugins, pluggy."""
    from tracksdk.exceptions import TrackSDKWarning

    level = 1
    frame = sys._getframe(1)
    while frame is not None:
        level += 1
        name = str(frame.f_globals.get("__name__", ""))
        if name.partition(".")[0] not in _INTERNAL:
            break
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(message, TrackSDKWarning, stacklevel=level)


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


def infer_signature(model: Any, example: Any, predict: Any = None) -> Any:
    """``mlflow.models.infer_signature(example, predict(example))``; None without example.

    A model that cannot predict on its own example gets no signature and a warning,
    rather than no saved model.
    """
    if example is None:
        return None
    from mlflow.models import infer_signature as mlflow_infer_signature

    try:
        output = (predict or model.predict)(example)
        return mlflow_infer_signature(example, output)
    except Exception as error:
        warn(
            f"No signature saved for {type(model).__name__}: predicting on the input example "
            f"failed ({type(error).__name__}: {error})."
        )
        return None


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
