"""What every command shares: the output consoles, settings resolution, MLflow's connection.

Every command resolves settings exactly as a tracked run would, so what ``tracksdk doctor``
says is what ``@tracked`` will do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.settings import Explained

out = Console()
err = Console(stderr=True)


@contextlib.contextmanager
def connected(explained: Explained, conn: Connection) -> Iterator[None]:
    """MLflow pointed at ``conn`` with its credentials, as during a run; errors exit 1."""
    from tracksdk import _mlflow

    settings = explained.settings
    saved = _mlflow.activate(
        conn, http_timeout=settings.http_timeout, http_retries=settings.http_retries
    )
    try:
        yield
    except TrackSDKError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        _mlflow.restore(saved)


def resolve() -> tuple[Explained, Connection]:
    """The settings and the connection a tracked run would use; invalid settings exit 2."""
    from tracksdk import _config

    try:
        return _config.resolve_with_connection()
    except TrackSDKError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None
