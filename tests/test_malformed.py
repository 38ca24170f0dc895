"""Malformed input through the whole path, on the local store and on a real server.

Requirement (issue 4): "At least 200 malformed inputs (hypothesis) through the whole path.
Each gets its documented outcome, no raw exception reaches user code, and the local and
server backends give the same verdict."

The whole path: the public API (``run.log_*``, ``tracksdk.log_*``, ``set_tag(s)``) in a
``with tracked(...)`` block, the checks, the journal, the background sender, the store,
and the flush at the end of the run; then what the store holds is read back through
MlflowClient (metrics with their steps, params, tags, ``params/*.txt``/``tags/*.txt``).
The expected outcome comes from a small oracle written from docs/configuration.md
("Invalid values") and docs/collected-information.md ("Params from arguments"), not from
tracksdk's code. Every example runs the same inputs once on the local sqlite store and
once on a real ``mlflow server`` (PostgreSQL); both must match the oracle and each other.

Where the documentation leaves room, the oracle reads it so:

- ``Decimal`` is not a real number in Python's numeric tower: dropped, like other objects;
- an int beyond float range (``10**400``) is not finite as a float: NaN, or dropped;
- a step above 2**63 - 1 cannot be stored by MLflow: dropped, like other invalid steps;
- a long value may point to any ``params/``/``tags/`` artifact, as long as the artifact it
  names holds the whole value; the conflict tag of a key over 226 characters (its name
  would be over 250) may have any valid name.

Cases the documentation does not settle are covered by targeted tests at the end of the
file (each names the bug it shows), and kept out of the generated inputs so that the
oracle stays exact: keys whose first segment starts with ``..`` (``..a``), NUL characters
in values, and integers too long for ``str()``.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
import pytest
from core_fixtures import artifact_paths
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import tracksdk
from tracksdk import TrackSDKWarning, ValidationError, tracked

MAX_KEY = 250
MAX_PARAM = 6000
MAX_TAG = 8000
INT64_MAX = 2**63 - 1
CONFLICT = "tracksdk.param_conflict."
TRACKSDK_DIR = str(Path(tracksdk.__file__).parent)

# Provenance is not what these tests are about: turning it off makes each run cheaper.
CHEAP: dict[str, Any] = {
    "capture": {
        name: False
        for name in (
            *("git", "diff", "untracked", "source"),
            *("command", "environment", "requirements"),
        )
    },
    # A run whose journal cannot drain (a bug) must not hold the suite for 30 s.
    "flush_timeout": 10,
}
# Tags that differ between two runs whatever they logged.
VARYING_TAGS = {"tracksdk.client_run_id", "mlflow.runName"}


# -- the oracle: docs/configuration.md, "Invalid values" ---------------------------------


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
NAN = "NaN"
NAN_OR_DROP = "NaN-or-drop"  # an int beyond float range: not finite as a float


def doc_key(raw: Any) -> str | None:
    """The key that is logged for ``raw``, or None when nothing is logged."""
    text = raw if isinstance(raw, str) else str(raw)  # "Key that is not a string: str(key)"
    if not text:
        return None
    # "letters, digits, _ - . / : and space"; each other character becomes _.
    fixed = "".join(c if c.isalnum() or c in "_-./: " else "_" for c in text)
    # "The empty, . and .. segments are removed"; nothing left: nothing is logged.
    fixed = "/".join(s for s in fixed.split("/") if s not in ("", ".", ".."))
    if not fixed:
        return None
    if len(fixed) > MAX_KEY:  # "Cut to 241 characters, plus - and 8 hex digits of SHA-1"
        fixed = f"{fixed[:241]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return fixed


def doc_metric_value(value: Any) -> Any:
    """The float logged for ``value``; DROP, NAN or NAN_OR_DROP."""
    if isinstance(value, bool | np.bool_):
        return DROP
    if isinstance(value, np.ndarray | np.generic):  # numpy scalars are accepted
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            return DROP
        value = value.item()
    if not isinstance(value, int | float | Fraction):  # str, None, complex, objects...
        return DROP
    try:
        number = float(value)
    except OverflowError:
        return NAN_OR_DROP
    return number if math.isfinite(number) else NAN


def doc_step(step: Any) -> int | None:
    """The step logged, or None when the point is dropped (not an integer >= 0)."""
    if step is None:
        return 0  # "No step means step 0"
    if isinstance(step, bool | np.bool_) or not isinstance(step, int | np.integer):
        return None
    # MLflow stores steps as 64-bit integers: a larger one cannot be logged.
    return int(step) if 0 <= int(step) <= INT64_MAX else None


def doc_param_value(value: Any) -> str:
    """docs/collected-information.md, "Params from arguments"."""
    if value is None or isinstance(value, bool | int | float | str):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple | set | dict):
        text = repr(value)
        if len(value) <= 10 and len(text) <= 250:
            return text
        return f"{type(value).__name__}(len={len(value)})"
    raise AssertionError(f"the oracle has no documented format for {value!r}")


def point(step: int, value: float) -> tuple[int, bool, float]:
    nan = math.isnan(value)
    return (step, nan, 0.0 if nan else value)


@dataclass
class Expected:
    """What the store must hold after a run of ops."""

    metrics: dict[str, set[tuple[int, bool, float]]] = field(default_factory=dict)
    optional: dict[str, set[tuple[int, bool, float]]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # first value (full text)
    conflicts: dict[str, str] = field(default_factory=dict)  # last other value
    tags: dict[str, str] = field(default_factory=dict)  # last value (full text)
    malformed: int = 0  # inputs whose outcome differs from "logged as given"

    def add(self, op: Op) -> bool:
        """Record the documented outcome of ``op``; True when it is malformed."""
        bad = self._add(op)
        self.malformed += bad
        return bad

    def _add(self, op: Op) -> bool:
        key = doc_key(op.key)
        if key is None:
            return True
        if op.kind == "metric":
            value, step = doc_metric_value(op.value), doc_step(op.step)
            bad = key != op.key or value in (DROP, NAN, NAN_OR_DROP) or step is None
            if value is DROP or step is None:
                return True
            if value == NAN_OR_DROP:
                self.optional.setdefault(key, set()).add(point(step, math.nan))
            else:
                self.metrics.setdefault(key, set()).add(
                    point(step, math.nan if value == NAN else value)
                )
            return bad
        if op.kind == "param":
            text = doc_param_value(op.value)
            bad = key != op.key or len(text) > MAX_PARAM
            if key not in self.params:
                self.params[key] = text
            elif self.params[key] != text:  # the first value stays
                self.conflicts[key] = text
                bad = True
            return bad
        text = str(op.value)
        self.tags[key] = text
        return key != op.key or len(text) > MAX_TAG


_POINTER = re.compile(
    r"(?s)(?P<head>.{200})… \[(?P<length>\d+) characters; full value in artifact "
    r"(?P<path>(?:params|tags)/.+\.txt)\]"
)


def value_problem(
    what: str, stored: str | None, full: str, limit: int, artifacts: dict[str, str]
) -> str | None:
    """Check one param or tag value: as it is, or a pointer to an artifact holding it."""
    if stored is None:
        return f"{what} is missing (expected {show(full)})"
    if len(full) <= limit:
        return None if stored == full else f"{what} is {show(stored)}, expected {show(full)}"
    match = _POINTER.fullmatch(stored)
    if match is None or match["head"] != full[:200] or int(match["length"]) != len(full):
        return f"{what} is {show(stored)}, not a pointer to its {len(full)}-character value"
    content = artifacts.get(match["path"])
    if content != full:
        return (
            f"{what}: artifact {match['path']} holds "
            f"{'nothing' if content is None else show(content)}, expected {show(full)}"
        )
    return None


def problems(observed: dict[str, Any], expected: Expected) -> list[str]:
    """Differences between what the store holds and what the documentation says."""
    out = []
    if observed["status"] != "FINISHED":
        out.append(f"run status {observed['status']}")
    tags: dict[str, str] = observed["tags"]
    artifacts: dict[str, str] = observed["artifacts"]
    for tag in ("tracksdk.write_failures", "tracksdk.dropped_points"):
        if tag in tags:
            out.append(f"{tag}={tags[tag]}: the store refused or lost part of the run")
    # Metrics: every expected point, nothing else (NAN_OR_DROP points may be absent).
    metrics: dict[str, list[tuple[int, bool, float]]] = observed["metrics"]
    for key in sorted(set(metrics) | set(expected.metrics) | set(expected.optional)):
        got = set(metrics.get(key, ()))
        want = expected.metrics.get(key, set())
        allowed = want | expected.optional.get(key, set())
        if not want <= got <= allowed:
            out.append(
                f"metric {key!r}: stored {sorted(got)[:6]}, expected {sorted(want)[:6]}"
                + (f" (or also {sorted(allowed - want)})" if allowed != want else "")
            )
    # Params: the first value of each key.
    params: dict[str, str] = observed["params"]
    for key in sorted(set(params) - set(expected.params)):
        out.append(f"unexpected param {key!r}={show(params[key])}")
    for key, full in expected.params.items():
        issue = value_problem(f"param {key!r}", params.get(key), full, MAX_PARAM, artifacts)
        if issue:
            out.append(issue)
    # Conflicts: tracksdk.param_conflict.<key> holds the last other value.
    conflict_tags = {k: v for k, v in tags.items() if k.startswith(CONFLICT)}
    for key, full in expected.conflicts.items():
        name = CONFLICT + key
        if len(name) <= MAX_KEY:
            stored = conflict_tags.pop(name, None)
            # It is a tag: the tag limit applies.
            issue = value_problem(f"tag {name!r}", stored, full, MAX_TAG, artifacts)
        else:  # the documentation names no key for it; any valid one will do
            fits = [
                k
                for k, v in conflict_tags.items()
                if len(k) <= MAX_KEY and not value_problem("", v, full, MAX_TAG, artifacts)
            ]
            issue = None if fits else f"no conflict tag of param {key!r} holds {show(full)}"
            if fits:
                conflict_tags.pop(fits[0])
        if issue:
            out.append(issue)
    out.extend(f"unexpected tag {k!r}={show(v)}" for k, v in conflict_tags.items())
    # Tags: the last value of each key.
    user_tags = {k: v for k, v in tags.items() if not k.startswith(("mlflow.", "tracksdk."))}
    for key in sorted(set(user_tags) - set(expected.tags)):
        out.append(f"unexpected tag {key!r}={show(user_tags[key])}")
    for key, full in expected.tags.items():
        issue = value_problem(f"tag {key!r}", user_tags.get(key), full, MAX_TAG, artifacts)
        if issue:
            out.append(issue)
    return out


def show(value: Any) -> str:
    """A short repr that never fails (ints too long for repr() included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception as exc:  # pragma: no cover - a repr that raises
        text = f"<{type(value).__name__}: repr raised {type(exc).__name__}>"
    return text if len(text) <= 70 else f"{text[:50]}...{text[-12:]} ({len(text)} chars)"


# -- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One call of the public API."""

    kind: str  # metric, param or tag
    key: Any
    value: Any
    step: Any = None
    via: str = "run"  # run: run.log_metric; many: run.log_metrics; module: tracksdk.*

    def __repr__(self) -> str:
        step = f", step={show(self.step)}" if self.kind == "metric" else ""
        return f"{self.kind}[{self.via}]({show(self.key)}, {show(self.value)}{step})"

    def apply(self, run: Any) -> None:
        if self.kind == "metric":
            if self.via == "many":
                run.log_metrics({self.key: self.value}, step=self.step)
            elif self.via == "module":
                tracksdk.log_metric(self.key, self.value, step=self.step)
            else:
                run.log_metric(self.key, self.value, step=self.step)
        elif self.kind == "param":
            if self.via == "many":
                run.log_params({self.key: self.value})
            elif self.via == "module":
                tracksdk.log_param(self.key, self.value)
            else:
                run.log_param(self.key, self.value)
        elif self.via == "many":
            run.set_tags({self.key: self.value})
        elif self.via == "module":
            tracksdk.set_tag(self.key, self.value)
        else:
            run.set_tag(self.key, self.value)


class Color(enum.Enum):
    RED = "red"


KEY_OK = "abxyz019_-. :/éß中"
KEY_BAD = "?#!=@,;(){}%*\\\n\t\x00😀\u200b"
VALUE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _dots_first(key: Any) -> bool:
    """Keys MLflow refuses although the documented rules keep them (see the bug tests)."""
    logged = doc_key(key)
    return logged is not None and logged.startswith("..")


keys = st.one_of(
    st.sampled_from(["loss", "acc", "lr", "a/b", "a_b", "a?b", "x y", "é/ß", "k:1", "m"]),
    st.text(KEY_OK + KEY_BAD, max_size=12),
    st.lists(st.sampled_from(["", ".", "..", "a", "b1", " c", "d."]), min_size=1, max_size=5).map(
        "/".join
    ),
    st.text(VALUE_CHARS, min_size=1, max_size=8),
    st.builds(lambda c, n: c * n, st.sampled_from(["k", "ab/", "é", "x?"]), st.integers(120, 310)),
    st.text(KEY_OK, min_size=240, max_size=300),
    st.one_of(
        st.integers(-(10**20), 10**20),
        st.floats(),
        st.none(),
        st.sampled_from([(1, "a"), b"x", 2.5, Fraction(1, 3)]),
    ),
).filter(lambda key: not _dots_first(key))

metric_values = st.one_of(
    st.floats(),  # NaN, +-inf, -0.0, subnormals included
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(-(2**70), 2**70),
    st.fractions(max_denominator=1000),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**63), INT64_MAX).map(np.int64),
    st.sampled_from(
        [
            np.float16("inf"),
            np.float64("nan"),
            np.array(2.5),
            np.uint64(2**64 - 1),
            10**400,  # beyond float range
            -(2**1024),
        ]
    ),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
    st.complex_numbers(max_magnitude=1e6),
    st.sampled_from(
        [
            "1.0",
            Decimal("1.5"),
            Decimal("NaN"),
            object(),
            [1.0],
            {"a": 1.0},
            np.bool_(True),
            np.complex64(1j),
            np.array([1.0, 2.0]),
            np.array(True),
        ]
    ),
)

steps = st.one_of(
    st.none(),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(-(10**6), -1),
    st.integers(INT64_MAX - 2, INT64_MAX + 2),
    st.integers(2**64, 2**80),
    st.floats(),
    st.sampled_from([1.5, 3.0, True, False, "3", np.int64(7), np.int32(5), np.int64(-1)]),
    st.sampled_from([np.uint64(2**64 - 1), Fraction(4, 1), Decimal(2)]),
)


def long_text(low: int, high: int) -> st.SearchStrategy[str]:
    """Strings around a length limit; distinct lengths give distinct values."""
    return st.builds(
        lambda c, n: c * n, st.sampled_from(["p", "q", "é", "\n"]), st.integers(low, high)
    )


param_values = st.one_of(
    st.text(VALUE_CHARS, max_size=20),
    long_text(MAX_PARAM - 5, MAX_PARAM + 1500),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 99), max_size=14),
    st.sampled_from([PurePosixPath("data/x.csv"), Color.RED, ("a", 1), {"k": 1}]),
)

tag_values = st.one_of(
    st.text(VALUE_CHARS, max_size=20),
    long_text(MAX_TAG - 5, MAX_TAG + 1500),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.none(),
)

vias = st.sampled_from(["run", "many", "module"])
metric_ops = st.builds(Op, st.just("metric"), keys, metric_values, steps, vias)
param_ops = st.builds(Op, st.just("param"), keys, param_values, st.none(), vias)
tag_ops = st.builds(Op, st.just("tag"), keys, tag_values, st.none(), vias)
op_lists = st.lists(st.one_of(metric_ops, metric_ops, param_ops, tag_ops), min_size=8, max_size=12)

# The documented examples, first (hypothesis' explicit phase).
DOCUMENTED = [
    Op("metric", "a b?c", 1.0),
    Op("metric", "/x//y/./z/", 2.0, 3),
    Op("metric", "as_text", "1.0"),
    Op("metric", "flag", True),
    Op("metric", "inf", math.inf, 1),
    Op("metric", "ninf", -math.inf, 2, "many"),
    Op("metric", "frac", 1.0, 1.5),
    Op("metric", "neg", 1.0, -1, "module"),
    Op("metric", "str_step", 1.0, "3"),
    Op("metric", "k" * 300, 4.0),
    Op("metric", 7, np.float32(0.5), np.int64(2)),
    Op("metric", "/", 1.0),
    Op("metric", "", 1.0),
    Op("param", "feature_list", "".join(str(i % 10) for i in range(7000))),
    Op("param", "lr", 0.1),
    Op("param", "lr", 0.1, via="many"),
    Op("param", "lr", 0.2),
    Op("tag", "notes", "t" * 9000, via="module"),
    Op("tag", "a=b", "x"),
]


# -- running the same inputs on both backends --------------------------------------------


@dataclass
class Backend:
    name: str
    settings: dict[str, Any]  # given to tracked(settings=...)
    client: Any  # an MlflowClient to read the store
    journal: Path  # the project's journal folder


def local_backend(project: Path) -> Backend:
    from mlflow.tracking import MlflowClient

    return Backend(
        "local",
        {**CHEAP, "backend": "local"},
        MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}"),
        project / ".tracksdk" / "journal",
    )


def server_backend(project: Path, server: Any) -> Backend:
    from mlflow.tracking import MlflowClient

    return Backend(
        "server",
        {**CHEAP, "backend": "server", "server": {"uri": server.url}},
        MlflowClient(tracking_uri=server.url),
        project / ".tracksdk" / "journal",
    )


@pytest.fixture(params=["local", pytest.param("server", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest, project: Path) -> Backend:
    """The local sqlite store, or the real PostgreSQL-backed ``mlflow server``."""
    if request.param == "local":
        return local_backend(project)
    return server_backend(project, request.getfixturevalue("mlflow_server"))


@dataclass
class Outcome:
    run_id: str | None
    client_run_id: str | None
    raised: list[str]  # exceptions that reached the caller
    warned: list[str]  # TrackSDKWarning messages pointing at the caller's line
    foreign: list[str]  # any other warning at the caller's line or from tracksdk


def run_ops(
    backend: Backend,
    ops: Sequence[Any],
    *,
    strict: bool = False,
    expect_raise: Callable[[Any], bool] | None = None,
) -> Outcome:
    """Apply ``ops`` (objects with ``apply(run)``) in one tracked run; record what reached
    the caller. ``expect_raise(op)``: the op must raise ValidationError (strict mode)."""
    raised: list[str] = []
    tracked_run: Any = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with tracked(experiment="malformed", strict=strict, settings=backend.settings) as run:
                tracked_run = run
                for op in ops:
                    must_raise = expect_raise is not None and expect_raise(op)
                    try:
                        op.apply(run)
                    except Exception as exc:
                        if not (must_raise and isinstance(exc, ValidationError)):
                            raised.append(f"{op!r} raised {type(exc).__name__}: {exc}"[:400])
                    else:
                        if must_raise:
                            raised.append(f"{op!r} did not raise ValidationError")
        except Exception as exc:
            raised.append(f"the end of the run raised {type(exc).__name__}: {exc}"[:400])
    warned, foreign = [], []
    for w in caught:
        at_caller = w.filename == __file__
        if issubclass(w.category, TrackSDKWarning):
            if at_caller:
                warned.append(str(w.message))
        elif at_caller or (
            w.filename.startswith(TRACKSDK_DIR)
            and not issubclass(w.category, ResourceWarning | DeprecationWarning)
        ):
            foreign.append(f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})")
    return Outcome(
        tracked_run.run_id if tracked_run is not None else None,
        tracked_run.client_run_id if tracked_run is not None else None,
        raised,
        warned,
        foreign,
    )


def observe(client: Any, run_id: str) -> dict[str, Any]:
    """What the store holds for a run: status, metrics with steps, params, tags, files."""
    run = client.get_run(run_id)
    metrics = {
        key: sorted({point(m.step, m.value) for m in client.get_metric_history(run_id, key)})
        for key in run.data.metrics
    }
    artifacts = {}
    for path in artifact_paths(client, run_id):
        if path.startswith(("params/", "tags/")):
            with tempfile.TemporaryDirectory(prefix="malformed-") as tmp:
                try:
                    local = Path(client.download_artifacts(run_id, path, tmp))
                    artifacts[path] = local.read_bytes().decode("utf-8")
                except Exception as exc:  # listed, but MLflow cannot give it back
                    artifacts[path] = f"<unreadable: {type(exc).__name__}: {exc}>"
    return {
        "status": run.info.status,
        "metrics": metrics,
        "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if k not in VARYING_TAGS},
        "artifacts": artifacts,
    }


def verdict(backend: Backend, ops: list[Op], expected: Expected) -> tuple[Any, list[str]]:
    """Run ``ops`` on ``backend``; return what it stored and every departure from the docs."""
    outcome = run_ops(backend, ops)
    issues = [f"reached the caller: {r}" for r in outcome.raised]
    issues += [f"not a TrackSDKWarning: {f}" for f in outcome.foreign]
    if expected.malformed and not outcome.warned:
        issues.append("malformed input, but no TrackSDKWarning at the caller's line")
    if outcome.run_id is None:
        return None, [*issues, "the run has no MLflow run id"]
    if outcome.client_run_id and not gone(backend.journal / outcome.client_run_id):
        issues.append("the run's journal was left behind (not fully sent)")
    observed = observe(backend.client, outcome.run_id)
    issues += problems(observed, expected)
    return {**observed, "warnings": sorted(set(outcome.warned))}, issues


def gone(path: Path, timeout: float = 5.0) -> bool:
    """Whether ``path`` is deleted within ``timeout`` (the sender deletes a sent journal
    right after the run's end returns)."""
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def differences(local: dict[str, Any], server: dict[str, Any]) -> list[str]:
    """Where two views of a run differ, shortly."""
    out = []
    for section in sorted(set(local) | set(server)):
        a, b = local.get(section), server.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=repr):
                if a.get(key) != b.get(key):
                    out.append(
                        f"{section}[{key!r}]: local {show(a.get(key))}, server {show(b.get(key))}"
                    )
        else:
            out.append(f"{section}: local {show(a)}, server {show(b)}")
    return out


# -- the property ------------------------------------------------------------------------


def test_oracle_follows_the_documented_examples() -> None:
    """The oracle itself reproduces every example docs/configuration.md gives."""
    assert doc_key("a b?c") == "a b_c"
    assert doc_key("/x//y/./z/") == "x/y/z"
    assert [doc_key(k) for k in ("/a", "a//b", "./a", "../a", "a/")] == ["a", "a/b", "a", "a", "a"]
    assert doc_key("/") is None and doc_key("..") is None and doc_key("") is None
    cut = doc_key("k" * 300)
    assert cut == "k" * 241 + "-" + hashlib.sha1(b"k" * 300).hexdigest()[:8]
    assert doc_key(7) == "7" and doc_key(None) == "None"
    assert [doc_metric_value(v) for v in ("1.0", True, 1 + 2j, None, object())] == [DROP] * 5
    assert [doc_metric_value(v) for v in (math.nan, math.inf, -math.inf)] == [NAN] * 3
    assert doc_metric_value(np.float32(0.5)) == 0.5 and doc_metric_value(np.array(2.5)) == 2.5
    assert [doc_step(s) for s in (1.5, -1, "3", None, 4)] == [None, None, None, 0, 4]
    assert [doc_param_value(v) for v in (None, True, 0.1, "relu", [64, 32])] == [
        "None",
        "True",
        "0.1",
        "relu",
        "[64, 32]",
    ]
    assert doc_param_value(list(range(100))) == "list(len=100)"
    assert doc_param_value(Color.RED) == "red"


@pytest.mark.server
def test_malformed_inputs_get_the_documented_outcome_on_both_backends(
    project: Path, mlflow_server: Any
) -> None:
    """>= 200 generated inputs, each example one run on sqlite and one on the server.

    Each run must match the oracle (what is kept, dropped, normalised, redirected to an
    artifact), nothing but TrackSDKWarning may reach the caller, and the two stores must
    hold exactly the same thing.
    """
    local, server = local_backend(project), server_backend(project, mlflow_server)
    inputs: list[int] = []
    malformed: list[int] = []

    @settings(
        max_examples=40,
        deadline=None,
        database=None,  # no .hypothesis folder in the repository
        derandomize=True,  # the same inputs on every run of the suite
        phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is one example
        suppress_health_check=[  # big inputs and slow examples (real stores) on purpose
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
        report_multiple_bugs=False,
    )
    @given(ops=op_lists)
    @example(ops=DOCUMENTED)
    def check(ops: list[Op]) -> None:
        inputs.append(len(ops))
        expected = Expected()
        for op in ops:
            expected.add(op)
        malformed.append(expected.malformed)
        local_view, local_issues = verdict(local, ops, expected)
        server_view, server_issues = verdict(server, ops, expected)
        report = [f"local: {i}" for i in local_issues] + [f"server: {i}" for i in server_issues]
        if not report and local_view != server_view:
            report += differences(local_view, server_view)
        assert not report, "\n".join(
            ["inputs:", *(f"  {op!r}" for op in ops), "problems:", *report]
        )

    check()
    assert sum(malformed) >= 200, (sum(malformed), sum(inputs))


# -- strict mode -----------------------------------------------------------------------

STRICT_VALID = [
    Op("metric", "ok", 1.0),
    Op("metric", "ok", np.float32(0.5), np.int64(2)),
    Op("metric", "ok", Fraction(1, 4), INT64_MAX),
    Op("metric", "count", np.int64(3), 1, "many"),
    Op("param", "n", 5),
    Op("param", "none", None, via="module"),
    Op("param", "n", 5),  # the same value again: a no-op
    Op("tag", "t", 3),
]
STRICT_MALFORMED = [
    *(
        Op("metric", "v", value)
        for value in (
            "1.0",
            True,
            np.bool_(False),
            None,
            1 + 2j,
            object(),
            [1.0],
            Decimal("1.5"),
            math.nan,
            math.inf,
            -math.inf,
            np.float32("inf"),
            10**400,
        )
    ),
    *(
        Op("metric", "s", 1.0, step)
        for step in (1.5, 3.0, -1, "3", True, np.int64(-1), math.nan, 2**63, 10**30)
    ),
    *(
        Op("metric", key, 1.0)
        for key in ("a b?c", "/a", "a//b", "./a", "../a", "a/", "", "/", "..", "k" * 251)
    ),
    Op("metric", "tab\there", 1.0, via="many"),
    Op("metric", "newline\n", 1.0, via="module"),
    Op("metric", 7, 1.0),
    Op("param", "a?b", 1),
    Op("param", "p" * 300, 1),
    Op("param", "long", "x" * 6001),
    Op("param", "n", 6),  # conflicts with n=5
    Op("tag", "a=b", "x"),
    Op("tag", "long", "y" * 8001, via="many"),
    Op("tag", None, "x"),
]


def test_strict_mode_raises_validation_error_for_every_malformed_input(backend: Backend) -> None:
    """Strict: each malformed input raises ValidationError (never a raw error), and nothing
    of it is logged; the valid inputs around it are logged and the run ends FINISHED."""
    malformed = {id(op) for op in STRICT_MALFORMED}
    ops = [*STRICT_VALID[:5], *STRICT_MALFORMED, *STRICT_VALID[5:]]
    outcome = run_ops(backend, ops, strict=True, expect_raise=lambda op: id(op) in malformed)
    issues = list(outcome.raised) + [f"not a TrackSDKWarning: {f}" for f in outcome.foreign]
    assert outcome.run_id is not None, issues
    expected = Expected()
    for op in STRICT_VALID:
        expected.add(op)
    assert expected.malformed == 0
    issues += problems(observe(backend.client, outcome.run_id), expected)
    assert not issues, "\n".join(issues)


# -- bugs found by the property, one test each -------------------------------------------


def simple_run(backend: Backend, body: Callable[[Any], None]) -> tuple[Outcome, dict[str, Any]]:
    outcome = run_ops(backend, [_Body(body)])
    assert outcome.run_id is not None, outcome.raised
    return outcome, observe(backend.client, outcome.run_id)


@dataclass(frozen=True)
class _Body:
    body: Callable[[Any], None]

    def apply(self, run: Any) -> None:
        self.body(run)

    def __repr__(self) -> str:
        return getattr(self.body, "__name__", "body")


@pytest.fixture
def local(project: Path) -> Backend:
    return local_backend(project)


def test_int_beyond_float_range_as_metric_value_is_not_a_raw_error(local: Backend) -> None:
    """10**400 is a real number that float() cannot hold (OverflowError, which used to
    reach the caller): it is not finite as a float, so NaN (or dropped), with a warning."""
    ops = [Op("metric", "big", 10**400), Op("metric", "small", -(2**1024), 1)]
    ops.append(Op("metric", "after", 1.0))
    outcome = run_ops(local, ops)
    assert outcome.raised == [], "\n".join(outcome.raised)
    assert outcome.warned, "no warning for a value that could not be logged as it is"
    assert outcome.run_id is not None
    expected = Expected()
    for op in ops:
        expected.add(op)
    assert problems(observe(local.client, outcome.run_id), expected) == []


def test_int_too_long_for_str_is_not_a_raw_error(local: Backend) -> None:
    """An int with more than 4,300 digits as a key or value: str() raises ValueError (in a
    metric value, from the sign test of the overflow path)."""
    huge = 10**5000
    ops = [
        Op("metric", "digits", -huge),
        Op("param", "p", huge),
        Op("tag", "t", huge),
        Op("metric", huge, 1.0),
        Op("param", huge, 1),
        Op("metric", "after", 1.0),
    ]
    outcome = run_ops(local, ops)
    assert outcome.raised == [], "\n".join(outcome.raised)
    assert outcome.run_id is not None
    assert observe(local.client, outcome.run_id)["metrics"]["after"] == [(0, False, 1.0)]


def test_step_beyond_int64_is_dropped_and_the_run_ends(backend: Backend) -> None:
    """A step >= 2**63 passes the check but no store can hold it. Local: the sender retries
    it for ever; server: the sender dies on "Value out of range". Either way everything
    after it stays unsent and the run is not FINISHED."""
    backend.settings = {**backend.settings, "flush_timeout": 5}

    def body(run: Any) -> None:
        run.log_metric("before", 1.0)
        run.log_metric("huge_step", 1.0, step=2**63)
        run.log_metric("after", 2.0, step=INT64_MAX)

    outcome, observed = simple_run(backend, body)
    expected = Expected(metrics={"before": {(0, False, 1.0)}, "after": {(INT64_MAX, False, 2.0)}})
    issues = outcome.raised + problems(observed, expected)
    if not any("steps are integers" in w for w in outcome.warned):
        issues.append(f"no step warning; warned: {outcome.warned}")
    assert not issues, "\n".join(issues)


def test_key_with_a_trailing_newline_is_normalised(local: Backend) -> None:
    """'abc\\n' passed the key check unchanged: ``$`` in the key regex matches before a
    final newline. The documented outcome is 'abc_'."""

    def body(run: Any) -> None:
        run.log_metric("abc\n", 1.0)
        run.log_param("p\n", 1)

    outcome, observed = simple_run(local, body)
    assert set(observed["metrics"]) == {"abc_"}
    assert observed["params"] == {"p_": "1"}
    assert outcome.warned


def test_key_whose_first_segment_starts_with_two_dots_loses_nothing(backend: Backend) -> None:
    """'..a' is kept by the documented rules (it is no '..' segment), but MLflow refuses
    names whose normpath starts with '..'. The refused log_batch took every other metric,
    param and tag merged into the same request with it."""

    def body(run: Any) -> None:
        run.log_metrics({"ok": 1.0, "..a": 2.0, "...": 3.0, "..b/c": 4.0}, step=1)
        run.log_param("kept", "yes")
        run.set_tag("also_kept", "yes")

    outcome, observed = simple_run(backend, body)
    assert outcome.raised == []
    assert "tracksdk.write_failures" not in observed["tags"]
    assert observed["metrics"]["ok"] == [(1, False, 1.0)]
    assert observed["params"]["kept"] == "yes"
    assert observed["tags"]["also_kept"] == "yes"
    assert all(not key.startswith("..") for key in observed["metrics"])


def test_param_conflict_on_a_long_key_is_kept(backend: Backend) -> None:
    """Re-logging a param whose key has more than 226 characters: the conflict tag key
    'tracksdk.param_conflict.<key>' is over 250 characters and the store refuses it."""
    key = "p" * 240

    def body(run: Any) -> None:
        run.log_param(key, 1)
        run.log_params({key: 2, "other": "kept"})

    outcome, observed = simple_run(backend, body)
    assert outcome.raised == []
    assert "tracksdk.write_failures" not in observed["tags"]
    assert observed["params"] == {key: "1", "other": "kept"}
    conflict = [v for k, v in observed["tags"].items() if k.startswith(CONFLICT)]
    assert conflict == ["2"]


def test_long_param_logged_again_keeps_the_first_full_value(local: Backend) -> None:
    """The kept (first) param points at params/<key>.txt, but logging a second long value
    overwrote that artifact with the second value: the first full value is lost. A second
    value with the same first 200 characters and length is not even seen as a conflict."""
    first = "a" * 7000
    second = "b" * 7000
    same_head = "a" * 6999 + "z"

    def body(run: Any) -> None:
        run.log_param("cols", first)
        run.log_param("cols", second)
        run.log_param("rows", first)
        run.log_param("rows", same_head)

    _, observed = simple_run(local, body)
    expected = Expected()
    for value in (first, second):
        expected.add(Op("param", "cols", value))
    for value in (first, same_head):
        expected.add(Op("param", "rows", value))
    assert problems(observed, expected) == []


def test_long_params_whose_keys_differ_by_slash_keep_both_values(local: Backend) -> None:
    """'a/b' and 'a_b' both map to the artifact params/a_b.txt: one full value is lost."""

    def body(run: Any) -> None:
        run.log_param("a/b", "s" * 7000)
        run.log_param("a_b", "u" * 7000)

    _, observed = simple_run(local, body)
    expected = Expected()
    expected.add(Op("param", "a/b", "s" * 7000))
    expected.add(Op("param", "a_b", "u" * 7000))
    assert problems(observed, expected) == []


def test_long_value_under_a_long_non_ascii_key_keeps_its_full_value(local: Backend) -> None:
    """params/<key>.txt for a 200-character 'é' key is a 405-byte file name: the artifact
    cannot be written (ENAMETOOLONG), yet the param points to it."""
    key = "é" * 200

    def body(run: Any) -> None:
        run.log_param(key, "v" * 7000)
        run.set_tag(key, "w" * 9000)

    _, observed = simple_run(local, body)
    expected = Expected()
    expected.add(Op("param", key, "v" * 7000))
    expected.add(Op("tag", key, "w" * 9000))
    assert problems(observed, expected) == []


def test_long_value_under_a_key_with_a_leading_space_can_be_read_back(
    backend: Backend,
) -> None:
    """' a' is a valid key, but the artifact params/ a.txt named by the pointer is not
    what the store keeps: the server stores it as params/a.txt, and MLflow's client cannot
    download params/ a.txt from the local store."""

    def body(run: Any) -> None:
        run.log_param(" a", "v" * 7000)
        run.set_tag(" b", "w" * 9000)

    _, observed = simple_run(backend, body)
    expected = Expected()
    expected.add(Op("param", " a", "v" * 7000))
    expected.add(Op("tag", " b", "w" * 9000))
    assert problems(observed, expected) == []


@pytest.mark.server
def test_nul_character_in_values_gets_the_same_verdict_on_both_backends(
    project: Path, mlflow_server: Any
) -> None:
    """sqlite stores 'a\\x00b'; PostgreSQL cannot (HTTP 500 from the server), and the
    sender retries that request for ever: the rest of the run is never sent."""

    def body(run: Any) -> None:
        run.log_metric("before", 1.0)
        run.log_param("p", "a\x00b")
        run.set_tag("t", "c\x00d")
        run.log_metric("after", 2.0)

    views = {}
    for backend in (local_backend(project), server_backend(project, mlflow_server)):
        backend.settings = {**backend.settings, "flush_timeout": 5}
        outcome, observed = simple_run(backend, body)
        assert outcome.raised == [], backend.name
        assert observed["status"] == "FINISHED", backend.name
        assert "tracksdk.write_failures" not in observed["tags"], backend.name
        assert observed["metrics"] == {"before": [(0, False, 1.0)], "after": [(0, False, 2.0)]}
        views[backend.name] = (observed["params"], {k: observed["tags"].get(k) for k in ["t"]})
    assert views["local"] == views["server"]
