"""Module-level logging functions: they act on the current tracked run.

Outside any tracked run there is nothing to log to: each function then warns once (or
raises :class:`~tracksdk.exceptions.TrackSDKError` when strict) and does nothing, so a
helper that logs can be called from untracked code too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._context import active_run
from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from tracksdk._run import Run

_warned = False


def _run() -> Run:
    global _warned
    run = active_run()
    if run is not None:
        return run
    if os.environ.get("TRACKSDK_STRICT", "").lower() in ("1", "true", "yes"):
        raise TrackSDKError(
            "No tracked run is active: call tracksdk.log_* inside a @tracked function or a "
            "`with tracked(...)` block."
        )
    if not _warned:
        _warned = True
        _warn.warn(
            "tracksdk: no tracked run is active, so this was not logged (warned once). Call "
            "tracksdk.log_* inside a @tracked function or a `with tracked(...)` block."
        )
    from tracksdk._run import Run

    return Run()


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log a metric point to the current run."""
    _run().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log several metric points to the current run."""
    _run().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    """Log a param to the current run."""
    _run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Log params to the current run."""
    _run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the current run."""
    _run().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the current run."""
    _run().set_tags(tags)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload a file (or a folder's contents) to the current run."""
    _run().log_artifact(path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload every file under ``local_dir`` to the current run."""
    _run().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Write text as an artifact of the current run."""
    _run().log_text(text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    """Write a dict as a JSON/YAML artifact of the current run."""
    _run().log_dict(dictionary, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Save a matplotlib figure as an image artifact of the current run."""
    _run().log_figure(figure, artifact_file)


def log_input(
    dataset: Any,
    context: str | None = None,
    *,
    name: str | None = None,
    targets: str | None = None,
) -> None:
    """Record a pandas DataFrame or numpy array as an input of the current run."""
    _run().log_input(dataset, context, name=name, targets=targets)
