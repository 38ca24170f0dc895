"""Sender.await_creation: what a run's start learns about its run in the store."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracksdk import TrackSDKWarning, _config, _journal
from tracksdk._journal.journal import Journal
from tracksdk._journal.records import Create
from tracksdk._sender import Sender
from tracksdk.backends import Connection
from tracksdk.stores.errors import Transient


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    client_id = _journal.new_client_id()
    journal = Journal.create(
        tmp_path / "journal", {"client_id": client_id, "experiment": "await"}, max_bytes=1 << 30
    )
    journal.append(Create("await", int(time.time() * 1000), run_name="started"))
    yield journal
    journal.close()
    journal.release()


def test_await_creation_gives_the_run_the_store_created(project: Path, journal: Journal) -> None:
    _, conn = _config.resolve_with_connection()
    assert conn is not None
    sender = Sender(journal.path, conn, journal=journal)
    sender.start()
    try:
        creation = sender.await_creation(120)
    finally:
        sender.stop()
        sender.join(10)
    assert creation.created is not None and creation.created.run_id == sender.run_id
    assert creation.reason is None and not creation.stopped
    assert not sender.start_watched


def test_await_creation_on_a_store_that_does_not_answer(journal: Journal) -> None:
    """The run's start reports the failure: the sender says nothing, then or later."""
    conn = Connection.server("server", "http://127.0.0.1:9", None, "nothing listens there")
    sender = Sender(journal.path, conn, journal=journal, http_timeout=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sender.start()
        try:
            began = time.monotonic()
            creation = sender.await_creation(60)
            assert time.monotonic() - began < 30  # the first attempts failed: no more waiting
            time.sleep(6)  # more failed attempts, each would be an outage to report
            assert sender.in_outage
        finally:
            sender.stop()
            sender.join(10)
    assert creation.created is None and not creation.stopped
    assert isinstance(creation.last_error, Transient) and creation.auth_error is None
    assert creation.reason is creation.last_error
    assert [str(w.message) for w in seen if issubclass(w.category, TrackSDKWarning)] == []
