"""Seeds (issue 12): ``tracked(seed=N)`` and ``TRACKSDK_SEED`` seed Python's ``random``,
numpy's global generator and torch before the body runs, and log the param ``seed``.
Runs are read back from the local sqlite store."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from core_fixtures import all_runs

from tracksdk import tracked
from tracksdk.exceptions import ConfigError, TrackSDKWarning


def draws() -> tuple[list[float], list[float]]:
    """What a training function would draw from the two global generators."""
    return [random.random() for _ in range(3)], np.random.rand(3).tolist()


def test_two_runs_with_the_same_seed_draw_the_same_numbers(project: Path) -> None:
    @tracked(seed=7)
    def train(lr: float) -> dict[str, float]:
        python, numpy = draws()
        return {"score": python[0] + numpy[0]}

    random.seed(1)  # whatever state the process was in before
    train(0.1)
    random.seed(2)
    np.random.seed(2)
    train(0.1)
    first, second = all_runs(project)
    assert first.data.params == {"lr": "0.1", "seed": "7"}
    assert second.data.params == first.data.params
    assert first.data.metrics["score"] == second.data.metrics["score"]
    random.seed(7)
    np.random.seed(7)
    python, numpy = draws()
    assert first.data.metrics["score"] == pytest.approx(python[0] + numpy[0])


def test_the_setting_seeds_a_top_level_run_not_its_children(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TRACKSDK_SEED`` seeds the top-level run. A child run does not reseed from it: a
    search drawing candidates from ``random`` in the parent would get the same one for
    every child. ``tracked(seed=...)`` on a child does seed it.
    """
    monkeypatch.setenv("TRACKSDK_SEED", "11")
    candidates = []
    with tracked(experiment="search", run_name="parent"):
        for index in range(3):
            candidates.append(random.random())
            with tracked(run_name=f"child-{index}"):
                pass
        with tracked(run_name="seeded-child", seed=5):
            seeded = random.random()
    random.seed(11)
    assert candidates == [random.random() for _ in range(3)]
    assert len(set(candidates)) == 3
    random.seed(5)
    assert seeded == random.random()
    params = {run.info.run_name: run.data.params for run in all_runs(project)}
    assert params["parent"] == {"seed": "11"}
    assert params["child-0"] == {} and params["child-2"] == {}
    assert params["seeded-child"] == {"seed": "5"}


def test_without_a_seed_nothing_is_seeded_nor_logged(project: Path) -> None:
    random.seed(3)
    state = random.getstate()
    numpy_state = np.random.get_state()[1].tolist()
    with tracked(experiment="unseeded") as run:
        assert random.getstate() == state  # tracksdk draws from no global generator
        assert np.random.get_state()[1].tolist() == numpy_state
        run.log_metric("m", 1.0)
    [stored] = all_runs(project)
    assert "seed" not in stored.data.params


def test_a_disabled_run_is_seeded_all_the_same(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The results must not depend on whether they are logged."""
    monkeypatch.setenv("TRACKSDK_MODE", "disabled")
    with tracked(seed=21):
        disabled = draws()
    monkeypatch.delenv("TRACKSDK_MODE")
    with tracked(seed=21):
        tracked_ = draws()
    assert disabled == tracked_
    assert [run.data.params for run in all_runs(project)] == [{"seed": "21"}]


@pytest.mark.parametrize("bad", [True, -1, 1.5, "7", 2**32])
def test_a_bad_seed_says_what_a_seed_is(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"seed must be an integer from 0 to 4294967295"):
        tracked(seed=bad)  # type: ignore[arg-type]


def test_a_bad_seed_setting_is_a_config_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKSDK_SEED", "forty-two")
    with pytest.raises(ConfigError, match="TRACKSDK_SEED"), tracked():
        pass
    assert all_runs(project) == []


def test_a_differing_seed_argument_is_said_and_the_applied_seed_logged(project: Path) -> None:
    @tracked(seed=1)
    def train(seed: int = 2) -> None:
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train()
    said = [str(w.message) for w in caught if issubclass(w.category, TrackSDKWarning)]
    assert len(said) == 1 and "argument seed=2" in said[0], said
    [stored] = all_runs(project)
    assert stored.data.params == {"seed": "1"}


def run_script(project: Path, script: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_numpy_is_seeded_when_the_body_imports_it_later(project: Path) -> None:
    script = """
        import sys
        from tracksdk import tracked
        assert "numpy" not in sys.modules
        with tracked(experiment="late", seed=123):
            import numpy
            print(numpy.random.randint(0, 10**6))
        """
    outputs = [run_script(project, script) for _ in range(2)]
    np.random.seed(123)
    assert outputs == [[str(np.random.randint(0, 10**6))]] * 2
    assert [r.data.params for r in all_runs(project)] == [{"seed": "123"}] * 2


def test_torch_is_seeded_when_imported(project: Path) -> None:
    script = """
        import torch
        from tracksdk import tracked
        with tracked(experiment="torch", seed=99):
            print(torch.randint(0, 10**6, (1,)).item(), torch.rand(1).item())
        """
    outputs = [run_script(project, script) for _ in range(2)]
    import torch

    torch.manual_seed(99)
    expected = [str(torch.randint(0, 10**6, (1,)).item()), str(torch.rand(1).item())]
    assert outputs == [expected, expected]
