"""The on-disk journal: every record of a run, kept until the store has acknowledged it.

One folder per run, ``<journal dir>/<client run id>/`` (mode 0700, files 0600)::

    meta.json        who wrote it: client run id, pid, host, target store, start time
    lock             flock-ed by the process writing the run, or by a sync replaying it
    heartbeat        the time the writer was last seen alive (for journals on other hosts)
    tracksdk-journal marker: "tracksdk journal <format>" (only such folders are touched)
    seg-000001.log   the records, appended in order (see below)
    ack              "<segment> <offset>": everything before it reached the store
    created.json     the store and MLflow run id the run was created as
    files/           artifacts waiting to be uploaded (copies: the user's file may change)
    rejected.jsonl   requests the store refused, in full (replayable), with its answer

Records are JSON arrays in segment files that are preallocated and memory-mapped, each
framed as ``<length u32><crc32 u32>`` then the payload; a header of ``0xFFFFFFFF`` means
"continued in the next segment". While the journal is live, a torn or zero header means
"not written yet".

The modules, from the bytes up:

- :mod:`~tracksdk._journal.records`: the record kinds, typed, and their payloads;
- :mod:`~tracksdk._journal.layout`: the format's constants, the folder's small files (ack,
  JSON files, lines), segment names;
- :mod:`~tracksdk._journal.journal`: the writing side (:class:`Journal`), owned by the
  process running the run, with :mod:`~tracksdk._journal.memory` (records kept in memory
  when the disk cannot take them) and :mod:`~tracksdk._journal.spool` (artifacts copied
  before upload);
- :mod:`~tracksdk._journal.live`: the heartbeat of the journals this process writes;
- :mod:`~tracksdk._journal.reader`: reading records back, skipping damaged bytes;
- :mod:`~tracksdk._journal.folders`: finding journals in the journal dir (and their
  format), claiming one for replay, setting one aside in ``kept/``.

This module names what code outside the journal needs to start a run.
"""

from __future__ import annotations

from tracksdk._journal.journal import Journal, JournalFull
from tracksdk._journal.layout import journal_dir, masked_target, new_client_id
from tracksdk._journal.live import after_fork_in_child

__all__ = [
    "Journal",
    "JournalFull",
    "after_fork_in_child",
    "journal_dir",
    "masked_target",
    "new_client_id",
]
