"""Fuzzing the journal reader and the sync planner with random and mutated journals.

Neither may raise on any bytes: bit flips, truncation, inserted or deleted bytes, zeroed
ranges, random segments, garbage meta.json / ack / created.json. A few examples are also
synced for real to the project's sqlite store. ``TRACKSDK_FUZZ_EXAMPLES`` (default 1000)
sets how many inputs the reader test tries; run with ``-s`` to see the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracksdk import _journal, _replay
from tracksdk._journal import folders, layout
from tracksdk._journal.reader import Reader
from tracksdk._journal.records import (
    Create,
    End,
    Input,
    Metrics,
    Params,
    Record,
    Tags,
    Unknown,
)

EXAMPLES = int(os.environ.get("TRACKSDK_FUZZ_EXAMPLES", "1000"))
SYNC_EXAMPLES = int(os.environ.get("TRACKSDK_FUZZ_SYNC_EXAMPLES", "40"))
STATS: dict[str, list[float]] = {}


def build_journal(folder: Path) -> Path:
    """A real journal written by the Journal API: every record kind, then closed."""
    client_id = _journal.new_client_id()
    journal = _journal.Journal.create(
        folder,
        {"client_id": client_id, "target": None, "experiment": "fuzz", "run_name": "fz"},
        max_bytes=1 << 30,
    )
    journal.append(Create(experiment="fuzz", start=1, run_name="fz"))
    journal.append(Params({"lr": "0.1"}))
    for step in range(40):
        journal.append(Metrics([("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step)]))
    journal.append(Tags({"stage": "dev"}))
    journal.append(Input({"name": "d", "digest": "x"}, None))
    journal.append(Unknown("x", ("a kind from a newer tracksdk",)))
    journal.append(End("FINISHED", 1_700_000_100_000))
    journal.close()
    journal.release()
    # Keep only the written part: the fuzzer mutates real bytes, not 4 MB of zeros.
    segment = journal.path / "seg-000001.log"
    end = journal.position[1]
    os.truncate(segment, end + 64)
    return journal.path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    path = build_journal(tmp_path_factory.mktemp("fuzz-base"))
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} | {
        "_name": path.name.encode()
    }


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 200)),
    st.tuples(st.just("zero"), st.integers(0, 1 << 20), st.integers(1, 400)),
    st.tuples(st.just("garbage"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
meta_strategy = st.one_of(
    st.none(),  # keep the real meta.json
    st.binary(max_size=80),
    st.dictionaries(
        st.sampled_from(
            ["client_id", "created", "experiment", "run_name", "parent", "target", "pid",
             "host", "format"]
        ),
        json_values,
    ).map(lambda d: json.dumps(d).encode()),
)  # fmt: skip
side_file = st.one_of(
    st.none(), st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode())
)


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    for op in ops:
        if not out and op[0] != "insert":
            continue
        pos = op[1] % (len(out) + 1)
        if op[0] == "flip" and pos < len(out):
            out[pos] ^= 1 << op[2]
        elif op[0] == "truncate":
            del out[pos:]
        elif op[0] == "insert":
            out[pos:pos] = op[2]
        elif op[0] == "delete":
            del out[pos : pos + op[2]]
        elif op[0] == "zero":
            out[pos : pos + op[2]] = b"\0" * len(out[pos : pos + op[2]])
        elif op[0] == "garbage":
            out[pos : pos + len(op[2])] = op[2]
    return bytes(out)


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="tracksdk-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def lay_out(
    folder: Path,
    base: dict[str, bytes],
    ops: list[tuple[Any, ...]],
    meta: bytes | None,
    ack: bytes | None,
    created: bytes | None,
    second: bytes | None,
) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    path = folder / base["_name"].decode()
    path.mkdir(parents=True)
    for name, data in base.items():
        if not name.startswith("_"):
            (path / name).write_bytes(data)
    (path / "seg-000001.log").write_bytes(mutate(base["seg-000001.log"], ops))
    if meta is not None:
        (path / "meta.json").write_bytes(meta)
    if ack is not None:
        (path / "ack").write_bytes(ack)
    if created is not None:
        (path / "created.json").write_bytes(created)
    if second is not None:
        (path / "seg-000002.log").write_bytes(second)
    (folder / "stray-folder").mkdir(exist_ok=True)
    (folder / "stray-folder" / "meta.json").write_bytes(meta or b"{}")
    return path


def record_stat(name: str, started: float) -> None:
    STATS.setdefault(name, []).append(time.perf_counter() - started)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(mutation, min_size=1, max_size=4),
    meta=meta_strategy,
    ack=side_file,
    created=side_file,
    second=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_reader_and_planner_never_raise(
    base: dict[str, bytes],
    scratch: Path,
    ops: list[tuple[Any, ...]],
    meta: bytes | None,
    ack: bytes | None,
    created: bytes | None,
    second: bytes | None,
) -> None:
    """Any bytes: find, the reader (live and final) and summarize return, never raise."""
    started = time.perf_counter()
    lay_out(scratch, base, ops, meta, ack, created, second)
    for found in folders.find(scratch):
        assert found.path.name != "stray-folder"
        for final in (False, True):
            reader = Reader(found.path, layout.read_ack(found.path))
            try:
                while entries := reader.read(7, final=final):
                    assert all(isinstance(e.record, Record) for e in entries)
            finally:
                reader.close()
        summary = _replay.summarize(found)
        summary.describe()
        summary.describe_damage()
        for damage in summary.damage:
            assert 0 <= damage.start <= damage.end
    assert (scratch / "stray-folder" / "meta.json").exists()
    record_stat("reader", started)


@pytest.fixture
def local_conn(project: Path) -> Any:
    from tracksdk import _config

    _, conn = _config.resolve_with_connection()
    return conn


@settings(
    max_examples=SYNC_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(mutation, min_size=1, max_size=3),
    meta=meta_strategy,
    created=side_file,
)
def test_a_real_sync_of_mutated_journals_never_raises(
    base: dict[str, bytes],
    local_conn: Any,
    project: Path,
    ops: list[tuple[Any, ...]],
    meta: bytes | None,
    created: bytes | None,
) -> None:
    """Syncing mutated journals to the local store: an outcome for each, no exception,
    and a damaged journal is kept, never deleted.
    """
    started = time.perf_counter()
    folder = project / ".tracksdk" / "journal"
    path = lay_out(folder, base, ops, meta, None, created, None)
    outcomes = _replay.sync_all(
        folder, local_conn, http_timeout=10, progress_delay=None, timeout=20
    )
    for outcome in outcomes:
        assert outcome.state in ("sent", "kept", "failed", "retired", "other-store"), outcome
        if outcome.summary.damage and outcome.state in ("sent", "kept"):
            assert outcome.state == "kept" and outcome.kept_at is not None
            assert (outcome.kept_at / "KEPT.txt").exists()
        if outcome.state == "sent":
            assert not path.exists()
        assert "run None" not in outcome.message
    assert (folder / "stray-folder" / "meta.json").exists()
    record_stat("sync", started)


def test_print_fuzz_figures() -> None:
    """Prints how many inputs the fuzz tests tried and how long they took (under -s)."""
    for name, times in STATS.items():
        print(f"\nfuzz {name}: {len(times)} inputs in {sum(times):.1f} s")
