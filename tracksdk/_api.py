"""Module-level logging functions: they act on the current tracked run.

The current run is the innermost run of the calling thread or asyncio task. A thread or
task without a run of its own (a ThreadPoolExecutor worker, a DataLoader or callback
thread) logs to the process's open run when there is exactly one chain of them: one
top-level run, at most one open child at each level; the innermost of that chain is used.

Otherwise there is nothing to log to, or no way to tell which run is meant: the call
does nothing (or raises :class:`~tracksdk.exceptions.TrackSDKError` when strict), and
is counted. With no run open it warns once per stretch without runs, and the count is
reported at exit; with several runs open it warns once per run, and each open top-level
run reports the count when it ends (tag ``tracksdk.dropped_log_calls``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracksdk import _context, _warn
from tracksdk._context import active_run
from tracksdk.exceptions import TrackSDKError

if TYPE_CHECKING:
    from tracksdk._run import Run

_warned_generation = -1  # the _context.generation of the last "no run" warning
_untracked_drops = 0  # calls made while no run was open, reported at exit
_exit_report = False
_untracked: Run | None = None


def _run() -> Run:
    run = active_run()
    if run is not None:
        return run
    return _process_run()


def _process_run() -> Run:
    """The run for a caller without a run of its own, or an untracked Run (counted)."""
    global _untracked
    from tracksdk import _config
    from tracksdk._untracked import UntrackedRun

    if _untracked is None:
        _untracked = UntrackedRun()
    if _config.is_disabled():
        return _untracked  # TRACKSDK_MODE=disabled: the same code runs, silently
    run, tops = _context.process_run()
    if run is not None:
        return run
    try:
        strict = _config.resolve().settings.strict
    except Exception:
        strict = False
    if tops:
        _dropped_ambiguous(tops, strict)
        return _untracked
    from tracksdk._attach import from_environment

    attached = from_environment()  # a spawned child of a tracked run (docs/distributed.md)
    if attached is not None:
        return attached
    _dropped_without_run(strict)
    return _untracked


def _dropped_ambiguous(tops: list[Run], strict: bool) -> None:
    message = (
        "tracksdk: this thread (or task) has no tracked run of its own, and several runs "
        "are open in other threads or tasks, so tracksdk cannot tell which one this call "
        "is for: it was not logged (warned once while these runs are open; every such call "
        "is counted and reported when they end). Pass the Run object to the thread and call "
        "run.log_metric(...) on it."
    )
    if strict:
        raise TrackSDKError(message.removeprefix("tracksdk: "))
    first = False
    for top in tops:
        first = _context.count_dropped(top) == 1 or first
    if first:
        _warn.warn(message)


def _dropped_without_run(strict: bool) -> None:
    global _warned_generation, _untracked_drops, _exit_report
    if strict:
        raise TrackSDKError(
            "No tracked run is open in this process: call tracksdk.log_* inside a @tracked "
            "function or a `with tracked(...)` block, or while one is open in another thread."
        )
    _untracked_drops += 1
    if not _exit_report:
        import atexit

        _exit_report = True
        atexit.register(_report_at_exit)
    if _warned_generation != _context.generation:
        _warned_generation = _context.generation
        _warn.warn(
            "tracksdk: no tracked run is open in this process, so this was not logged "
            "(warned once until a run opens; the calls are counted and reported at exit). "
            "Call tracksdk.log_* inside a @tracked function or a `with tracked(...)` block, "
            "or while one is open."
        )


def _report_at_exit() -> None:
    if _untracked_drops > 1:
        import sys

        print(
            f"tracksdk: {_untracked_drops} tracksdk.log_* calls made while no tracked run "
            "was open were not logged.",
            file=sys.stderr,
        )


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


def log_checkpoint(model: Any, step: int) -> str | None:
    """Log an intermediate state of ``model`` as ``checkpoints/step-<step>`` of the current run."""
    return _run().log_checkpoint(model, step)


def flush(timeout: float | None = None) -> bool:
    """Wait until everything the current run logged so far is in the store.

    Logging never waits for the store; call this before reading the run back mid-run.
    Waits at most ``timeout`` seconds (default ``TRACKSDK_FLUSH_TIMEOUT``).

    Returns:
        True when all of it is in the store; False when offline, untracked, or the store
        did not take it in time (it stays journaled).
    """
    return _run().flush(timeout)


def evaluate(model: Any, X: Any, y: Any, prefix: str = "") -> dict[str, float]:
    """Evaluate ``model`` on ``X``, ``y`` through its plugin; log and return the metrics.

    Metrics are logged to the current run as ``<prefix><name>`` (e.g. ``val_accuracy``)
    and figures as ``evaluation/<prefix><name>.png``. Without an active run the metrics
    are still computed and returned.

    Raises:
        TrackSDKError: No installed plugin owns ``model``.
    """
    from tracksdk import _plugins

    pm = _plugins.manager(_plugins.allowed())
    framework = _plugins.framework_of(pm, model)
    if framework is None:
        raise TrackSDKError(
            f"No installed plugin can evaluate a {type(model).__module__}."
            f"{type(model).__qualname__}. Install its framework's tracksdk plugin."
        )
    from tracksdk import hookspecs

    result = hookspecs.call_evaluate(pm, model, framework, X, y)
    if result is None:
        raise TrackSDKError(f"The {framework!r} plugin could not evaluate this model.")
    metrics = {f"{prefix}{k}": float(v) for k, v in result.metrics.items()}
    run = active_run() or _context.process_run()[0]
    try:
        if run is not None:
            run.log_metrics(metrics)
            for name, figure in result.figures.items():
                run.log_figure(figure, f"evaluation/{prefix}{name}")
    finally:
        for figure in result.figures.values():
            _close(figure)
    return metrics


def _close(figure: Any) -> None:
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)
