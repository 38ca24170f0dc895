"""``tracksdk doctor``: which backend wins and why, and whether its store answers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tracksdk.cli._common import err, out
from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from tracksdk.backends import Connection


def doctor() -> None:
    """Show which backend wins and why, and check that its store answers."""
    from tracksdk import _config, _redact
    from tracksdk.settings import env_var_name

    try:
        explained = _config.resolve()
    except TrackSDKError as exc:
        err.print(f"[red]✗ settings:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"project root: {explained.root}", highlight=False)
    table = Table("setting", "value", "from", title="settings that are not defaults")
    for dotted, source in sorted(explained.sources.items()):
        value: Any = explained.settings
        for part in dotted.split("."):
            value = getattr(value, part, None)
        shown = "***" if _redact.looks_secret(dotted) else _redact.redact(str(value))
        shown = _redact.strip_userinfo(shown)
        table.add_row(env_var_name(tuple(dotted.split("."))), shown, source)
    if explained.sources:
        out.print(table)
    if explained.settings.backend is None and os.environ.get("MLFLOW_TRACKING_URI"):
        out.print("backend not named; MLFLOW_TRACKING_URI is set, so it is used as it is.")
    try:
        _, conn = _config.resolve_with_connection()
    except TrackSDKError as exc:
        err.print(f"[red]✗ backend:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"backend: [bold]{conn.backend}[/bold] — {conn.description}", highlight=False)
    out.print(f"tracking URI: {conn.display_uri}", highlight=False)
    if conn.credentials is not None:
        c = conn.credentials
        who = f" as {c.username}" if c.username else ""
        out.print(f"credentials: {c.kind}{who}, secret *** from {c.source}", highlight=False)
    else:
        out.print("credentials: none")
        if conn.backend == "mlflow-env" and conn.is_remote:
            half = [
                k
                for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
                if os.environ.get(k)
            ]
            if len(half) == 1:
                out.print(
                    f"  {half[0]} is set without its pair: ignored, as MLflow ignores it.",
                    highlight=False,
                )
    experiment = explained.settings.experiment or explained.root.name
    out.print(f"experiment: {experiment}", highlight=False)
    ok, message = _probe(conn, explained.settings.http_timeout)
    mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
    out.print(f"{mark} {message}", highlight=False)
    if not ok:
        raise typer.Exit(1)
    # A missing capability is not an error: tracksdk works around it (see the messages).
    for line in _capability_lines(conn, explained.settings.http_timeout):
        out.print(line, highlight=False)


def _capability_lines(conn: Connection, timeout: float) -> list[str]:
    """One line each for the logged-model endpoints and the registry, with tracksdk's fallback.

    Remote stores are probed with the same check tracked runs use (a 404 means missing; a
    403 is judged from the server's version), so the lines say what a run will do on this
    server.
    """
    from tracksdk import stores

    found = stores.capabilities(conn, timeout=timeout)
    if not conn.is_remote:
        # Not probed: MLflow opens these stores itself, and its own stores have both.
        how = "local store" if conn.tracking_uri.startswith("sqlite:///") else "not probed"
        return [
            f"[green]✓[/green] logged models (MLflow 3 endpoints): available ({how})",
            f"[green]✓[/green] model registry: available ({how})",
        ]

    def line(label: str, key: str, available: bool, fallback: str) -> str:
        note = next((n for n in found.notes if n.startswith(key)), None)
        why = f" ({note.removeprefix(key + ': ')})" if note else ""
        if available:
            return f"[green]✓[/green] {label}: available{why}"
        why = why or " (the server answers 404)"
        return f"[yellow]![/yellow] {label}: missing{why}. {fallback}"

    return [
        line(
            "logged models (MLflow 3 endpoints)",
            "logged models",
            found.logged_models,
            "Models returned by tracked functions are saved as run artifacts "
            "(runs:/<run_id>/model) as always; autolog runs with log_models=False, with a "
            "warning.",
        ),
        line(
            "model registry",
            "model registry",
            found.registry,
            "tracked(register=...) skips registration with a warning; the model stays in "
            "its run: serve or load it as runs:/<run_id>/model.",
        ),
    ]


def _probe(conn: Connection, timeout: float) -> tuple[bool, str]:
    """Check that the store answers; say what is wrong if not."""
    if not conn.is_remote:
        if conn.tracking_uri.startswith("sqlite:///"):
            path = conn.tracking_uri.removeprefix("sqlite:///")
            if os.path.exists(path):
                return True, f"local store {path} exists"
            folder = os.path.dirname(path) or "."
            if os.access(folder, os.W_OK):
                return True, f"local store {path} will be created on the first run"
            return False, f"cannot create {path}: {folder} is not writable"
        return True, f"store {conn.display_uri} is handled by MLflow directly (not probed)"
    import requests

    from tracksdk.stores._http import session_for

    url = conn.tracking_uri + "/api/2.0/mlflow/experiments/search"
    with session_for(conn) as session:  # the credentials and TLS settings runs use
        try:
            response = session.get(url, params={"max_results": 1}, timeout=timeout)
        except requests.RequestException as exc:
            return False, f"{conn.display_uri} does not answer ({type(exc).__name__})"
        version = ""
        if response.ok:
            try:
                got = session.get(conn.tracking_uri + "/version", timeout=timeout)
                if got.ok and len(got.text) < 40:
                    version = f", MLflow {got.text.strip()}"
            except requests.RequestException:
                pass
    if response.status_code == 403 and conn.credentials is not None:
        return False, (
            f"{conn.display_uri} accepted the credentials ({conn.credentials.source}) but "
            "answered HTTP 403 to listing experiments: this user lacks permission to read "
            "them. Ask the server's admin for READ permission or better."
        )
    if response.status_code in (401, 403):
        source = conn.credentials.source if conn.credentials else "no credentials configured"
        return False, (
            f"{conn.display_uri} rejected the credentials (HTTP {response.status_code}; "
            f"{source}). Fix the token or password."
        )
    if response.status_code == 404:
        return False, f"{url} answered 404: is this the MLflow server's address?"
    if not response.ok:
        return False, f"{conn.display_uri} answered HTTP {response.status_code}"
    who = ""
    if conn.credentials is not None:
        user = conn.credentials.username
        who = f"; the credentials work{f' (user {user!r})' if user else ''}"
    return True, f"{conn.display_uri} answers{version}{who}"
