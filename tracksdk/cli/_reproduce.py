"""``tracksdk reproduce RUN_ID``: recreate a run's code, compare packages, rerun it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tracksdk.cli._common import connected, err, out, resolve
from tracksdk.exceptions import ConfigError


def reproduce(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="A new folder for the code. Default: <repo>-reproduce-<run id>."
        ),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Then rerun the command there; tagged with the run.")
    ] = False,
    requirements: Annotated[
        Path | None,
        typer.Option("--requirements", help="Write the run's pinned packages to this file."),
    ] = None,
) -> None:
    """Recreate a run's code exactly as it ran, compare packages, print or rerun its command."""
    from tracksdk import _reproduce

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    explained, conn = resolve()
    folder = (directory or _reproduce.default_folder(run_id)).resolve()
    with connected(explained, conn):
        try:
            made = _reproduce.checkout(conn, run_id, folder)
        except ConfigError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
    record = made.record
    changes = "its uncommitted changes applied" if made.diff_applied else "no uncommitted changes"
    out.print(
        f"Run {record.run_id} ({record.name}): commit {made.commit[:12]} in {folder}, "
        f"{changes}, {len(made.restored)} untracked file(s) restored.",
        highlight=False,
    )
    _packages(_reproduce.compare_packages(record.requirements_text))
    if requirements is not None:
        if record.requirements_text is None:
            err.print("The run recorded no packages: no requirements file written.")
        else:
            requirements.write_text(record.requirements_text, encoding="utf-8")
            out.print(f"pip install -r {requirements} installs the run's packages.")
    if record.params:
        out.print(
            "params: " + ", ".join(f"{k}={v}" for k, v in sorted(record.params.items())),
            highlight=False,
        )
    if made.command is None or made.workdir is None:
        out.print("The run recorded no command (TRACKSDK_CAPTURE__COMMAND was off).")
        if run:
            raise typer.Exit(2)
        return
    shown = shlex.join(["python", *made.command[1:]])
    out.print(f"command: cd {shlex.quote(str(made.workdir))} && {shown}", highlight=False)
    if not run:
        return
    if any("***" in arg for arg in made.command):
        err.print(
            "[red]error:[/red] the recorded command has values masked as *** (secrets): "
            "run it yourself with them, from the folder above"
        )
        raise typer.Exit(2)
    env = {**os.environ, "TRACKSDK_REPRODUCES": record.run_id}
    if conn.backend == "local":  # the rerun beside the run, not in a store of the worktree
        env["TRACKSDK_LOCAL__ROOT"] = str(explained.settings.local.root or explained.root)
    done = subprocess.run(made.command, cwd=made.workdir, env=env, check=False)
    raise typer.Exit(done.returncode)


def _packages(found: dict[str, Any] | None) -> None:
    if found is None:
        out.print("packages: the run recorded none", highlight=False)
        return
    if not found["changed"] and not found["missing"]:
        out.print("packages: every package the run had is installed, at its version")
        return
    table = Table("package", "the run's", "installed here", title="packages that differ")
    for name, (run_version, here) in found["changed"].items():
        table.add_row(name, str(run_version), str(here))
    for name, version in found["missing"].items():
        table.add_row(name, str(version), "(not installed)")
    out.print(table)
