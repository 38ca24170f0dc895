"""``tracksdk``: ``doctor``, ``ui``, ``runs``, ``diff``, ``reproduce``, ``models``, ``sync``...

Built on Typer, one module per command; :mod:`tracksdk.cli._common` holds what they share
(the output consoles and the settings and connection a tracked run would use), and
:mod:`tracksdk.cli._supervisor` the process-group handling of the two that run a server.
"""

from __future__ import annotations

import typer

from tracksdk.cli._common import err, out
from tracksdk.cli._diff import diff
from tracksdk.cli._doctor import doctor
from tracksdk.cli._models import models
from tracksdk.cli._reproduce import reproduce
from tracksdk.cli._runs import runs
from tracksdk.cli._serve import model_uri, serve
from tracksdk.cli._sync import sync
from tracksdk.cli._ui import DEFAULT_UI_URL, UI_STOP_TIMEOUT, ui

__all__ = [
    "DEFAULT_UI_URL",
    "UI_STOP_TIMEOUT",
    "app",
    "diff",
    "doctor",
    "err",
    "main",
    "model_uri",
    "models",
    "out",
    "reproduce",
    "runs",
    "serve",
    "sync",
    "ui",
]

app = typer.Typer(
    help="tracksdk: experiment tracking on MLflow. Settings come from TRACKSDK_* variables, "
    ".env and [tool.tracksdk] in pyproject.toml.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
# Registered here, in the order `tracksdk --help` lists them.
for _command in (doctor, ui, runs, diff, reproduce, models, sync, serve):
    app.command()(_command)


def main() -> None:
    """Entry point of the ``tracksdk`` console script."""
    app()
