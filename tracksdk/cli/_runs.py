"""``tracksdk runs``: the experiment's most recent runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from tracksdk.cli._common import connected, out, resolve


def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Default: the configured one.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List the experiment's most recent runs."""
    from tracksdk import _mlflow

    explained, conn = resolve()
    name = experiment or explained.settings.experiment or explained.root.name
    with connected(explained, conn):
        found = _mlflow.search_runs(conn, name, limit)
    if not found:
        out.print(f"No runs in experiment {name!r} on {conn.display_uri}.", highlight=False)
        return
    table = Table("run id", "name", "status", "started", "duration", "metrics", title=name)
    for run in found:
        info = run.info
        started = datetime.fromtimestamp(info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        duration = f"{(info.end_time - info.start_time) / 1000:.1f}s" if info.end_time else "-"
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.data.metrics.items())[:4])
        table.add_row(info.run_id[:12], info.run_name, info.status, started, duration, metrics)
    out.print(table)
