"""Bad input: the documented outcome for each case, in normal and in strict mode."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import artifact_text, local_client

import tracksdk
from tracksdk import TrackSDKWarning, ValidationError, tracked

NOT_REAL = [
    pytest.param("1.0", id="str"),
    pytest.param(True, id="bool"),
    pytest.param(1 + 2j, id="complex"),
    pytest.param(None, id="None"),
    pytest.param(object(), id="object"),
    pytest.param([1.0], id="list"),
]


@pytest.mark.parametrize("value", NOT_REAL)
def test_non_real_metric_is_dropped_with_one_warning(project: Path, value: Any) -> None:
    """A metric value that is not a real number is dropped; one warning says so."""
    with pytest.warns(TrackSDKWarning, match="not a real number") as record, tracked() as run:
        run.log_metric("m", value)
        run.log_metric("m", value)  # same key again: no second warning
        run.log_metric("ok", 1.0)
    assert len([w for w in record if "not a real number" in str(w.message)]) == 1
    assert local_client(project).get_run(str(run.run_id)).data.metrics == {"ok": 1.0}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_metric_is_logged_as_nan(project: Path, value: float) -> None:
    """inf, -inf and NaN are logged as NaN (not as 1.797e308), with a warning."""
    with pytest.warns(TrackSDKWarning, match="not finite"), tracked() as run:
        run.log_metric("loss", value)
    stored = local_client(project).get_run(str(run.run_id)).data.metrics["loss"]
    assert math.isnan(stored)


@pytest.mark.parametrize("value", [*NOT_REAL, math.inf, math.nan])
def test_strict_mode_raises_validation_error(project: Path, value: Any) -> None:
    """In strict mode every invalid metric value raises ValidationError."""
    with pytest.raises(ValidationError, match="metric 'm'"), tracked(strict=True) as run:
        run.log_metric("m", value)


def test_numpy_scalars_are_accepted(project: Path) -> None:
    """numpy scalars and 0-d arrays are real numbers."""
    import numpy as np

    with tracked() as run:
        run.log_metrics({"a": np.float32(0.5), "b": np.int64(3), "c": np.array(2.5)})
    assert local_client(project).get_run(str(run.run_id)).data.metrics == {
        "a": 0.5,
        "b": 3.0,
        "c": 2.5,
    }


@pytest.mark.parametrize("step", [1.5, -1, "3", True])
def test_bad_step_drops_point(project: Path, step: Any) -> None:
    """Steps must be integers >= 0, the same on every backend; others drop the point."""
    with pytest.warns(TrackSDKWarning, match="steps are integers"), tracked() as run:
        run.log_metric("m", 1.0, step=step)
    assert local_client(project).get_run(str(run.run_id)).data.metrics == {}


def test_invalid_key_characters_are_replaced(project: Path) -> None:
    """Characters MLflow rejects become underscores, with a warning naming the new key."""
    with pytest.warns(TrackSDKWarning) as record, tracked() as run:
        run.log_metric("val auc?fold#1!", 0.5)
        run.set_tag("a=b", "x")
        run.log_metric("/abs//path/./x/", 1.0)
    messages = [str(w.message) for w in record]
    assert len(messages) == 3, messages
    assert "logged as 'val auc_fold_1_'" in messages[0]
    assert "tag key 'a=b'" in messages[1] and "logged as 'a_b'" in messages[1]
    assert "logged as 'abs/path/x'" in messages[2]
    data = local_client(project).get_run(str(run.run_id)).data
    assert data.metrics == {"val auc_fold_1_": 0.5, "abs/path/x": 1.0}
    assert data.tags["a_b"] == "x"


def test_too_long_key_is_cut_with_a_stable_hash(project: Path) -> None:
    """A key over 250 characters is cut to 241 + '-' + 8 hex digits, the same every time."""
    long_key = "k" * 300
    with pytest.warns(TrackSDKWarning, match="longer than 250"), tracked() as run:
        run.log_metric(long_key, 1.0)
        run.log_metric(long_key, 2.0, step=1)
    metrics = local_client(project).get_run(str(run.run_id)).data.metrics
    (key,) = metrics
    assert len(key) == 250 and key.startswith("k" * 241 + "-")
    assert metrics[key] == 2.0


def test_strict_mode_rejects_bad_keys(project: Path) -> None:
    """In strict mode an invalid key raises instead of being rewritten."""
    with pytest.raises(ValidationError, match="has characters"), tracked(strict=True) as run:
        run.log_param("a?b", 1)


def test_long_param_goes_to_artifact_with_pointer(project: Path) -> None:
    """A param over 6,000 characters is kept whole in an artifact; the param points to it."""
    value = "".join(str(i % 10) for i in range(7000))
    with pytest.warns(TrackSDKWarning, match="over MLflow's limit"), tracked() as run:
        run.log_param("feature_list", value)
    client = local_client(project)
    param = client.get_run(str(run.run_id)).data.params["feature_list"]
    assert "full value in artifact params/feature_list.txt" in param
    assert len(param) < 6000
    text = artifact_text(client, str(run.run_id), "params/feature_list.txt", project.parent)
    assert text == value


def test_long_tag_goes_to_artifact(project: Path) -> None:
    """A tag over 8,000 characters is kept whole in an artifact, never truncated silently."""
    value = "t" * 9000
    with pytest.warns(TrackSDKWarning, match="over MLflow's limit"), tracked() as run:
        run.set_tag("notes", value)
    client = local_client(project)
    assert "tags/notes.txt" in client.get_run(str(run.run_id)).data.tags["notes"]
    assert artifact_text(client, str(run.run_id), "tags/notes.txt", project.parent) == value


def test_strict_mode_rejects_long_param(project: Path) -> None:
    """Strict mode raises on an over-long param instead of redirecting it."""
    with pytest.raises(ValidationError, match="6000"), tracked(strict=True) as run:
        run.log_param("p", "x" * 6001)


def test_param_conflict_keeps_first_and_records_second(project: Path) -> None:
    """Logging a param again with another value keeps the first and tags the second."""
    with pytest.warns(TrackSDKWarning, match="already logged"), tracked() as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)  # same value: silently fine
        run.log_param("lr", 0.2)
    data = local_client(project).get_run(str(run.run_id)).data
    assert data.params["lr"] == "0.1"
    assert data.tags["tracksdk.param_conflict.lr"] == "0.2"


def test_param_conflict_with_bound_argument_in_strict_mode(project: Path) -> None:
    """In strict mode, re-logging an argument's param with another value raises."""

    @tracked(strict=True)
    def train(lr: float = 0.1) -> None:
        tracksdk.log_param("lr", 0.5)

    with pytest.raises(ValidationError, match="already logged"):
        train()
