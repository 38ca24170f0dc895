"""`import tracksdk` stays fast and does not import mlflow or pydantic-settings."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

CHECK = """
import json, sys, time
t = time.perf_counter()
import tracksdk
elapsed = time.perf_counter() - t
print(json.dumps({
    "ms": elapsed * 1000,
    "heavy": sorted(m for m in ("mlflow", "pydantic_settings", "pydantic", "git", "pandas",
                               "numpy", "requests", "inspect", "psutil") if m in sys.modules),
}))
"""


def run_check() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_import_does_not_load_mlflow_or_settings() -> None:
    """import tracksdk loads none of mlflow, pydantic(-settings), GitPython, pandas, numpy,
    psutil."""
    assert run_check()["heavy"] == []


def test_import_takes_at_most_100_ms() -> None:
    """The median of five cold imports of tracksdk is at most 100 ms."""
    times = [float(run_check()["ms"]) for _ in range(5)]  # type: ignore[arg-type]
    assert statistics.median(times) <= 100, times
