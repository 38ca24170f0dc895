"""Everyday logging (issue 8): metric order, threads, returned values, any callable,
generators, and MLflow's own state around a run. All on the local sqlite store."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from core_fixtures import all_runs, local_client

import tracksdk
from tracksdk import _context, tracked
from tracksdk.exceptions import TrackSDKWarning


def _tracksdk_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, TrackSDKWarning)]


# -- P3: the last value logged is the latest ---------------------------------------------


def test_last_value_logged_without_step_is_the_latest(project: Path) -> None:
    """Points logged in the same millisecond at the same step keep their order in MLflow."""
    with tracked() as run:
        for value in (0.3, 0.2, 0.1):
            tracksdk.log_metric("loss", value)
        for value in (5.0, 9.0, 7.0):
            run.log_metric("acc", value, step=4)
        run.log_metric("acc", 1.0, step=3)  # a lower step never becomes the latest
    client = local_client(project)
    assert client.get_run(str(run.run_id)).data.metrics == {"loss": 0.1, "acc": 7.0}
    history = client.get_metric_history(str(run.run_id), "loss")
    assert [m.value for m in history] == [0.3, 0.2, 0.1]
    stamps = [m.timestamp for m in history]
    assert stamps == sorted(set(stamps))  # strictly increasing
    acc = client.get_metric_history(str(run.run_id), "acc")
    assert [m.value for m in acc if m.step == 4] == [5.0, 9.0, 7.0]


def test_returned_metric_after_logged_one_is_the_latest(project: Path) -> None:
    """A returned value logged right after a tracksdk.log_metric of the same key wins."""

    @tracked
    def train() -> dict[str, float]:
        tracksdk.log_metric("val_loss", 0.9)
        return {"val_loss": 0.4}

    train()
    (stored,) = all_runs(project)
    assert stored.data.metrics == {"val_loss": 0.4}


# -- P6: threads without a run of their own ----------------------------------------------


def test_pool_threads_log_to_the_only_open_run(project: Path) -> None:
    """4 ThreadPoolExecutor threads x 1,000 module-level points all reach the run."""

    def work(worker: int) -> None:
        assert tracksdk.active_run() is None  # the thread has no run of its own
        for i in range(1000):
            tracksdk.log_metric("from_pool", float(worker), step=worker * 1000 + i)

    @tracked
    def train() -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))
        tracksdk.log_metric("done", 1.0)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train()
    assert _tracksdk_warnings(record) == []
    (stored,) = all_runs(project)
    history = local_client(project).get_metric_history(stored.info.run_id, "from_pool")
    assert len(history) == 4000
    assert sorted(m.step for m in history) == list(range(4000))
    assert stored.data.metrics["done"] == 1.0


def test_thread_logs_go_to_the_innermost_open_run(project: Path) -> None:
    """With a child run open in the main thread, a worker thread's points go to the child."""
    with tracked(run_name="parent") as parent, tracked(run_name="child") as child:
        worker = threading.Thread(target=tracksdk.log_metric, args=("loader", 1.0))
        worker.start()
        worker.join()
    client = local_client(project)
    assert client.get_run(str(child.run_id)).data.metrics == {"loader": 1.0}
    assert client.get_run(str(parent.run_id)).data.metrics == {}


def test_ambiguous_thread_calls_are_dropped_counted_and_reported(project: Path) -> None:
    """With runs open in two threads, a run-less thread's calls are counted on each run."""
    opened = threading.Barrier(3)
    logged = threading.Event()
    runs: dict[str, Any] = {}

    def own_run(name: str) -> None:
        with tracked(run_name=name) as run:
            runs[name] = run
            opened.wait()
            logged.wait()
            tracksdk.log_metric("own", 1.0)  # a thread with a run keeps logging to it

    threads = [threading.Thread(target=own_run, args=(n,)) for n in ("a", "b")]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for t in threads:
            t.start()
        opened.wait()
        stray = threading.Thread(target=lambda: [tracksdk.log_metric("x", 1.0) for _ in range(5)])
        stray.start()
        stray.join()
        logged.set()
        for t in threads:
            t.join()
    messages = _tracksdk_warnings(record)
    assert sum("cannot tell which one this call is for" in m for m in messages) == 1
    assert sum("5 tracksdk.log_* call(s)" in m for m in messages) == 2  # at each run's end
    client = local_client(project)
    for name in ("a", "b"):
        stored = client.get_run(str(runs[name].run_id))
        assert stored.data.metrics == {"own": 1.0}
        assert stored.data.tags["tracksdk.dropped_log_calls"] == "5"
    assert _context._open == {}


def test_asyncio_tasks_keep_their_own_runs(project: Path) -> None:
    """Concurrent asyncio tasks each log to the run they opened."""

    async def trial(name: str) -> Any:
        async with tracked(run_name=name) as run:
            for i in range(3):
                await asyncio.sleep(0)
                tracksdk.log_metric("who", float(ord(name)), step=i)
        return run

    async def main() -> list[Any]:
        return await asyncio.gather(trial("a"), trial("b"))

    first, second = asyncio.run(main())
    client = local_client(project)
    assert client.get_run(str(first.run_id)).data.metrics == {"who": float(ord("a"))}
    assert client.get_run(str(second.run_id)).data.metrics == {"who": float(ord("b"))}


def test_calls_with_no_run_open_warn_accurately_and_strict_raises(
    fresh_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no run open anywhere, each stretch warns once, names the fix; strict raises."""
    import tracksdk._api as api

    api._warned_generation = -1
    before = api._untracked_drops
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            tracksdk.log_metric("m", 1.0)
    (message,) = _tracksdk_warnings(record)
    assert "no tracked run is open in this process" in message
    assert api._untracked_drops - before == 3
    monkeypatch.setenv("TRACKSDK_STRICT", "true")
    with pytest.raises(tracksdk.TrackSDKError, match="No tracked run is open"):
        tracksdk.log_metric("m", 1.0)
    monkeypatch.setattr(api, "_untracked_drops", before)  # no report at this test's exit


# -- B2: returned values that are not all numbers ----------------------------------------


def test_returned_dict_logs_every_number_and_names_what_it_skipped(project: Path) -> None:
    """Numbers, bools, numpy scalars and 0-d arrays are logged; the rest named once."""
    returned = {
        "acc": 0.9,
        "converged": True,
        "auc": np.array(0.8),
        "n": np.int64(7),
        "f32": np.float32(0.5),
        "flag": np.bool_(False),
        "none": None,
        "model": "resnet",
        "curve": np.zeros(3),
        1: 0.1,
    }

    @tracked
    def train() -> dict[Any, Any]:
        return returned

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert train() is returned
    (message,) = _tracksdk_warnings(record)
    for named in ("'none' (None)", "'model' (a str)", "'curve' (a ndarray of shape (3,))"):
        assert named in message
    assert "1 (the key is a int)" in message
    (stored,) = all_runs(project)
    assert stored.data.metrics == {
        "acc": 0.9,
        "converged": 1.0,
        "auc": 0.8,
        "n": 7.0,
        "f32": 0.5,
        "flag": 0.0,
    }


def test_returned_tuple_of_two_dicts_logs_both(project: Path) -> None:
    """(train_metrics, val_metrics) logs both dicts; a later key is the latest."""

    @tracked
    def train() -> tuple[dict[str, float], dict[str, float]]:
        return {"a": 1.0, "loss": 0.5}, {"b": 2.0, "loss": 0.25}

    train()
    (stored,) = all_runs(project)
    assert stored.data.metrics == {"a": 1.0, "b": 2.0, "loss": 0.25}


# -- B3: any callable, and tracking failures never change the outcome -------------------


class Trainer:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, lr: float = 0.1) -> dict[str, float]:
        return {"scaled": lr * self.scale}

    def fit(self, epochs: int = 2) -> int:
        return epochs * 10

    @staticmethod
    @tracked
    def static_inner(x: int = 1) -> int:
        return x + 1

    @tracked
    @staticmethod
    def static_outer(x: int = 1) -> int:
        return x + 2

    @tracked
    @classmethod
    def build(cls, x: int = 3) -> int:
        return x + 3


def base(a: int, b: int = 0) -> dict[str, float]:
    return {"total": float(a + b)}


def test_callable_instance_partial_and_methods_are_tracked(project: Path) -> None:
    """Callable instances, partials, bound methods, staticmethods and classmethods work."""
    trainer = Trainer(2.0)
    assert tracked(run_name="instance")(trainer)(0.3) == {"scaled": 0.6}
    assert tracked(run_name="partial")(functools.partial(base, b=10))(1) == {"total": 11.0}
    assert tracked(run_name="bound")(trainer.fit)(3) == 30
    assert trainer.static_inner(5) == 6 and Trainer.static_inner(5) == 6
    assert trainer.static_outer(5) == 7 and Trainer.static_outer(5) == 7
    assert Trainer.build(4) == 7
    runs = {r.info.run_name: r for r in all_runs(project)}
    assert runs["instance"].data.params == {"lr": "0.3"}
    assert runs["instance"].data.metrics == {"scaled": 0.6}
    assert runs["instance"].data.tags["tracksdk.function"] == "test_everyday.Trainer.__call__"
    assert runs["partial"].data.params == {"a": "1", "b": "10"}
    assert runs["partial"].data.tags["tracksdk.function"] == (
        "functools.partial(test_everyday.base)"
    )
    assert runs["bound"].data.params == {"epochs": "3"}
    assert runs["bound"].data.tags["tracksdk.function"] == "test_everyday.Trainer.fit"
    functions = sorted(r.data.tags["tracksdk.function"] for r in runs.values())
    assert "test_everyday.Trainer.static_inner" in functions
    assert functions.count("test_everyday.Trainer.static_outer") == 2
    assert "test_everyday.Trainer.build" in functions
    assert len(all_runs(project)) == 3 + 2 + 2 + 1
    assert all(r.info.status == "FINISHED" for r in all_runs(project))


def test_unexpected_failure_at_start_runs_the_function_untracked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug at the run's start is one warning; the function's result and errors stay."""
    import mlflow

    from tracksdk import _creation

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected start failure")

    monkeypatch.setattr(_creation, "run_tags", broken)
    sentinel = object()

    @tracked
    def ok() -> object:
        assert tracksdk.active_run() is None
        return sentinel

    class Boom(Exception):
        pass

    error = Boom("the user's own error")

    @tracked
    def fails() -> None:
        raise error

    with pytest.warns(TrackSDKWarning, match="unexpected error while starting the run"):
        assert ok() is sentinel
    with (
        pytest.warns(TrackSDKWarning, match="injected start failure"),
        pytest.raises(Boom) as caught,
    ):
        fails()
    assert caught.value is error
    with pytest.warns(TrackSDKWarning), tracked() as run:
        pass
    assert run.tracked is False
    assert all_runs(project) == []
    assert mlflow.active_run() is None and "MLFLOW_TRACKING_URI" not in os.environ
    assert tracksdk.active_run() is None and _context._open == {}


def test_provenance_failure_is_a_warning_and_the_run_keeps_the_rest(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provenance is captured in the background: its failure never touches the run."""
    import tracksdk.provenance as provenance

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected provenance failure")

    monkeypatch.setattr(provenance, "collect", broken)

    @tracked(tags={"team": "a"})
    def train(lr: float) -> dict[str, float]:
        return {"acc": 0.5}

    with pytest.warns(TrackSDKWarning, match="Provenance could not be captured.*injected"):
        assert train(0.1) == {"acc": 0.5}
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.1"}
    assert stored.data.metrics == {"acc": 0.5}
    assert stored.data.tags["team"] == "a"
    assert "mlflow.source.git.commit" not in stored.data.tags


def test_unexpected_failure_at_the_end_keeps_the_result_and_ends_the_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while logging the result or ending the run is a warning; the run still ends."""
    from tracksdk._outcome import Outcome
    from tracksdk._session import Session

    def broken(self: Any, *args: Any) -> None:
        raise AttributeError("injected end failure")

    monkeypatch.setattr(Session, "_report_to_parent", broken)
    monkeypatch.setattr(Outcome, "_log_model", broken)
    model = object()

    @tracked
    def train() -> object:
        tracksdk.log_metric("m", 1.0)
        return model

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert train() is model
    messages = _tracksdk_warnings(record)
    assert any("while logging the returned value" in m for m in messages)
    assert any("while ending the run" in m for m in messages)
    (stored,) = all_runs(project)
    assert stored.info.status == "FINISHED"
    assert stored.data.metrics == {"m": 1.0}


# -- B5: generators ----------------------------------------------------------------------


@tracked(run_name="gen")
def numbers(n: int = 3) -> Iterator[int]:
    for i in range(n):
        tracksdk.log_metric("item", float(i), step=i)
        yield i
        if i == 1 and n == 99:
            raise ValueError("generator failed")


def _by_name(project: Path) -> dict[str, Any]:
    return {r.info.run_name: r for r in all_runs(project)}


def test_generator_run_spans_the_whole_iteration(project: Path) -> None:
    """A generator's run starts at the first item and ends FINISHED when exhausted."""
    with tracked(run_name="consumer") as consumer:
        items = []
        for item in numbers(3):
            assert tracksdk.active_run() is consumer  # between items: the consumer's run
            tracksdk.log_metric("consumed", float(item), step=item)
            items.append(item)
    assert items == [0, 1, 2]
    runs = _by_name(project)
    client = local_client(project)
    gen = runs["gen"]
    assert gen.info.status == "FINISHED"
    assert gen.data.params == {"n": "3"}
    assert gen.data.tags["mlflow.parentRunId"] == consumer.run_id
    assert [m.value for m in client.get_metric_history(gen.info.run_id, "item")] == [0, 1, 2]
    assert set(runs["consumer"].data.metrics) == {"consumed"}


def test_generator_closed_early_or_raising(project: Path) -> None:
    """break ends the generator's run FINISHED; an exception in its body ends it FAILED."""
    for item in numbers(10):
        if item == 1:
            break
    first = all_runs(project)[0]
    assert first.info.status == "FINISHED"
    history = local_client(project).get_metric_history(first.info.run_id, "item")
    assert [m.value for m in history] == [0, 1]
    with pytest.raises(ValueError, match="generator failed"):
        list(numbers(99))
    second = all_runs(project)[1]
    assert second.info.status == "FAILED"
    assert second.data.tags["tracksdk.error.message"] == "generator failed"
    assert tracksdk.active_run() is None and _context._open == {}


@tracked(run_name="agen")
async def async_numbers(n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        tracksdk.log_metric("item", float(i), step=i)
        yield i
        if i == 1 and n == 99:
            raise ValueError("async generator failed")


def test_async_generator_run_spans_the_iteration(project: Path) -> None:
    """An async generator's run covers all items: consumed, closed early, or raising."""

    async def main() -> None:
        assert [i async for i in async_numbers(3)] == [0, 1, 2]
        agen = async_numbers(10)
        async for item in agen:
            if item == 1:
                break
        await agen.aclose()  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="async generator failed"):
            async for _ in async_numbers(99):
                pass

    asyncio.run(main())
    full, closed, failed = all_runs(project)
    client = local_client(project)
    assert (full.info.status, closed.info.status, failed.info.status) == (
        "FINISHED",
        "FINISHED",
        "FAILED",
    )
    assert [m.value for m in client.get_metric_history(full.info.run_id, "item")] == [0, 1, 2]
    assert [m.value for m in client.get_metric_history(closed.info.run_id, "item")] == [0, 1]
    assert failed.data.tags["tracksdk.error.message"] == "async generator failed"


# -- B6 / B7: MLflow's tracking URI after a run, and its experiment before one ---------


def test_last_active_run_reads_a_run_in_another_store(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run in a store that is not MLflow's default, MLflow's own calls read it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    store = tmp_path / "elsewhere"
    monkeypatch.setenv("TRACKSDK_LOCAL__ROOT", str(store))
    work = project / "scripts"
    work.mkdir()
    monkeypatch.chdir(work)
    with tracked() as run:
        run.log_metric("m", 1.0)
    last = mlflow.last_active_run()
    assert last is not None and last.info.run_id == run.run_id
    assert last.data.metrics == {"m": 1.0}
    assert MlflowClient().get_run(str(run.run_id)).info.status == "FINISHED"
    assert mlflow.get_tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # children and tracksdk see the user's env
    assert not (work / "mlflow.db").exists()
    tracksdk.reset()  # forgets it: MLflow's default again
    assert mlflow.get_tracking_uri() != f"sqlite:///{store / 'mlflow.db'}"


def test_set_experiment_before_the_run_is_honoured(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow.set_experiment names the run's experiment when tracksdk names none."""
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID for subprocesses: undone at the end.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    sub = project / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)  # MLflow's default store is then ./mlflow.db here, not tracksdk's
    mlflow.set_experiment("set-by-mlflow")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with tracked() as first:
            pass
    assert _tracksdk_warnings(record) == []
    client = local_client(project)
    assert client.get_experiment(str(first.experiment_id)).name == "set-by-mlflow"
    # After a run MLflow resolves against the run's store: no new stray store.
    mlflow.set_experiment("second")
    with tracked() as second:
        pass
    assert client.get_experiment(str(second.experiment_id)).name == "second"
    assert client.get_experiment_by_name("second") is not None
    # tracksdk's own setting wins over MLflow's.
    monkeypatch.setenv("TRACKSDK_EXPERIMENT", "mine")
    with tracked() as third:
        pass
    assert client.get_experiment(str(third.experiment_id)).name == "mine"
    monkeypatch.delenv("TRACKSDK_EXPERIMENT")
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with tracked() as fourth:
        pass
    assert client.get_experiment(str(fourth.experiment_id)).name == "from-env"


# -- B10: run.name -----------------------------------------------------------------------


def test_run_name_is_the_name_mlflow_gave(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.name is the store's run name; None for a run that is only journaled."""
    with tracked() as run:
        assert run.name is not None
    stored = local_client(project).get_run(str(run.run_id))
    assert run.name == stored.info.run_name == stored.data.tags["mlflow.runName"]
    with tracked(run_name="given") as named:
        pass
    assert named.name == "given"
    monkeypatch.setenv("TRACKSDK_MODE", "offline")
    with pytest.warns(TrackSDKWarning, match="offline run"), tracked() as offline:
        pass
    assert offline.name is None


@pytest.mark.server
def test_last_active_run_on_an_authenticated_server(
    project: Path, dagshub_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run on a server whose token tracksdk holds, MLflow's own calls read the run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__HOST", dagshub_server.host)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__OWNER", dagshub_server.owner)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__REPO", dagshub_server.repo)
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", dagshub_server.token)
    with tracked(experiment="b6-remote") as run:
        run.log_metric("m", 2.0)
    last = mlflow.last_active_run()
    assert last is not None and last.info.run_id == run.run_id
    assert last.data.metrics == {"m": 2.0}
    assert MlflowClient().get_run(str(run.run_id)).info.status == "FINISHED"
    assert os.environ.get("MLFLOW_TRACKING_AUTH") == "tracksdk"  # a provider name only
    leaked = [k for k, v in os.environ.items() if dagshub_server.token in v]
    assert leaked == ["TRACKSDK_DAGSHUB__TOKEN"]  # only where the test put it
    tracksdk.reset()
    assert "MLFLOW_TRACKING_AUTH" not in os.environ


def test_untracked_run_is_a_null_object(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tracking off, every Run method exists on the run users get and does nothing."""
    from tracksdk._run import Run
    from tracksdk._untracked import UntrackedRun

    single = {"log_metric", "log_param", "set_tag", "log_artifacts"}  # call the batch forms
    public = {n for n in vars(Run) if not n.startswith("_")}
    assert public - single <= set(vars(UntrackedRun))
    (project / "data.txt").write_text("x")
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")
    with tracked(experiment="null") as run:
        assert isinstance(run, UntrackedRun) and run.tracked is False
        assert (run.run_id, run.client_run_id, run.url, run.name) == (None, None, None, None)
        run.log_metric("m", 1.0, step=1)
        run.log_metrics({"m": 2.0})
        run.log_param("p", 1)
        run.log_params({"q": 2})
        run.set_tag("t", "v")
        run.set_tags({"u": "w"})
        run.log_artifact(project / "data.txt")
        run.log_artifacts(project, "all")
        run.log_text("hi", "a.txt")
        run.log_dict({"a": 1}, "a.json")
        run.log_figure(object(), "f.png")
        run.log_input(np.zeros(3), "training")
        assert run.log_checkpoint(object(), 1) is None
        assert run.flush() is False and run.latest_metrics == {}
    assert run.status == "UNTRACKED" and repr(run) == "Run(untracked)"
    monkeypatch.delenv("TRACKSDK_MODE")
    assert all_runs(project) == []
    assert not (project / ".tracksdk").exists() or not any((project / ".tracksdk").rglob("seg-*"))


def test_a_seeded_random_sequence_is_the_same_with_tracking(project: Path) -> None:
    """tracksdk's threads never draw from the random module's generator a user seeded.

    MLflow names an unnamed run with random.choice; the local store's creation runs in the
    sender thread, in the middle of the user's draws. (Found by hypothesis, whose own use
    of random noticed the change.)
    """
    import random

    random.seed(1234)
    expected = [random.random() for _ in range(6)]
    random.seed(1234)
    drawn = [random.random() for _ in range(3)]
    with tracked(experiment="seeded") as run:
        run.log_metric("m", 1.0)
        assert run.flush(30)  # the run is created (and named) in the store meanwhile
        drawn += [random.random() for _ in range(3)]
    assert drawn == expected
    [stored] = all_runs(project)
    assert stored.info.run_name == run.name and "-" in stored.info.run_name
