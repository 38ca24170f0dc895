"""System metrics benchmark: what the sampler costs the training thread and the machine.

Run it with ``.venv/bin/python bench/system_metrics.py`` (about 4 minutes; ``--quick``
about 1). In one process, on a fresh local sqlite store in a temporary git repository, it
measures side by side:

1. run start and end: an empty ``with tracked()`` with the sampler off and on (default
   interval), alternating, 20 runs each;
2. ``run.log_metric`` latency with the sampler off, on at the default interval (10 s) and
   on at a short one (0.05 s): runs that log one point per millisecond-ish (a 1 ms sleep
   between calls, as a training loop leaves the GIL to other threads) for ``--seconds``
   each, the three settings taking turns for ``--rounds`` rounds (each round starting with
   the next setting); median, p99, p99.9 and
   max of ``perf_counter_ns`` around each call;
3. the sampler's CPU cost per sample: its thread's CPU time (``time.thread_time``) over
   the samples of the short-interval runs, setup excluded, and as a share of one core at
   the default interval (cost per sample / 10 s);
4. the same share measured directly: one idle run at the default interval for ``--idle``
   seconds, the sampler thread's whole CPU time (its POSIX thread clock, setup included;
   psutil is already imported by then, which costs ~20 ms once per process) over the wall
   time.

The table is printed and written as JSON to ``bench/results/system-metrics-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
THREAD = "tracksdk-system-metrics"
SHORT = 0.05
DEFAULT = 10.0


def project(folder: Path) -> None:
    """A committed git repository as the working directory, with a clean environment."""
    for name in [n for n in os.environ if n.startswith(("TRACKSDK_", "MLFLOW_"))]:
        del os.environ[name]
    os.environ.update(
        TRACKSDK_BACKEND="local",
        TRACKSDK_LOCAL__ROOT=str(folder),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    (folder / "train.py").write_text("print('bench')\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "train.py"],
        ["-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    os.chdir(folder)


def options(interval: float | None) -> dict[str, Any]:
    """tracked(...) options: sampler off (None) or on at ``interval`` seconds."""
    section = {"enabled": False} if interval is None else {"interval": interval}
    return {"experiment": "bench-sysmetrics", "settings": {"system_metrics": section}}


def the_sampler() -> tuple[Any, int | None]:
    """The running sampler object and its thread's ident, or (None, None)."""
    for thread in threading.enumerate():
        if thread.name == THREAD:
            return getattr(thread, "_target", None).__self__, thread.ident  # type: ignore[union-attr]
    return None, None


def thread_cpu(ident: int | None) -> float | None:
    """CPU seconds of another thread of this process, to the nanosecond (POSIX clocks;
    psutil's per-thread times count in 10 ms ticks, coarser than a whole idle run's cost)."""
    if ident is None:
        return None
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def run_starts(n: int) -> dict[str, list[float]]:
    from tracksdk import tracked

    samples: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(n):
        for label, interval in (("off", None), ("on", DEFAULT)):
            t0 = time.perf_counter()
            with tracked(**options(interval)):
                pass
            samples[label].append((time.perf_counter() - t0) * 1000)
    return samples


def paced_block(interval: float | None, seconds: float) -> tuple[list[int], dict[str, Any]]:
    """One run logging a point about every millisecond for ``seconds``."""
    from tracksdk import tracked

    latencies: list[int] = []
    info: dict[str, Any] = {}
    with tracked(**options(interval)) as run:
        sampler, _ = the_sampler()
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            run.log_metric("m", float(i), step=i)
            latencies.append(time.perf_counter_ns() - t0)
            i += 1
            time.sleep(0.001)
    if sampler is not None:
        info = {"samples": sampler.samples, "cpu_seconds": sampler.cpu_seconds}
    return latencies, info


def idle_run(seconds: float) -> dict[str, float | None]:
    """A run at the default interval that only sleeps: the sampler thread's whole cost."""
    from tracksdk import tracked

    with tracked(**options(DEFAULT)):
        start = time.perf_counter()
        _, ident = the_sampler()
        time.sleep(seconds)
        cpu = thread_cpu(ident)
        wall = time.perf_counter() - start
    return {"wall_s": wall, "thread_cpu_s": cpu}


def stats_us(values: list[int]) -> dict[str, float]:
    a = np.asarray(values, dtype=float) / 1000
    return {
        "n": float(len(a)),
        "median": float(np.median(a)),
        "p99": float(np.percentile(a, 99)),
        "p99.9": float(np.percentile(a, 99.9)),
        "max": float(a.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per latency run")
    parser.add_argument("--rounds", type=int, default=2, help="turns of the three settings")
    parser.add_argument("--idle", type=float, default=60.0, help="idle run at the default")
    parser.add_argument("--starts", type=int, default=20, help="empty runs per setting")
    parser.add_argument("--quick", action="store_true", help="5 s runs, 1 round, 20 s idle")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.idle, args.starts = 5.0, 1, 20.0, 5

    folder = Path(tempfile.mkdtemp(prefix="tracksdk-bench-sysmetrics-"))
    try:
        project(folder)
        import tracksdk
        from tracksdk import tracked

        with tracked(**options(SHORT)):  # the store's schema, and psutil's first import
            time.sleep(0.2)

        print("run start and end ...", file=sys.stderr)
        starts = run_starts(args.starts)
        settings = {"off": None, "on, 10 s": DEFAULT, f"on, {SHORT} s": SHORT}
        latencies: dict[str, list[int]] = {label: [] for label in settings}
        sampled = {"samples": 0, "cpu_seconds": 0.0}
        labels = list(settings)
        for r in range(args.rounds):
            # Each round starts with another setting, so that none is always first.
            for label in labels[r % 3 :] + labels[: r % 3]:
                interval = settings[label]
                print(f"log_metric, round {r + 1}, sampler {label} ...", file=sys.stderr)
                values, info = paced_block(interval, args.seconds)
                latencies[label].extend(values)
                if interval == SHORT:
                    sampled["samples"] += info["samples"]
                    sampled["cpu_seconds"] += info["cpu_seconds"]
        print(f"idle run at the default interval, {args.idle:.0f} s ...", file=sys.stderr)
        idle = idle_run(args.idle)
    finally:
        os.chdir(HERE)
        shutil.rmtree(folder, ignore_errors=True)

    per_sample_ms = sampled["cpu_seconds"] / max(sampled["samples"], 1) * 1000
    share_default = per_sample_ms / 1000 / DEFAULT * 100
    idle_share = (
        idle["thread_cpu_s"] / idle["wall_s"] * 100 if idle["thread_cpu_s"] is not None else None
    )
    lat = {label: stats_us(values) for label, values in latencies.items()}

    print()
    print("| measure | sampler off | on, 10 s | on, 0.05 s |")
    print("|---|---:|---:|---:|")
    for key in ("median", "p99", "p99.9", "max"):
        row = " | ".join(f"{lat[label][key]:.1f}" for label in settings)
        print(f"| log_metric {key} (µs) | {row} |")
    calls = " | ".join(f"{lat[label]['n']:,.0f}" for label in settings)
    print(f"| log_metric calls | {calls} |")
    s_off, s_on = (float(np.median(starts[k])) for k in ("off", "on"))
    print(f"| empty run enter+exit, median of {args.starts} (ms) | {s_off:.1f} | {s_on:.1f} | |")
    print()
    print(
        f"sampler CPU per sample: {per_sample_ms:.2f} ms ({sampled['samples']} samples at 0.05 s)"
    )
    print(f"as % of one core at the default 10 s interval: {share_default:.3f} %")
    if idle_share is not None:
        print(
            f"measured: idle run of {idle['wall_s']:.0f} s at 10 s, sampler thread "
            f"{idle['thread_cpu_s'] * 1000:.1f} ms CPU = {idle_share:.3f} % of one core "
            "(setup included)"
        )

    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"system-metrics-{stamp}.json"
        out.write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "psutil": psutil.__version__,
                        "tracksdk": tracksdk.__version__,
                        "load_average": os.getloadavg(),
                    },
                    "log_metric_us": lat,
                    "run_start_ms": starts,
                    "per_sample_ms": per_sample_ms,
                    "share_of_one_core_at_default_percent": share_default,
                    "idle": {**idle, "share_percent": idle_share},
                },
                indent=2,
            )
        )
        print(f"\nJSON: {out.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    main()
