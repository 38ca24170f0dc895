"""The champion gate: does a new model version beat the champion, and if so, promote it.

:func:`decide` compares the new version's gate metric with the champion's, read back from
the registry, and moves the ``promote_to`` alias under a file lock (:class:`GateLock`);
:func:`verdict_tags` are the tags that record the decision on the version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracksdk import _warn
from tracksdk._schema import (
    GATE_CHAMPION_VALUE_TAG,
    GATE_CHAMPION_VERSION_TAG,
    GATE_METRIC_TAG,
    GATE_REASON_TAG,
    GATE_VALUE_TAG,
    GATE_VERDICT_TAG,
)

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.registry import Register
    from tracksdk.stores import Registry


@dataclass(frozen=True)
class GateVerdict:
    """What the gate decided, also written as tags on the new version."""

    metric: str
    new: float | None
    champion: float | None
    champion_version: str | None
    promoted: bool
    reason: str


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(value)


def verdict_tags(verdict: GateVerdict) -> dict[str, str]:
    """The ``tracksdk.gate.*`` tags that record ``verdict`` on the new version."""
    return {
        GATE_METRIC_TAG: verdict.metric,
        GATE_VALUE_TAG: _fmt(verdict.new),
        GATE_CHAMPION_VALUE_TAG: _fmt(verdict.champion),
        GATE_CHAMPION_VERSION_TAG: verdict.champion_version or "",
        GATE_VERDICT_TAG: "promoted" if verdict.promoted else "rejected",
        GATE_REASON_TAG: verdict.reason,
    }


def _champion(client: Registry, spec: Register, metric: str) -> tuple[str | None, float | None]:
    """The version at ``promote_to`` and its gate metric, read back from the registry."""
    current = client.version_by_alias(spec.name, spec.promote_to)
    if current is None:
        return None, None
    value = client.run_metrics(current.run_id).get(metric) if current.run_id else None
    return current.version, value


def decide(
    client: Registry,
    spec: Register,
    version: str,
    metrics: Mapping[str, float],
    lock_dir: Path | None,
) -> GateVerdict:
    """Decide whether ``version`` beats the champion; move ``promote_to`` to it if it does.

    The champion is read and the alias moved under :class:`GateLock`, so two decisions on
    one machine do not interleave.
    """
    assert spec.gate is not None
    gate = spec.gate
    new = metrics.get(gate.metric)
    if new is None:
        _warn.warn(
            f"tracksdk: the gate on {spec.name!r} compares {gate.metric!r}, but this run "
            "logged no such metric: the version is not promoted. Log it, or return it."
        )
        return GateVerdict(gate.metric, None, None, None, False, "metric missing in the run")
    with GateLock(client.conn, spec.name, lock_dir):
        # Read the champion right before moving the alias: a concurrent training that
        # finished first is then compared against, not overwritten.
        champion_version, champion = _champion(client, spec, gate.metric)
        if not gate.beats(new, champion):
            reason = f"{new!r} does not beat champion v{champion_version}'s {champion!r}"
            return GateVerdict(gate.metric, new, champion, champion_version, False, reason)
        client.set_alias(spec.name, spec.promote_to, version)
    reason = (
        "no champion yet"
        if champion_version is None
        else f"{new!r} beats champion v{champion_version}'s {champion!r}"
    )
    return GateVerdict(gate.metric, new, champion, champion_version, True, reason)


class GateLock:
    """Serialise gate decisions on one machine (a file lock next to the project).

    MLflow's registry has no compare-and-set, so processes on different machines can
    still race between the read and the write; on one machine (the local store, or
    several jobs of one host), the lock makes exactly one of them win.
    """

    def __init__(self, conn: Connection, name: str, lock_dir: Path | None) -> None:
        import hashlib

        from filelock import FileLock

        folder = lock_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(f"{conn.registry_uri}|{name}".encode()).hexdigest()[:16]
        self._lock = FileLock(str(folder / f"gate-{digest}.lock"), timeout=300)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
