"""A/B check of end-to-end journal throughput between two checkouts of tracksdk.

Run as ``PYTHONPATH=<checkout> .venv/bin/python bench/ab_throughput.py``, alternating the
checkouts (e.g. a ``git worktree`` of an older commit and this one), a few times each.
It creates a fresh local sqlite store, warms it up with one run, then logs 20,000 points
in one ``with tracked()`` block and prints the points per second from the first call to
the end of the block (every point in the store). bench/journal.py compares against raw
``log_batch``; this one compares tracksdk with itself, so a regression shows even when
the machine's speed moves the raw baseline.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

POINTS = 20_000


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="tracksdk-ab-"))
    (root / "pyproject.toml").write_text("")
    os.chdir(root)
    from tracksdk import tracked

    with tracked(experiment="warm") as run:  # the store's creation is not timed
        run.log_metric("x", 1.0)
    started = time.perf_counter()
    with tracked(experiment="ab") as run:
        for step in range(POINTS):
            run.log_metric("m", float(step), step=step)
    print(f"{POINTS / (time.perf_counter() - started):.0f} points/s")


if __name__ == "__main__":
    main()
