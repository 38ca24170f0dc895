"""The PyTorch plugin on tiny real models, on the CPU, through tracked runs on a real store.

A returned module is an MLflow pytorch model that predicts like the module; checkpoints
go back and forth; StepLogger's points are the loop's losses, step by step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

import numpy as np  # noqa: E402
import tracksdk_pytorch  # noqa: E402
from tracksdk_pytorch import StepLogger, load_checkpoint, log_checkpoint  # noqa: E402

import tracksdk  # noqa: E402
from tracksdk import Result, tracked  # noqa: E402
from tracksdk.testing import NO_PROVENANCE, capture_runs  # noqa: E402


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracked runs go to a local store in ``tmp_path``; yields a client on it."""
    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_TRACKING", "MLFLOW_RUN_ID", "MLFLOW_EXP")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    tracksdk.reset()
    with capture_runs(tmp_path):
        tracksdk.configure(capture=NO_PROVENANCE)
        yield mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracksdk.reset()


def data() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def fit(model: Any, x: Any, y: Any, steps: int, logger: StepLogger | None = None) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if logger is not None:
            logger.log(step, loss=loss, lr=0.1)
    return losses


def test_the_plugin_owns_modules_only() -> None:
    hooks = tracksdk_pytorch
    assert hooks.tracksdk_model_framework(torch.nn.Linear(2, 1)) == "pytorch"
    assert hooks.tracksdk_model_framework(torch.nn.Sequential(torch.nn.ReLU())) == "pytorch"
    assert hooks.tracksdk_model_framework(torch.zeros(2)) is None
    assert hooks.tracksdk_model_framework(object()) is None


def test_a_returned_module_is_a_pytorch_model_that_predicts_like_it(client: Any) -> None:
    x, y = data()

    @tracked(experiment="torch")
    def train(features: Any, target: Any) -> Any:
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        fit(model, features, target, steps=20)
        return Result(model, {"final": 1.0}, input_example=features[:5])

    model = train(x, y).model
    [run] = client.search_runs([client.get_experiment_by_name("torch").experiment_id])
    from mlflow.models import Model

    local = client.download_artifacts(run.info.run_id, "model")
    meta = Model.load(os.path.join(local, "MLmodel"))
    assert "pytorch" in meta.flavors
    assert meta.signature is not None
    assert tuple(meta.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3)
    requirements = Path(local, "requirements.txt").read_text()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    loaded = mlflow.pyfunc.load_model(local)
    expected = model(x[:4]).detach().numpy()
    assert np.allclose(loaded.predict(x[:4].numpy()), expected, atol=1e-6)
    assert model.training  # the module is left as it was found


def test_checkpoints_go_to_the_run_and_come_back(client: Any) -> None:
    x, y = data()
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tracked(experiment="torch") as run:
        fit(model, x, y, steps=3)
        assert log_checkpoint({"model": model, "optimizer": optimizer}, step=3) == (
            "checkpoints/step-000000003.pt"
        )
        fit(model, x, y, steps=2)
        log_checkpoint(model, step=5, run=run)
    uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    step, state = load_checkpoint(str(run.run_id), tracking_uri=uri)
    assert step == 5 and torch.equal(state["weight"], model.weight)
    step, state = load_checkpoint(str(run.run_id), step=3, tracking_uri=uri)
    assert step == 3 and set(state) == {"model", "optimizer"}
    assert load_checkpoint(str(run.run_id), step=4, tracking_uri=uri) is None
    restored = torch.nn.Linear(3, 1)
    restored.load_state_dict(state["model"])
    assert not torch.equal(restored.weight, model.weight)  # step 3's, not step 5's


def test_step_logger_logs_every_step_in_batches(client: Any) -> None:
    x, y = data()
    with tracked(experiment="torch") as run, StepLogger(every=4) as logger:
        losses = fit(torch.nn.Linear(3, 1), x, y, steps=10, logger=logger)
        assert len(logger._pending) == 2  # steps 8 and 9 wait for the end of the block
    history = sorted(client.get_metric_history(run.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(10))
    assert [m.value for m in history] == pytest.approx(losses)
    assert [m.value for m in client.get_metric_history(run.run_id, "lr")] == [0.1] * 10


def test_step_logger_refuses_a_bad_interval_and_a_tensor_of_many_values() -> None:
    with pytest.raises(ValueError, match="every must be 1 or more"):
        StepLogger(every=0)
    with pytest.raises(ValueError, match=r"a tensor of 3 values.*loss\.mean\(\)"):
        StepLogger().log(0, loss=torch.ones(3))
