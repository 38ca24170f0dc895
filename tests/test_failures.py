"""A tracking failure never changes what the user's function returns or raises."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from tracksdk import TrackingError, TrackSDKWarning, tracked


@pytest.fixture
def dead_server(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server backend pointing at a closed port on loopback."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "http://127.0.0.1:9")
    monkeypatch.setenv("TRACKSDK_HTTP_RETRIES", "0")
    monkeypatch.setenv("TRACKSDK_FLUSH_TIMEOUT", "1")


def _journals(project: Path) -> list[Path]:
    folder = project / ".tracksdk" / "journal"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_unreachable_store_runs_function_journaled(dead_server: None, project: Path) -> None:
    """With the server down at start, the function runs and returns; its run is journaled.

    One warning at the start says the run is kept in the journal and how to sync it; one
    at the end says the store cannot be reached and how the run will be sent. The journal
    holds the returned metrics.
    """

    @tracked
    def train(x: int) -> dict[str, float]:
        return {"score": x * 2.0}

    started = time.monotonic()
    with pytest.warns(TrackSDKWarning) as record:
        assert train(3) == {"score": 6.0}
    assert time.monotonic() - started < 15
    messages = [str(w.message) for w in record if issubclass(w.category, TrackSDKWarning)]
    assert len(messages) == 2, messages
    assert "did not create run" in messages[0] and "tracksdk sync" in messages[0]
    assert "cannot be reached" in messages[1] and "tracksdk sync" in messages[1]
    [journal] = _journals(project)
    segment = (journal / "seg-000001.log").read_bytes()
    assert b'"score",6.0' in segment
    assert b'["e","FINISHED"' in segment


def test_unreachable_store_keeps_user_exception(dead_server: None) -> None:
    """The user's own exception comes out unchanged even when tracking is down."""

    @tracked
    def train() -> None:
        raise ValueError("user bug")

    with pytest.warns(TrackSDKWarning), pytest.raises(ValueError, match="user bug"):
        train()


def test_unreachable_store_in_strict_mode_raises_before_function(
    dead_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACKSDK_STRICT=true raises TrackingError and does not start the function."""
    monkeypatch.setenv("TRACKSDK_STRICT", "true")
    ran = []

    @tracked
    def train() -> None:
        ran.append(1)

    with pytest.raises(TrackingError, match=r"127\.0\.0\.1:9"):
        train()
    assert ran == []


def test_unwritable_local_root_keeps_the_run_journaled(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local root that cannot be created is a tracking failure, not a crash."""
    blocker = project / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("TRACKSDK_LOCAL__ROOT", str(blocker / "store"))
    with pytest.warns(TrackSDKWarning) as record, tracked() as run:
        run.log_metric("m", 1.0)
    messages = [str(w.message) for w in record]
    assert "refused to create run" in messages[0], messages
    # At the end, one more: where the run is kept and how to send it.
    assert [m for m in messages[1:] if "was not sent" in m and "tracksdk sync" in m], messages
    assert run.run_id is None
    assert run.client_run_id is not None
    # Kept for `tracksdk sync` once the root is fixed.
    assert (project / ".tracksdk" / "journal" / run.client_run_id / "seg-000001.log").exists()


@pytest.mark.parametrize("cause", ["tls", "5xx"])
def test_tls_error_or_5xx_at_start_runs_journaled(
    project: Path, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    """A TLS handshake that fails, or a server answering 500: journaled, like refused."""
    import http.server
    import threading

    class Always500(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Always500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if cause == "tls" else "http"  # https to a plain-http server
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", f"{scheme}://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("TRACKSDK_FLUSH_TIMEOUT", "1")
    try:
        with pytest.warns(TrackSDKWarning) as record, tracked() as run:
            run.log_metric("m", 1.0)
    finally:
        server.shutdown()
        server.server_close()
    first = str(record[0].message)
    assert "did not create run" in first, first
    assert ("SSL" in first) if cause == "tls" else ("HTTP 500" in first)
    [journal] = _journals(project)
    assert journal.name == run.client_run_id


def test_a_deleted_experiment_is_not_used_from_memory(project: Path) -> None:
    """Experiment ids are remembered between runs; a deleted one is looked up again."""
    from core_fixtures import local_client

    with tracked(experiment="e") as first:
        pass
    client = local_client(project)
    experiment_id = client.get_run(str(first.run_id)).info.experiment_id
    client.delete_experiment(experiment_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked(experiment="e") as second:
            pass
    assert second.run_id is None
    messages = [str(w.message) for w in caught if w.category is TrackSDKWarning]
    assert any("refused to create run" in m and "is deleted" in m for m in messages), messages
    from tracksdk import _delivery

    def remembered() -> list[str]:  # this store's id for "e" (other tests' stores differ)
        return [
            v
            for (uri, name), v in _delivery._experiment_ids.items()
            if name == "e" and str(project) in uri
        ]

    assert remembered() == []  # the deleted experiment's id was forgotten
    client.restore_experiment(experiment_id)
    with tracked(experiment="e") as third:
        pass
    assert client.get_run(str(third.run_id)).info.experiment_id == experiment_id
    assert client.get_run(str(third.run_id)).info.status == "FINISHED"
    assert remembered() == [experiment_id]
