"""Resume benchmark: continuing a run with tracksdk next to plain MLflow, in the same process.

Run it with ``.venv/bin/python bench/resume.py [--quick]``. Each side gets a fresh sqlite
store in a temporary folder (schema made before anything is timed) and one existing run
to continue; the sides take turns, one run each, so load from elsewhere hits both alike.
Timed: the whole of an empty run that continues the existing one, start to end.

- ``mlflow start_run(run_id=)``: plain MLflow continuing a run whose id the script kept;
- ``mlflow search + start_run``: what a script does without the id: search the
  experiment for the run by a tag, then continue it (what ``tracked(key=)`` saves writing);
- ``tracked(key=)``: tracksdk continuing the run with the key (search, parts, status);
- ``tracked()``: a new tracksdk run, for reference.

The medians and the ratios are printed, and written as JSON to
``bench/results/resume-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)
        os.environ["TRACKSDK_SYSTEM_METRICS__ENABLED"] = "false"
        os.environ["TRACKSDK_CONSOLE"] = "off"
        os.environ["TRACKSDK_CAPTURE__GIT"] = "false"  # no repository here: the same work
        import mlflow

        import tracksdk
        from tracksdk import tracked

        plain_uri = f"sqlite:///{root / 'plain.db'}"
        mlflow.set_tracking_uri(plain_uri)
        mlflow.set_experiment("bench-resume")
        with mlflow.start_run(tags={"job": "k"}) as existing:
            plain_id = existing.info.run_id
        os.environ["TRACKSDK_LOCAL__ROOT"] = str(root / "sdk")
        tracksdk.reset()
        with tracked(experiment="bench-resume", key="k"):
            pass
        experiment_id = mlflow.get_experiment_by_name("bench-resume").experiment_id

        def plain_by_id() -> None:
            mlflow.set_tracking_uri(plain_uri)
            with mlflow.start_run(run_id=plain_id):
                pass

        def plain_by_search() -> None:
            mlflow.set_tracking_uri(plain_uri)
            (found,) = mlflow.search_runs(
                [experiment_id], "tags.job = 'k'", output_format="list", max_results=1
            )
            with mlflow.start_run(run_id=found.info.run_id):
                pass

        def sdk_key() -> None:
            with tracked(experiment="bench-resume", key="k"):
                pass

        def sdk_new() -> None:
            with tracked(experiment="bench-resume"):
                pass

        sides = {
            "mlflow start_run(run_id=)": plain_by_id,
            "mlflow search + start_run": plain_by_search,
            "tracked(key=)": sdk_key,
            "tracked()": sdk_new,
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for fn in sides.values():  # warm-up: imports, engines, first queries
            fn()
        for _ in range(rounds):
            for name, fn in sides.items():
                began = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - began) * 1000)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["mlflow start_run(run_id=)"]
    print(f"{'side':<28} {'median ms':>10} {'vs start_run(run_id=)':>22}")
    for name, value in medians.items():
        print(f"{name:<28} {value:>10.1f} {value / base:>21.2f}x")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = results / f"resume-{stamp}.json"
    out.write_text(json.dumps({"rounds": rounds, "median_ms": medians}, indent=2))
    print(f"written to {out.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    main()
