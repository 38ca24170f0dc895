"""The study's parent run: every trial's run nests in it, and it follows the best trial.

Every worker's ``optimize`` opens the parent run with the same key (:func:`parent_key`),
so tracksdk continues one run for the whole study, whichever worker comes first. After
each trial the worker reads the study's best trial from Optuna's storage, which holds
every worker's trials, and logs it into the parent.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tracksdk
from tracksdk.exceptions import TrackSDKError
from tracksdk.hookspecs import warn
from tracksdk_optuna._trial import RUN_ID_ATTR, STUDY_TAG, Objective, run_trial

if TYPE_CHECKING:
    import optuna

    from tracksdk import Run


#: Metric of the study's best value so far, at step = the trial number just finished.
BEST_VALUE = "best_value"
#: Tag of the best trial's number.
BEST_TRIAL_TAG = "optuna.best_trial"
#: Tag of the best trial's params, as JSON (params cannot change in MLflow; the best does).
BEST_PARAMS_TAG = "optuna.best_params"
#: Tag of the best trial's run id: the tag ``tracked(best=...)`` sets too.
BEST_RUN_ID_TAG = "tracksdk.best_run_id"
#: The study-wide count of trials in each state, logged when a worker's part ends.
COUNT_METRICS = {"COMPLETE": "trials_complete", "PRUNED": "trials_pruned", "FAIL": "trials_failed"}


def parent_key(study: optuna.Study | str) -> str:
    """The run key of a study's parent run: ``optuna:<study name>``.

    Every worker of the study opens its parent run with this key, so they all continue
    the same run (docs/resume.md). Find it with the tag ``tracksdk.run_key``.
    """
    name = study if isinstance(study, str) else study.study_name
    return f"optuna:{name}"


def study_tags(study: optuna.Study) -> dict[str, str]:
    """The parent run's tags that describe the study."""
    return {
        STUDY_TAG: study.study_name,
        "optuna.directions": ",".join(d.name for d in study.directions),
        "optuna.sampler": type(study.sampler).__name__,
        "optuna.pruner": type(study.pruner).__name__,
    }


class Search:
    """One worker's part of a study's search, inside the parent run.

    Args:
        study: The study.
        objective: The user's objective.
        trial_options: ``tracked`` options of each trial's run.
    """

    def __init__(
        self, study: optuna.Study, objective: Objective, trial_options: Mapping[str, Any]
    ) -> None:
        self.study = study
        self.objective = objective
        self.trial_options = dict(trial_options)
        self.run: Run | None = None
        self._context: contextvars.Context | None = None
        self._single = len(study.directions) == 1
        self._lock = threading.Lock()
        self._best: int | None = None  # the best trial's number, as last tagged here
        self._warned = False

    def start(self) -> None:
        """Call first thing inside the parent run: remember it, and the context it is in."""
        self.run = tracksdk.active_run()
        self._context = contextvars.copy_context()

    def __call__(self, trial: optuna.trial.Trial) -> Any:
        """The objective given to ``study.optimize``: the user's, inside a child run."""
        context = self._context
        if context is not None and tracksdk.active_run() is not self.run:
            # study.optimize(n_jobs=2) runs trials in threads of its own, whose context
            # is empty: a trial would become a top-level run. In a copy of the parent's
            # context it nests in the parent run (one copy per trial: a context is
            # entered by one thread at a time).
            return context.copy().run(run_trial, self.objective, trial, self.trial_options)
        return run_trial(self.objective, trial, self.trial_options)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna's callback after each trial: log the study's best so far into the parent."""
        if self._tracking():
            self._guarded(lambda: self._record_best(trial.number, retag=False))

    def finish(self) -> None:
        """Log the study-wide trial counts and the best trial, at the end of this part.

        Read from the storage, so the last worker to end leaves the whole study's figures.
        """
        if self._tracking():
            self._guarded(self._summarize)

    def refit(self, refit: Callable[[optuna.trial.FrozenTrial], Any] | None) -> Any:
        """``refit(study.best_trial)``, in the parent run: its result is the run's result."""
        if refit is None:
            return None
        from optuna.trial import TrialState

        if not self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            warn("tracksdk-optuna: no trial completed, so refit= was not called.")
            return None
        return refit(self.study.best_trial)

    # -- the parent's figures ---------------------------------------------------------

    def _tracking(self) -> bool:
        return self.run is not None and self.run.tracked and self._single

    def _summarize(self) -> None:
        """Log the study's counts and best, then read them again until they hold.

        Each worker's last writes are at the study's highest trial number, so the latest
        of them is the metrics' latest value. A worker that read just before another
        worker's last trial ended, and wrote just after that worker's summary, would
        leave a stale value last: reading again after writing catches it. The worker
        whose write is the latest read after it, when every trial had ended.
        """
        run = self.run
        assert run is not None
        written: tuple[object, ...] | None = None
        for _ in range(3):  # twice, unless other workers end at the same moment
            trials = self.study.get_trials(deepcopy=False)
            counts = Counter(t.state.name for t in trials)
            best = self._best_trial()
            state = (sorted(counts.items()), best.number if best else None, len(trials))
            if state == written:
                return
            run.log_metrics({name: counts[s] for s, name in COUNT_METRICS.items()})
            if best is not None:
                self._log_best(best, max(t.number for t in trials), retag=True)
            written = state

    def _record_best(self, step: int, *, retag: bool) -> None:
        best = self._best_trial()
        if best is not None:
            self._log_best(best, step, retag=retag)

    def _best_trial(self) -> optuna.trial.FrozenTrial | None:
        try:
            return self.study.best_trial
        except ValueError:  # no trial completed yet
            return None

    def _log_best(self, best: optuna.trial.FrozenTrial, step: int, *, retag: bool) -> None:
        run = self.run
        assert run is not None
        run.log_metric(BEST_VALUE, float(best.value), step=step)  # type: ignore[arg-type]
        with self._lock:
            changed, self._best = best.number != self._best, best.number
        if not (changed or retag):
            return
        tags = {
            BEST_TRIAL_TAG: str(best.number),
            BEST_PARAMS_TAG: json.dumps(best.params, sort_keys=True, default=str),
        }
        run_id = best.user_attrs.get(RUN_ID_ATTR)
        if isinstance(run_id, str):
            tags[BEST_RUN_ID_TAG] = run_id
        run.set_tags(tags)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step of the parent's logging; a failure is one warning, never the search's."""
        try:
            step()
        except TrackSDKError:
            raise  # strict mode: the user asked for tracking failures to raise
        except Exception as exc:
            if not self._warned:
                self._warned = True
                warn(
                    "tracksdk-optuna could not update the study's parent run: "
                    f"{type(exc).__name__}: {exc}. The search goes on."
                )
