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
before creating it. In both cases the processes race for the marker's next generation
(``.../<key hash>/1``, then ``/2``, ...), so a new run is made by exactly one of them too.

:func:`run_id_of` finds the run a client id names (a nested run's parent, a forked
child's run): created by this process (:data:`server_ids`), or in the store, where a
continued run carries ``tracksdk.part.<client id>`` for each part.

**Parts.** Each process that writes to a run is a *part* of it, named
``<start ms>:<client id>``. The run's ``tracksdk.run_part`` tag names its latest part:
only the latest part sets the run's status, so a part synced late (an offline first
attempt sent after the second) adds its data without ending a run that goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracksdk import _distributed
from tracksdk._schema import (
    CLIENT_RUN_ID_TAG,
    MAX_KEY,
    RESUMED_TAG,
    RUN_KEY_TAG,
    RUN_NAME_TAG,
    RUN_PART_TAG,
    part_tag,
)
from tracksdk.stores.errors import NotFound, PermissionDenied, Rejected, StoreError, Transient

if TYPE_CHECKING:
    from tracksdk._journal.records import Create
    from tracksdk._send_plan import Batch
    from tracksdk.stores import CreatedRun, RunState, Store

# client run id -> MLflow run id, for every run created by this process (nested runs).
server_ids: dict[str, str] = {}

__all__ = [
    "REFUSED",
    "Opened",
    "is_latest",
    "log_batch",
    "open_run",
    "part_name",
    "run_id_of",
    "server_ids",
    "split_params",
]

#: The code of a :class:`Rejected` create that the start turns into a ResumeError.
REFUSED = "TRACKSDK_RESUME"
#: How long a process that lost the race waits for the winner's run to appear.
WAIT_FOR_WINNER = 30.0
#: A marker held longer than this with no run is stale: its holder died before creating it.
STALE_CLAIM_MS = 120_000
#: Runs one key may have had (each deleted in turn) before tracksdk gives up on it.
MAX_GENERATIONS = 1000


CONFLICT_TAG_PREFIX = "tracksdk.param_conflict."  # as Run.log_params names it

# Tags that stay the first part's: the run's name and identity.
_FIRST_PART_TAGS = frozenset({CLIENT_RUN_ID_TAG, RUN_NAME_TAG, RUN_KEY_TAG})


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


def marker(experiment_id: str, key: str, generation: int = 0) -> str:
    """The claim marker's name for ``key`` in an experiment (hashed: any key fits)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    suffix = f"/{generation}" if generation else ""
    return f"tracksdk.run_key/{experiment_id}/{digest}{suffix}"


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
        return _continue(store, state, part, client_id, info)
    key = str(info.key)
    mode = info.resume or "allow"
    found = store.keyed_runs(experiment_id, key)
    if found:
        return _existing(store, found[0], part, client_id, key, mode, info)
    if mode == "must":
        raise _refused(
            f'resume="must": no run of experiment {info.experiment!r} in {where} has key '
            f"{key!r}. Check the key and the experiment, or use resume='allow' to create it"
        )
    # One generation of the marker per run the key has had: when a generation's holder
    # is done (released) and its run is gone (deleted since), or it died before creating
    # the run (stale), the next generation is claimed, atomically again.
    for generation in range(MAX_GENERATIONS):
        name = marker(experiment_id, key, generation)
        claim = store.claim(name)
        if claim.won:
            return _create_held(store, name, create, part)
        stale = claim.created_ms is not None and time.time() * 1000 - claim.created_ms > (
            STALE_CLAIM_MS
        )
        deadline = time.monotonic() + (0 if stale else WAIT_FOR_WINNER)
        released = claim.released
        while True:
            found = store.keyed_runs(experiment_id, key)
            if found:
                return _existing(store, found[0], part, client_id, key, mode, info)
            if released or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
            claim = store.claim(name)
            if claim.won:  # the marker was deleted for good meanwhile (`mlflow gc`)
                return _create_held(store, name, create, part)
            released = claim.released
    raise Transient(f"no run could be made for key {key!r}: {MAX_GENERATIONS} markers held")


def _create_held(store: Store, name: str, create: Callable[[], CreatedRun], part: str) -> Opened:
    """Create the key's run while holding its marker, then release the marker."""
    created = create()
    with contextlib.suppress(StoreError):  # it hides the marker, and says the run exists
        store.release(name)
    return Opened(created, None, part)


def _existing(
    store: Store, state: RunState, part: str, client_id: str, key: str, mode: str, info: Create
) -> Opened:
    """Continue the key's run, unless ``resume="never"`` (and it is not this part's own)."""
    if mode == "never" and state.tags.get(CLIENT_RUN_ID_TAG) != client_id:
        raise _refused(
            f'resume="never": run {state.run.run_id} of experiment {info.experiment!r} '
            f"already has key {key!r}. Use another key, or resume='allow' to continue it"
        )
    return _continue(store, state, part, client_id, info)


def _continue(store: Store, state: RunState, part: str, client_id: str, info: Create) -> Opened:
    """Make this part one of the run's: the latest one (RUNNING again) unless a later exists.

    The latest part's creation tags (the user's ``tags=``, its source) are set on the run,
    as a new run would have them; the run's name and identity tags stay the first part's.
    A rank of a shared distributed run joins the run of its own attempt (one of the ranks
    created it) without continuing it: it is only named as one of its parts.
    """
    tags = info.tags
    run_id = state.run.run_id
    shared = _distributed.parse_shared(info.shared)
    if shared is not None and state.tags.get(_distributed.ATTEMPT_TAG) == shared[2]:
        if state.tags.get(CLIENT_RUN_ID_TAG) != client_id:
            store.log_batch(run_id, [], {}, {part_tag(client_id): client_id})
        return Opened(state.run, state, part, shared[0] == 0)
    current = state.tags.get(RUN_PART_TAG) or part_name(
        state.start_ms, state.tags.get(CLIENT_RUN_ID_TAG, "")
    )
    latest = part >= current
    if state.tags.get(CLIENT_RUN_ID_TAG) == client_id:
        # This part created the run in an attempt whose answer was lost.
        return Opened(state.run, None, part, latest)
    batch = {part_tag(client_id): client_id}
    if latest and part != current:
        batch.update({k: v for k, v in tags.items() if k not in _FIRST_PART_TAGS})
        batch[RUN_PART_TAG] = part
        batch[RESUMED_TAG] = str(_count(state.tags.get(RESUMED_TAG)) + 1)
    store.log_batch(run_id, [], {}, batch)
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


def split_params(
    params: Mapping[str, str], tags: Mapping[str, str], earlier: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """A continued run's params less those its earlier parts logged.

    The same value again is dropped; a different one becomes tag
    ``tracksdk.param_conflict.<key>`` (the params policy, docs/configuration.md): MLflow
    refuses a whole batch for one changed param, and the batch's metrics with it. The
    run's own checks do this at the start when the earlier params are known then; this
    catches those learnt later (the store was down at the start).
    """
    kept: dict[str, str] = {}
    extra = dict(tags)
    for key, value in params.items():
        first = earlier.get(key)
        if first is None:
            kept[key] = value
        elif first != value and len(CONFLICT_TAG_PREFIX + key) <= MAX_KEY:
            extra.setdefault(CONFLICT_TAG_PREFIX + key, value)
    return kept, extra


def log_batch(
    transport: Store,
    run_id: str,
    batch: Batch,
    earlier: Mapping[str, str] | None,
) -> None:
    """Send one batch, its params less those the run already has (``earlier``).

    Several processes of one run (racing resumes of a key, a shared run's ranks) may log
    the same params at the same moment: MLflow's server checks a run's params, then
    inserts, so the second insert fails ("duplicate key ... param_pk") and the whole batch
    is refused, metrics included. On such a refusal the run's params are read back and
    the batch is sent once more without those it already holds.
    """
    params, tags = batch.params, batch.tags
    if earlier is not None and params:
        params, tags = split_params(params, tags, earlier)
    try:
        transport.log_batch(run_id, batch.metrics, params, tags)
    except Rejected:
        if not params:
            raise
        current = transport.get_run(run_id).params
        if not params.keys() & current.keys():
            raise  # refused for another reason
        params, tags = split_params(params, tags, current)
        transport.log_batch(run_id, batch.metrics, params, tags)


def run_id_of(
    transport: Store, experiment_id: str, client_id: str, known: str | None, missing: str
) -> str:
    """MLflow's id of the run with ``client_id``: ``known``, created here, or in the store.

    Raises:
        Transient: The store has no such run yet (``missing`` says which); it may soon.
    """
    run_id = known or server_ids.get(client_id)
    if run_id is None:
        found = transport.find_run(experiment_id, client_id)
        if found is None:
            raise Transient(missing)
        run_id = found.run_id
    return str(run_id)
