"""The returned model: logged, registered, and promoted through a champion gate.

A tracked function may return a model, ``(model, metrics)``, or a :class:`Result`. The
plugin owning the model saves it (signature, input example, pinned requirements) and
tracksdk uploads it to the run as ``model/``. With ``register=`` the model becomes a new
version in the Model Registry and gets an alias; with a :class:`Gate` the ``champion``
alias moves to it only when its metric beats the current champion's.

The seed tutorial's stages map to aliases: Staging is ``challenger``, Production is
``champion`` (MLflow deprecated stages in 2.9; aliases replace them).

This module holds what users write (:class:`Result`, :class:`Register`, :class:`Gate`),
registration and the hand-made alias move; the gate's decision is :mod:`tracksdk._gate`'s.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tracksdk._gate import GateLock, GateVerdict, decide, verdict_tags
from tracksdk.exceptions import ConfigError, TrackingError

if TYPE_CHECKING:
    from tracksdk.backends import Connection
    from tracksdk.stores import Registry

__all__ = ["AliasMove", "Gate", "GateVerdict", "Register", "Result", "set_alias"]

#: Why an alias moved when ``tracksdk models --set-alias`` was given no ``--reason``.
SET_BY_HAND = "set by hand"


@dataclass(frozen=True)
class Result:
    """What a tracked function may return to log a model with metrics.

    Attributes:
        model: The trained model; its framework's plugin logs it.
        metrics: Metrics to log with it (also used by a registration gate).
        input_example: A few rows of input, for the signature and the example; default:
            the first rows of the call's first 2-D argument (a DataFrame or array).
    """

    model: Any
    metrics: Mapping[str, float] = field(default_factory=dict)
    input_example: Any = None


@dataclass(frozen=True)
class Gate:
    """Promote a new version only when ``metric`` beats the champion's.

    Attributes:
        metric: The metric compared, as logged in the run (e.g. ``"val_auc"``).
        mode: ``"max"`` when higher is better, ``"min"`` when lower is.
        min_delta: How much better it must be (absolute).
    """

    metric: str
    mode: Literal["max", "min"] = "max"
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ConfigError(f"Gate mode must be 'max' or 'min', not {self.mode!r}.")
        if self.min_delta < 0:
            raise ConfigError(f"Gate min_delta must be >= 0, not {self.min_delta}.")

    def beats(self, new: float, old: float | None) -> bool:
        """Whether ``new`` is better than ``old`` by at least ``min_delta``."""
        if math.isnan(new):
            return False
        if old is None or math.isnan(old):
            return True
        if self.mode == "max":
            return new > old + self.min_delta
        return new < old - self.min_delta


@dataclass(frozen=True)
class Register:
    """Register the returned model as a new version of ``name``.

    Attributes:
        name: The registered model's name.
        alias: Alias set on every new version (Staging in the old stage names).
        gate: When given, ``promote_to`` moves to the new version only if it wins.
            Without a gate, no promotion happens.
        promote_to: The alias a winning version gets (Production in the old stage names).
    """

    name: str
    alias: str | None = "challenger"
    gate: Gate | None = None
    promote_to: str = "champion"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, kept in the journal when registration waits for a sync."""
        gate = self.gate
        return {
            "name": self.name,
            "alias": self.alias,
            "promote_to": self.promote_to,
            "gate": None
            if gate is None
            else {"metric": gate.metric, "mode": gate.mode, "min_delta": gate.min_delta},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Register:
        """The inverse of :meth:`to_dict`."""
        gate = data.get("gate")
        return cls(
            name=str(data["name"]),
            alias=data.get("alias"),
            promote_to=str(data.get("promote_to", "champion")),
            gate=None
            if not gate
            else Gate(
                str(gate["metric"]), gate.get("mode", "max"), float(gate.get("min_delta", 0))
            ),
        )


def input_sample(value: Any, rows: int = 5) -> Any:
    """The first ``rows`` rows of a DataFrame or 2-D array, else None."""
    shape = getattr(value, "shape", None)
    if shape is None or callable(shape) or len(shape) != 2:
        return None
    if hasattr(value, "iloc"):
        return value.iloc[:rows]
    try:
        return value[:rows]
    except Exception:
        return None


def register_version(
    conn: Connection,
    run_id: str,
    model_uri: str,
    spec: Register,
    metrics: Mapping[str, float],
    lock_dir: Path | None,
) -> tuple[str, GateVerdict | None]:
    """Create a model version, set its alias, and run the gate.

    Returns:
        The new version number and the gate's verdict (None without a gate).
    """
    from tracksdk.stores import open_registry

    client = open_registry(conn)
    with contextlib.closing(client), _failed(f"Registering model {spec.name!r}"):
        client.ensure_registered_model(spec.name)
        version = client.create_model_version(spec.name, model_uri, run_id).version
        _wait_ready(client, spec.name, version)
        if spec.alias:
            client.set_alias(spec.name, spec.alias, version)
        if spec.gate is None:
            return version, None
        verdict = decide(client, spec, version, metrics, lock_dir)
        if verdict.promoted:
            _write_alias_audit(
                client,
                spec.name,
                version,
                spec.promote_to,
                previous=verdict.champion_version,
                reason=verdict.reason,
                via="gate",
            )
        for key, value in verdict_tags(verdict).items():
            client.set_version_tag(spec.name, version, key, value)
    return version, verdict


@dataclass(frozen=True)
class AliasMove:
    """An alias moved by :func:`set_alias`.

    Attributes:
        name: The registered model.
        alias: The alias moved.
        version: The version it points at now.
        previous: The version it pointed at before, or None when it was not set.
        reason: Why, as written in the audit tags.
    """

    name: str
    alias: str
    version: str
    previous: str | None
    reason: str


def register_journaled(
    conn: Connection, run_id: str, spec: Mapping[str, Any], metrics: Mapping[str, float]
) -> None:
    """Register a run's logged model from a journal's register record (sync, sender).

    Raises:
        StoreError: The registry's failure, classified for the sender's retry policy.
    """
    from tracksdk.settings import find_project_root
    from tracksdk.stores._client import classify

    lock_dir = find_project_root() / ".tracksdk"
    try:
        register_version(
            conn, run_id, f"runs:/{run_id}/model", Register.from_dict(spec), dict(metrics), lock_dir
        )
    except TrackingError as exc:
        raise classify(conn, exc.__cause__ or exc, "Registering") from None


def alias_audit_tags(
    alias: str, *, previous: str | None, reason: str, via: str, when: float | None = None
) -> dict[str, str]:
    """The audit tags written on the version an alias moves to: who, when, why, from where.

    Written by the champion gate when it promotes and by ``tracksdk models --set-alias``,
    under ``tracksdk.alias.<alias>.*`` (docs/registry.md). They record the latest move of
    that alias to that version.
    """
    import getpass
    from datetime import UTC, datetime

    try:
        who = getpass.getuser()
    except Exception:  # no user name in this environment (a container without one)
        who = "unknown"
    stamp = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    prefix = f"tracksdk.alias.{alias}."
    return {
        prefix + "set_by": who,
        prefix + "set_at": stamp.isoformat(timespec="seconds"),
        prefix + "reason": reason,
        prefix + "previous_version": previous or "",
        prefix + "via": via,
    }


def _write_alias_audit(
    client: Registry,
    name: str,
    version: str,
    alias: str,
    *,
    previous: str | None,
    reason: str,
    via: str,
) -> None:
    for key, value in alias_audit_tags(alias, previous=previous, reason=reason, via=via).items():
        client.set_version_tag(name, version, key, value)


def set_alias(
    conn: Connection, name: str, alias: str, version: str, reason: str, lock_dir: Path | None
) -> AliasMove:
    """Point ``alias`` of model ``name`` at ``version`` by hand, with the audit tags.

    The move takes the champion gate's lock, so it does not interleave with a gate
    deciding on the same model on this machine.

    Raises:
        ConfigError: No such registered model, or no such version (the message lists
            the versions), or the server has no model registry.
        TrackingError: The registry could not be reached or refused the change.
    """
    from tracksdk import stores

    if not stores.capabilities(conn).registry:
        raise ConfigError(
            f"{conn.tracking_uri} has no model registry (it answers 404), so there are no "
            "aliases to move. Load or serve models from their runs (runs:/<run_id>/model), "
            "or use a server with a registry."
        )
    client = stores.open_registry(conn)
    action = f"Setting alias {alias!r} of model {name!r}"
    with contextlib.closing(client), _failed(action):
        problem = _missing(client, conn, name, version)
    if problem:
        raise ConfigError(problem)
    with contextlib.closing(stores.open_registry(conn)) as client, _failed(action):
        with GateLock(conn, name, lock_dir):
            current = client.version_by_alias(name, alias)
            previous = current.version if current is not None else None
            client.set_alias(name, alias, version)
        _write_alias_audit(
            client, name, version, alias, previous=previous, reason=reason, via="hand"
        )
    return AliasMove(name, alias, version, previous, reason)


def _missing(client: Registry, conn: Connection, name: str, version: str) -> str | None:
    """What is wrong with ``name`` version ``version``, or None when both exist."""
    if not client.has_registered_model(name):
        return (
            f"There is no registered model {name!r} on {conn.tracking_uri}. Check the name "
            "(it is case-sensitive); a tracked function registers one with register=."
        )
    versions = sorted(int(v.version) for v in client.model_versions(name) if v.version.isdigit())
    if version.isdigit() and int(version) in versions:
        return None
    listed = ", ".join(map(str, versions)) or "none"
    return (
        f"Model {name!r} has no version {version}; its versions: {listed}. "
        f"`tracksdk models {name}` lists them with their aliases."
    )


def _wait_ready(client: Registry, name: str, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_model_version(name, version).status
        if status != "PENDING_REGISTRATION":
            return
        time.sleep(0.2)


@contextlib.contextmanager
def _failed(action: str) -> Iterator[None]:
    """Say which registry step failed; the store's typed failure is kept as the cause.

    A :class:`~tracksdk.stores.errors.StoreError` passes through unchanged, so the
    journal's sender still decides on its kind (retry, stop, set aside).
    """
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:  # a bug or an unexpected answer: reported, never raised raw
        from tracksdk.stores.errors import describe

        raise TrackingError(f"{action} failed: {describe(exc)}") from exc
