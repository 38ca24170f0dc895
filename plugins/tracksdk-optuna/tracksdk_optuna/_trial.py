"""One trial, one child run: the objective runs inside it.

The child run is a ``with tracked(...)`` block opened inside the study's parent run, so
``tracksdk.log_metric`` in the objective writes to the trial's run. What the trial was
(params, value, state, intermediate values, duration) is logged from Optuna's own
objects; the run's status follows the trial's state:

==========  ==========================================================================
state       run
==========  ==========================================================================
COMPLETE    FINISHED, metric ``value`` (``values_<i>`` for several objectives)
PRUNED      FINISHED: pruning is the search working, not an error. No ``value``
FAIL        FAILED, with the error's type, message and traceback (KILLED on Ctrl-C)
==========  ==========================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracksdk import tracked
from tracksdk.hookspecs import warn

if TYPE_CHECKING:
    import optuna

    from tracksdk import Run


#: Tag of the study's name, on the parent run and on every trial's run.
STUDY_TAG = "optuna.study_name"
#: Tag of the trial's number (unique in its study) on the trial's run.
TRIAL_NUMBER_TAG = "optuna.trial_number"
#: Tag of the trial's final state: ``COMPLETE``, ``PRUNED`` or ``FAIL``.
STATE_TAG = "optuna.state"
#: Metric of a completed trial's value (``values_<i>`` for a multi-objective study).
VALUE = "value"
#: Metric of the values ``trial.report(value, step)`` reported, at their steps.
INTERMEDIATE_VALUE = "intermediate_value"
#: Metric of the objective's wall time, in seconds.
DURATION = "duration_s"
#: User attribute of the Optuna trial naming its MLflow run (Optuna's dashboard shows it).
RUN_ID_ATTR = "tracksdk.run_id"

Objective = Callable[["optuna.trial.Trial"], Any]


class InfeasibleValue(Exception):
    """The objective returned a value Optuna does not accept: the trial's state is FAIL.

    Raised inside the trial's run only, so that the run ends FAILED with the reason as its
    error message; Optuna gets the value itself and fails the trial for the same reason.
    """


def run_trial(objective: Objective, trial: optuna.trial.Trial, options: Mapping[str, Any]) -> Any:
    """Run ``objective(trial)`` inside the trial's child run.

    Args:
        objective: The user's objective.
        trial: The trial Optuna asked for.
        options: ``tracked`` options of the child run (``trial_options=``).

    Returns:
        What the objective returned; its exceptions (``TrialPruned`` included) propagate
        unchanged, for Optuna to handle as it would without tracking.
    """
    import optuna

    tags = {
        STUDY_TAG: trial.study.study_name,
        TRIAL_NUMBER_TAG: str(trial.number),
        **(options.get("tags") or {}),
    }
    block = tracked(**{"run_name": f"trial-{trial.number}", **options, "tags": tags})
    pruned: optuna.TrialPruned | None = None
    value: Any = None
    try:
        with block as run:
            record = _Record(run, trial)
            try:
                value = objective(trial)
            except optuna.TrialPruned as exc:
                pruned = exc
                record.end("PRUNED")
            except BaseException:
                record.end("FAIL")
                raise
            else:
                problem = infeasible(value, len(trial.study.directions))
                record.end("FAIL" if problem else "COMPLETE", None if problem else value)
                if problem:
                    raise InfeasibleValue(f"Trial {trial.number} failed: {problem}.")
    except InfeasibleValue:
        pass  # the run ended FAILED; Optuna fails the trial on the same value, and says why
    if pruned is not None:
        raise pruned
    return value


def infeasible(value: Any, n_objectives: int) -> str | None:
    """Why Optuna fails a trial that returned ``value``, or None when it accepts it.

    Optuna's own rule (``study.tell``): every value casts to float and is not NaN, and
    there are as many values as objectives. A sequence is several values.
    """
    if value is None:
        return "the objective returned None"
    values = value if isinstance(value, Sequence) else [value]
    for item in values:
        try:
            number = float(item)
        except (TypeError, ValueError):
            return f"the value {item!r} could not be cast to float"
        if math.isnan(number):
            return f"the value {item!r} is not acceptable"
    if len(values) != n_objectives:
        return f"{len(values)} values returned for {n_objectives} objective(s)"
    return None


class _Record:
    """What one trial logs into its run: reported values as they come, the rest at its end."""

    def __init__(self, run: Run, trial: optuna.trial.Trial) -> None:
        self.run = run
        self.trial = trial
        self.started = time.perf_counter()
        self._reported: set[int] = set()
        self._linked = self._link()
        original = trial.report

        def report(value: float, step: int) -> None:
            original(value, step)  # Optuna validates and stores it, or raises
            step = int(step)
            if step not in self._reported:  # Optuna keeps a step's first value only
                self._reported.add(step)
                run.log_metric(INTERMEDIATE_VALUE, float(value), step=step)

        # On this trial object only: pruning callbacks of Optuna's integrations call
        # trial.report too, and their values then show as the trial runs.
        setattr(trial, "report", report)  # noqa: B010 - mypy refuses assigning a method

    def _link(self) -> bool:
        """Name the trial's run in the trial's user attributes, once its id is known.

        The id is None offline, and while a slow store has not created the run yet.
        """
        run_id = self.run.run_id
        if run_id is None:
            return False
        trial = self.trial
        _optuna_write("link the trial to its run", lambda: trial.set_user_attr(RUN_ID_ATTR, run_id))
        return True

    def end(self, state: str, value: Any = None) -> None:
        """Log the trial's params, duration, state and (when COMPLETE) value(s)."""
        run = self.run
        run.log_metric(DURATION, time.perf_counter() - self.started)
        if not self._linked:
            self._linked = self._link()
        run.log_params(self.trial.params)
        run.set_tag(STATE_TAG, state)
        if value is None:
            return
        if isinstance(value, Sequence):
            run.log_metrics({f"{VALUE}s_{i}": float(v) for i, v in enumerate(value)})
        else:
            run.log_metric(VALUE, float(value))


def _optuna_write(what: str, write: Callable[[], object]) -> None:
    """A write to the study's storage for tracking only: its failure is a warning."""
    try:
        write()
    except Exception as exc:
        warn(f"tracksdk-optuna could not {what}: {type(exc).__name__}: {exc}")
