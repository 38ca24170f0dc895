"""The ``tracksdk`` command: ``doctor``, ``ui`` and ``runs``.

Built on Typer; every command resolves settings exactly as a tracked run would, so what
``tracksdk doctor`` says is what ``@tracked`` will do.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

app = typer.Typer(
    help="tracksdk: experiment tracking on MLflow. Settings come from TRACKSDK_* variables, "
    ".env and [tool.tracksdk] in pyproject.toml.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)


@contextlib.contextmanager
def _connected(explained: Explained, conn: Connection) -> Iterator[None]:
    """MLflow pointed at ``conn`` with its credentials, as during a run; errors exit 1."""
    from tracksdk import _mlflow

    settings = explained.settings
    saved = _mlflow.activate(
        conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
    )
    try:
        yield
    except TrackSDKError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        _mlflow.restore(saved)


def _resolve() -> tuple[Explained, Connection]:
    from tracksdk import _config

    try:
        return _config.resolve_with_connection()
    except TrackSDKError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None


@app.command()
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
    out.print(f"tracking URI: {conn.tracking_uri}", highlight=False)
    if conn.credentials is not None:
        c = conn.credentials
        who = f" as {c.username}" if c.username else ""
        out.print(f"credentials: {c.kind}{who}, secret *** from {c.source}", highlight=False)
    else:
        out.print("credentials: none")
    experiment = explained.settings.experiment or explained.root.name
    out.print(f"experiment: {experiment}", highlight=False)
    ok, message = _probe(conn, explained.settings.http_timeout)
    mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
    out.print(f"{mark} {message}", highlight=False)
    if not ok:
        raise typer.Exit(1)


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
        return True, f"store {conn.tracking_uri} is handled by MLflow directly (not probed)"
    import requests

    url = conn.tracking_uri + "/api/2.0/mlflow/experiments/search"
    headers = {"Authorization": conn.credentials.header()} if conn.credentials else {}
    verify: bool | str = conn.ca_bundle or conn.verify_tls
    try:
        response = requests.get(
            url, params={"max_results": 1}, headers=headers, timeout=timeout, verify=verify
        )
    except requests.RequestException as exc:
        return False, f"{conn.tracking_uri} does not answer ({type(exc).__name__})"
    if response.status_code in (401, 403):
        source = conn.credentials.source if conn.credentials else "no credentials configured"
        return False, (
            f"{conn.tracking_uri} rejected the credentials (HTTP {response.status_code}; "
            f"{source}). Fix the token or password."
        )
    if response.status_code == 404:
        return False, f"{url} answered 404: is this the MLflow server's address?"
    if not response.ok:
        return False, f"{conn.tracking_uri} answered HTTP {response.status_code}"
    version = ""
    try:
        got = requests.get(
            conn.tracking_uri + "/version", headers=headers, timeout=timeout, verify=verify
        )
        if got.ok and len(got.text) < 40:
            version = f", MLflow {got.text.strip()}"
    except requests.RequestException:
        pass
    return True, f"{conn.tracking_uri} answers{version}"


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port for the local UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the local store, or print the URL of a remote one."""
    _, conn = _resolve()
    if conn.is_remote:
        out.print(f"The MLflow UI of this backend is at {conn.ui_url}", highlight=False)
        return
    if not conn.tracking_uri.startswith("sqlite:///"):
        err.print(f"tracksdk ui serves sqlite stores; this backend is {conn.tracking_uri}.")
        raise typer.Exit(2)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        conn.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if conn.artifact_root:
        command += ["--default-artifact-root", conn.artifact_root]
    out.print(f"MLflow UI for {conn.description} at http://{host}:{port}", highlight=False)
    # The UI's bash wrapper finds uvicorn through PATH: put this interpreter's bin first.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    raise typer.Exit(subprocess.call(command, env=env))


@app.command()
def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Default: the configured one.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List the experiment's most recent runs."""
    from tracksdk import _mlflow

    explained, conn = _resolve()
    name = experiment or explained.settings.experiment or explained.root.name
    with _connected(explained, conn):
        found = _mlflow.search_runs(conn, name, limit)
    if not found:
        out.print(f"No runs in experiment {name!r} on {conn.tracking_uri}.", highlight=False)
        return
    table = Table("run id", "name", "status", "started", "duration", "metrics", title=name)
    for run in found:
        info = run.info
        started = datetime.fromtimestamp(info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        duration = f"{(info.end_time - info.start_time) / 1000:.1f}s" if info.end_time else "-"
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.data.metrics.items())[:4])
        table.add_row(info.run_id[:12], info.run_name, info.status, started, duration, metrics)
    out.print(table)


@app.command()
def models(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
) -> None:
    """List a registered model's versions, their aliases and gate verdicts."""
    from tracksdk import _mlflow

    explained, conn = _resolve()
    with _connected(explained, conn):
        versions, aliases = _mlflow.model_versions(conn, name)
    if not versions:
        out.print(f"No versions of model {name!r} on {conn.tracking_uri}.", highlight=False)
        return
    table = Table("version", "aliases", "created", "run id", "gate", title=name)
    for version in versions:
        created = datetime.fromtimestamp(version.creation_timestamp / 1000)
        tags = version.tags or {}
        gate = ""
        if "tracksdk.gate.verdict" in tags:
            gate = (
                f"{tags['tracksdk.gate.verdict']}: {tags.get('tracksdk.gate.metric', '')}="
                f"{tags.get('tracksdk.gate.value', '')}"
            )
        table.add_row(
            str(version.version),
            ", ".join(sorted(aliases.get(str(version.version), []))),
            created.strftime("%Y-%m-%d %H:%M:%S"),
            (version.run_id or "")[:12],
            gate,
        )
    out.print(table)


def model_uri(reference: str) -> str:
    """``name@alias`` and ``name/version`` as ``models:/`` URIs; URIs as they are."""
    if ":/" in reference or reference.startswith("/"):
        return reference
    return f"models:/{reference}"


@app.command()
def serve(
    model: Annotated[
        str, typer.Argument(help="name@alias, name/version, or any model URI (runs:/...).")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve a model from the configured backend with `mlflow models serve`.

    The model is downloaded with tracksdk's credentials first, so the serving process
    needs none; it runs in this Python environment (--env-manager local).
    """
    import tempfile

    from tracksdk import _mlflow

    explained, conn = _resolve()
    uri = model_uri(model)
    with tempfile.TemporaryDirectory(prefix="tracksdk-serve-") as tmp:
        with _connected(explained, conn):
            local = _mlflow.download_model(conn, uri, tmp)
        command = [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", local,
            "--env-manager", "local", "-h", host, "-p", str(port),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        # `mlflow models serve` execs uvicorn through bash: it must be on PATH.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        out.print(f"Serving {uri} at http://{host}:{port}/invocations", highlight=False)
        raise typer.Exit(subprocess.call(command, env=env))


def main() -> None:
    """Entry point of the ``tracksdk`` console script."""
    app()


if __name__ == "__main__":
    main()
