"""A PyTorch training loop's per-step logging: tracksdk next to plain MLflow, same process.

Run it with ``.venv/bin/python bench/torch_steps.py [--quick]``. A tiny model (a linear
layer on 256 x 32 inputs, on the CPU) trains for N steps, four ways, taking turns so
that load from elsewhere hits all alike, each in a run on its own fresh sqlite store:

- ``no logging``: the loop alone;
- ``StepLogger``: ``tracksdk_pytorch.StepLogger(every=50).log(step, loss=loss)``;
- ``tracksdk.log_metric``: ``tracksdk.log_metric("loss", loss.item(), step=step)``;
- ``mlflow.log_metric``: ``mlflow.log_metric("loss", loss.item(), step=step)``.

Timed: the loop only (the run's start and end are outside). Printed: the median loop
time of each, the logging's cost per step (the loop's time less the unlogged loop's),
and the ratios to MLflow; written as JSON to ``bench/results/torch_steps-<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def loop(steps: int, log: Callable[[int, Any], None] | None) -> float:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(256, 32), torch.randn(256, 1)
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if log is not None:
            log(step, loss)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    args = parser.parse_args()
    steps, rounds = (500, 3) if args.quick else (2000, 7)
    import mlflow
    import torch
    from tracksdk_pytorch import StepLogger

    import tracksdk
    from tracksdk import tracked

    torch.set_num_threads(1)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name in list(os.environ):
            if name.startswith(("TRACKSDK_", "MLFLOW_")):
                del os.environ[name]
        os.environ["TRACKSDK_SYSTEM_METRICS__ENABLED"] = "false"
        os.environ["TRACKSDK_CONSOLE"] = "off"
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/plain.db")
        mlflow.set_experiment("bench")
        for _ in range(rounds):
            times.setdefault("no logging", []).append(loop(steps, None))
            with tracked(experiment="bench"), StepLogger(every=50) as logger:
                times.setdefault("StepLogger", []).append(
                    loop(steps, lambda s, loss: logger.log(s, loss=loss))
                )
            with tracked(experiment="bench"):
                times.setdefault("tracksdk.log_metric", []).append(
                    loop(steps, lambda s, loss: tracksdk.log_metric("loss", loss.item(), step=s))
                )
            with mlflow.start_run():
                times.setdefault("mlflow.log_metric", []).append(
                    loop(steps, lambda s, loss: mlflow.log_metric("loss", loss.item(), step=s))
                )
    base = statistics.median(times["no logging"])
    plain = statistics.median(times["mlflow.log_metric"]) - base
    result: dict[str, Any] = {"steps": steps, "rounds": rounds, "sides": {}}
    print(f"{steps} steps, median of {rounds} rounds")
    for name, values in times.items():
        median = statistics.median(values)
        per_step_us = (median - base) / steps * 1e6
        ratio = (median - base) / plain if name != "no logging" else 0.0
        result["sides"][name] = {"loop_s": median, "per_step_us": per_step_us, "vs_mlflow": ratio}
        print(f"  {name:22s} loop {median:7.3f} s   logging {per_step_us:8.1f} us/step   "
              f"{ratio:6.3f}x MLflow's cost")  # fmt: skip
    out = HERE / "results" / f"torch_steps-{_dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
