"""Log and register a returned model: tracksdk against MLflow's default, side by side.

tracksdk side: a whole ``@tracked(register=Register(...))`` run that returns a fitted
``LogisticRegression`` (the plugin saves it with a signature, an input example and pinned
requirements, uploads it, registers a version and sets its alias). MLflow side:
``mlflow.start_run()`` + ``mlflow.sklearn.log_model(..., registered_model_name=...,
input_example=...)`` with its defaults (requirements inferred in a subprocess). Both on
their own fresh sqlite store in a temporary folder, turn by turn; medians.

    .venv/bin/python bench/register.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracksdk-bench-register-") as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        os.chdir(root)
        for name in [n for n in os.environ if n.startswith(("TRACKSDK_", "MLFLOW_"))]:
            del os.environ[name]
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        # mlflow.set_tracking_uri() below also sets MLFLOW_TRACKING_URI, which tracksdk
        # follows when no backend is named: name it, so each side has its own store.
        os.environ["TRACKSDK_BACKEND"] = "local"
        os.environ["TRACKSDK_LOCAL__ROOT"] = str(root / "tracksdk-store")
        os.environ["TRACKSDK_CAPTURE__REQUIREMENTS"] = "false"
        warnings.simplefilter("ignore", FutureWarning)

        import mlflow
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression

        from tracksdk import Register, tracked

        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        model = LogisticRegression(max_iter=3000).fit(X, y)
        with tracked(experiment="warm-up"):  # creates the store: not timed
            pass
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        mlflow.set_experiment("mlflow")

        @tracked(experiment="tracksdk", register=Register("model-tracksdk"))
        def train(X: object) -> LogisticRegression:
            return model

        ours, theirs = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            train(X)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    registered_model_name="model-mlflow",
                    input_example=X.head(5),
                )
            theirs.append(time.perf_counter() - started)
        client = mlflow.MlflowClient(f"sqlite:///{root / 'tracksdk-store' / 'mlflow.db'}")
        versions = client.search_model_versions("name='model-tracksdk'")
        if len(versions) != args.rounds:
            raise SystemExit(f"tracksdk registered {len(versions)} of {args.rounds} versions")
        a, b = statistics.median(ours), statistics.median(theirs)
        print("| measure | tracksdk | MLflow default | ratio |")
        print("|---|---:|---:|---:|")
        what = f"log + register a LogisticRegression, median of {args.rounds}"
        print(f"| {what} | {a:.3f} s | {b:.3f} s | {a / b:.3f}x |")
        rounds = f"tracksdk {[round(v, 3) for v in ours]}, MLflow {[round(v, 3) for v in theirs]}"
        print(f"rounds: {rounds}", file=sys.stderr)


if __name__ == "__main__":
    main()
