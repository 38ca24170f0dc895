"""Optuna studies tracked by tracksdk: the study is one parent run, each trial a child run.

::

    import optuna
    import tracksdk
    import tracksdk_optuna

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        tracksdk.log_metric("x_abs", abs(x))  # goes to this trial's run
        return (x - 2) ** 2

    study = optuna.create_study(
        study_name="quadratic", storage="postgresql+psycopg2://...", load_if_exists=True
    )
    tracksdk_optuna.optimize(study, objective, n_trials=20, experiment="hpo")

Run the same script on several machines: every worker's trials land under the one parent
run of the study, found through its key ``optuna:<study name>`` (docs/hpo.md).

Written against tracksdk's public API only (``tracked`` with ``key=``, ``Run``, the
``log_*`` functions, ``Register``/``Gate``). It implements no tracksdk hook, so it has no
entry point; importing it imports neither Optuna nor MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tracksdk import tracked
from tracksdk.exceptions import ConfigError
from tracksdk_optuna._search import (
    BEST_PARAMS_TAG,
    BEST_RUN_ID_TAG,
    BEST_TRIAL_TAG,
    BEST_VALUE,
    COUNT_METRICS,
    Search,
    parent_key,
    study_tags,
)
from tracksdk_optuna._trial import (
    DURATION,
    INTERMEDIATE_VALUE,
    RUN_ID_ATTR,
    STATE_TAG,
    STUDY_TAG,
    TRIAL_NUMBER_TAG,
    VALUE,
    Objective,
)

if TYPE_CHECKING:
    import optuna

    from tracksdk import Run

__all__ = [
    "BEST_PARAMS_TAG",
    "BEST_RUN_ID_TAG",
    "BEST_TRIAL_TAG",
    "BEST_VALUE",
    "COUNT_METRICS",
    "DURATION",
    "INTERMEDIATE_VALUE",
    "RUN_ID_ATTR",
    "STATE_TAG",
    "STUDY_TAG",
    "TRIAL_NUMBER_TAG",
    "VALUE",
    "optimize",
    "parent_key",
]

Callback = Callable[["optuna.Study", "optuna.trial.FrozenTrial"], None]


def optimize(
    study: optuna.Study,
    objective: Objective,
    n_trials: int | None = None,
    timeout: float | None = None,
    n_jobs: int = 1,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Iterable[Callback] | None = None,
    gc_after_trial: bool = False,
    show_progress_bar: bool = False,
    *,
    experiment: str | None = None,
    refit: Callable[[optuna.trial.FrozenTrial], Any] | None = None,
    trial_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Run | None:
    """``study.optimize(objective, ...)``, tracked: one parent run, one child run per trial.

    The arguments up to ``show_progress_bar`` are ``study.optimize``'s. The parent run has
    the key ``optuna:<study name>`` (:func:`parent_key`), so every worker sharing the study
    through Optuna's RDB storage, and every later call on the same study, continues the
    same run. Each trial's objective runs inside the trial's child run, so
    ``tracksdk.log_metric`` there writes to it. The child run gets the trial's params, its
    value (metric ``value``), its state (tag ``optuna.state``; FAIL ends the run FAILED,
    COMPLETE and PRUNED end it FINISHED), the values ``trial.report`` reported (metric
    ``intermediate_value`` at their steps) and the objective's time (``duration_s``). After
    each trial the parent gets the study's best value so far (metric ``best_value`` at the
    trial's number as step) and, when it changes, the best trial's number, params and run
    (tags ``optuna.best_trial``, ``optuna.best_params``, ``tracksdk.best_run_id``).

    Args:
        study: The study; any storage (in memory, sqlite, PostgreSQL, ...).
        objective: Takes an ``optuna.Trial`` and returns the value(s), as for Optuna.
        n_trials: Trials to run in this call (``study.optimize``'s).
        timeout: Seconds after which no new trial starts (``study.optimize``'s).
        n_jobs: Trials run in parallel threads (``study.optimize``'s); each is a child run.
        catch: Exceptions that fail a trial without stopping the search.
        callbacks: ``study.optimize``'s callbacks, called after the plugin's own.
        gc_after_trial: ``study.optimize``'s.
        show_progress_bar: ``study.optimize``'s.
        experiment: The experiment of the parent run (and, by default, of the trials').
        refit: Called once, at the end of this call, with ``study.best_trial``, inside the
            parent run. What it returns is the parent run's result, as a tracked function's
            return value: a model (logged as ``model/``), ``(model, metrics)`` or
            ``tracksdk.Result``. With ``register=`` that model is the one registered.
        trial_options: ``tracked`` options of each trial's run (``tags``, ``autolog``,
            ``settings``, ...). A trial's run never registers a model.
        **options: ``tracked`` options of the parent run: ``register=`` (registers the
            model ``refit`` returns, once, at the end of this call, never per trial),
            ``tags``, ``settings``, ``strict``, ``run_name`` (default: the study's name),
            ``key`` (default :func:`parent_key`; None makes a new parent run per call).

    Returns:
        The parent run (ended; ``run_id``, ``url``), or None when tracking is disabled.

    Raises:
        ConfigError: ``register=`` without ``refit=``, or ``refit=`` on a study with
            several objectives (it has no single best trial).

    Whatever the objective raises propagates as from ``study.optimize`` (the parent run
    then ends FAILED). In a search run by several workers, give ``refit=`` and
    ``register=`` to one call only, for example a last
    ``optimize(study, objective, n_trials=0, refit=..., register=...)`` once the workers
    are done: each call that has them registers once, at its end (docs/hpo.md).
    """
    if refit is not None and len(study.directions) > 1:
        raise ConfigError(
            "tracksdk_optuna.optimize(refit=...): a study with several objectives has no "
            "single best trial to refit. Refit from study.best_trials yourself."
        )
    if options.get("register") is not None and refit is None:
        raise ConfigError(
            "tracksdk_optuna.optimize(register=...) registers the model refit= returns, and "
            "refit= is missing: pass refit=lambda best: train(**best.params)."
        )
    search = Search(study, objective, trial_options or {})
    parent: dict[str, Any] = {"key": parent_key(study), "run_name": study.study_name}
    parent.update(options)
    parent["params"] = False  # the search function's arguments are not the study's
    parent["tags"] = {**study_tags(study), **(options.get("tags") or {})}
    if experiment is not None:
        parent["experiment"] = experiment
    chained = [search.after_trial, *(callbacks or ())]

    def search_study() -> Any:
        search.start()
        try:
            study.optimize(
                search,
                n_trials=n_trials,
                timeout=timeout,
                n_jobs=n_jobs,
                catch=catch,
                callbacks=chained,
                gc_after_trial=gc_after_trial,
                show_progress_bar=show_progress_bar,
            )
        finally:
            search.finish()
        return search.refit(refit)

    tracked(**parent)(search_study)()
    return search.run
