"""Session fixtures with real MLflow servers: ``mlflow_server`` and ``dagshub_server``.

Both are started lazily, once per session, when the first test that needs one runs. At that
moment every server needed by any selected test is launched, so they boot in parallel. They
are stopped (whole process groups) and the PostgreSQL database is dropped at session end,
including after Ctrl-C; if pytest is killed outright, a small reaper process in
``tests/servers.py`` does the same. Logs: ``<pytest basetemp>/servers*/``; a server that
does not start raises ``ServerStartError`` with its log tail.

Before each test that uses one of them, a server that an earlier test left stopped is
started again, and the DagsHub proxy's ``fail_routes`` and request log are cleared, so
``dagshub_server.count(...)`` counts this test's requests.

See ``tests/servers.py`` (``MlflowServer``, ``DagsHubServer``) for the handle attributes.
Mark tests that use them with ``@pytest.mark.server``.

The test suite's own third-party extension, tests/resources/tracksdk-dummy, is made an
installed distribution for the test session only (``pytest_configure`` below): its source
and a generated ``.dist-info`` (entry points read from its pyproject.toml) go on
``sys.path`` and ``PYTHONPATH``, so this process and the subprocesses the tests start find
its ``folder`` backend and ``toy`` plugin, while the environment ``make run`` uses never
holds it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import DagsHubServer, MlflowServer, ServerPool, session_pool

SERVER_FIXTURES = ("mlflow_server", "dagshub_server")
DUMMY = Path(__file__).resolve().parent / "resources" / "tracksdk-dummy"
_DISTS = pytest.StashKey[Path]()


def install_for_session(source: Path, target: Path) -> list[str]:
    """Make the distribution at ``source`` importable with its entry points, from ``target``.

    Writes ``<name>-<version>.dist-info`` (METADATA and entry_points.txt, from the
    pyproject.toml's ``[project]`` table) into ``target``, which is what importlib.metadata
    reads; the package itself is imported from ``source``. Returns the folders to put on
    the path.
    """
    table = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    name, version = table["name"], table["version"]
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = table.get("entry-points", {})
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
            for group, points in groups.items()
        )
    )
    return [str(source), str(target)]


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: test modules import tracksdk_dummy at their top.
    target = Path(tempfile.mkdtemp(prefix="tracksdk-test-dists-"))
    config.stash[_DISTS] = target
    paths = install_for_session(DUMMY, target)
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [*paths, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    target = config.stash.get(_DISTS, None)
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="session")
def _server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    # Shared with the plugins' server fixtures (see servers.session_pool).
    pool = session_pool(lambda: tmp_path_factory.mktemp("servers"))
    yield pool
    pool.close()


def _wanted(session: pytest.Session) -> set[str]:
    """Server fixtures used by any selected test, to launch them together."""
    names: set[str] = set()
    for item in session.items:
        names.update(n for n in SERVER_FIXTURES if n in getattr(item, "fixturenames", ()))
    return names


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest, _server_pool: ServerPool) -> MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1, PostgreSQL store, ``--serve-artifacts``."""
    _server_pool.launch(_wanted(request.session) | {"mlflow_server"})
    server: MlflowServer = _server_pool.get("mlflow_server")
    return server


@pytest.fixture(scope="session")
def dagshub_server(request: pytest.FixtureRequest, _server_pool: ServerPool) -> DagsHubServer:
    """A DagsHub-shaped MLflow (basic auth, ``/<owner>/<repo>.mlflow``, API stand-in)."""
    _server_pool.launch(_wanted(request.session) | {"dagshub_server"})
    server: DagsHubServer = _server_pool.get("dagshub_server")
    return server


# Core fixtures (fresh project folders with their own local store).
from core_fixtures import empty_store, fresh_project, project  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _mlflow_environment() -> Iterator[None]:
    """Undo MLflow's own changes to the environment (and its active experiment) after each test.

    ``mlflow.set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` so that subprocesses
    inherit it; one test's experiment id must not reach a later test's server.
    """
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    fluent = sys.modules.get("mlflow.tracking.fluent")
    experiment = getattr(fluent, "_active_experiment_id", None)
    yield
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:  # and its in-process twin (a test's mlflow.set_experiment)
        fluent._active_experiment_id = experiment
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)


@pytest.fixture(autouse=True)
def _fresh_servers(request: pytest.FixtureRequest) -> None:
    for name in SERVER_FIXTURES:
        if name not in request.fixturenames:
            continue
        server = request.getfixturevalue(name)
        if not server.is_healthy():
            server.start()
        if isinstance(server, DagsHubServer):
            server.clear_failures()
            server.reset_counts()
