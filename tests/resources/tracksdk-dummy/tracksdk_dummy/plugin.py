"""A framework plugin for a toy framework: the smallest complete tracksdk plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tracksdk.hookspecs import Evaluation, hookimpl

# What the toy autolog was asked to do, so tests can see it switch on and off.
AUTOLOG_STATE: dict[str, Any] = {"enabled": False, "options": None}


class ToyModel:
    """A "trained" model: predicts the row sum times ``coef``."""

    def __init__(self, coef: float) -> None:
        self.coef = coef

    def predict(self, X: Any) -> Any:
        import numpy as np

        return np.asarray(X, dtype=float).sum(axis=1) * self.coef


@hookimpl
def tracksdk_frameworks() -> list[str]:
    return ["toy"]


@hookimpl
def tracksdk_model_framework(model: Any) -> str | None:
    return "toy" if isinstance(model, ToyModel) else None


@hookimpl
def tracksdk_autolog(framework: str, options: Mapping[str, Any]) -> Callable[[], None] | None:
    if framework != "toy":
        return None
    previous = dict(AUTOLOG_STATE)
    AUTOLOG_STATE.update(enabled=True, options=dict(options))

    def restore() -> None:
        AUTOLOG_STATE.update(previous)

    return restore


@hookimpl
def tracksdk_save_model(
    model: Any, framework: str, path: Path, input_example: Any, formats: tuple[str, ...]
) -> str | None:
    if framework != "toy":
        return None
    from importlib.metadata import version

    import mlflow.pyfunc
    from mlflow.models import infer_signature

    class Wrapper(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def __init__(self, inner: ToyModel) -> None:
            self.inner = inner

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return self.inner.predict(model_input)

    signature = None
    if input_example is not None:
        signature = infer_signature(input_example, model.predict(input_example))
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Wrapper(model),
        signature=signature,
        input_example=input_example,
        pip_requirements=[f"mlflow=={version('mlflow')}", f"numpy=={version('numpy')}"],
    )
    return "python_function"


@hookimpl
def tracksdk_evaluate(model: Any, framework: str, X: Any, y: Any) -> Evaluation | None:
    if framework != "toy":
        return None
    import numpy as np

    error = np.abs(model.predict(X) - np.asarray(y, dtype=float))
    return Evaluation(metrics={"mae": float(error.mean())})
