"""Damaged journals, folders that are not journals, refused and deleted runs, bounded sync.

Everything runs against the project's own sqlite store; faults against a real server
(a store replaced mid-run) are in test_journal_faults.py.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from core_fixtures import all_runs, local_client, run_cli

import tracksdk
from tracksdk import TrackSDKWarning, tracked
from tracksdk._journal import folders, layout

HEADER = struct.Struct("<II")


def journal_dir(project: Path) -> Path:
    return project / ".tracksdk" / "journal"


def journals(project: Path) -> list[Path]:
    folder = journal_dir(project)
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "kept")


def kept(project: Path) -> list[Path]:
    folder = journal_dir(project) / "kept"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def offline_run(monkeypatch: pytest.MonkeyPatch, name: str = "damaged", points: int = 100) -> Path:
    """An ended offline run: create, a param, ``points`` points, a tag, the end record."""
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    tracksdk.reset()
    with pytest.warns(TrackSDKWarning), tracked(experiment="damage", run_name=name) as run:
        run.log_param("p1", "v1")
        for step in range(points):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.set_tag("t_end", "yes")
    monkeypatch.delenv("TRACKSDK_MODE")
    tracksdk.reset()
    return journal_dir(Path.cwd()) / run.client_run_id


def records(segment: Path) -> list[tuple[int, int, list]]:  # type: ignore[type-arg]
    """(offset, size, record) of each record in a segment file."""
    data = segment.read_bytes()
    out, offset = [], 0
    while offset + 8 <= len(data):
        size, _ = HEADER.unpack_from(data, offset)
        if size == 0 or size == 0xFFFFFFFF:
            break
        out.append((offset, size, json.loads(data[offset + 8 : offset + 8 + size])))
        offset += 8 + size
    return out


def step_record(segment: Path, step: int) -> tuple[int, int]:
    for offset, size, record in records(segment):
        if record[0] == "m" and record[1][0][3] == step:
            return offset, size
    raise AssertionError(f"no record for step {step}")


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def corrupt(journal: Path, kind: str) -> None:
    """Damage the record of step 50 (or the create record) the way kind says."""
    segment = journal / "seg-000001.log"
    offset, size = step_record(segment, 50)
    if kind == "flip_payload":
        byte = segment.read_bytes()[offset + 8 + 5]
        patch(segment, offset + 8 + 5, bytes([byte ^ 0x04]))
    elif kind == "huge_len":
        patch(segment, offset, struct.pack("<I", 0x7FFFFFF0))
    elif kind == "zero_header":
        patch(segment, offset, b"\0" * 8)
    elif kind == "next_marker":
        patch(segment, offset, HEADER.pack(0xFFFFFFFF, 0))
    elif kind == "garbage_range":
        patch(segment, offset + 3, os.urandom(size))
    elif kind == "badjson_goodcrc":
        payload = b"x" * size
        patch(segment, offset, HEADER.pack(size, zlib.crc32(payload)) + payload)
    elif kind == "notlist_goodcrc":
        payload = b'{"a":' + b"1" * (size - 6) + b"}"
        patch(segment, offset, HEADER.pack(size, zlib.crc32(payload)) + payload)
    elif kind == "bad_fields_goodcrc":
        payload = json.dumps(["m", [["loss", "abc", None, "x"]]]).encode()
        payload += b" " * (size - len(payload))
        patch(segment, offset, HEADER.pack(size, zlib.crc32(payload)) + payload)
    elif kind == "truncate_mid":
        os.truncate(segment, offset + 8 + size // 2)
    else:
        raise ValueError(kind)


LOSSY = ["flip_payload", "huge_len", "zero_header", "next_marker", "garbage_range",
         "badjson_goodcrc", "notlist_goodcrc", "bad_fields_goodcrc"]  # fmt: skip


def test_a_damaged_record_is_skipped_and_the_rest_is_sent(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One damaged record loses that record only: later points, the tag and FINISHED arrive.

    One journal per kind of damage, synced together: sync names each byte range lost,
    exits 1 and keeps each journal in kept/ with a note.
    """
    damaged = {kind: offline_run(monkeypatch, name=kind) for kind in LOSSY}
    for kind, journal in damaged.items():
        corrupt(journal, kind)
    dry = run_cli(project, "sync", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert dry.stdout.count("DAMAGED") == len(LOSSY), dry.stdout
    assert "segment 1 bytes" in dry.stdout
    assert dry.stdout.count("end it FINISHED") == len(LOSSY), dry.stdout

    result = run_cli(project, "sync")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("NOT IN FULL") == len(LOSSY), result.stdout
    assert "Traceback" not in result.stderr
    runs = {run.info.run_name: run for run in all_runs(project)}
    assert sorted(runs) == sorted(LOSSY)
    for kind, run in runs.items():
        assert run.info.status == "FINISHED", kind
        assert run.data.params == {"p1": "v1"}, kind
        assert run.data.tags["t_end"] == "yes", kind
        history = local_client(project).get_metric_history(run.info.run_id, "loss")
        steps = sorted(m.step for m in history)
        assert steps == [s for s in range(100) if s != 50], kind
    assert journals(project) == []
    assert sorted(p.name for p in kept(project)) == sorted(j.name for j in damaged.values())
    for where in kept(project):
        note = (where / "KEPT.txt").read_text()
        assert "segment 1 bytes" in note and "unreadable" in note
        assert (where / "seg-000001.log").exists()  # the bytes are still there to look at
    # `sync --rejected`, which KEPT.txt suggests, keeps a damaged journal too.
    again = run_cli(project, "sync", "--rejected")
    assert "Traceback" not in again.stderr, again.stderr
    for where in kept(project):
        assert (where / "seg-000001.log").exists() and (where / "damage.json").exists()


def test_a_truncated_journal_sends_what_is_whole(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment cut in the middle of a record: the records before it are sent, KILLED."""
    journal = offline_run(monkeypatch)
    corrupt(journal, "truncate_mid")
    result = run_cli(project, "sync")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cut short" in result.stdout, result.stdout
    [run] = all_runs(project)
    assert run.info.status == "KILLED"  # the end record was in the lost part
    history = local_client(project).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(50))
    assert [p.name for p in kept(project)] == [journal.name]


@pytest.mark.parametrize("kind", ["flip_create", "zero_segment"])
def test_a_run_whose_create_record_is_lost_is_recreated_from_meta(
    project: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A damaged create record (or an all-zero first segment) never gives "run None".

    The run is created from meta.json (experiment, run name, start time), tagged
    tracksdk.recreated, and gets what remains.
    """
    journal = offline_run(monkeypatch, name="lost-create")
    meta = json.loads((journal / "meta.json").read_text())
    segment = journal / "seg-000001.log"
    if kind == "flip_create":
        patch(segment, 8 + 3, b"Z")
    else:
        size = segment.stat().st_size
        patch(segment, 0, b"\0" * min(size, 1 << 20))
    result = run_cli(project, "sync")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run None" not in result.stdout
    assert "no record creates the run" in result.stdout
    [run] = all_runs(project)
    client = local_client(project)
    assert client.get_experiment(run.info.experiment_id).name == "damage"
    assert run.info.run_name == "lost-create"
    assert "created from" in run.data.tags["tracksdk.recreated"]
    assert run.data.tags["tracksdk.client_run_id"] == journal.name
    assert abs(run.info.start_time - meta["created"] * 1000) < 2000
    history = client.get_metric_history(run.info.run_id, "loss")
    if kind == "flip_create":
        assert run.info.status == "FINISHED"
        assert len(history) == 100 and run.data.params == {"p1": "v1"}
    else:
        assert run.info.status == "KILLED"
    assert [p.name for p in kept(project)] == [journal.name]


def test_folders_that_are_not_journals_are_left_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A user's dataset folder with a meta.json under TRACKSDK_JOURNAL__DIR is never touched.

    Odd meta.json contents, stray files and folders do not stop the real journal.
    """
    spool = tmp_path / "spool"
    monkeypatch.setenv("TRACKSDK_JOURNAL__DIR", str(spool))
    offline_run(monkeypatch, name="real")
    [real] = [p for p in spool.iterdir() if p.is_dir()]
    assert (real / "tracksdk-journal").read_text() == "tracksdk journal 1\n"
    dataset = spool / "my_dataset"
    dataset.mkdir()
    (dataset / "meta.json").write_text('{"name": "my dataset", "version": 3}')
    (dataset / "img1.png").write_text("img1")
    for name, text in {
        "abc": '{"created": "abc", "client_id": "abc"}',
        "nul": '{"created": null, "format": 1}',
        "list": "[1, 2]",
        "bad": "{not json",
    }.items():
        (spool / name).mkdir()
        (spool / name / "meta.json").write_text(text)
    (spool / "stray.txt").write_text("x")
    # A folder claiming to be a journal of the previous release, with wrong types.
    fake = spool / ("f" * 32)
    fake.mkdir()
    (fake / "meta.json").write_text(json.dumps({"client_id": "f" * 32, "format": "1"}))
    (fake / "seg-000001.log").write_bytes(b"junk")
    env = {"TRACKSDK_JOURNAL__DIR": str(spool)}
    dry = run_cli(project, "sync", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Would send 1 journaled run(s)" in dry.stdout
    result = run_cli(project, "sync", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = all_runs(project)
    assert run.info.run_name == "real" and run.info.status == "FINISHED"
    assert sorted(p.name for p in spool.iterdir()) == sorted(
        ["my_dataset", "abc", "nul", "list", "bad", "stray.txt", "f" * 32]
    )
    assert sorted(p.name for p in dataset.iterdir()) == ["img1.png", "meta.json"]


def test_a_journal_of_the_previous_release_without_marker_is_still_sent(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No marker, but meta.json format 1, client id = folder name and a segment: a journal."""
    journal = offline_run(monkeypatch)
    (journal / "tracksdk-journal").unlink()
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = all_runs(project)
    assert run.info.status == "FINISHED"
    assert not journal.exists()


def test_one_bad_journal_never_stops_the_others(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal with a garbage meta.json and odd records still lets the next one be sent."""
    first = offline_run(monkeypatch, name="first")
    second = offline_run(monkeypatch, name="second")
    (first / "meta.json").write_text(json.dumps({
        "client_id": first.name, "format": 1, "created": "abc", "experiment": 5,
        "run_name": ["x"], "target": 7, "pid": "no", "host": None,
    }))  # fmt: skip
    corrupt(first, "badjson_goodcrc")
    (first / "ack").write_text("not an ack")
    (first / "created.json").write_text('{"target": null, "run_id": 5}')
    result = run_cli(project, "sync")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout  # the first is damaged
    runs = {r.info.run_name: r for r in all_runs(project)}
    assert runs["second"].info.status == "FINISHED"
    assert runs["first"].data.tags["t_end"] == "yes"  # its records survived the bad meta
    assert not second.exists()


def test_the_journal_target_holds_no_credentials(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password in the tracking URI is masked in meta.json; sync still sees the same store."""
    uri = "postgresql://alice:s3cretPassw0rd@127.0.0.1:1/db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TRACKSDK_FLUSH_TIMEOUT", "1")
    monkeypatch.setenv("TRACKSDK_START_TIMEOUT", "1")
    tracksdk.reset()
    with pytest.warns(TrackSDKWarning), tracked(experiment="creds") as run:
        run.log_metric("m", 1.0)
    journal = journal_dir(project) / run.client_run_id
    for path in journal.rglob("*"):
        if path.is_file():
            assert b"s3cretPassw0rd" not in path.read_bytes(), path
    meta = json.loads((journal / "meta.json").read_text())
    assert meta["target"] == "postgresql://***@127.0.0.1:1/db"
    dry = run_cli(project, "sync", "--dry-run", env={"MLFLOW_TRACKING_URI": uri})
    # Listed (to send, or skipped while this process's sender still holds it), never
    # "journaled for" another store because the password differs or is masked.
    assert run.client_run_id[:8] in dry.stdout, dry.stdout
    assert "journaled for" not in dry.stdout, dry.stdout
    assert "s3cretPassw0rd" not in dry.stdout + dry.stderr
    assert layout.same_target(meta["target"], "postgresql://bob:other@127.0.0.1:1/db")
    assert not layout.same_target(meta["target"], "postgresql://alice@127.0.0.1:2/db")


def test_sync_gives_up_on_an_unreachable_store(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tracksdk sync --timeout 3` against a closed port ends, says why, exits 1, keeps it."""
    journal = offline_run(monkeypatch)
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": "http://127.0.0.1:9"}
    started = time.monotonic()
    result = run_cli(project, "sync", "--timeout", "3", env=env, timeout=120)
    took = time.monotonic() - started
    print(f"\nsync against a closed port with --timeout 3 ended after {took:.1f} s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gave up after 3 s without progress (last error:" in result.stdout, result.stdout
    assert took < 60
    assert journals(project) == [journal]
    assert kept(project) == []


def test_a_second_sync_names_the_sync_that_holds_the_journal(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a sync holds a journal, another says so, not that a dead writer still runs."""
    journal = offline_run(monkeypatch)
    with folders.claim(journal) as ours:
        assert ours
        result = run_cli(project, "sync")
    assert f"another `tracksdk sync` (pid {os.getpid()}) is sending it" in result.stdout, (
        result.stdout
    )
    assert "is still running" not in result.stdout


def test_a_deleted_experiment_is_reported_once_and_the_journal_retired(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal for a deleted experiment: sync ends at once, keeps it aside, says how.

    The next tracked run is not disturbed by it; after the experiment is restored,
    `tracksdk sync --rejected` sends it.
    """
    with tracked(experiment="gone") as first:
        first.log_metric("m", 1.0)
    client = local_client(project)
    experiment = client.get_experiment_by_name("gone")
    journal = offline_run(monkeypatch, name="late")
    meta = json.loads((journal / "meta.json").read_text())
    meta["experiment"] = "gone"
    (journal / "meta.json").write_text(json.dumps(meta))
    # The run's own create record names the experiment: rewrite it too (same length).
    segment = journal / "seg-000001.log"
    data = segment.read_bytes()
    assert data.count(b'"damage"') == 1
    size, _ = HEADER.unpack_from(data, 0)
    payload = data[8 : 8 + size].replace(b'"damage"', b'"gone00"')
    segment.write_bytes(HEADER.pack(size, zlib.crc32(payload)) + payload + data[8 + size :])
    client.rename_experiment(experiment.experiment_id, "gone00")
    client.delete_experiment(experiment.experiment_id)

    started = time.monotonic()
    result = run_cli(project, "sync", timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is deleted" in result.stdout and "sync --rejected" in result.stdout, result.stdout
    assert journals(project) == []
    [where] = kept(project)
    assert "refused the run" in (where / "KEPT.txt").read_text()
    again = run_cli(project, "sync")
    assert again.returncode == 0 and "Nothing to sync" in again.stdout
    assert "1 journal(s) kept" in again.stdout

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked(experiment="other"):
            pass
        # The background sync that run started: its warnings, if any, are caught here.
        for thread in threading.enumerate():
            if thread.name == "tracksdk-autosync":
                thread.join(60)
    assert not [w for w in caught if "late" in str(w.message) or where.name[:8] in str(w.message)]

    client.restore_experiment(experiment.experiment_id)
    replay = run_cli(project, "sync", "--rejected")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    [late] = [r for r in all_runs(project) if r.info.run_name == "late"]
    assert late.info.status == "FINISHED"
    assert len(client.get_metric_history(late.info.run_id, "loss")) == 100
    assert kept(project) == []


def test_refused_requests_are_kept_in_full_said_at_the_end_and_replayable(
    project: Path,
) -> None:
    """A run deleted mid-run: later requests are refused, kept in full (0600), said once
    at the end; `tracksdk sync --rejected` sends them after the run is restored.
    """
    client = local_client(project)
    with pytest.warns(TrackSDKWarning) as record, tracked(experiment="deleted-run") as run:
        run.log_metric("before", 1.0)
        run.flush()
        client.delete_run(run.run_id)
        for step in range(20):
            run.log_metric("after", float(step), step=step)
        run.log_param("late", "yes")
    messages = [str(w.message) for w in record]
    [end] = [m for m in messages if "not sent in full" in m]
    assert "request(s) refused by the store" in end and "sync --rejected" in end
    [where] = kept(project)
    assert str(where) in end
    rejected = where / "rejected.jsonl"
    assert stat.S_IMODE(rejected.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in rejected.read_text().splitlines()]
    kinds = [r[0] for line in lines for r in line["records"]]
    assert "m" in kinds and "p" in kinds and "e" in kinds
    points = [p for line in lines for r in line["records"] if r[0] == "m" for p in r[1]]
    assert sorted(p[3] for p in points if p[0] == "after") == list(range(20))

    failed = run_cli(project, "sync", "--rejected")  # still deleted: refused again, kept
    assert failed.returncode == 1 and "still refused" in failed.stdout, failed.stdout
    assert kept(project) == [where]
    client.restore_run(run.run_id)
    replay = run_cli(project, "sync", "--rejected")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"late": "yes"}
    assert len(client.get_metric_history(run.run_id, "after")) == 20
    assert kept(project) == []
