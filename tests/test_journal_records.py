"""Journal records: typed, and byte for byte the format-1 payloads already on users' disks.

The payloads below are written out by hand as the release before typed records wrote
them (``json.dumps(list, separators=(",", ":"), ensure_ascii=False)``). A journal made of
them is read back and synced by today's code; today's writer writes the same bytes.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import all_runs, artifact_paths, local_client, run_cli

from tracksdk import TrackSDKWarning, _journal
from tracksdk._journal import layout
from tracksdk._journal.reader import Reader
from tracksdk._journal.records import (
    Create,
    End,
    File,
    Input,
    Metrics,
    Params,
    Record,
    Register,
    Tags,
    Unknown,
    decode,
    encode,
    from_json,
)
from tracksdk._writer import Writer

HEADER = struct.Struct("<II")
CLIENT_ID = "0123456789abcdef0123456789abcdef"
PARENT_ID = "fedcba9876543210fedcba9876543210"

# (payload as the previous release wrote it, the record it holds)
FORMAT_1: list[tuple[bytes, Record]] = [
    (
        b'["c",{"experiment":"churn","run_name":"baseline","tags":{"tracksdk.user":"me"},'
        b'"parent":null,"parent_run_id":null,"start":1700000000000}]',
        Create("churn", 1700000000000, run_name="baseline", tags={"tracksdk.user": "me"}),
    ),
    (
        b'["c",{"experiment":"churn","attach":"' + PARENT_ID.encode() + b'","run_id":null,'
        b'"start":1700000000000}]',
        Create("churn", 1700000000000, attach=PARENT_ID),
    ),
    (b'["p",{"lr":"0.1","name":"caf\xc3\xa9"}]', Params({"lr": "0.1", "name": "café"})),
    (b'["t",{"stage":"dev"}]', Tags({"stage": "dev"})),
    (
        b'["m",[["loss",0.5,1700000000001,0],["acc",1,1700000000001,0]]]',
        Metrics([("loss", 0.5, 1700000000001, 0), ("acc", 1, 1700000000001, 0)]),
    ),
    (b'["m",[["loss",NaN,1700000000002,1]]]', Metrics([("loss", float("nan"), 1700000000002, 1)])),
    (b'["f","00000004-1a2b3c4d/notes.txt","docs"]', File("00000004-1a2b3c4d/notes.txt", "docs")),
    (b'["f","00000005-1a2b3c4d/texts",null]', File("00000005-1a2b3c4d/texts", None)),
    (
        b'["i",{"name":"train","digest":"abc123"},"training"]',
        Input({"name": "train", "digest": "abc123"}, "training"),
    ),
    (b'["i",{"name":"test"},null]', Input({"name": "test"}, None)),
    (b'["r",{"name":"churn-model"},{"acc":0.9}]', Register({"name": "churn-model"}, {"acc": 0.9})),
    (
        b'["e","FINISHED",1700000000100,{"tags":{"tracksdk.write_failures":"1"}}]',
        End("FINISHED", 1700000000100, {"tracksdk.write_failures": "1"}),
    ),
    (b'["e","KILLED",1700000000100,{"tags":{}}]', End("KILLED", 1700000000100)),
    (b'["x",1,{"a":[2]}]', Unknown("x", (1, {"a": [2]}))),
]


def same(a: Record | None, b: Record) -> bool:
    """Records equal, NaN included (NaN != NaN)."""
    if a is None or type(a) is not type(b):
        return False
    return json.dumps(a.as_json()) == json.dumps(b.as_json())


@pytest.mark.parametrize(("payload", "record"), FORMAT_1)
def test_format_1_payloads_decode_to_typed_records_and_encode_back_unchanged(
    payload: bytes, record: Record
) -> None:
    decoded = decode(payload)
    assert same(decoded, record)
    assert encode(record) == payload
    assert decoded is not None and encode(decoded) == payload


@pytest.mark.parametrize(
    ("payload", "record"),
    [
        (b'["f","x"]', File("x", None)),  # the artifact path may be left out
        (b'["e","FINISHED",5]', End("FINISHED", 5)),  # so may the end's tags
        (b'["e","FINISHED",5,{}]', End("FINISHED", 5)),
        (b'["c",{"experiment":"e","start":1.5}]', Create("e", 1.5)),  # only these two needed
        (b'["p",{"n":1}]', Params({"n": "1"})),  # values are sent as text
        (b'["c",{"experiment":"e","start":1,"attach":"","run_id":0}]', Create("e", 1)),
    ],
)
def test_lenient_forms_the_sender_always_accepted(payload: bytes, record: Record) -> None:
    assert same(decode(payload), record)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'["m",',
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'"m"',
        b"[1]",
        b'["m"]',
        b'["m",{}]',
        b'["m",[["loss","abc",0,0]]]',
        b'["m",[["loss",1.0,0]]]',
        b'["m",[["loss",true,0,0]]]',
        b'["m",[["loss",1.0,0.5,0]]]',
        b'["m",[["loss",1.0,0,null]]]',
        b'["m",[[1,1.0,0,0]]]',
        b'["m",[{"k":"loss"}]]',
        b'["c"]',
        b'["c",{"start":1}]',
        b'["c",{"experiment":"e"}]',
        b'["c",{"experiment":"e","start":"1"}]',
        b'["c",{"experiment":"e","start":1,"tags":null}]',
        b'["c",{"experiment":"e","start":1,"run_name":3}]',
        b'["c",{"experiment":"e","start":1,"parent":[]}]',
        b'["c",{"experiment":"e","start":1,"parent_run_id":5}]',
        b'["p",[1]]',
        b'["t",null]',
        b'["f",3]',
        b'["f","x",3]',
        b'["i",[],null]',
        b'["i",{},3]',
        b'["r",{}]',
        b'["r",[],{}]',
        b'["r",{},{"acc":"high"}]',
        b'["e","FINISHED"]',
        b'["e",1,2]',
        b'["e","FINISHED","late"]',
        b'["e","FINISHED",1,[]]',
        b'["e","FINISHED",1,{"tags":[]}]',
        b"[" * 100_000,
    ],
)
def test_what_is_not_a_record_decodes_to_none(payload: bytes) -> None:
    assert decode(payload) is None


def test_a_kind_from_a_newer_tracksdk_is_kept_as_unknown() -> None:
    record = from_json(["z", {"new": True}])
    assert record == Unknown("z", ({"new": True},))


def lay_out(folder: Path, payloads: list[bytes], *, marker: str | None) -> Path:
    """A journal folder as the previous release left it: marker, meta.json, one segment."""
    path = folder / CLIENT_ID
    path.mkdir(parents=True)
    if marker is not None:
        (path / "tracksdk-journal").write_text(marker)
    meta = {
        "client_id": CLIENT_ID,
        "target": None,
        "backend": None,
        "experiment": "churn",
        "run_name": "baseline",
        "parent": None,
        "pid": 1,
        "host": "gone",
        "created": 1700000000.0,
        "format": 1,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=1))
    segment = b"".join(HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
    (path / "seg-000001.log").write_bytes(segment + b"\0" * 4096)
    return path


def test_a_format_1_journal_reads_back_as_typed_records(tmp_path: Path) -> None:
    payloads = [p for p, _ in FORMAT_1 if not p.startswith(b'["c",{"experiment":"churn","att')]
    path = lay_out(tmp_path, payloads, marker="tracksdk journal 1\n")
    reader = Reader(path, layout.START)
    try:
        entries = reader.read(1000, final=True)
    finally:
        reader.close()
    expected = [r for p, r in FORMAT_1 if p in payloads]
    assert len(entries) == len(expected) and not reader.damage
    for entry, record in zip(entries, expected, strict=True):
        assert same(entry.record, record)
    assert entries[-1].end == (1, sum(8 + len(p) for p in payloads))


def test_a_format_1_journal_written_before_typed_records_is_synced(project: Path) -> None:
    """Every kind the sender sends to a local store, from hand-written format-1 bytes."""
    folder = project / ".tracksdk" / "journal"
    path = lay_out(
        folder,
        [
            FORMAT_1[0][0],
            FORMAT_1[2][0],
            FORMAT_1[3][0],
            FORMAT_1[4][0],
            FORMAT_1[6][0],
            b'["x","a kind from a newer tracksdk"]',
            FORMAT_1[11][0],
        ],
        marker="tracksdk journal 1\n",
    )
    spooled = path / "files" / "00000004-1a2b3c4d" / "notes.txt"
    spooled.parent.mkdir(parents=True)
    spooled.write_text("hello")
    result = run_cli(project, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = all_runs(project)
    assert run.info.run_name == "baseline" and run.info.status == "FINISHED"
    assert run.info.start_time == 1700000000000 and run.info.end_time == 1700000000100
    assert run.data.params == {"lr": "0.1", "name": "café"}
    assert run.data.tags["stage"] == "dev" and run.data.tags["tracksdk.user"] == "me"
    assert run.data.tags["tracksdk.write_failures"] == "1"
    assert run.data.metrics == {"loss": 0.5, "acc": 1.0}
    client = local_client(project)
    assert artifact_paths(client, run.info.run_id) == ["docs/notes.txt"]
    assert not path.exists()


def old_encoding(value: Any) -> bytes:
    """How the previous release encoded a record's list."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_writer_writes_what_the_previous_release_wrote(tmp_path: Path) -> None:
    journal = _journal.Journal.create(
        tmp_path, {"client_id": CLIENT_ID, "experiment": "churn"}, max_bytes=1 << 30
    )
    writer = Writer(journal, None, strict=True)
    info = {  # what a run's start passes
        "experiment": "churn",
        "run_name": None,
        "tags": {"tracksdk.user": "me"},
        "parent": PARENT_ID,
        "parent_run_id": None,
        "start": 1700000000000,
    }
    writer.create(info)
    writer.batch(
        metrics=[("loss", 0.5, 1700000000001, 0), ("é", 2.0, 1700000000001, 0)],
        params={"lr": "0.1"},
        tags={"stage": "dev"},
    )
    writer.register({"name": "churn-model"}, {"acc": 0.9})
    with pytest.warns(TrackSDKWarning, match="offline run"):
        writer.terminate("FINISHED")
    reader = Reader(journal.path, layout.START)
    try:
        entries = reader.read(100, final=True)
    finally:
        reader.close()
    data = (journal.path / "seg-000001.log").read_bytes()
    payloads, offset = [], 0
    for entry in entries:
        size, _ = HEADER.unpack_from(data, offset)
        payloads.append(data[offset + 8 : offset + 8 + size])
        offset = entry.end[1]
    ended = json.loads(payloads[-1])
    assert payloads[:-1] == [
        old_encoding(["c", info]),
        old_encoding(["p", {"lr": "0.1"}]),
        old_encoding(["t", {"stage": "dev"}]),
        old_encoding(["m", [["loss", 0.5, 1700000000001, 0], ["é", 2.0, 1700000000001, 0]]]),
        old_encoding(["r", {"name": "churn-model"}, {"acc": 0.9}]),
    ]
    assert payloads[-1] == old_encoding(["e", "FINISHED", ended[2], {"tags": {}}])
    journal.release()


def test_what_json_cannot_hold_raises_the_errors_the_writer_counts() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(ValueError):
        encode(Input(looped, None))
    with pytest.raises(TypeError):
        encode(Input({"when": object()}, None))
    with pytest.raises(ValueError):
        encode(Params({"text": "\ud800"}))  # a lone surrogate is not UTF-8
