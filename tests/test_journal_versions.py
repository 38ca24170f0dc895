"""Journal format versions: a newer format is reported and left alone; older ones are read.

The marker file says which format a journal folder holds (``tracksdk journal 1``). A
folder of a newer format (a newer tracksdk wrote it, then tracksdk was downgraded, or a
shared spool folder) is never read, sent, moved or deleted, and never ignored silently:
``tracksdk sync`` lists it and exits 1, the automatic sync warns once per process. A
journal of the release before the marker (none) is still read.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import pytest
from core_fixtures import all_runs, run_cli
from test_journal_records import CLIENT_ID, FORMAT_1, lay_out

from tracksdk import TrackSDKWarning, _config, _sync
from tracksdk._journal import folders, layout

NEWER = (
    "was written by a newer tracksdk (journal format 2); this tracksdk reads format 1: "
    "upgrade tracksdk to send it"
)
OTHER_ID = "abcdefabcdefabcdefabcdefabcdef12"


def newer_journal(folder: Path) -> Path:
    """A journal folder as a tracksdk writing format 2 might leave it."""
    path = folder / OTHER_ID
    path.mkdir(parents=True)
    (path / "tracksdk-journal").write_text("tracksdk journal 2\n")
    (path / "meta.json").write_text(json.dumps({"client_id": OTHER_ID, "format": 2}))
    (path / "seg-000001.log").write_bytes(b"\x05\x00\x00\x00 format 2 bytes")
    (path / "ack").write_text("1 0\n")
    return path


def contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("marker", "format_"),
    [
        ("tracksdk journal 1\n", 1),
        ("tracksdk journal 1", 1),
        ("tracksdk journal 2\n", 2),
        ("tracksdk journal 17\n", 17),
        ("tracksdk journal 0\n", None),
        ("tracksdk journal 01\n", None),
        ("tracksdk journal two\n", None),
        ("tracksdk journal -2\n", None),
        ("tracksdk journal\n", None),
        ("other tool 2\n", None),
        ("", None),
    ],
)
def test_the_marker_names_the_format(tmp_path: Path, marker: str, format_: int | None) -> None:
    path = tmp_path / CLIENT_ID
    path.mkdir()
    (path / "tracksdk-journal").write_text(marker)
    assert folders.journal_format(path) == format_
    assert folders.is_journal(path) == (format_ == 1)


def test_scan_parts_journals_this_tracksdk_reads_from_newer_ones(tmp_path: Path) -> None:
    unmarked = lay_out(tmp_path, [FORMAT_1[0][0]], marker=None)  # the release before
    newer = newer_journal(tmp_path)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "meta.json").write_text("{}")
    found, later = folders.scan(tmp_path)
    assert [f.path for f in found] == [unmarked]
    assert later == [folders.Newer(newer, 2)]
    assert folders.find(tmp_path) == found
    assert NEWER in later[0].describe() and str(newer) in later[0].describe()


def test_sync_reports_a_newer_journal_and_leaves_it_untouched(project: Path) -> None:
    journal_dir = project / ".tracksdk" / "journal"
    newer = newer_journal(journal_dir)
    before = contents(newer)

    alone = run_cli(project, "sync")
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "Nothing this tracksdk can send in" in alone.stdout
    assert f"NOT SENT {OTHER_ID[:8]}: journal {newer} {NEWER}" in alone.stdout

    sendable = lay_out(journal_dir, [p for p, _ in FORMAT_1[:1]], marker="tracksdk journal 1\n")
    dry = run_cli(project, "sync", "--dry-run")
    assert dry.returncode == 1 and "Would send 1 journaled run(s)" in dry.stdout, dry.stdout
    assert NEWER in dry.stdout
    both = run_cli(project, "sync")
    assert both.returncode == 1, both.stdout + both.stderr
    assert f"  sent {CLIENT_ID[:8]} as run" in both.stdout and NEWER in both.stdout
    assert not sendable.exists() and [r.info.run_name for r in all_runs(project)] == ["baseline"]

    kept = journal_dir / layout.KEPT
    kept.mkdir()
    newer.rename(kept / newer.name)
    rejected = run_cli(project, "sync", "--rejected")
    assert rejected.returncode == 1 and NEWER in rejected.stdout, rejected.stdout
    assert contents(kept / newer.name) == before


def test_the_automatic_sync_warns_once_about_a_newer_journal(project: Path) -> None:
    journal_dir = project / ".tracksdk" / "journal"
    newer = newer_journal(journal_dir)
    before = contents(newer)
    _, conn = _config.resolve_with_connection()
    assert conn is not None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):  # two runs start in this process
            _sync.in_background(journal_dir, conn, http_timeout=10)
            for thread in list(_sync._background.values()):
                thread.join(60)
    said = [str(w.message) for w in seen if issubclass(w.category, TrackSDKWarning)]
    assert said == [f"tracksdk: journal {newer} {NEWER}."]
    assert contents(newer) == before
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "tracksdk-autosync")
