"""A team server under load (issue 11): the small round of ``bench/team_server.py``.

Eight processes, forked together by one launcher, each log 500 points one
``log_metric`` call at a time, a burst of 50 params and 50 tags and a small artifact to
the session's PostgreSQL-backed ``mlflow server``. Every run's metric history is read back
with ``MlflowClient``: steps 0..499 exactly once each, and every run FINISHED. The heavy
variant (N = 4, 8, 16 with 5,000 points, next to raw ``log_batch``) stays in bench/.
The same round runs again behind a load-shedding front (``bench/_shed_proxy.py``) that
answers 429 to what exceeds two requests in flight.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import team_server

WORKERS = 8
POINTS = 500


def run_and_check(url: str, read_url: str, tmp_path: Path) -> None:
    """One round of 8 tracksdk workers through ``url``; every run read back from ``read_url``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=read_url)
    experiment = f"team-{uuid.uuid4().hex[:8]}"  # the server is shared by the session
    client.create_experiment(experiment)
    client.create_experiment(experiment + "-warmup")  # the launcher's warm-up run goes there
    round_ = team_server.run_round(url, "sdk", WORKERS, POINTS, tmp_path / "work", experiment)
    assert round_["failures"] == []
    results = round_["results"]
    assert len(results) == WORKERS
    # The one notice allowed: a server slowed down by the rest of the suite (2 cores, 8
    # workers) may miss two answers in a row, and tracksdk then says once that it keeps
    # logging into the journal. What follows checks that every point arrived all the same.
    unexpected = [
        line
        for r in results
        for line in r["stderr_lines"]
        if "tracksdk: cannot reach the store for run" not in line
    ]
    assert unexpected == []
    check = team_server.check_runs(read_url, results, POINTS)
    assert check == {
        "lost": 0,
        "duplicated": 0,
        "foreign": 0,
        "statuses": {"FINISHED": WORKERS},
        "write_failures": 0,
    }
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(f"sdk-{i}" for i in range(WORKERS))
    for run in runs:  # what the burst and the artifact left, as a user reads them back
        assert run.data.params["p49"] == "49"
        assert run.data.tags["t49"] == "v49"
        text = client.download_artifacts(run.info.run_id, "notes/worker.txt", str(tmp_path))
        assert Path(text).read_text() == f"worker {run.info.run_name.split('-')[1]}\n"


@pytest.mark.server
def test_eight_processes_lose_and_duplicate_no_point_on_the_team_server(
    tmp_path: Path, mlflow_server: Any
) -> None:
    """8 x 500 points, params, tags and an artifact: 0 lost, 0 duplicated, all FINISHED."""
    run_and_check(mlflow_server.url, mlflow_server.url, tmp_path)


@pytest.mark.server
def test_a_saturated_server_that_sheds_load_with_429_loses_nothing(
    tmp_path: Path, mlflow_server: Any
) -> None:
    """The same 8 processes through a front that answers 429 with ``Retry-After: 1`` to
    every request over 2 in flight (nginx's ``limit_conn``, a busy load balancer): the
    senders wait and retry, and every point still arrives exactly once.
    """
    from _shed_proxy import SheddingProxy

    proxy = SheddingProxy(mlflow_server.port, 2, status=429)
    proxy.start()
    try:
        run_and_check(proxy.url, mlflow_server.url, tmp_path)
    finally:
        proxy.close()
    assert proxy.counts.get(429, 0) > 0, proxy.counts  # the load was shed, and retried
    assert set(proxy.counts) <= {200, 429}, proxy.counts
