"""``tracksdk diff RUN_A RUN_B``: what differs between two runs (tracksdk/_compare.py)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.table import Table

from tracksdk.cli._common import connected, err, out, resolve
from tracksdk.exceptions import ConfigError


def diff(
    run_a: Annotated[str, typer.Argument(help="The first run's id.")],
    run_b: Annotated[str, typer.Argument(help="The second run's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Show what differs between two runs: params, metrics, code, packages and data."""
    from tracksdk import _compare

    # Two small text artifacts per run: MLflow's download progress bars would be noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    explained, conn = resolve()
    with connected(explained, conn):
        try:
            a, b = _compare.load(conn, run_a), _compare.load(conn, run_b)
        except ConfigError as exc:  # a run id that is not there: the user's to fix
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
    result = _compare.compare(a, b)
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=False))
        return
    show(result)


def show(result: dict[str, Any]) -> None:
    """The comparison as tables: only what differs, the verdict first."""
    a, b = result["a"], result["b"]
    out.print(
        f"A: {a['run_id']} ({a['name']}, {a['status']})\n"
        f"B: {b['run_id']} ({b['name']}, {b['status']})",
        highlight=False,
    )
    out.print(f"[bold]{result['verdict']}[/bold]", highlight=False)
    _mapping_table("params", result["params"])
    if not result["metrics"]:
        out.print("metrics: the same", highlight=False)
    else:
        table = Table("metric", "A", "B", "B - A", title="metrics (final values)")
        for key, row in result["metrics"].items():
            delta = "" if row["delta"] is None else f"{row['delta']:+.4g}"
            table.add_row(key, _number(row["a"]), _number(row["b"]), delta)
        out.print(table)
    if result["tags"]:
        table = Table("tag", "A", "B", title="tags")
        for key, (value_a, value_b) in result["tags"].items():
            table.add_row(key, value_a or "-", value_b or "-")
        out.print(table)
    _code(result["code"])
    if result["packages"] is None:
        out.print("packages: not recorded for both runs", highlight=False)
    else:
        _mapping_table("packages", result["packages"])
    _data(result["data"])


def _mapping_table(title: str, parts: dict[str, Any]) -> None:
    if not any(parts.values()):
        out.print(f"{title}: the same", highlight=False)
        return
    table = Table(title[:-1] if title.endswith("s") else title, "A", "B", title=title)
    for key, (value_a, value_b) in parts["changed"].items():
        table.add_row(key, value_a, value_b)
    for key, value in parts["removed"].items():
        table.add_row(key, value, "(removed)")
    for key, value in parts["added"].items():
        table.add_row(key, "(added)", value)
    out.print(table)


def _code(code: dict[str, Any]) -> None:
    commit_a, commit_b = (c[:12] if c else "no git information" for c in code["commit"])
    if code["same_commit"]:
        line = f"code: commit {commit_a} in both"
    else:
        line = f"code: commit {commit_a} (A), {commit_b} (B)"
    same = code["same_diff"]
    line += "; the same uncommitted changes" if same else "; uncommitted changes differ"
    out.print(line, highlight=False)
    files = code["files"]
    for label, key in (("only in A's diff", "only_a"), ("only in B's diff", "only_b")):
        if files[key]:
            out.print(f"  {label}: {', '.join(files[key])}", highlight=False)
    if files["changed"]:
        out.print(f"  changed differently: {', '.join(files['changed'])}", highlight=False)


def _data(data: dict[str, Any]) -> None:
    if data["same"] is None:
        out.print("data: no dataset inputs recorded", highlight=False)
        return
    table = Table("input", "context", "A digest", "B digest", "", title="data")
    for row in data["inputs"]:
        mark = "same" if row["a"] == row["b"] else "differs"
        table.add_row(row["name"], row["context"] or "-", row["a"] or "-", row["b"] or "-", mark)
    out.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
