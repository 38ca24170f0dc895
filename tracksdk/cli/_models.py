"""``tracksdk models``: a registered model's versions and gate verdicts; moving an alias."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from tracksdk._schema import GATE_METRIC_TAG, GATE_VALUE_TAG, GATE_VERDICT_TAG
from tracksdk.cli._common import connected, err, out, resolve


def models(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
    set_alias: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--set-alias",
            metavar="ALIAS VERSION",
            help="Point ALIAS at VERSION (promote, roll back), with audit tags on the version.",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="With --set-alias: why, kept in the audit tags. Default: 'set by hand'."),
    ] = None,
) -> None:
    """List a registered model's versions, their aliases and gate verdicts; move an alias.

    With --set-alias the alias moves first (exit 1 for an unknown model or version, or a
    server without a registry), then the versions are listed.
    """
    from tracksdk import registry, stores

    if reason is not None and set_alias is None:
        err.print("[red]error:[/red] --reason goes with --set-alias ALIAS VERSION.")
        raise typer.Exit(2)
    explained, conn = resolve()
    with connected(explained, conn):
        if set_alias is not None:
            alias, version = set_alias
            moved = registry.set_alias(
                conn,
                name,
                alias,
                version.removeprefix("v"),
                reason or registry.SET_BY_HAND,
                explained.root / ".tracksdk",
            )
            before = f"from v{moved.previous}" if moved.previous else "(it was not set)"
            out.print(
                f"Alias {alias!r} of {name!r} now points at v{moved.version} {before}; "
                f"reason: {moved.reason}.",
                highlight=False,
            )
        with contextlib.closing(stores.open_registry(conn)) as reader:
            versions = reader.model_versions(name)
    if not versions:
        out.print(f"No versions of model {name!r} on {conn.display_uri}.", highlight=False)
        return
    table = Table("version", "aliases", "created", "run id", "gate", title=name)
    for found in versions:
        created = datetime.fromtimestamp(found.created_ms / 1000)
        tags = found.tags or {}
        gate = ""
        if GATE_VERDICT_TAG in tags:
            gate = (
                f"{tags[GATE_VERDICT_TAG]}: {tags.get(GATE_METRIC_TAG, '')}="
                f"{tags.get(GATE_VALUE_TAG, '')}"
            )
        table.add_row(
            found.version,
            ", ".join(found.aliases),
            created.strftime("%Y-%m-%d %H:%M:%S"),
            (found.run_id or "")[:12],
            gate,
        )
    out.print(table)
