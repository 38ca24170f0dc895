"""The journal's disk on a real small tmpfs: never SIGBUS, and a full or read-only disk
still delivers the run to a healthy store (through memory), with one warning.

Mounting needs root; the tests are skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import local_client, run_cli


def _mount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """Mount small tmpfs folders (unmounted afterwards); skip when we cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted: list[Path] = []

    def make(size: str, *, read_only: bool = False) -> Path:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        try:
            _mount(path, f"size={size},mode=0777" + (",ro" if read_only else ""))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill a filesystem, leaving about ``leave`` bytes free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as out, contextlib.suppress(OSError):
        out.write(b"\0" * max(0, free - leave))


SCRIPT = """
import os, sys
import tracksdk
from tracksdk import tracked
points = int(sys.argv[1])
with tracked(experiment=sys.argv[2]) as run:
    for i in range(points):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
        if i == points // 2:
            run.flush(60)
            folder = os.environ["TRACKSDK_JOURNAL__DIR"]
            disk = os.statvfs(folder if os.path.isdir(folder) else os.path.dirname(folder))
            print("USED_MID", (disk.f_blocks - disk.f_bfree) * disk.f_frsize, flush=True)
    run.log_param("p", "v")
    run.log_text("hello", "notes.txt")
print("END", run.status, run.client_run_id)
"""


def run_job(project: Path, journal_dir: Path, points: int, name: str, **env: str) -> Any:
    (project / "job.py").write_text(textwrap.dedent(SCRIPT))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSDK_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "job.py", str(points), name],
        cwd=project,
        env={**base, "TRACKSDK_JOURNAL__DIR": str(journal_dir), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def stored(project: Path, name: str) -> Any:
    client = local_client(project)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss")
    return run, sorted(m.step for m in history), client


def test_small_disk_online_never_sigbus_and_frees_space(project: Path, tmpfs: Any) -> None:
    """A 1 MB journal disk, 30,000 points (1.3 MB of records), a healthy store: all stored."""
    disk = tmpfs("1m")
    result = run_job(project, disk, 30_000, "tiny-online")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "END FINISHED" in result.stdout
    run, steps, _ = stored(project, "tiny-online")
    assert run.info.status == "FINISHED"
    assert steps == list(range(30_000))
    assert run.data.params == {"p": "v"}
    # Caught up mid-run, the journal gave its acknowledged disk back.
    used = int(result.stdout.split("USED_MID")[1].split()[0])
    assert used < 300_000, result.stdout
    assert os.listdir(disk) == []


def test_small_disk_offline_keeps_what_fits_and_counts_the_rest(project: Path, tmpfs: Any) -> None:
    """Offline on a 2 MB disk: no SIGBUS; what did not fit is counted; sync sends the rest."""
    disk = tmpfs("2m")
    result = run_job(project, disk, 60_000, "tiny-offline", TRACKSDK_MODE="offline")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "END FINISHED" in result.stdout
    assert "could not be kept" in result.stderr or "failed" in result.stderr
    synced = run_cli(project, "sync", env={"TRACKSDK_JOURNAL__DIR": str(disk)})
    assert synced.returncode == 0, synced.stdout + synced.stderr
    run, steps, _ = stored(project, "tiny-offline")
    assert run.info.status == "FINISHED"
    failures = int(run.data.tags["tracksdk.write_failures"])
    assert failures > 0
    assert steps == list(range(len(steps)))  # what was kept is the start, in order
    assert len(steps) > 10_000


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_unwritable_journal_disk_still_delivers_to_a_healthy_store(
    project: Path, tmpfs: Any, kind: str
) -> None:
    """A full or read-only journal disk: one warning (durability reduced), nothing lost."""
    if kind == "full":
        disk = tmpfs("1m")
        fill(disk)
    else:
        disk = tmpfs("1m", read_only=True)
    before = sorted(os.listdir(disk))
    result = run_job(project, disk / "journal", 5_000, f"unwritable-{kind}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "END FINISHED" in result.stdout
    assert result.stderr.count("Durability is reduced") == 1, result.stderr
    run, steps, client = stored(project, f"unwritable-{kind}")
    assert run.info.status == "FINISHED"
    assert steps == list(range(5_000))
    assert run.data.params == {"p": "v"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "notes.txt")] or any(
        a.path == "notes.txt" for a in client.list_artifacts(run.info.run_id)
    )
    assert sorted(os.listdir(disk)) == before  # no half-created journal folder


def test_disk_filling_up_mid_run_moves_the_rest_to_memory(project: Path, tmpfs: Any) -> None:
    """The disk fills while the run logs: the rest goes through memory, every point arrives."""
    disk = tmpfs("1m")
    fill(disk, leave=100_000)
    result = run_job(project, disk, 25_000, "filling")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "END FINISHED" in result.stdout
    run, steps, _ = stored(project, "filling")
    assert run.info.status == "FINISHED"
    assert steps == list(range(25_000))


def test_freed_start_of_a_segment_is_never_read_again(tmp_path: Path) -> None:
    """After the acknowledged start of a segment is freed, a resend from the journal's
    start (a store that lost the run) begins at the first whole record after the hole."""
    from tracksdk import _journal
    from tracksdk._journal import layout
    from tracksdk._journal.reader import Reader
    from tracksdk._journal.records import Metrics

    journal = _journal.Journal.create(
        tmp_path, {"client_id": _journal.new_client_id()}, max_bytes=1 << 30
    )
    for step in range(20_000):
        journal.append(Metrics([("loss", float(step), 0, step)]))
    reader = Reader(journal.path)
    entries = []
    while batch := reader.read(5000):
        entries.extend(batch)
    reader.close()
    acked = entries[15_000].end
    layout.write_ack(journal.path, acked)
    journal.acknowledge(acked, durable=True)
    journal.free_acknowledged()
    assert journal.punched_at == acked  # a hole was punched (Linux)
    blocks = os.stat(journal.path / "seg-000001.log").st_blocks * 512
    assert blocks < layout.SEGMENT_SIZE  # its disk space went back
    after = Reader(journal.path, journal.punched_at).read(10_000)
    assert [e.record.points[0][3] for e in after if isinstance(e.record, Metrics)] == list(
        range(15_001, 20_000)
    )
    journal.close()
    journal.release()
