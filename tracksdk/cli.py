"""The ``tracksdk`` command: ``doctor``, ``ui``, ``runs``, ``models`` and ``serve``.

Built on Typer; every command resolves settings exactly as a tracked run would, so what
``tracksdk doctor`` says is what ``@tracked`` will do.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, cast

import typer
from rich.console import Console
from rich.table import Table

from tracksdk._schema import GATE_METRIC_TAG, GATE_VALUE_TAG, GATE_VERDICT_TAG
from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from types import FrameType

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


@app.command()
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

    _, conn = _resolve()
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
    supervisor = _GroupSupervisor(UI_STOP_TIMEOUT, what="MLflow UI")
    with supervisor:
        status = supervisor.run(command, env)
    if supervisor.signum is not None:
        _exit_by_signal(supervisor.signum)
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


@app.command()
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
    explained, conn = _resolve()
    with _connected(explained, conn):
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


@app.command()
def sync(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be sent; send nothing."),
    all_stores: bool = typer.Option(
        False,
        "--all",
        help="Also send runs journaled for another store to the configured one.",
    ),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        min=0.0,
        help="Give up on a run after this many seconds without progress while the store "
        "fails (0: never). The journal is kept.",
    ),
    rejected: bool = typer.Option(
        False,
        "--rejected",
        help="Send the journals kept in the journal's kept/ folder again: requests the "
        "store refused, runs whose run or experiment was deleted.",
    ),
) -> None:
    """Send runs left in the journal (offline runs, killed processes) to the store.

    Runs are created when missing (found again by their client id when an earlier
    attempt created them), unsent records are sent in order, and each run ends with its
    status, or KILLED when its process died. Runs whose process still runs are skipped.
    Damaged journals are sent as far as they can be read and kept, with what was lost.
    Exits 1 when a run could not be sent in full; its journal is kept.
    """
    import sys

    from tracksdk import _sync, stores

    explained, conn = _resolve()
    if not stores.uses_mlflow(conn):
        err.print(
            "[red]error:[/red] TRACKSDK_BACKEND=memory keeps runs inside one process, so "
            "`tracksdk sync` has no store to send journals to. Set TRACKSDK_BACKEND to the "
            "store they should go to (local, server, dagshub) and run it again."
        )
        raise typer.Exit(2)
    code = _sync.command(
        explained,
        conn,
        dry_run=dry_run,
        any_target=all_stores,
        out=cast("TextIO", _SafeText(sys.stdout)),
        timeout=timeout,
        rejected=rejected,
    )
    raise typer.Exit(code)


class _SafeText:
    """A text stream that masks known secrets and URL user info in what is written.

    ``print`` writes a message in one call, so a URI is never split across writes.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from tracksdk._redact import redact, strip_userinfo

        return int(self._stream.write(strip_userinfo(redact(text))))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


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

    explained, conn = _resolve()
    uri = model_uri(model)
    if sys.platform == "win32":  # no process groups to stop; Ctrl-C reaches both processes
        with tempfile.TemporaryDirectory(prefix="tracksdk-serve-") as tmp:
            with _connected(explained, conn):
                local = _mlflow.download_model(conn, uri, tmp)
            command, env = _serve_command(local, host, port)
            out.print(f"Serving {uri} at http://{host}:{port}/invocations", highlight=False)
            raise typer.Exit(subprocess.call(command, env=env))
    supervisor = _GroupSupervisor(stop_timeout)
    status = 0
    with supervisor:
        try:
            # TMPDIR chooses where the download goes, as for any temporary folder.
            with tempfile.TemporaryDirectory(prefix="tracksdk-serve-") as tmp:
                with supervisor.interruptible(), _connected(explained, conn):
                    local = _mlflow.download_model(conn, uri, tmp)
                out.print(f"Serving {uri} at http://{host}:{port}/invocations", highlight=False)
                status = supervisor.run(*_serve_command(local, host, port))
        except _Stopped as stopped:  # a signal during the download: the folder is gone by now
            name = signal.Signals(stopped.signum).name
            err.print(f"{name}: stopped while downloading {uri}.", highlight=False)
    if supervisor.signum is not None:
        _exit_by_signal(supervisor.signum)
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


class _Stopped(BaseException):
    """A stop signal that arrived before the server started; unwinds the set-up.

    A BaseException, like KeyboardInterrupt, so that MLflow's ``except Exception`` around
    the download does not turn it into an error message.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _GroupSupervisor:
    """Runs a command in its own process group and takes the whole group down on a signal.

    Used by ``serve`` and ``ui`` (``what`` names the server in messages). The server is
    ``mlflow models serve`` or ``mlflow ui``, whose uvicorn process (and its workers, with
    MLFLOW_MODELS_WORKERS) outlive it when only it is signalled, so signals go to the group.
    A session of its own also keeps the terminal's Ctrl-C from reaching it directly: the
    stop is tracksdk's to run, bounded by ``stop_timeout`` and followed by the clean-up.

    Use as a context manager: while active, SIGTERM, SIGINT and SIGHUP are caught. Inside
    :meth:`interruptible` they raise :class:`_Stopped`; while :meth:`run` runs the command
    they are forwarded to its process group (a second one sends SIGKILL); otherwise they
    are recorded, and :meth:`run` does not start the command. ``signum`` is the first one.
    """

    def __init__(self, stop_timeout: float, what: str = "model server") -> None:
        self.stop_timeout = stop_timeout
        self.what = what
        self.signum: int | None = None
        self._signalled_at = 0.0
        self._interruptible = False
        self._pgid: int | None = None
        self._saved: dict[int, Any] = {}
        self._saved_wakeup_fd = -1
        self._wakeup: tuple[int, int] | None = None

    def __enter__(self) -> _GroupSupervisor:
        # Python writes each caught signal's number to this pipe, so the main loop can wait
        # for "a stop signal or a child exited" in select() instead of polling.
        read_end, write_end = self._wakeup = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._saved_wakeup_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._saved[signum] = signal.signal(signum, self._on_signal)
        # A Python handler, not SIG_IGN: ignoring SIGCHLD would make the kernel reap the
        # children itself, and their exit status would be lost.
        self._saved[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _on_child_exit)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._saved_wakeup_fd)
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a stop signal interrupts by raising :class:`_Stopped`."""
        if self.signum is not None:
            raise _Stopped(self.signum)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only record and forward here: printing is left to the main loop, which may itself
        # be printing when the signal arrives.
        first = self.signum is None
        if first:
            self.signum, self._signalled_at = signum, time.monotonic()
        if self._pgid is not None:
            # A second signal (Ctrl-C twice) means: do not wait for a graceful stop.
            _killpg(self._pgid, _forwarded(signum) if first else signal.SIGKILL)
        elif self._interruptible and first:
            raise _Stopped(signum)

    def _pause(self, timeout: float | None) -> None:
        """Sleep until a signal is caught (a stop signal, SIGCHLD) or ``timeout`` passes."""
        assert self._wakeup is not None, "use _GroupSupervisor as a context manager"
        read_end = self._wakeup[0]
        select.select([read_end], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(read_end, 512):
                pass

    def run(self, command: list[str], env: dict[str, str]) -> int:
        """Run ``command`` until its whole process group has exited; return its status.

        The status is the command's exit code, negative for a signal as in
        :attr:`subprocess.Popen.returncode`, or ``-signum`` without starting it when a stop
        signal came first.
        """
        if self.signum is not None:
            return -self.signum
        _adopt_orphans()
        child = subprocess.Popen(command, env=env, start_new_session=True)
        pgid = self._pgid = child.pid  # a new session's leader: its PID is the group's ID
        if self.signum is not None:  # it came while the child started, before it was known
            _killpg(pgid, _forwarded(self.signum))
        stopping_since: float | None = None  # when the group was asked to stop
        killed_at: float | None = None
        while True:
            now = time.monotonic()
            if stopping_since is None and self.signum is not None:
                stopping_since = self._signalled_at
                name = signal.Signals(self.signum).name
                err.print(
                    f"{name}: stopping the {self.what} (waiting up to {self.stop_timeout:g} s).",
                    highlight=False,
                )
            if child.poll() is not None:
                if not _group_alive(pgid):
                    break
                if stopping_since is None:
                    # The server ended by itself but left processes behind: stop them too.
                    stopping_since = now
                    _killpg(pgid, signal.SIGTERM)
            if stopping_since is None:
                self._pause(None)  # serving: until a stop signal, or the server exits
                continue
            if killed_at is None and now - stopping_since >= self.stop_timeout:
                err.print(
                    f"The {self.what} did not stop within {self.stop_timeout:g} s: killing it.",
                    highlight=False,
                )
                _killpg(pgid, signal.SIGKILL)
                killed_at = now
            elif killed_at is not None and now - killed_at > 10:
                # Only a process stuck in the kernel survives SIGKILL; do not hang on it.
                err.print(
                    f"[red]error:[/red] processes of group {pgid} survived SIGKILL.",
                    highlight=False,
                )
                break
            # Stopping: poll, since group members that are not our children (no subreaper
            # outside Linux) send no SIGCHLD when they exit.
            self._pause(0.05)
        self._pgid = None
        return child.returncode if child.returncode is not None else -signal.SIGKILL


def _forwarded(signum: int) -> int:
    """The signal that stops the server gracefully for ``signum`` received by tracksdk.

    SIGHUP (the terminal went away) becomes SIGTERM: uvicorn has no graceful stop on SIGHUP,
    and with several workers its supervisor takes SIGHUP as "restart the workers".
    """
    return signal.SIGTERM if signum == signal.SIGHUP else signum


def _on_child_exit(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: SIGCHLD only has to wake the main loop, through the wake-up pipe."""


def _killpg(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has members left; reaps those that are our children.

    Call it only once the group leader's :class:`subprocess.Popen` has reaped the leader.
    """
    # Members orphaned while the group stops are adopted by this process (_adopt_orphans):
    # reap them, as a zombie still counts as a member of its group.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members exist that we may not signal
    return True


def _adopt_orphans() -> None:
    """Become the parent of orphaned descendants (Linux), so they can be waited for.

    uvicorn outlives the ``mlflow`` process that started it by a moment on every stop.
    Without this it is handed to PID 1, which in a container often never reaps it, and
    its zombie would keep the group alive until the SIGKILL deadline.
    """
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_child_subreaper = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _exit_by_signal(signum: int) -> NoReturn:
    """End this process by ``signum`` with its default action, as if it had not been caught.

    The parent (a shell, systemd, a supervisor) then sees the death by that signal it asked
    for; a shell shows it as exit status 128 + the signal number (143 for SIGTERM).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise typer.Exit(128 + signum)  # reached only if the signal is blocked


def main() -> None:
    """Entry point of the ``tracksdk`` console script."""
    app()


if __name__ == "__main__":
    main()
