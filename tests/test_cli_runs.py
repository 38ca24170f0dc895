"""``tracksdk runs --order-by/--filter`` (issue 12): MLflow's search syntax from the
command line, against the local store and the PostgreSQL-backed server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import run_cli as cli

from tracksdk import tracked

CANDIDATES = [("a", 0.001, 0.71), ("b", 0.03, 0.93), ("c", 0.1, 0.85), ("d", 0.3, 0.62)]


def make_runs(experiment: str) -> None:
    for name, lr, auc in CANDIDATES:
        with tracked(experiment=experiment, run_name=f"lr-{name}") as run:
            run.log_param("lr", lr)
            run.log_metrics({"val_auc": auc, "a_loss": 1 - auc})


def names_in_order(stdout: str) -> list[str]:
    return re.findall(r"lr-[a-d]", stdout)


def test_order_by_a_metric_and_filter_by_a_param(project: Path) -> None:
    make_runs("search")
    best = cli(project, "runs", "-e", "search", "--order-by", "val_auc")
    assert best.returncode == 0, best.stderr
    assert names_in_order(best.stdout) == ["lr-b", "lr-c", "lr-a", "lr-d"]
    # The metric sorted by is shown first, even though "a_loss" comes first by name.
    assert re.search(r"val_auc=0\.93,\s*a_loss=0\.07", best.stdout), best.stdout
    lowest = cli(project, "runs", "-e", "search", "-o", "val_auc ASC", "-n", "2")
    assert names_in_order(lowest.stdout) == ["lr-d", "lr-a"]
    found = cli(
        project,
        "runs", "-e", "search",
        "--filter", "params.lr > '0.01' and metrics.val_auc >= 0.8",
        "--order-by", "metrics.val_auc ASC",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert names_in_order(found.stdout) == ["lr-c", "lr-b"]
    assert "lr=0.1" in found.stdout and "lr=0.03" in found.stdout  # the params column
    none = cli(project, "runs", "-e", "search", "--filter", "metrics.val_auc > 0.99")
    assert none.returncode == 0
    assert "No runs matching 'metrics.val_auc > 0.99' in experiment 'search'" in none.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--filter", "val_auc > 0.8"), "MLflow refused the search"),
        (("--filter", "metrics.val_auc >> 1"), "MLflow refused the search"),
        (("--order-by", "val_auc SIDEWAYS"), "the direction must be ASC or DESC"),
        (("--order-by", "params.lr UP"), "the direction must be ASC or DESC"),
        (("--order-by", " "), "--order-by needs a metric name"),
    ],
)
def test_a_bad_filter_or_order_is_the_users_mistake(
    project: Path, args: tuple[str, ...], says: str
) -> None:
    """Exit 2, with MLflow's reason and how to write it, never a traceback."""
    make_runs("bad")
    result = cli(project, "runs", "-e", "bad", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    text = " ".join(result.stderr.split())
    assert says in text and "Traceback" not in text


@pytest.mark.server
def test_order_and_filter_on_the_team_server(
    project: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"TRACKSDK_BACKEND": "server", "TRACKSDK_SERVER__URI": mlflow_server.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    experiment = f"search-{project.parent.name}"
    make_runs(experiment)
    result = cli(
        project, "runs", "-e", experiment, "-o", "val_auc", "-f", "params.lr != '0.1'", env=env
    )
    assert result.returncode == 0, result.stderr
    assert names_in_order(result.stdout) == ["lr-b", "lr-a", "lr-d"]
    bad = cli(project, "runs", "-e", experiment, "-f", "nonsense here", env=env)
    assert bad.returncode == 2 and "MLflow refused the search" in " ".join(bad.stderr.split())
