"""``tracksdk ui``: the MLflow UI on the local store, or the address of a remote one."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from tracksdk.cli._common import err, out, resolve
from tracksdk.cli._supervisor import GroupSupervisor, exit_by_signal


def ui(
    port: Annotated[
        int | None,
        typer.Option(help="Port for the local UI. Default: TRACKSDK_LOCAL__UI_URL's (5000)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on. Default: TRACKSDK_LOCAL__UI_URL's (127.0.0.1)."),
    ] = None,
) -> None:
    """Start the MLflow UI on the local store, or print the URL of a remote one.

    The UI runs until SIGTERM, SIGINT (Ctrl-C) or SIGHUP, which stop all its processes;
    tracksdk then ends by the same signal. Exit status 1 when the port is taken or the UI
    stops by itself.
    """
    from urllib.parse import urlsplit

    _, conn = resolve()
    if conn.is_remote:
        out.print(f"The MLflow UI of this backend is at {conn.ui_url}", highlight=False)
        return
    if not conn.tracking_uri.startswith("sqlite:///"):
        err.print(
            f"tracksdk ui serves sqlite stores; this backend is {conn.display_uri}.",
            highlight=False,
        )
        raise typer.Exit(2)
    configured = urlsplit(conn.ui_url or DEFAULT_UI_URL)
    host = host or configured.hostname or "127.0.0.1"
    port = port or configured.port or (443 if configured.scheme == "https" else 80)
    problem = _port_taken(host, port)
    if problem:
        err.print(
            f"[red]error:[/red] cannot start the MLflow UI on {host}:{port}: {problem}. "
            "Another process (another MLflow UI?) may be listening there: stop it, or choose "
            "a free port with --port.",
            highlight=False,
        )
        raise typer.Exit(1)
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
    url = f"http://{host}:{port}"
    out.print(f"MLflow UI for {conn.description} at {url}", highlight=False)
    if conn.ui_url and port != configured.port:
        out.print(
            f"Run links (run.url) point at {conn.ui_url} (TRACKSDK_LOCAL__UI_URL); set "
            f"TRACKSDK_LOCAL__UI_URL={url} to make them point here.",
            highlight=False,
        )
    # The UI's bash wrapper finds uvicorn through PATH: put this interpreter's bin first.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    # A local viewer needs no job runner (GenAI jobs): without it the UI is ~8 processes
    # fewer, and Ctrl-C does not print their tracebacks. Set it to true to keep it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if sys.platform == "win32":  # no process groups; Ctrl-C reaches both processes
        raise typer.Exit(subprocess.call(command, env=env))
    supervisor = GroupSupervisor(UI_STOP_TIMEOUT, what="MLflow UI")
    with supervisor:
        status = supervisor.run(command, env)
    if supervisor.signum is not None:
        exit_by_signal(supervisor.signum)
    # `mlflow ui` exits 0 when uvicorn cannot bind the port: any exit of its own is a failure.
    err.print(
        f"[red]error:[/red] the MLflow UI stopped by itself (exit status {status}); its "
        "messages above say why.",
        highlight=False,
    )
    raise typer.Exit(128 - status if status < 0 else status or 1)


#: ``tracksdk ui``'s address when TRACKSDK_LOCAL__UI_URL is not set.
DEFAULT_UI_URL = "http://127.0.0.1:5000"

#: Seconds ``tracksdk ui`` lets the UI stop after a signal before killing it.
UI_STOP_TIMEOUT = 10.0


def _port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, no such address), or None."""
    import socket

    try:
        # SO_REUSEADDR, as uvicorn: a port in TIME_WAIT is free, one with a listener is not.
        with socket.create_server((host, port)):
            return None
    except OSError as exc:
        # create_server's message adds "(while attempting to bind ...)": the errno says it.
        return os.strerror(exc.errno) if exc.errno else str(exc)
