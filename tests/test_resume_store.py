"""The store calls resuming a run needs (``keyed_runs``, ``get_run``, ``set_running``,
``delete_run``, ``claim``, ``release``), on every store: memory, local sqlite, a real MLflow
server (PostgreSQL) and the DagsHub-shaped one (basic auth behind a prefix)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracksdk._schema import RUN_KEY_TAG
from tracksdk.backends import Connection, Credentials
from tracksdk.stores import Claim, Store, open_store
from tracksdk.stores.errors import NotFound, PermissionDenied, Rejected
from tracksdk.stores.memory import MemoryStore, forget

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Target:
    """A store under test, and how to open another one on the same connection."""

    kind: str
    conn: Connection
    opened: list[Store]

    def open(self) -> Store:
        store = open_store(self.conn, timeout=30)
        self.opened.append(store)
        return store

    def active_experiments(self, name: str) -> list[str]:
        """The active experiments named ``name``, as MLflow's client (or the memory store)
        lists them for a user."""
        if self.kind == "memory":
            experiments, _ = MemoryStore.named(self.conn).snapshot()
            return [n for n, stage in experiments.values() if n == name and stage == "active"]
        from mlflow import MlflowClient

        found = MlflowClient(self.conn.tracking_uri).search_experiments(
            filter_string=f"name = '{name}'"
        )
        return [e.name for e in found]


@pytest.fixture(
    params=[
        "memory",
        "local",
        pytest.param("mlflow_server", marks=pytest.mark.server),
        pytest.param("dagshub_server", marks=pytest.mark.server),
    ]
)
def target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    empty_store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    kind = request.param
    if kind == "memory":
        uri = f"memory://resume-{uuid.uuid4().hex}"
        conn = Connection(backend="memory", tracking_uri=uri, registry_uri=uri)
    elif kind == "local":
        shutil.copyfile(empty_store, tmp_path / "mlflow.db")
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        root = str(tmp_path / "mlruns")
        conn = Connection(backend="local", tracking_uri=uri, registry_uri=uri, artifact_root=root)
    elif kind == "mlflow_server":
        url = request.getfixturevalue("mlflow_server").url
        conn = Connection(backend="server", tracking_uri=url, registry_uri=url)
    else:
        server = request.getfixturevalue("dagshub_server")
        conn = Connection(
            backend="dagshub",
            tracking_uri=server.tracking_uri,
            registry_uri=server.tracking_uri,
            credentials=Credentials("basic", server.token, server.username, "test"),
        )
        # For MLflow's client, reading back what the store wrote.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.token)
    made = Target(kind, conn, [])
    yield made
    for store in made.opened:
        store.close()
    if kind == "memory":
        forget(conn.tracking_uri)


def _unique(prefix: str) -> str:
    # The servers live for the whole test session: every test names its own experiments.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# Keys and, for each, keys a careless filter would also match: MLflow's filter compares
# the text between the quotes as it is (no un-doubling of ''), a key holding both quotes
# is searched with LIKE (whose _ matches any character, case-blind on sqlite).
KEYS = {
    "slurm-12345_7": ("slurm-12345x7", "SLURM-12345_7"),
    "exp'1": ("Exp'1", "exp''1"),
    'say "hi"': ('say "HI"', 'say ""hi""'),
    "both'\"\\ends\\": ('bothX"Xends\\', "BOTH'\"\\ENDS\\"),
    'o\'clock "sharp"': ('oXclock "sharp"', 'O\'CLOCK "SHARP"'),
}


def test_keyed_runs_are_the_active_runs_of_exactly_that_key_oldest_first(target: Target) -> None:
    store = target.open()
    experiment = store.experiment_id(_unique("keyed"))
    elsewhere = store.experiment_id(_unique("keyed-elsewhere"))
    for key, near_misses in KEYS.items():
        # Created out of order; two with the same start time, told apart by run id.
        runs = [
            store.create_run(experiment, None, {RUN_KEY_TAG: key}, start)
            for start in (3_000, 1_000, 2_000, 2_000)
        ]
        for near_miss in near_misses:
            store.create_run(experiment, None, {RUN_KEY_TAG: near_miss}, 500)
        store.create_run(experiment, None, {"other": key}, 500)
        store.create_run(elsewhere, None, {RUN_KEY_TAG: key}, 500)
        ties = sorted(r.run_id for r in runs[2:])
        expected = [runs[1].run_id, *ties, runs[0].run_id]

        found = store.keyed_runs(experiment, key)
        assert [s.run.run_id for s in found] == expected, key
        assert [s.start_ms for s in found] == [1_000, 2_000, 2_000, 3_000]
        assert all(s.tags[RUN_KEY_TAG] == key and s.status == "RUNNING" for s in found)
        assert all(s.run.experiment_id == experiment for s in found)

        store.delete_run(runs[1].run_id)  # in the trash: no longer a run of the key
        assert [s.run.run_id for s in store.keyed_runs(experiment, key)] == expected[1:]
        assert store.get_run(runs[1].run_id).lifecycle_stage == "deleted"
    assert store.keyed_runs(experiment, "no-such-key") == []


def test_get_run_reads_back_params_tags_and_each_metrics_last_step(target: Target) -> None:
    store = target.open()
    experiment = store.experiment_id(_unique("get-run"))
    created = store.create_run(experiment, "reread", {RUN_KEY_TAG: "k", "team": "a"}, 1_000)
    t = 1_700_000_000_000
    store.log_batch(created.run_id, [("loss", 1.0 / (s + 1), t + s, s) for s in range(5)], {}, {})
    # A point for an earlier step, logged later: the latest point is still step 4's.
    store.log_batch(created.run_id, [("loss", 9.0, t + 100, 2)], {}, {})
    store.log_batch(created.run_id, [("acc", 0.5, t, 7)], {"lr": "0.1"}, {"stage": "dev"})

    state = store.get_run(created.run_id)
    assert state.run.run_id == created.run_id and state.run.experiment_id == experiment
    assert state.run.run_name == "reread"
    assert (state.status, state.lifecycle_stage, state.start_ms) == ("RUNNING", "active", 1_000)
    assert state.params == {"lr": "0.1"}
    assert {k: state.tags[k] for k in (RUN_KEY_TAG, "team", "stage")} == {
        RUN_KEY_TAG: "k",
        "team": "a",
        "stage": "dev",
    }
    assert state.last_steps == {"loss": 4, "acc": 7}

    if target.kind == "dagshub_server":
        # MLflow's basic-auth app answers a run that does not exist 403 to a user who is
        # not an admin, so that its answers tell no one which run ids exist.
        with pytest.raises(PermissionDenied):
            store.get_run(uuid.uuid4().hex)
    else:
        with pytest.raises(NotFound) as missing:
            store.get_run(uuid.uuid4().hex)
        assert missing.value.subject == "run"


def test_set_running_reopens_an_ended_run(target: Target) -> None:
    store = target.open()
    experiment = store.experiment_id(_unique("reopen"))
    run = store.create_run(experiment, None, {}, 1_000)
    store.end_run(run.run_id, "FINISHED", 2_000)
    assert store.get_run(run.run_id).status == "FINISHED"
    store.set_running(run.run_id)
    assert store.get_run(run.run_id).status == "RUNNING"


def test_claim_is_won_once_and_release_hides_the_marker_but_keeps_it_held(
    target: Target,
) -> None:
    store = target.open()
    name = _unique("claim")
    before = int(time.time() * 1000)
    assert store.claim(name) == Claim(won=True)
    after = int(time.time() * 1000)
    again = target.open().claim(name)  # another process's store, no cache shared
    assert again.won is False and again.released is False
    assert again.created_ms is not None and before - 1_000 <= again.created_ms <= after + 1_000
    assert target.active_experiments(name) == [name]

    store.release(name)
    store.release(name)  # released twice: nothing more to do
    assert target.active_experiments(name) == []
    held = store.claim(name)
    assert held == Claim(won=False, created_ms=again.created_ms, released=True)
    # The marker never entered the store's experiment lookups: it reads as deleted.
    with pytest.raises(Rejected) as deleted:
        store.experiment_id(name)
    assert "deleted" in str(deleted.value)


CLAIMANT = """
import json, sys
from tracksdk.backends import Connection
from tracksdk.stores import open_store
uri, root, name = sys.argv[1:4]
store = open_store(Connection("local", uri, uri, artifact_root=root))
store.experiment_id("warm-up")  # MLflow imported and the database open before the start
print("ready", flush=True)
sys.stdin.readline()
claim = store.claim(name)
print(json.dumps([claim.won, claim.created_ms]), flush=True)
"""


def _claims_in_processes(conn: Connection, name: str, count: int) -> list[Claim]:
    """``count`` processes claim ``name``, released together once all are ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]])}
    command = [sys.executable, "-c", CLAIMANT, conn.tracking_uri, str(conn.artifact_root), name]
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * count
    return [Claim(won, created) for won, created in answers]


def _claims_in_threads(open_store: Callable[[], Store], name: str, count: int) -> list[Claim]:
    """``count`` threads, each with its own store, claim ``name`` at once."""
    stores = [open_store() for _ in range(count)]
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def claim(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = stores[index].claim(name)
        except Exception as exc:  # shown by the assertion below
            answers[index] = exc

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(a, Claim) for a in answers), answers
    return answers


def test_concurrent_claims_have_exactly_one_winner(target: Target) -> None:
    name = _unique("race")
    if target.kind == "local":  # the store the processes of a SLURM array share
        claims = _claims_in_processes(target.conn, name, 4)
    else:
        claims = _claims_in_threads(target.open, name, 4)
    assert sorted(c.won for c in claims) == [False, False, False, True]
    assert len({c.created_ms for c in claims if not c.won}) == 1
