"""Journal records: one frozen dataclass per kind, and their bytes in a segment.

A record's payload is a JSON array whose first element is its kind, one letter. These
bytes are format 1 of the journal, on users' disks: a kind's bytes never change, so that
journals written by earlier releases are read back as they were written.

- ``["c", {...}]`` :class:`Create`: create the run (experiment, run name, tags, parent,
  start time); a forked child's journal attaches to its parent's run instead
- ``["m", [[key, value, timestamp_ms, step], ...]]`` :class:`Metrics`: metric points
- ``["p", {key: value}]`` :class:`Params`; ``["t", {key: value}]`` :class:`Tags`
- ``["f", "<path under files/>", "<artifact path or null>"]`` :class:`File`: an upload
- ``["i", {dataset}, "<context or null>"]`` :class:`Input`: a dataset input
- ``["r", {register spec}, {metrics}]`` :class:`Register`: register the logged model (when
  it could not be registered while the run was live)
- ``["o", "<stream>", "<text>"]`` :class:`Output`: console output of the run, whole
  lines, secrets redacted (``logs/console.log``, docs/console.md)
- ``["e", "<status>", end_time_ms, {"tags": {...}}]`` :class:`End`: end the run

:func:`decode` checks a payload against its kind, so the sender never meets a record it
cannot use; a kind it does not know (written by a newer tracksdk) comes back as
:class:`Unknown`, which the sender skips. A new kind gets a dataclass here, a letter no
other kind uses, an entry in ``_PARSERS``, a method on the writer that appends it
(:mod:`tracksdk._writer`) and the request that sends it (:mod:`tracksdk._delivery`).
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MetricPoint = tuple[str, float, int, int]  # key, value, timestamp in ms, step


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One compact encoder that keeps non-ASCII text as UTF-8, built once: json.dumps with
# options builds a JSONEncoder per call (about 4 µs), and JSONEncoder.encode builds its C
# encoder per call (about 1 µs of an append's 4). It has no circular-reference check: a
# record is a tree tracksdk builds, and a circle ends as a RecursionError (see encode).
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
if _make_encoder is not None:
    _chunks: Callable[[Any, int], Iterable[str]] = _make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
else:  # a Python without json's C accelerator: the same bytes, more slowly
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def _chunks(value: Any, level: int) -> Iterable[str]:
        return _encoder.iterencode(value, _one_shot=True)


@dataclass(frozen=True, slots=True)
class Create:
    """Create the run; or, with ``attach``, add a forked child's part to its parent's run.

    Attributes:
        experiment: The experiment's name.
        start: The run's start time, in milliseconds since the epoch.
        run_name: The run's name, when the user gave one.
        tags: The run's tags at creation (provenance, user tags).
        parent: The parent run's client id, for a nested run.
        parent_run_id: The parent run's MLflow id, when it was known at the start.
        attach: In a forked child's journal: the client id of the run it adds to.
        run_id: In a forked child's journal: that run's MLflow id, when it was known.
        key: ``tracked(key=...)``: the experiment's run with it is continued, or created.
        resume: With a key: ``allow``, ``must`` or ``never`` (docs/resume.md).
        resume_id: The MLflow id of a run to continue (``tracked(run_id=...)``).
        shared: A rank's ``"<rank>/<world size>/<attempt>"`` in a shared distributed run.
    """

    experiment: str
    start: float
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    parent: str | None = None
    parent_run_id: str | None = None
    attach: str | None = None
    run_id: str | None = None
    key: str | None = None
    resume: str | None = None
    resume_id: str | None = None
    shared: str | None = None

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        if self.attach is not None:
            child = {"experiment": self.experiment, "attach": self.attach}
            return ("c", {**child, "run_id": self.run_id, "start": self.start})
        body: dict[str, Any] = {
            "experiment": self.experiment,
            "run_name": self.run_name,
            "tags": self.tags,
            "parent": self.parent,
            "parent_run_id": self.parent_run_id,
            "start": self.start,
        }
        # Only when set: a run without them has the bytes earlier releases wrote.
        for name in ("key", "resume", "resume_id", "shared"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return ("c", body)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Metric points: ``(key, value, timestamp in ms, step)`` each."""

    points: Sequence[MetricPoint]

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("m", self.points)


@dataclass(frozen=True, slots=True)
class Params:
    """Params, ``{key: value}``."""

    values: dict[str, str]

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("p", self.values)


@dataclass(frozen=True, slots=True)
class Tags:
    """Tags, ``{key: value}``."""

    values: dict[str, str]

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("t", self.values)


@dataclass(frozen=True, slots=True)
class File:
    """Upload a spooled file or folder.

    Attributes:
        path: Where the copy is, relative to the journal's ``files/`` folder (or an
            absolute path, when it was spooled outside the journal on a full disk).
        artifact_path: The folder in the run's artifacts, None for the root.
    """

    path: str
    artifact_path: str | None

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("f", self.path, self.artifact_path)


@dataclass(frozen=True, slots=True)
class Input:
    """A dataset input: its description (digest, schema, profile) and context."""

    dataset: dict[str, Any]
    context: str | None

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("i", self.dataset, self.context)


@dataclass(frozen=True, slots=True)
class Register:
    """Register the run's logged model once its data is in the store.

    Attributes:
        spec: The registration (:meth:`tracksdk.registry.Register.from_dict` reads it).
        metrics: The run's latest metrics, for the champion gate.
    """

    spec: dict[str, Any]
    metrics: dict[str, float]

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("r", self.spec, self.metrics)


@dataclass(frozen=True, slots=True)
class Output:
    r"""Console output the run printed: whole lines, secrets already redacted.

    Attributes:
        stream: ``stdout``, ``stderr``, or ``console`` (both, when they share a terminal).
        text: The lines, as they were printed (progress bars' ``\r`` states collapsed).
    """

    stream: str
    text: str

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("o", self.stream, self.text)


@dataclass(frozen=True, slots=True)
class End:
    """End the run.

    Attributes:
        status: MLflow's run status (``FINISHED``, ``FAILED``, ``KILLED``).
        end_ms: The end time, in milliseconds since the epoch.
        tags: Tags set just before the end (counts of what could not be kept).
    """

    status: str
    end_ms: float
    tags: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it is written in the journal."""
        return ("e", self.status, self.end_ms, {"tags": self.tags})


@dataclass(frozen=True, slots=True)
class Unknown:
    """A record of a kind this tracksdk does not know (a newer one wrote it): skipped."""

    kind: str
    rest: tuple[Any, ...]

    def as_json(self) -> tuple[Any, ...]:
        """The record as JSON values, as it was read."""
        return (self.kind, *self.rest)


Record = Create | Metrics | Params | Tags | File | Input | Register | Output | End | Unknown


def encode(record: Record) -> bytes:
    """A record's payload: compact JSON, UTF-8.

    Raises:
        TypeError: A value is not JSON (a dataset description with an odd type).
        ValueError: A string cannot be encoded (a lone surrogate), or a value is nested
            too deep (or holds itself).
    """
    try:
        return "".join(_chunks(record.as_json(), 0)).encode()
    except RecursionError:
        raise ValueError("a value is nested too deep, or holds itself") from None


def decode(payload: bytes) -> Record | None:
    """A payload as a record, or None when it is not one (never raises)."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return from_json(value)


def from_json(value: Any) -> Record | None:
    """A record from its JSON values (a decoded payload, a line of ``rejected.jsonl``).

    None when ``value`` is not a record of its kind: a field is missing or of the wrong
    type. A kind this tracksdk does not know is an :class:`Unknown` record.
    """
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        return None
    parse = _PARSERS.get(value[0])
    if parse is None:
        return Unknown(value[0], tuple(value[1:]))
    try:
        return parse(value)
    except _NotARecord:
        return None


# -- checking a record's fields ------------------------------------------------------
#
# The checks are those the sender's use of each field needs, no more: a field the sender
# turns into text (a param's value) is turned into text here.


class _NotARecord(Exception):
    pass


def _field(value: list[Any], index: int) -> Any:
    """Element ``index``, or None when the record is shorter."""
    return value[index] if len(value) > index else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _NotARecord
    return value


def _text_dict(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _NotARecord
    return value


def _optional_id(value: Any) -> str | None:
    """An id that a falsy value leaves out (the sender has always read it so)."""
    return str(value) if value else None


def _number(value: Any) -> float:
    if not _is_number(value):
        raise _NotARecord
    number: float = value
    return number


def _create(value: list[Any]) -> Create:
    body = _dict(_field(value, 1))
    experiment = body.get("experiment")
    if not isinstance(experiment, str):
        raise _NotARecord
    return Create(
        experiment=experiment,
        start=_number(body.get("start")),
        run_name=_optional_text(body.get("run_name")),
        tags=_text_dict(body.get("tags", {})),
        parent=_optional_text(body.get("parent")),
        parent_run_id=_optional_text(body.get("parent_run_id")),
        attach=_optional_id(body.get("attach")),
        run_id=_optional_id(body.get("run_id")),
        key=_optional_text(body.get("key")),
        resume=_optional_text(body.get("resume")),
        resume_id=_optional_id(body.get("resume_id")),
        shared=_optional_text(body.get("shared")),
    )


def _metrics(value: list[Any]) -> Metrics:
    body = _field(value, 1)
    if not isinstance(body, list):
        raise _NotARecord
    points: list[MetricPoint] = []
    for point in body:
        if not isinstance(point, list) or len(point) != 4:
            raise _NotARecord
        key, number, timestamp, step = point
        ok = isinstance(key, str) and _is_number(number) and _is_int(timestamp)
        if not (ok and _is_int(step)):
            raise _NotARecord
        points.append((key, number, timestamp, step))
    return Metrics(points)


def _params(value: list[Any]) -> Params:
    return Params(_text_dict(_field(value, 1)))


def _tags(value: list[Any]) -> Tags:
    return Tags(_text_dict(_field(value, 1)))


def _file(value: list[Any]) -> File:
    path = _field(value, 1)
    if not isinstance(path, str):
        raise _NotARecord
    return File(path, _optional_text(_field(value, 2)))


def _input(value: list[Any]) -> Input:
    return Input(_dict(_field(value, 1)), _optional_text(_field(value, 2)))


def _register(value: list[Any]) -> Register:
    if len(value) < 3:
        raise _NotARecord
    metrics = _dict(value[2])
    return Register(_dict(value[1]), {str(k): _number(v) for k, v in metrics.items()})


def _output(value: list[Any]) -> Output:
    stream, text = _field(value, 1), _field(value, 2)
    if not isinstance(stream, str) or not isinstance(text, str):
        raise _NotARecord
    return Output(stream, text)


def _end(value: list[Any]) -> End:
    status = _field(value, 1)
    if not isinstance(status, str) or len(value) < 3:
        raise _NotARecord
    extra = _dict(value[3] if len(value) > 3 else {})
    return End(status, _number(value[2]), _text_dict(extra.get("tags", {})))


_PARSERS: dict[str, Callable[[list[Any]], Record]] = {
    "c": _create,
    "m": _metrics,
    "p": _params,
    "t": _tags,
    "f": _file,
    "i": _input,
    "r": _register,
    "o": _output,
    "e": _end,
}
