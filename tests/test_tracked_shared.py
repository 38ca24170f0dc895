"""One ``tracked(...)`` object entered as a context manager from several threads and asyncio
tasks at once, and nested in one thread (issue 9): each block's exit ends the run that
block opened, with that block's own outcome. All read back from the local sqlite store.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from core_fixtures import local_client

from tracksdk import tracked

WAIT = 60.0  # seconds a thread waits for the other; only reached when something hangs


class Boom(Exception):
    """The failure a block raises to end its run FAILED."""


def assert_a_finished_then_b_failed(
    client: Any, runs: dict[str, Any], seen_while_b_inside: dict[str, str], error: str
) -> None:
    """A's run ended FINISHED at A's exit, while B's was RUNNING; B's ended FAILED."""
    assert seen_while_b_inside == {"a": "FINISHED", "b": "RUNNING"}
    stored_a = client.get_run(runs["a"].run_id)
    stored_b = client.get_run(runs["b"].run_id)
    assert (stored_a.info.status, stored_a.data.metrics) == ("FINISHED", {"who": 1.0})
    assert (stored_b.info.status, stored_b.data.metrics) == ("FAILED", {"who": 2.0})
    assert stored_b.data.tags["tracksdk.error.message"] == error
    assert "tracksdk.error.type" not in stored_a.data.tags
    assert runs["a"].status == "FINISHED" and runs["b"].status == "FAILED"


def test_each_thread_exit_ends_its_own_run_at_its_own_exit(project: Path) -> None:
    """A enters, B enters, A leaves normally while B is still inside: at that moment A's
    run is FINISHED and B's RUNNING. Then B leaves by raising: B's run is FAILED with B's
    error, and A's stays FINISHED.
    """
    shared = tracked(experiment="shared")
    client = local_client(project)
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    runs: dict[str, Any] = {}
    seen_while_b_inside: dict[str, str] = {}
    failures: list[BaseException] = []

    def a() -> None:
        with shared as run:
            runs["a"] = run
            run.log_metric("who", 1.0)
            a_inside.set()
            assert b_inside.wait(WAIT)
        a_left.set()

    def b() -> None:
        assert a_inside.wait(WAIT)
        try:
            with shared as run:
                runs["b"] = run
                run.log_metric("who", 2.0)
                assert run.flush(WAIT)  # the run is in the store before A leaves
                b_inside.set()
                assert a_left.wait(WAIT)
                for name in ("a", "b"):
                    seen_while_b_inside[name] = client.get_run(runs[name].run_id).info.status
                raise Boom("b failed")
        except Boom:
            pass

    def guarded(body: Any) -> Any:
        def target() -> None:
            try:
                body()
            except BaseException as exc:  # reported by the main thread below
                failures.append(exc)
                for event in (a_inside, b_inside, a_left):
                    event.set()  # the other thread must not wait for this one

        return target

    threads = [threading.Thread(target=guarded(body)) for body in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
    assert not failures, failures
    assert_a_finished_then_b_failed(client, runs, seen_while_b_inside, "b failed")


def test_many_threads_leaving_in_the_order_they_entered(project: Path) -> None:
    """Six threads inside one shared object at once leave first-in, first-out (the order a
    shared stack gets wrong); the odd ones raise. Every run has its own thread's metric
    and its own thread's status.
    """
    shared = tracked(experiment="shared")
    count = 6
    everyone_inside = threading.Barrier(count, timeout=WAIT)
    entry_turns = [threading.Event() for _ in range(count + 1)]
    exit_turns = [threading.Event() for _ in range(count + 1)]
    entry_turns[0].set()
    exit_turns[0].set()
    runs: dict[int, Any] = {}
    order: list[int] = []

    def worker(index: int) -> None:
        try:
            assert entry_turns[index].wait(WAIT)
            with shared as run:
                entry_turns[index + 1].set()
                runs[index] = run
                run.log_metric("who", float(index))
                everyone_inside.wait()
                assert exit_turns[index].wait(WAIT)
                order.append(index)
                if index % 2:
                    raise Boom(f"thread {index} failed")
        except Boom:
            pass
        finally:
            entry_turns[index + 1].set()
            exit_turns[index + 1].set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
    assert order == list(range(count))
    client = local_client(project)
    for index, run in runs.items():
        stored = client.get_run(run.run_id)
        expected = "FAILED" if index % 2 else "FINISHED"
        assert (stored.info.status, stored.data.metrics) == (expected, {"who": float(index)})
        if index % 2:
            assert stored.data.tags["tracksdk.error.message"] == f"thread {index} failed"
    assert len({run.run_id for run in runs.values()}) == count


def test_asyncio_tasks_sharing_one_object_end_their_own_runs(project: Path) -> None:
    """Task A enters, task B enters, A leaves while B is still inside (A's run FINISHED,
    B's RUNNING), then B leaves by raising: B's run is FAILED.
    """
    shared = tracked(experiment="shared-async")
    client = local_client(project)
    runs: dict[str, Any] = {}
    seen_while_b_inside: dict[str, str] = {}

    async def main() -> None:
        a_inside, b_inside, a_left = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def a() -> None:
            async with shared as run:
                runs["a"] = run
                run.log_metric("who", 1.0)
                a_inside.set()
                await b_inside.wait()
            a_left.set()

        async def b() -> None:
            await a_inside.wait()
            try:
                async with shared as run:
                    runs["b"] = run
                    run.log_metric("who", 2.0)
                    assert run.flush(WAIT)
                    b_inside.set()
                    await a_left.wait()
                    for name in ("a", "b"):
                        seen_while_b_inside[name] = client.get_run(runs[name].run_id).info.status
                    raise Boom("task b failed")
            except Boom:
                pass

        await asyncio.wait_for(asyncio.gather(a(), b()), 2 * WAIT)

    asyncio.run(main())
    assert_a_finished_then_b_failed(client, runs, seen_while_b_inside, "task b failed")


def test_nested_use_of_one_object_in_one_thread(project: Path) -> None:
    """The same object entered inside itself: the inner block is a child run that ends at
    the inner exit (FAILED by its own error) while the outer run goes on, then FINISHED.
    """
    shared = tracked(experiment="nested-shared")
    client = local_client(project)
    with shared as outer:
        try:
            with shared as inner:
                inner.log_metric("depth", 2.0)
                raise Boom("inner failed")
        except Boom:
            pass
        assert inner.status == "FAILED" and outer.status == "RUNNING"
        assert outer.flush(WAIT)
        assert client.get_run(outer.run_id).info.status == "RUNNING"
        outer.log_metric("depth", 1.0)
    stored_outer = client.get_run(outer.run_id)
    stored_inner = client.get_run(inner.run_id)
    assert (stored_outer.info.status, stored_outer.data.metrics) == ("FINISHED", {"depth": 1.0})
    assert (stored_inner.info.status, stored_inner.data.metrics) == ("FAILED", {"depth": 2.0})
    assert stored_inner.data.tags["mlflow.parentRunId"] == outer.run_id


def test_a_block_left_in_another_task_than_it_was_entered_in_still_ends(project: Path) -> None:
    """An async fixture enters in one task and leaves in another (pytest-asyncio runs a
    fixture's setup and teardown so): the exit still ends the run it opened, FAILED by
    the error it is given.
    """
    shared = tracked(experiment="other-task")

    async def main() -> Any:
        run = await asyncio.create_task(shared.__aenter__())
        run.log_metric("m", 1.0)
        error = Boom("teardown saw an error")
        await asyncio.create_task(shared.__aexit__(Boom, error, None))
        return run

    run = asyncio.run(main())
    stored = local_client(project).get_run(run.run_id)
    assert (stored.info.status, stored.data.metrics) == ("FAILED", {"m": 1.0})
    assert stored.data.tags["tracksdk.error.message"] == "teardown saw an error"
