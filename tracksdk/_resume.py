"""Continuing a run: the run a key or an id names, found in the store (docs/resume.md).

``tracked(key="...")`` continues the experiment's run tagged ``tracksdk.run_key = key``,
or creates it; ``tracked(run_id="...")`` continues a run by MLflow's id. Both are resolved
by the journal's sender when it sends the run's create record (:mod:`tracksdk._delivery`),
so a run started offline or while the store was down is resolved when it is synced, and
both parts of it end up as one run.

**One run per key, however processes race.** The store's search finds a key's run when it
exists. When it does not, the processes that want to create it race for a marker whose
creation MLflow makes atomic on every store: an experiment named after the key
(:meth:`~tracksdk.stores.Store.claim`). Exactly one wins and creates the run, then puts
the marker in the trash (hidden, and still held); the others wait for the run to appear
and continue it. A marker in the trash with no run means the key's run was deleted since;
a marker held longer than :data:`STALE_CLAIM_MS` with no run means its holder died
before creating it. In both cases every process creates a run and the oldest run with
the key wins; the others move theirs to the trash.

**Parts.** Each process that writes to a run is a *part* of it, named
``<start ms>:<client id>``. The run's ``tracksdk.run_part`` tag names its latest part:
only the latest part sets the run's status, so a part synced late (an offline first
attempt sent after the second) adds its data without ending a run that goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracksdk._schema import CLIENT_RUN_ID_TAG, RESUMED_TAG, RUN_PART_TAG, part_tag
from tracksdk.stores.errors import NotFound, PermissionDenied, Rejected, StoreError

if TYPE_CHECKING:
    from tracksdk._journal.records import Create
    from tracksdk.stores import CreatedRun, RunState, Store

__all__ = ["REFUSED", "Opened", "is_latest", "open_run", "part_name"]

#: The code of a :class:`Rejected` create that the start turns into a ResumeError.
REFUSED = "TRACKSDK_RESUME"
#: How long a process that lost the race waits for the winner's run to appear.
WAIT_FOR_WINNER = 30.0
#: A marker older than this with no run is stale (its holder died, or its run was deleted).
STALE_CLAIM_MS = 120_000


@dataclass(frozen=True)
class Opened:
    """The run a create record opened.

    Attributes:
        created: The run.
        state: The run as it was before this part continued it; None when this part
            created it.
        part: This part's name (``<start ms>:<client id>``).
        latest: This part is the run's latest: its end sets the run's status.
    """

    created: CreatedRun
    state: RunState | None
    part: str
    latest: bool = True


def part_name(start_ms: float, client_id: str) -> str:
    """A part's name: its start, zero-padded so that names sort in time, then its id."""
    return f"{int(start_ms):013d}:{client_id}"


def marker(experiment_id: str, key: str) -> str:
    """The claim marker's name for ``key`` in an experiment (hashed: any key fits)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"tracksdk.run_key/{experiment_id}/{digest}"


def _refused(message: str) -> Rejected:
    return Rejected(message, code=REFUSED, subject="run")


def open_run(
    store: Store,
    experiment_id: str,
    info: Create,
    client_id: str,
    create: Callable[[], CreatedRun],
) -> Opened:
    """Continue the run ``info`` names by key or id, or create it with ``create``.

    Raises:
        Rejected: With code :data:`REFUSED` when the run cannot be continued as asked
            (``resume="must"`` and no run, ``"never"`` and one, an unknown id).
        StoreError: The store failed; the sender tries again.
    """
    part = part_name(info.start, client_id)
    where = store.conn.display_uri
    if info.resume_id:
        try:
            state = store.get_run(info.resume_id)
        except (NotFound, PermissionDenied) as exc:
            # A server with MLflow's basic auth answers 403 for a run that does not exist,
            # so as not to tell which ids do: the two cannot be told apart.
            hidden = " or you may not read it" if isinstance(exc, PermissionDenied) else ""
            raise _refused(
                f"there is no run with id {info.resume_id} in {where}{hidden}: check the "
                "id (`tracksdk runs` lists them) and the backend (`tracksdk doctor`)"
            ) from None
        if state.lifecycle_stage == "deleted":
            raise _refused(
                f"run {info.resume_id} is in the trash: restore it in the MLflow UI (or "
                f"`mlflow runs restore --run-id {info.resume_id}`) to continue it"
            )
        return _continue(store, state, part, client_id)
    key = str(info.key)
    mode = info.resume or "allow"
    found = store.keyed_runs(experiment_id, key)
    if found:
        return _existing(store, found[0], part, client_id, key, mode, info.experiment)
    if mode == "must":
        raise _refused(
            f'resume="must": no run of experiment {info.experiment!r} in {where} has key '
            f"{key!r}. Check the key and the experiment, or use resume='allow' to create it"
        )
    name = marker(experiment_id, key)
    claim = store.claim(name)
    if claim.won:
        return _create_held(store, name, create, part)
    # The holder releases the marker once its run exists: a released marker and no run
    # (searched after) mean the key's run was deleted since. One that is old and held
    # means its holder died before creating the run.
    stale = claim.created_ms is not None and time.time() * 1000 - claim.created_ms > (
        STALE_CLAIM_MS
    )
    deadline = time.monotonic() + (0 if stale else WAIT_FOR_WINNER)
    released = claim.released
    while True:
        found = store.keyed_runs(experiment_id, key)
        if found:
            return _existing(store, found[0], part, client_id, key, mode, info.experiment)
        if released or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        claim = store.claim(name)
        if claim.won:  # the marker was deleted for good meanwhile (`mlflow gc`)
            return _create_held(store, name, create, part)
        released = claim.released
    # The marker's holder died before creating the run, or the key's run was deleted
    # since: create one, and the oldest run with the key wins.
    created = create()
    found = store.keyed_runs(experiment_id, key)
    if found and found[0].run.run_id != created.run_id:
        with contextlib.suppress(StoreError):
            store.delete_run(created.run_id)
        return _existing(store, found[0], part, client_id, key, mode, info.experiment)
    return Opened(created, None, part)


def _create_held(store: Store, name: str, create: Callable[[], CreatedRun], part: str) -> Opened:
    """Create the key's run while holding its marker, then release the marker."""
    created = create()
    with contextlib.suppress(StoreError):  # cosmetic: it hides the marker
        store.release(name)
    return Opened(created, None, part)


def _existing(
    store: Store, state: RunState, part: str, client_id: str, key: str, mode: str, name: str
) -> Opened:
    """Continue the key's run, unless ``resume="never"`` (and it is not this part's own)."""
    if mode == "never" and state.tags.get(CLIENT_RUN_ID_TAG) != client_id:
        raise _refused(
            f'resume="never": run {state.run.run_id} of experiment {name!r} already has key '
            f"{key!r}. Use another key, or resume='allow' to continue it"
        )
    return _continue(store, state, part, client_id)


def _continue(store: Store, state: RunState, part: str, client_id: str) -> Opened:
    """Make this part one of the run's: the latest one (RUNNING again) unless a later exists."""
    run_id = state.run.run_id
    if state.tags.get(CLIENT_RUN_ID_TAG) == client_id:
        # This part created the run in an attempt whose answer was lost.
        return Opened(state.run, None, part)
    current = state.tags.get(RUN_PART_TAG) or part_name(
        state.start_ms, state.tags.get(CLIENT_RUN_ID_TAG, "")
    )
    latest = part >= current
    tags = {part_tag(client_id): client_id}
    if latest and part != current:
        tags[RUN_PART_TAG] = part
        tags[RESUMED_TAG] = str(_count(state.tags.get(RESUMED_TAG)) + 1)
    store.log_batch(run_id, [], {}, tags)
    if latest and state.status != "RUNNING":
        store.set_running(run_id)
    return Opened(state.run, state, part, latest)


def _count(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def is_latest(store: Store, run_id: str, part: str) -> bool:
    """Whether ``part`` is still the run's latest (a later part would set the status)."""
    try:
        state = store.get_run(run_id)
    except NotFound:
        return True  # the end then meets the missing run, as any request would
    return state.tags.get(RUN_PART_TAG, part) <= part
