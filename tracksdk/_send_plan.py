"""How the sender groups journal records into store requests.

Consecutive metrics, params and tags are merged into ``log_batch`` requests within
MLflow's limits (:mod:`tracksdk._schema`); every other record is a request of its own.
Each request carries the journal position to acknowledge once the store has it: a batch
that stops in the middle of a record carries none, so a resend after a crash starts at
that record again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tracksdk._journal.layout import Position
from tracksdk._journal.reader import Entry
from tracksdk._journal.records import Create, MetricPoint, Metrics, Params, Record, Tags
from tracksdk._schema import (
    BATCH_MAX_BYTES,
    BATCH_MAX_ENTITIES,
    BATCH_MAX_METRICS,
    BATCH_MAX_PARAMS,
    BATCH_MAX_TAGS,
)


@dataclass(slots=True)
class Batch:
    """Consecutive metrics, params and tags merged into one ``log_batch`` request."""

    end: Position | None = None  # ack up to here once done; None: more of a record
    metrics: list[MetricPoint] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def records(self) -> list[Record]:
        """The journal records this request was built from (to keep a refused one)."""
        out: list[Record] = []
        if self.params:
            out.append(Params(self.params))
        if self.tags:
            out.append(Tags(self.tags))
        if self.metrics:
            out.append(Metrics(self.metrics))
        return out

    def describe(self) -> str:
        """The request in words, for ``rejected.jsonl``."""
        return (
            f"log_batch of {len(self.metrics)} metrics, {len(self.params)} params, "
            f"{len(self.tags)} tags"
        )


@dataclass(frozen=True, slots=True)
class Single:
    """One record sent on its own: a create, an upload, an input, a registration, an end."""

    record: Record
    end: Position | None

    def records(self) -> list[Record]:
        """The journal record this request was built from (to keep a refused one)."""
        return [self.record]

    def describe(self) -> str:
        """The request in words, for ``rejected.jsonl``: the record, cut short."""
        return json.dumps(self.record.as_json())[:300]


Op = Batch | Single


def plan(entries: list[Entry]) -> Iterator[Op]:
    """Group records into requests: batches of m/p/t within limits, the rest one by one."""
    batch: Batch | None = None
    size = 0

    def full(extra_bytes: int, metrics: int = 0, params: int = 0, tags: int = 0) -> bool:
        assert batch is not None
        return (
            len(batch.metrics) + metrics > BATCH_MAX_METRICS
            or len(batch.params) + params > BATCH_MAX_PARAMS
            or len(batch.tags) + tags > BATCH_MAX_TAGS
            or len(batch.metrics) + len(batch.params) + len(batch.tags) + metrics + params + tags
            > BATCH_MAX_ENTITIES
            or size + extra_bytes > BATCH_MAX_BYTES
        )

    for entry in entries:
        record = entry.record
        if not isinstance(record, Metrics | Params | Tags):
            if batch is not None:
                yield batch
                batch = None
            yield Single(record, entry.end)
            continue
        m, p = isinstance(record, Metrics), isinstance(record, Params)
        t = not (m or p)
        items: Iterable[Any] = (
            record.points if isinstance(record, Metrics) else record.values.items()
        )
        for item in items:
            item_bytes = len(str(item)) + 16
            if batch is None:
                batch, size = Batch(), 0
            elif full(item_bytes, m, p, t):
                yield batch
                batch, size = Batch(), 0
            if m:
                batch.metrics.append(item)
            elif p:
                batch.params[item[0]] = item[1]
            else:
                batch.tags[item[0]] = item[1]
            size += item_bytes
        if batch is None:  # an empty record
            batch, size = Batch(), 0
        batch.end = entry.end
    if batch is not None:
        yield batch


def creates(op: Op) -> bool:
    """Whether ``op`` creates the run (never set aside: its tags and parent live in it)."""
    return isinstance(op, Single) and isinstance(op.record, Create)
