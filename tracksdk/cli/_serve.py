"""``tracksdk serve``: serve a model of the configured backend with ``mlflow models serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from tracksdk.cli._common import connected, err, out, resolve
from tracksdk.cli._supervisor import GroupSupervisor, Stopped, exit_by_signal


def model_uri(reference: str) -> str:
    """``name@alias`` and ``name/version`` as ``models:/`` URIs; URIs as they are."""
    if ":/" in reference or reference.startswith("/"):
        return reference
    return f"models:/{reference}"


def serve(
    model: Annotated[
        str, typer.Argument(help="name@alias, name/version, or any model URI (runs:/...).")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    stop_timeout: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="On SIGTERM, SIGINT or SIGHUP, seconds to let the server stop before killing it.",
        ),
    ] = 5.0,
) -> None:
    """Serve a model from the configured backend with `mlflow models serve`.

    The model is downloaded with tracksdk's credentials first, so the serving process
    needs none; it runs in this Python environment (--env-manager local). On SIGTERM,
    SIGINT (Ctrl-C) or SIGHUP, every process of the server is stopped and the downloaded
    model removed; tracksdk then ends by the same signal.
    """
    import tempfile

    from tracksdk import _mlflow

    explained, conn = resolve()
    uri = model_uri(model)
    if sys.platform == "win32":  # no process groups to stop; Ctrl-C reaches both processes
        with tempfile.TemporaryDirectory(prefix="tracksdk-serve-") as tmp:
            with connected(explained, conn):
                local = _mlflow.download_model(conn, uri, tmp)
            command, env = _serve_command(local, host, port)
            out.print(f"Serving {uri} at http://{host}:{port}/invocations", highlight=False)
            raise typer.Exit(subprocess.call(command, env=env))
    supervisor = GroupSupervisor(stop_timeout)
    status = 0
    with supervisor:
        try:
            # TMPDIR chooses where the download goes, as for any temporary folder.
            with tempfile.TemporaryDirectory(prefix="tracksdk-serve-") as tmp:
                with supervisor.interruptible(), connected(explained, conn):
                    local = _mlflow.download_model(conn, uri, tmp)
                out.print(f"Serving {uri} at http://{host}:{port}/invocations", highlight=False)
                status = supervisor.run(*_serve_command(local, host, port))
        except Stopped as stopped:  # a signal during the download: the folder is gone by now
            name = signal.Signals(stopped.signum).name
            err.print(f"{name}: stopped while downloading {uri}.", highlight=False)
    if supervisor.signum is not None:
        exit_by_signal(supervisor.signum)
    # A server killed by a signal we did not send: report it as a shell would.
    raise typer.Exit(128 - status if status < 0 else status)


def _serve_command(local: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow models serve`` command for a downloaded model, and its environment."""
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", local,
        "--env-manager", "local", "-h", host, "-p", str(port),
    ]  # fmt: skip
    # The model is local: the server needs no tracking URI, and no credentials.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    # `mlflow models serve` execs uvicorn through bash: it must be on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return command, env
