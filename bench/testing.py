"""A user's test of tracked code: ``capture_runs`` on the memory store, on sqlite, and the
same logging done with plain MLflow on a fresh sqlite store.

Run it with ``.venv/bin/python bench/testing.py [--calls 20] [--rounds 5]``. Each side runs
in a fresh ``python`` process (so import time counts, as in a test session) inside a small
git repository, and reports two figures: the whole process (imports included) and the
calls alone (the ``capture_runs`` block, or the plain MLflow loop). Sides take turns each
round; medians are printed, and whether MLflow was imported on the memory side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TRACKED = """
import sys, time
t0 = time.perf_counter()
import tracksdk
from tracksdk.testing import capture_runs

@tracksdk.tracked(experiment="bench")
def train(lr):
    for step in range(5):
        tracksdk.log_metric("loss", lr / (step + 1), step=step)
    return {{"auc": 0.5}}

t1 = time.perf_counter()
with capture_runs(store={store!r}) as captured:
    for i in range({calls}):
        train(lr=float(i))
    assert len(captured.runs) == {calls}
t2 = time.perf_counter()
print({{"calls_s": t2 - t1, "process_s": t2 - t0, "mlflow": "mlflow" in sys.modules}})
"""

PLAIN = """
import sys, time, tempfile
t0 = time.perf_counter()
import mlflow
folder = tempfile.mkdtemp()
mlflow.set_tracking_uri(f"sqlite:///{{folder}}/mlflow.db")
mlflow.set_experiment("bench")
t1 = time.perf_counter()
for i in range({calls}):
    with mlflow.start_run():
        mlflow.log_param("lr", float(i))
        for step in range(5):
            mlflow.log_metric("loss", i / (step + 1), step=step)
        mlflow.log_metric("auc", 0.5)
assert len(mlflow.search_runs()) == {calls}
t2 = time.perf_counter()
print({{"calls_s": t2 - t1, "process_s": t2 - t0, "mlflow": True}})
"""


def run_side(code: str, cwd: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = eval(out.stdout.strip().splitlines()[-1])  # our own print
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sides = {
        "capture_runs(memory)": TRACKED.format(store="memory", calls=args.calls),
        "capture_runs(sqlite)": TRACKED.format(store="sqlite", calls=args.calls),
        "plain MLflow, sqlite": PLAIN.format(calls=args.calls),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        (repo / "README").write_text("bench\n")
        for _ in range(args.rounds):
            for name, code in sides.items():
                results[name].append(run_side(textwrap.dedent(code), repo))
    print(f"{args.calls} tracked calls, 6 metric points each; medians of {args.rounds} rounds")
    print(f"{'side':<24}{'calls (s)':>12}{'process (s)':>14}  mlflow imported")
    summary = {}
    for name, runs in results.items():
        calls = statistics.median(r["calls_s"] for r in runs)
        process = statistics.median(r["process_s"] for r in runs)
        imported = any(r["mlflow"] for r in runs)
        summary[name] = {"calls_s": calls, "process_s": process, "mlflow": imported}
        print(f"{name:<24}{calls:>12.3f}{process:>14.3f}  {imported}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"testing-{stamp}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
