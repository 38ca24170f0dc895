"""Real MLflow tracking servers for the test suite (used by the fixtures in conftest.py).

Two kinds of server, both bound to 127.0.0.1 only:

* :class:`MlflowServer`: a real ``mlflow server`` process in its own process group,
  here with a PostgreSQL backend store (a fresh database per test session) and
  ``--serve-artifacts``, so artifacts travel over HTTP.
* :class:`DagsHubServer`: a stand-in for DagsHub's hosted MLflow. A real
  ``mlflow server --app-name basic-auth --static-prefix /<owner>/<repo>.mlflow`` runs behind
  a small threaded reverse proxy that lives in the test process. The proxy answers the
  DagsHub API routes the ``dagshub`` client calls itself, forwards everything under the
  MLflow prefix unchanged, counts requests per route and can be told to fail routes.

Measured here (2 cores, mlflow 3.17.2, uvicorn 0.54, SQLAlchemy 2.1.9; the machine was busy,
load 3-4, so expect spread): time from ``Popen`` until ``/health`` answers, RSS of the group.

============================================  =====  =======  ==========================
server                                        procs  memory   startup
============================================  =====  =======  ==========================
default ``mlflow server``, PostgreSQL          15     1.86 GB  62 s (during a pip install)
``--workers 1`` only, PostgreSQL               10     1.63 GB  23 s
used here: ``MlflowServer``, PostgreSQL        2      0.49 GB  17-20 s, restart 12-20 s
used here: basic-auth + sqlite (DagsHub)       2      0.51 GB  11-24 s, restart 16-17 s
both used servers launched in parallel         4      1.0 GB   both healthy after 21-35 s
============================================  =====  =======  ==========================

What makes the server light: ``--workers 1`` (uvicorn then runs the app in-process, no
supervisor) and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``, which drops the huey job runner
and its 7 consumer processes (they are for GenAI jobs such as scorers; the tracking REST API
does not need them). ``--app-name basic-auth`` uses the same web server as the default app in
3.17.2: uvicorn, with ``mlflow.server.auth:create_app`` passed as an ASGI factory
(``--factory``), not gunicorn. Half of the startup time is ``import mlflow`` twice (the CLI
process, then the uvicorn worker), the rest the schema migration of a new store (~3.5 s on
PostgreSQL).

Surprises found while writing this:

* SQLAlchemy 2.1 maps ``postgresql://`` to the psycopg (3) driver, which is not installed:
  the server dies with ``No module named 'psycopg'``. Use ``postgresql+psycopg2://``.
* ``.pid`` is the ``mlflow server`` CLI process; the uvicorn worker that serves requests is
  its child. ``os.kill(pid, SIGKILL)`` leaves that worker serving on the port. To take the
  server down use :meth:`MlflowServer.stop` or ``os.killpg(server.pid, ...)`` (the PID is
  also the process group id). ``start()`` cleans such leftovers before starting again.
* PID 1 here does not reap orphans, so killed group members can stay as zombies; liveness
  checks below ignore zombies.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCALHOST = "127.0.0.1"
PG_HOST = os.environ.get("TRACKSDK_TEST_PG_HOST", LOCALHOST)
PG_PORT = int(os.environ.get("TRACKSDK_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TRACKSDK_TEST_PG_USER", "postgres")
STARTUP_TIMEOUT = float(os.environ.get("TRACKSDK_TEST_SERVER_TIMEOUT", "240"))

# Environment for every server process: nothing inherited from MLFLOW_* / DAGSHUB_* (a test
# run with MLFLOW_TRACKING_URI or MLFLOW_AUTH_ADMIN_PASSWORD set must not change the servers).
_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


# The tail of a launcher script (tests/test_concurrency.py, bench/team_server.py): the
# script defines ``worker(index)``, ``workers`` and ``work`` (a Path) and imported the slow
# modules once; this forks ``workers`` children, each with its stdout and stderr in
# ``work/<index>.out`` / ``.err``, touches ``work/forked`` and prints the exit codes as JSON.
FORK_WORKERS = """
import json as _json, os as _os, sys as _sys, traceback as _traceback

children = {}
_sys.stdout.flush()
_sys.stderr.flush()
for index in range(workers):
    pid = _os.fork()
    if pid == 0:  # a worker: its own process, stdout and stderr in its own files
        flags = _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC
        _os.dup2(_os.open(work / ("%d.out" % index), flags, 0o600), 1)
        _os.dup2(_os.open(work / ("%d.err" % index), flags, 0o600), 2)
        code = 0
        try:
            worker(index)
        except BaseException:
            _traceback.print_exc()
            code = 1
        _sys.stdout.flush()
        _sys.stderr.flush()
        _sys.exit(code)  # a normal interpreter exit, as a user script has
    children[pid] = index
(work / "forked").touch()
codes = {}
for pid, index in children.items():
    _, status = _os.waitpid(pid, 0)
    codes[index] = _os.waitstatus_to_exitcode(status)
print(_json.dumps(codes))
"""


HANG_SECONDS = 120.0  # the longest a "hang" failure holds a request


class ServerStartError(RuntimeError):
    """A test server did not become healthy; the message ends with its log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    """Return the last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group ``pgid`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM process group ``pgid``, SIGKILL it after ``timeout`` s, wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")


def _group_listens(pgid: int, port: int) -> bool:
    """True if a process of group ``pgid`` holds the socket listening on 127.0.0.1:``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return True
    return False


def _http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0):
    """GET without any proxy settings; returns (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Clean-up backstop. The session fixtures stop the servers and drop the database themselves.
# If pytest dies without tearing down (SIGTERM from a CI timeout, SIGKILL, os._exit), this
# small child process sees its stdin close and kills the registered process groups and drops
# the registered databases. It is in its own session, so Ctrl-C does not kill it first.
# --------------------------------------------------------------------------------------------
_REAPER_CODE = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pgids, dbs, pg = set(), set(), None
for line in sys.stdin:
    op, kind, value = line.split(" ", 2)
    value = value.strip()
    if kind == "pg":
        value = int(value)
    target = pgids if kind == "pg" else dbs
    if kind == "conn":
        pg = value
    elif op == "+":
        target.add(value)
    else:
        target.discard(value)
for sig in (signal.SIGTERM, signal.SIGKILL) if pgids else ():
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    time.sleep(3)
if dbs and pg:
    import psycopg2
    host, port, user = pg.split(",")
    conn = psycopg2.connect(host=host, port=int(port), user=user, dbname="postgres",
                            connect_timeout=5)
    conn.autocommit = True
    for db in dbs:
        conn.cursor().execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
"""


class _Reaper:
    _proc: subprocess.Popen[bytes] | None = None
    _lock = threading.Lock()

    @classmethod
    def send(cls, op: str, kind: str, value: object) -> None:
        with cls._lock:
            if cls._proc is None or cls._proc.poll() is not None:
                cls._proc = subprocess.Popen(
                    [sys.executable, "-c", _REAPER_CODE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                assert cls._proc.stdin is not None
                cls._proc.stdin.write(f"+ conn {PG_HOST},{PG_PORT},{PG_USER}\n".encode())
            assert cls._proc.stdin is not None
            cls._proc.stdin.write(f"{op} {kind} {value}\n".encode())
            cls._proc.stdin.flush()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------
def _pg_connect():
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5
        )
    except psycopg2.OperationalError as e:
        raise ServerStartError(
            f"PostgreSQL does not answer on {PG_HOST}:{PG_PORT} as {PG_USER!r} ({e}). Start it "
            "with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from e
    conn.autocommit = True
    return conn


def create_database(prefix: str = "tracksdk_test") -> str:
    """Create a fresh PostgreSQL database with a random name and return the name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _pg_connect()
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    _Reaper.send("+", "db", name)
    return name


def drop_database(name: str) -> None:
    """Drop a database made by :func:`create_database`, closing its open connections."""
    conn = _pg_connect()
    try:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
    _Reaper.send("-", "db", name)


def pg_uri(database: str) -> str:
    """SQLAlchemy URI of a database (``+psycopg2``: SQLAlchemy 2.1 defaults to psycopg 3)."""
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


# --------------------------------------------------------------------------------------------
# mlflow server
# --------------------------------------------------------------------------------------------
class MlflowServer:
    """A real ``mlflow server`` subprocess on 127.0.0.1, in its own process group.

    Attributes:
        url / tracking_uri: what an MLflow client uses, ``http://127.0.0.1:PORT[/prefix]``.
        base_url: ``http://127.0.0.1:PORT``.  port: the port (the same across restarts).
        pid: PID of the ``mlflow server`` CLI process, which is also the process group id
            (None before the first start). The uvicorn worker is its child: see the module doc.
        backend_store_uri, artifacts_dir, log_path: where data and the log (all starts,
            appended) live.
        env: environment variables for a child process that should log here.

    ``start()`` and ``stop()`` are idempotent; ``start()`` reuses the port and the stores, so
    data survives a restart. ``launch()`` + ``wait_ready()`` split ``start()`` so several
    servers can boot in parallel.
    """

    def __init__(
        self,
        *,
        name: str,
        workdir: Path,
        backend_store_uri: str,
        static_prefix: str = "",
        app_name: str | None = None,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
        database: str | None = None,
    ) -> None:
        self.name = name
        self.database = database
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri
        self.static_prefix = static_prefix.rstrip("/")
        self.app_name = app_name
        self.extra_env = dict(extra_env or {})
        self.port = port or free_port()
        self.artifacts_dir = self.workdir / "artifacts"
        self.log_path = self.workdir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self._lock = threading.RLock()
        self._launched_at = 0.0
        self.last_startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + self.static_prefix

    tracking_uri = url

    @property
    def health_url(self) -> str:
        return self.url + "/health"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url}

    def pids(self) -> list[int]:
        """Live PIDs of the server's process group (CLI process and uvicorn worker)."""
        return group_members(self._pgid) if self._pgid is not None else []

    def is_running(self) -> bool:
        """True while the ``mlflow server`` process (``.pid``) is alive."""
        return self._proc is not None and self._proc.poll() is None

    def is_healthy(self) -> bool:
        """True if ``/health`` answers 200 right now."""
        try:
            return _http_get(self.health_url, timeout=2)[0] == 200
        except OSError:
            return False

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--host", LOCALHOST,
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination", str(self.artifacts_dir),
        ]  # fmt: skip
        if self.static_prefix:
            cmd += ["--static-prefix", self.static_prefix]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        return cmd

    def launch(self) -> None:
        """Start the process without waiting for it to be healthy (no-op if it runs)."""
        with self._lock:
            if self.is_running():
                return
            self._cleanup_group()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSHUB_"))}
            env.update(_SERVER_ENV)
            env.update(self.extra_env)
            with self.log_path.open("ab") as log:
                log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {self.command()}\n".encode())
                log.flush()
                self._launched_at = time.monotonic()
                self._proc = subprocess.Popen(
                    self.command(),
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._pgid = self._proc.pid
            _Reaper.send("+", "pg", self._pgid)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until ``/health`` answers; on failure stop and raise with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None:
                raise ServerStartError(f"{self.name}: wait_ready() before launch()")
            if proc.poll() is not None:
                why = f"exited with code {proc.returncode}"
            elif self.is_healthy():
                if self._pgid is not None and not _group_listens(self._pgid, self.port):
                    why = f"port {self.port} answers, but not from this server's processes"
                else:
                    if self._launched_at:
                        self.last_startup_seconds = time.monotonic() - self._launched_at
                        self._launched_at = 0.0
                    return
            elif time.monotonic() > deadline:
                why = f"not healthy after {timeout:.0f} s"
            else:
                time.sleep(0.2)
                continue
            self.stop()
            raise ServerStartError(
                f"{self.name} ({self.url}) {why}. Log {self.log_path}, last lines:\n"
                + log_tail(self.log_path)
            )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start (or restart) on the same port and stores and wait until healthy."""
        with self._lock:
            self.launch()
            self.wait_ready(timeout)

    def stop(self) -> None:
        """Kill the whole process group (SIGTERM, then SIGKILL) and wait. Idempotent."""
        with self._lock:
            self._cleanup_group()

    def close(self) -> None:
        """Stop for good and drop the PostgreSQL database if this server owns one."""
        self.stop()
        if self.database is not None:
            drop_database(self.database)
            self.database = None

    def replace_store(self) -> str | None:
        """Restart on the same port with a fresh, empty PostgreSQL database and artifacts.

        For the "server replaced by an empty one" fault. Returns the old database's name
        (None for a server without its own database); pass it to :meth:`drop_old_store`.
        """
        with self._lock:
            self.stop()
            old = self.database
            if old is None:
                return None
            self.database = create_database()
            self.backend_store_uri = pg_uri(self.database)
            self.artifacts_dir = self.workdir / f"artifacts-{self.database}"
            self.start()
            return old

    def drop_old_store(self, database: str | None) -> None:
        """Drop ``database`` (from :meth:`replace_store`) and keep the fresh store: no restart."""
        if database is not None and database != self.database:
            drop_database(database)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group without waiting (for fault tests)."""
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._pgid, sig)

    def _cleanup_group(self) -> None:
        pgid = self._pgid
        if pgid is not None:
            # SIGTERM lets uvicorn shut down cleanly (~0.2 s); the CLI process then lingers
            # 2-5 s after its child exits, holding nothing: SIGKILL it instead of waiting.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and set(group_members(pgid)) - {pgid}:
                time.sleep(0.05)
            kill_group(pgid, timeout=0)
            _Reaper.send("-", "pg", pgid)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._pgid = None

    def __repr__(self) -> str:
        return f"<MlflowServer {self.name} {self.url} pid={self.pid}>"


def postgres_mlflow_server(workdir: Path) -> MlflowServer:
    """A plain MLflow server on a fresh PostgreSQL database (``.database`` is its name)."""
    database = create_database()
    return MlflowServer(
        name="mlflow", workdir=workdir, backend_store_uri=pg_uri(database), database=database
    )


# --------------------------------------------------------------------------------------------
# DagsHub stand-in
#
# How the real `dagshub` client (0.7.3) talks to the DagsHub API, from its source:
# * It sends `Authorization: Bearer <token>` (dagshub/auth/token_auth.py: HTTPBearerAuth and
#   DagshubTokenABC.__call__), through httpx with follow_redirects=True and a user agent
#   ending in "dagshub-client-python/<version>" (dagshub/common/helpers.py: http_request).
#   Basic auth (username + password/token) is used only by its upload and streaming code.
# * A token is valid iff `GET {host}/api/v1/user` answers 200 with JSON holding both "login"
#   and "username" (dagshub/auth/tokens.py: TokenStorage.get_username_of_token); a 401 there
#   makes DAGSHUB_USER_TOKEN raise "Provided DagsHub token is not valid".
# * That JSON is parsed with dacite into UserAPIResponse (dagshub/common/api/responses.py):
#   id:int, login:str, full_name:str, avatar_url, public_email, website, company,
#   description (optional str) and username:str. `dagshub.init` uses `.username` as
#   MLFLOW_TRACKING_USERNAME and the token as MLFLOW_TRACKING_PASSWORD.
# * `GET {host}/api/v1/repos/<owner>/<repo>` (dagshub/common/api/repo.py: get_repo_info): 404
#   means "missing" and makes `dagshub.init` create the repo (POST /api/v1/user/repos or
#   /api/v1/org/<org>/repos; this stand-in answers those 404, and counts them). 200 is parsed
#   into RepoAPIResponse, whose non-optional fields are all filled below.
# * `GET {host}/api/v1/users/<username>` (UserAPI.user_info) returns the same user JSON.
# * `DAGSHUB_CLIENT_HOST` picks the host; `DAGSHUB_USER_TOKEN` is read at import time.
# The stand-in accepts the token as `Bearer <token>` or as the password of basic auth, as
# DagsHub does; the MLflow routes are checked by MLflow's basic-auth app itself.
# --------------------------------------------------------------------------------------------
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
}  # fmt: skip
_CHUNK = 64 * 1024


class _ProxyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, port: int, owner: DagsHubServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__((LOCALHOST, port), _ProxyHandler)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        self.owner._log(f"error serving {client_address}: {sys.exc_info()[1]!r}")

    def drop_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections
    server: _ProxyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        self.server.owner._log(f"{self.address_string()} {format % args}")

    def _handle(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        action = owner._take_failure(path)
        gather = 0
        if isinstance(action, str) and action.startswith("gather:"):
            gather, action = int(action.split(":")[1]), None
        if action == "hang":  # a black hole: the connection is accepted, never answered
            owner._record(self.command, path, 0)
            owner._hang.wait(HANG_SECONDS)
            self.close_connection = True
            return
        if isinstance(action, str) and action.startswith("retry-after:"):
            _, status, seconds = action.split(":")
            self._discard_body()
            self._retry_after = seconds
            self._send_json(int(status), {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": f"injected failure {status} for {path}, retry after {seconds} s",
            })  # fmt: skip
            return
        if action is not None and action not in ("drop", "lose"):
            self._discard_body()
            self._send_json(int(action), {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": f"injected failure {action} for {path}",
            })  # fmt: skip
            return
        if action != "drop" and (path == owner.prefix or path.startswith(owner.prefix + "/")):
            self._forward(path, lose=action == "lose", gather=gather)
            return
        self._discard_body()
        if action is None and not path.startswith("/api/v1/"):
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if action is None:
            status, body = owner._api(self.command, path, self.headers.get("Authorization"))
            self._send(status, json.dumps(body).encode(), "application/json")
            return
        owner._record(self.command, path, 0)  # "drop", or "lose" on a DagsHub route
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    # ---- bodies ----
    def _request_body(self) -> tuple[Iterator[bytes] | None, bool]:
        """Return (streaming body, chunked) for the incoming request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(), True
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None, False
        return self._read_exact(length), False

    def _read_exact(self, length: int) -> Iterator[bytes]:
        while length > 0:
            data = self.rfile.read(min(_CHUNK, length))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            length -= len(data)
            yield data

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._read_exact(size)
            self.rfile.readline()  # CRLF after each chunk

    def _discard_body(self) -> None:
        body, _ = self._request_body()
        for _ in body or ():
            pass

    def _send_json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.server.owner._record(self.command, urlsplit(self.path).path, status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="DagsHub"')
        retry_after = getattr(self, "_retry_after", None)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
            self._retry_after = None
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ---- forwarding ----
    def _forward(self, path: str, lose: bool, gather: int = 0) -> None:
        owner = self.server.owner
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        body, chunked = self._request_body()
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        upstream = http.client.HTTPConnection(LOCALHOST, owner.server.port, timeout=600)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers,
                             encode_chunked=chunked)  # fmt: skip
            resp = upstream.getresponse()
        except OSError as e:  # backend down: answer like a gateway would
            upstream.close()
            self.close_connection = True  # the request body may be unread
            self._send_json(502, {"error_code": "BAD_GATEWAY", "message": str(e)})
            return
        try:
            if gather:  # answered only once `gather` such requests were done upstream
                owner._gather(path, gather)
            if lose:  # the backend did the work, the client never hears about it
                resp.read()
                owner._record(self.command, path, 0)
                self.close_connection = True
                return
            owner._record(self.command, path, resp.status)
            self.send_response_only(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            rechunk = not no_body and resp.getheader("Content-Length") is None
            if rechunk:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            while data := resp.read1(_CHUNK):
                if rechunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()


class DagsHubServer:
    """DagsHub-shaped MLflow: basic-auth ``mlflow server`` behind a proxy in this process.

    Attributes:
        host: ``http://127.0.0.1:PROXYPORT``, the DagsHub host (``DAGSHUB_CLIENT_HOST``).
        owner, repo: the one repository that exists.  prefix: ``/<owner>/<repo>.mlflow``.
        tracking_uri: ``f"{host}/{owner}/{repo}.mlflow"``.
        username, token: a real, non-admin MLflow user whose basic-auth password is the token;
            the same token is the DagsHub API token (as on DagsHub).
        admin_username, admin_password: the MLflow admin (for test set-up only).
        server: the :class:`MlflowServer` behind the proxy (stop it alone to get 502s).
        env: ``MLFLOW_TRACKING_URI/USERNAME/PASSWORD``, ``DAGSHUB_CLIENT_HOST``,
            ``DAGSHUB_USER_TOKEN`` and a private ``DAGSHUB_CLIENT_TOKENS_CACHE``, for a child.

    Routes: paths under ``prefix`` are forwarded unchanged (method, path, query, headers incl.
    Authorization, streamed bodies both ways) to the MLflow server, which serves them under the
    same static prefix and checks basic auth itself. The proxy answers the rest as DagsHub:
    ``GET /api/v1/user`` (200 user JSON with a valid token, else 401),
    ``GET /api/v1/users/<username>``, ``GET /api/v1/repos/<owner>/<repo>`` (200 for the known
    repo, 404 for others; 401 without a valid token), 404 for anything else, e.g. an MLflow
    route without the prefix. (Forwarding those instead would not give a 404: MLflow 3.17's
    basic-auth app answers unknown routes 403 "Permission denied" to non-admin users and 404
    only to admins.)

    Request log and counting:
        ``requests`` is a list of ``(method, path, status)`` (status 0 for a dropped or lost
        answer), appended just before the answer is sent; ``request_times`` holds the
        ``time.monotonic()`` of each. ``count(route, method=None)`` counts
        entries whose path is ``route`` or ``prefix + route`` (a ``route`` ending in ``*``
        matches paths starting with the rest), so
        ``count("/api/2.0/mlflow/runs/create")`` counts run creations and
        ``count("/api/v1/user")`` the token checks. ``reset_counts()`` clears the log.

    Fault injection: ``fail_routes`` maps a route (matched like ``count``) to an action:

    * an ``int`` status, e.g. ``{"/api/2.0/mlflow/runs/create": 503}``: answer that status
      with an MLflow-style JSON error, without forwarding;
    * ``"drop"``: close the connection without forwarding or answering;
    * ``"lose"``: forward (the server does the work), then close without answering (a lost
      response, e.g. to provoke a retried ``runs/create``);
    * ``"hang"``: accept the request and never answer (a black hole), until
      ``release_hangs()`` or ``HANG_SECONDS``;
    * ``"retry-after:<status>:<seconds>"``, e.g. ``"retry-after:429:2"``: answer that
      status with a ``Retry-After`` header, without forwarding;
    * ``"gather:<n>"``: forward, then hold the answer until ``n`` requests to that path
      were forwarded (at most 30 s): racing clients all get answers from before any of
      them went on, e.g. ``("gather:4", 4)`` on ``runs/search`` for four racers;
    * ``(action, n)``: the action for the next ``n`` matching requests only, then removed.

    ``fail_routes`` may be replaced or mutated at any time; ``clear_failures()`` empties it.
    ``stop()`` / ``start()`` stop and start both the proxy and the server, on the same ports and
    stores; open client connections are cut on ``stop()``.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        owner: str = "tracksdk-user",
        repo: str = "tracksdk-test",
        port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.owner = owner
        self.repo = repo
        self.username = owner  # the user owns the repo, as after `dagshub.init` for oneself
        self.token = secrets.token_hex(20)  # DagsHub tokens are 40 hex characters
        self.admin_username = "admin"
        self.admin_password = secrets.token_urlsafe(18)
        self.user_id = 4242
        self.port = port or free_port()
        self.prefix = f"/{owner}/{repo}.mlflow"
        self.fail_routes: dict[str, Any] = {}
        self._gathered = threading.Condition()
        self._gathered_counts: dict[str, int] = {}
        self._hang = threading.Event()
        self.requests: list[tuple[str, str, int]] = []
        self.request_times: list[float] = []  # time.monotonic() of each entry of requests
        self._state_lock = threading.Lock()
        self._httpd: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._user_created = False
        self._proxy_log = (self.workdir / "proxy.log").open("a", buffering=1)

        auth_ini = self.workdir / "basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\n"
            "default_permission = MANAGE\n"
            f"database_uri = sqlite:///{self.workdir / 'auth.db'}\n"
            f"admin_username = {self.admin_username}\n"
            f"admin_password = {self.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Skip PBKDF2 on every request once a password was accepted (successes only).
            "auth_cache_ttl_seconds = 600\n"
        )
        self.server = MlflowServer(
            name="dagshub-mlflow",
            workdir=self.workdir,
            backend_store_uri=f"sqlite:///{self.workdir / 'mlflow.db'}",
            static_prefix=self.prefix,
            app_name="basic-auth",
            extra_env={
                "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            },
        )

    # ---- addresses ----
    @property
    def host(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def tracking_uri(self) -> str:
        return f"{self.host}/{self.owner}/{self.repo}.mlflow"

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.token,
            "DAGSHUB_CLIENT_HOST": self.host,
            "DAGSHUB_USER_TOKEN": self.token,
            "DAGSHUB_CLIENT_TOKENS_CACHE": str(self.workdir / "dagshub-tokens.yaml"),
        }

    # ---- lifecycle ----
    def launch(self) -> None:
        """Start the proxy and launch the backend without waiting."""
        self._start_proxy()
        self.server.launch()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        self.server.wait_ready(timeout)
        if not self._user_created:
            self._create_user()

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start proxy and backend (idempotent) and wait until healthy."""
        self.launch()
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Stop the proxy (cutting open connections) and the backend. Idempotent."""
        self._stop_proxy()
        self.server.stop()

    def is_running(self) -> bool:
        """True while the proxy and the ``mlflow server`` process both run."""
        return self._httpd is not None and self.server.is_running()

    def is_healthy(self) -> bool:
        """True if the proxy runs and the backend answers ``/health``."""
        return self._httpd is not None and self.server.is_healthy()

    def close(self) -> None:
        self.stop()
        self._proxy_log.close()

    def _start_proxy(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = _ProxyHTTPServer(self.port, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"dagshub-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _stop_proxy(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _create_user(self) -> None:
        """Create the non-admin MLflow user (idempotent: the auth DB survives restarts)."""
        cred = base64.b64encode(f"{self.admin_username}:{self.admin_password}".encode()).decode()
        body = json.dumps({"username": self.username, "password": self.token})
        conn = http.client.HTTPConnection(LOCALHOST, self.server.port, timeout=30)
        try:
            conn.request(
                "POST",
                f"{self.prefix}/api/2.0/mlflow/users/create",
                body=body,
                headers={"Authorization": f"Basic {cred}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status != 200 and "RESOURCE_ALREADY_EXISTS" not in text:
            raise ServerStartError(f"creating MLflow user failed: {resp.status} {text}")
        self._user_created = True

    # ---- proxy state ----
    def _log(self, line: str) -> None:
        with contextlib.suppress(ValueError):
            self._proxy_log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _matches(self, route: str, path: str) -> bool:
        if route.endswith("*"):
            return path.startswith((route[:-1], self.prefix + route[:-1]))
        return path in (route, self.prefix + route)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._state_lock:
            self.requests.append((method, path, status))
            self.request_times.append(time.monotonic())

    def _gather(self, path: str, count: int) -> None:
        """Hold an answer until ``count`` requests to ``path`` were done (at most 30 s)."""
        with self._gathered:
            self._gathered_counts[path] = self._gathered_counts.get(path, 0) + 1
            self._gathered.notify_all()
            self._gathered.wait_for(lambda: self._gathered_counts[path] >= count, timeout=30)

    def release_hangs(self) -> None:
        """Let every request held by a ``"hang"`` failure go (closed without an answer)."""
        self._hang.set()
        self._hang = threading.Event()

    def _take_failure(self, path: str) -> int | str | None:
        with self._state_lock:
            for route, action in list(self.fail_routes.items()):
                if not self._matches(route, path):
                    continue
                if isinstance(action, tuple):
                    what, times = action
                    if times <= 1:
                        del self.fail_routes[route]
                    else:
                        self.fail_routes[route] = (what, times - 1)
                    return what  # type: ignore[no-any-return]
                return action  # type: ignore[no-any-return]
        return None

    def count(self, route: str, method: str | None = None) -> int:
        """Requests received for ``route`` (or ``prefix + route``), optionally one method."""
        with self._state_lock:
            return sum(
                1
                for m, p, _ in self.requests
                if self._matches(route, p) and (method is None or m == method.upper())
            )

    def reset_counts(self) -> None:
        with self._state_lock:
            self.requests.clear()
            self.request_times.clear()

    def clear_failures(self) -> None:
        with self._state_lock:
            self.fail_routes.clear()
        self.release_hangs()

    # ---- the DagsHub API ----
    def token_ok(self, authorization: str | None) -> bool:
        """True if an Authorization header carries the token (Bearer, or basic password)."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return secrets.compare_digest(value.strip(), self.token)
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                _, _, password = base64.b64decode(value.strip()).decode().partition(":")
                return secrets.compare_digest(password, self.token)
        return False

    def user_json(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "login": self.username,
            "full_name": "TrackSDK Test User",
            "avatar_url": f"{self.host}/avatars/{self.user_id}",
            "public_email": "",
            "website": "",
            "company": "",
            "description": "",
            "username": self.username,
        }

    def repo_json(self) -> dict[str, Any]:
        html = f"{self.host}/{self.owner}/{self.repo}"
        return {
            "id": 777,
            "owner": self.user_json(),
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "description": "",
            "private": False,
            "fork": False,
            "parent": None,
            "empty": False,
            "mirror": False,
            "size": 0,
            "html_url": html,
            "ssh_url": None,
            "clone_url": html + ".git",
            "website": "",
            "stars_count": 0,
            "forks_count": 0,
            "watchers_count": 0,
            "open_issues_count": 0,
            "default_branch": "main",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"admin": True, "push": True, "pull": True},
        }

    def _api(self, method: str, path: str, authorization: str | None) -> tuple[int, Any]:
        not_found = (404, {"message": "Not Found"})
        if not self.token_ok(authorization):
            return 401, {"message": "Unauthorized"}
        if method not in ("GET", "HEAD"):
            return not_found
        if path.rstrip("/") == "/api/v1/user":
            return 200, self.user_json()
        if path.rstrip("/") == f"/api/v1/users/{self.username}":
            return 200, self.user_json()
        if path.rstrip("/") == f"/api/v1/repos/{self.owner}/{self.repo}":
            return 200, self.repo_json()
        return not_found


# --------------------------------------------------------------------------------------------
# Session pool: lazily creates the servers, starts several in parallel, tears all down.
# --------------------------------------------------------------------------------------------
class ServerPool:
    """Creates the session's servers on demand and stops them at :meth:`close`.

    ``launch(names)`` starts the processes of every named server that is not started yet
    without waiting, so servers boot in parallel; ``get(name)`` then waits for one.
    Names: ``"mlflow_server"`` and ``"dagshub_server"``.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self._servers: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False
        self._factories: dict[str, Callable[[], Any]] = {
            "mlflow_server": lambda: postgres_mlflow_server(self.workdir / "mlflow"),
            "dagshub_server": lambda: DagsHubServer(workdir=self.workdir / "dagshub"),
        }

    def launch(self, names: set[str]) -> None:
        with self._lock:
            for name in sorted(names):
                if name in self._servers or name in self._errors:
                    continue
                try:
                    server = self._factories[name]()
                    self._servers[name] = server
                    server.launch()
                except Exception as e:  # reported by get(name), not by another fixture
                    self._errors[name] = e

    def get(self, name: str) -> Any:
        self.launch({name})
        if name in self._errors:
            raise self._errors[name]
        server = self._servers[name]
        if name not in self._ready:
            try:
                server.wait_ready()
            except Exception as e:
                self._errors[name] = e
                raise
            self._ready.add(name)
        return server

    def close(self) -> None:
        """Stop every server for good; a second call does nothing."""
        errors = []
        servers, self._servers = self._servers, {}
        self._ready.clear()
        self.closed = True
        for server in servers.values():
            try:
                server.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


_session_pool: ServerPool | None = None


def session_pool(workdir: Callable[[], Path]) -> ServerPool:
    """The test session's one :class:`ServerPool`, made on first use in ``workdir()``.

    A conftest's fixtures serve only the tests under its folder, so the plugins' tests
    (``plugins/*/tests``) cannot use ``tests/conftest.py``'s ``mlflow_server``. Their own
    fixture of that name takes the server from this pool too: one session starts each
    server once, whichever folders it runs. The first fixture torn down closes the pool.
    """
    global _session_pool
    if _session_pool is None or _session_pool.closed:
        _session_pool = ServerPool(workdir())
    return _session_pool
