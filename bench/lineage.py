"""What recording a tracked function's data arguments costs (tracksdk/_lineage.py).

Run it with ``.venv/bin/python bench/lineage.py``. For a DataFrame, a numpy array and a
data file of several sizes it times, on the local sqlite store, a tracked call whose
argument is that data, with ``TRACKSDK_CAPTURE__DATASETS`` on and off (the difference is
the recording's cost), and, side by side, what plain MLflow takes to describe the same
data (``mlflow.data.from_pandas`` / ``from_numpy``: the digest, schema and profile that
``mlflow.log_input`` sends). Medians of a few rounds; the 1 GB file is written once into
a temporary folder and removed afterwards.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = 5


def median_time(fn: Any, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    import mlflow.data
    import numpy as np
    import pandas as pd

    from tracksdk import configure, tracked

    folder = Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    os.chdir(folder)
    subprocess.run(["git", "init", "-q"], check=True)
    configure(capture={"git": False, "diff": False, "untracked": False, "source": False,
                       "requirements": False}, system_metrics={"enabled": False},
              console="off")  # fmt: skip

    @tracked(experiment="lineage")
    def train(train_data: Any) -> None:
        pass

    rng = np.random.default_rng(0)
    cases: list[tuple[str, Any, Any]] = []
    for rows in (10_000, 1_000_000):
        frame = pd.DataFrame({f"x{i}": rng.random(rows) for i in range(8)})
        frame["city"] = np.where(rng.random(rows) > 0.5, "paris", "lyon")
        cases.append(
            (f"DataFrame {rows:,} x 9", frame, lambda f=frame: mlflow.data.from_pandas(f).digest)
        )
        array = rng.random((rows, 10))
        cases.append(
            (f"ndarray {rows:,} x 10", array, lambda a=array: mlflow.data.from_numpy(a).digest)
        )
    for size in (1 << 20, 1 << 30):
        path = folder / f"data-{size >> 20}MB.csv"
        with path.open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
        cases.append((f"file {size >> 20:,} MB", str(path), None))
    train(cases[0][1])  # the first run pays the store's creation
    head = ("argument", "tracked, on", "tracked, off", "recording", "MLflow describe")
    print(f"{head[0]:<26} {head[1]:>12} {head[2]:>13} {head[3]:>10} {head[4]:>16}")
    for label, data, plain in cases:
        configure(capture={"datasets": True})
        on = median_time(lambda d=data: train(d))
        configure(capture={"datasets": False})
        off = median_time(lambda d=data: train(d))
        mlflow_s = f"{median_time(plain, 3) * 1000:>13,.1f} ms" if plain else f"{'-':>16}"
        cost = (on - off) * 1000
        on_ms, off_ms = on * 1000, off * 1000
        print(f"{label:<26} {on_ms:>9,.1f} ms {off_ms:>10,.1f} ms {cost:>7,.1f} ms {mlflow_s}")
    for path in folder.glob("data-*.csv"):
        path.unlink()
    print(f"store: {folder}/mlflow.db; python {sys.version.split()[0]}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
