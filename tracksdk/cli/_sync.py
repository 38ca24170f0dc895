"""``tracksdk sync``: send the runs left in the journal to the store."""

from __future__ import annotations

from typing import Any, TextIO, cast

import typer

from tracksdk.cli._common import err, resolve


def sync(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be sent; send nothing."),
    all_stores: bool = typer.Option(
        False,
        "--all",
        help="Also send runs journaled for another store to the configured one.",
    ),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        min=0.0,
        help="Give up on a run after this many seconds without progress while the store "
        "fails (0: never). The journal is kept.",
    ),
    rejected: bool = typer.Option(
        False,
        "--rejected",
        help="Send the journals kept in the journal's kept/ folder again: requests the "
        "store refused, runs whose run or experiment was deleted.",
    ),
) -> None:
    """Send runs left in the journal (offline runs, killed processes) to the store.

    Runs are created when missing (found again by their client id when an earlier
    attempt created them), unsent records are sent in order, and each run ends with its
    status, or KILLED when its process died. Runs whose process still runs are skipped.
    Damaged journals are sent as far as they can be read and kept, with what was lost.
    Exits 1 when a run could not be sent in full; its journal is kept.
    """
    import sys

    from tracksdk import _sync, stores

    explained, conn = resolve()
    if not stores.uses_mlflow(conn):
        err.print(
            "[red]error:[/red] TRACKSDK_BACKEND=memory keeps runs inside one process, so "
            "`tracksdk sync` has no store to send journals to. Set TRACKSDK_BACKEND to the "
            "store they should go to (local, server, dagshub) and run it again."
        )
        raise typer.Exit(2)
    code = _sync.command(
        explained,
        conn,
        dry_run=dry_run,
        any_target=all_stores,
        out=cast("TextIO", _SafeText(sys.stdout)),
        timeout=timeout,
        rejected=rejected,
    )
    raise typer.Exit(code)


class _SafeText:
    """A text stream that masks known secrets and URL user info in what is written.

    ``print`` writes a message in one call, so a URI is never split across writes.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from tracksdk._redact import redact, strip_userinfo

        return int(self._stream.write(strip_userinfo(redact(text))))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
