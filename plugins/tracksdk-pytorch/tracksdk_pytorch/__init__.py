"""tracksdk plugin for PyTorch: returned modules as MLflow models, checkpoints, a step logger.

Loaded through the ``tracksdk`` entry point ``pytorch``. Importing this module is cheap:
it imports neither torch nor MLflow; the hooks and helpers import them when called.

- Ownership: every ``torch.nn.Module`` (its class or a base from ``torch.*``). A tracked
  function that returns one has it saved as an MLflow ``pytorch`` model, with a
  signature from an input example (``tracksdk.Result(model, input_example=...)``, or the
  call's first 2-D argument) and pinned requirements.
- :func:`log_checkpoint` saves a state dict (a module's, an optimizer's, or a dict of
  them) as ``checkpoints/step-<step>.pt``; :func:`load_checkpoint` reads the latest back,
  for a resumed run (docs/resume.md).
- :class:`StepLogger` logs per-step values of a training loop at the journal's cost: a
  tensor is kept as it is (no ``.item()``, which waits for the GPU at every step) and
  turned into numbers every ``every`` steps, in one transfer.

Written against tracksdk's public plugin API only (:mod:`tracksdk.hookspecs`,
:mod:`tracksdk.saving`) and its public logging API.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracksdk.hookspecs import FrameworkHooks, warn

__all__ = [
    "FRAMEWORK",
    "StepLogger",
    "load_checkpoint",
    "log_checkpoint",
    "tracksdk_frameworks",
    "tracksdk_model_framework",
    "tracksdk_save_model",
]

FRAMEWORK = "pytorch"
CHECKPOINTS = "checkpoints"


def _is_torch_module(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (a class from ``torch``). Imports nothing."""
    return any(
        cls.__module__.partition(".")[0] == "torch" and cls.__name__ == "Module"
        for cls in type(model).__mro__
    )


def _numpy(example: Any) -> Any:
    """A tensor example as a NumPy array (MLflow's examples are arrays or frames)."""
    if hasattr(example, "detach") and hasattr(example, "cpu"):
        return example.detach().cpu().numpy()
    return example


def _save(model: Any, path: Path, input_example: Any, formats: tuple[str, ...]) -> None:
    """Save with ``mlflow.pytorch.save_model``: signature from the example, pinned deps."""
    import torch

    from tracksdk.saving import head, import_mlflow, infer_signature, pinned_requirements

    example = _numpy(head(input_example))
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32

    def predict(data: Any) -> Any:
        training = model.training
        model.eval()  # dropout and batch norm as at serving time, then as they were
        try:
            with torch.no_grad():
                return model(torch.as_tensor(data, dtype=dtype)).cpu().numpy()
        finally:
            model.train(training)

    import_mlflow("mlflow.pytorch").save_model(
        model,
        str(path),
        signature=infer_signature(model, example, predict),
        input_example=example,
        pip_requirements=pinned_requirements(["torch", "numpy"], example=example),
    )
    for extra in formats:
        warn(f"tracksdk-pytorch cannot save format {extra!r}; only the MLflow model is saved.")


def _state(obj: Any) -> Any:
    """What is saved of ``obj``: a module's or optimizer's state dict, a dict's each."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return {key: _state(value) for key, value in obj.items()}
    return obj


def log_checkpoint(state: Any, step: int, *, run: Any = None) -> str | None:
    """Log ``state`` as the artifact ``checkpoints/step-<step>.pt`` of the current run.

    Args:
        state: A module, an optimizer, a state dict, or a dict of them
            (``{"model": model, "optimizer": optimizer}``): their state dicts are saved
            with ``torch.save``, never the objects.
        step: The training step (or epoch) the checkpoint is of.
        run: The run to log to; default the current one (``tracksdk.log_artifact``'s).

    Returns:
        The artifact path, or None when the run is untracked.
    """
    import torch

    import tracksdk

    name = f"step-{int(step):09d}.pt"
    with tempfile.TemporaryDirectory(prefix="tracksdk-ckpt-") as folder:
        local = os.path.join(folder, name)
        torch.save({"step": int(step), "state": _state(state)}, local)
        if run is not None:
            if not run.tracked:
                return None
            run.log_artifact(local, CHECKPOINTS)
        else:
            active = tracksdk.active_run()
            if active is not None and not active.tracked:
                return None
            tracksdk.log_artifact(local, CHECKPOINTS)  # spooled: the file may go now
    return f"{CHECKPOINTS}/{name}"


def load_checkpoint(
    run_id: str, step: int | None = None, *, tracking_uri: str | None = None
) -> Any:
    """The state of a checkpoint of run ``run_id``: the latest, or the one of ``step``.

    Returns:
        ``(step, state)``, or None when the run has no checkpoint.
    """
    import torch
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    names = sorted(
        a.path.rsplit("/", 1)[1]
        for a in client.list_artifacts(run_id, CHECKPOINTS)
        if a.path.endswith(".pt")
    )
    if step is not None:
        names = [n for n in names if n == f"step-{int(step):09d}.pt"]
    if not names:
        return None
    with tempfile.TemporaryDirectory(prefix="tracksdk-ckpt-") as folder:
        local = client.download_artifacts(run_id, f"{CHECKPOINTS}/{names[-1]}", folder)
        saved = torch.load(local, map_location="cpu", weights_only=True)
    return saved["step"], saved["state"]


class StepLogger:
    """Logs a training loop's values per step, without waiting for the device each step.

    ``logger.log(step, loss=loss)`` keeps a tensor as it is (detached); every ``every``
    steps (and at :meth:`flush`, or leaving a ``with`` block) the kept values become
    numbers in one transfer and are logged through ``tracksdk.log_metrics``, one point per
    step. Plain numbers are kept as they are.

    Args:
        every: Steps between two transfers (and two journal writes).
        run: The run to log to; default the current one.
    """

    def __init__(self, every: int = 50, *, run: Any = None) -> None:
        if every < 1:
            raise ValueError(f"StepLogger(every={every}): every must be 1 or more")
        self.every = every
        self.run = run
        self._pending: list[tuple[int, dict[str, Any]]] = []

    def log(self, step: int, **values: Any) -> None:
        """Keep ``values`` (tensors or numbers) of ``step``; log them every ``every`` steps."""
        kept = {
            name: value.detach() if hasattr(value, "detach") else value
            for name, value in values.items()
        }
        for name, value in kept.items():
            if hasattr(value, "numel") and value.numel() != 1:
                raise ValueError(
                    f"StepLogger.log({name}=...): a tensor of {value.numel()} values; log "
                    f"one number per name ({name}.mean(), for instance)"
                )
        self._pending.append((int(step), kept))
        if len(self._pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Log what is kept now."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        import tracksdk

        tensors = [v for _, values in pending for v in values.values() if hasattr(v, "tolist")]
        numbers: dict[int, float] = {}
        if tensors:
            import torch

            # One transfer for all of them: a device sync per flush, not per value.
            flat = torch.stack([t.reshape(()).float() for t in tensors]).cpu().tolist()
            numbers = {id(t): value for t, value in zip(tensors, flat, strict=True)}
        log = self.run.log_metrics if self.run is not None else tracksdk.log_metrics
        for step, values in pending:
            log({name: numbers.get(id(v), v) for name, v in values.items()}, step=step)

    def __enter__(self) -> StepLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()


_hooks = FrameworkHooks(FRAMEWORK)
tracksdk_frameworks = _hooks.frameworks()
tracksdk_model_framework = _hooks.model_framework(_is_torch_module)
tracksdk_save_model = _hooks.save_model(_save)
