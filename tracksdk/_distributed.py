"""Multi-process jobs: which launcher started this process, its rank, and the job's run.

torchrun (and torch.distributed's other launchers), SLURM's ``srun`` and MPI's
``mpirun`` start one process per rank and tell each its rank through environment
variables. :func:`detect` reads them. ``TRACKSDK_DISTRIBUTED__MODE`` (or
``tracked(distributed=...)``) then decides what the ranks track (docs/distributed.md):

- ``rank0`` (the default): rank 0's run only; the other ranks get the untracked run.
- ``shared``: one run for the whole job, found by every rank through a run key derived
  from the launcher's job id (the resume machinery's compare-and-set creates it once).
  Each rank ends its part with a status tag; the last one to end ends the run, FINISHED
  only when every rank finished.
- ``each``: a run per rank (what ``TRACKSDK_TRACK_ALL_RANKS=true`` did).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracksdk._schema import RESUMED_TAG

if TYPE_CHECKING:
    from tracksdk._sender import Creation
    from tracksdk.settings import Settings
    from tracksdk.stores.base import Store

__all__ = [
    "ATTEMPT_TAG",
    "RANK_STATUS_PREFIX",
    "Launch",
    "creation_tags",
    "detect",
    "end_rank",
    "final_status",
    "for_run",
    "mode_of",
    "node_id",
    "parse_shared",
    "rank_statuses",
    "resumed",
    "shared_key",
]

# Tag of each rank's end in a shared run: value "<attempt>:<status>".
RANK_STATUS_PREFIX = "tracksdk.rank_status."
ATTEMPT_TAG = "tracksdk.distributed.attempt"
WORLD_SIZE_TAG = "tracksdk.distributed.world_size"
LAUNCHER_TAG = "tracksdk.distributed.launcher"


@dataclass(frozen=True, slots=True)
class Launch:
    """What the launcher told this process.

    Attributes:
        launcher: ``torchrun``, ``torch`` (torch.distributed's variables without the
            elastic agent's), ``mpi`` or ``slurm``.
        rank: This process's global rank.
        world_size: How many ranks the job has.
        job_id: An id every rank of this launch shares, or None when the launcher gives
            none (then ``shared`` needs ``TRACKSDK_RUN_KEY``).
        attempt: Which restart of the job this is (the launcher's restart count).
    """

    launcher: str
    rank: int
    world_size: int
    job_id: str | None
    attempt: str

    @property
    def multi(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1


def _int(text: str | None, default: int) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        return default


# Open MPI, MPICH's Hydra (and Intel MPI), PMIx: rank and size; then the job's id.
_MPI_VARS = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
    ("PMIX_RANK", "PMIX_SIZE"),
)
_MPI_JOB_VARS = ("OMPI_MCA_orte_ess_jobid", "PMIX_NAMESPACE", "PMI_JOBID", "SLURM_JOB_ID")


def detect(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launcher's view of this process, or None outside a multi-process launcher."""
    env = os.environ if environ is None else environ
    if any(name in env for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")):
        rank = _int(env.get("RANK", env.get("LOCAL_RANK")), 0)
        # RANK=1 without WORLD_SIZE is a rank of some multi-process job all the same.
        world = max(_int(env.get("WORLD_SIZE"), 1), rank + 1)
        run_id = env.get("TORCHELASTIC_RUN_ID")
        elastic = run_id is not None
        job = run_id if run_id and run_id != "none" else _one_node_job(env, world)
        launcher = "torchrun" if elastic else "torch"
        return Launch(launcher, rank, world, job, env.get("TORCHELASTIC_RESTART_COUNT", "0"))
    for rank_var, size_var in _MPI_VARS:
        if rank_var in env:
            job = next((env[v] for v in _MPI_JOB_VARS if env.get(v)), None)
            if job is not None and env.get("SLURM_STEP_ID"):
                job = f"{job}.{env['SLURM_STEP_ID']}"
            world = _int(env.get(size_var), 1)
            restarts = env.get("SLURM_RESTART_COUNT", "0")
            return Launch("mpi", _int(env[rank_var], 0), world, job, restarts)
    if "SLURM_PROCID" in env:
        world = _int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS")), 1)
        job = env.get("SLURM_JOB_ID")
        if job and env.get("SLURM_STEP_ID"):
            job = f"{job}.{env['SLURM_STEP_ID']}"
        restarts = env.get("SLURM_RESTART_COUNT", "0")
        return Launch("slurm", _int(env["SLURM_PROCID"], 0), world, job or None, restarts)
    return None


def _one_node_job(env: Mapping[str, str], world: int) -> str | None:
    """A job id for ranks that all run on this machine under one parent (torchrun's agent).

    ``torchrun`` without ``--rdzv-id`` names its run ``none``. When every rank is local
    (``LOCAL_WORLD_SIZE`` equals ``WORLD_SIZE``) they share their parent, the elastic
    agent: its pid and start time identify this launch and no other.
    """
    if _int(env.get("LOCAL_WORLD_SIZE"), -1) != world:
        return None
    parent = os.getppid()
    started = ""
    try:  # field 22 of /proc/<pid>/stat: the start time in clock ticks since boot
        with open(f"/proc/{parent}/stat", "rb") as stat:
            started = stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        pass
    port = env.get("MASTER_PORT", "")
    return f"{socket.gethostname()}:{parent}:{started}:{port}"


def mode_of(settings: Settings) -> str:
    """The effective mode: ``TRACKSDK_TRACK_ALL_RANKS=true`` still means ``each``."""
    mode = settings.distributed.mode
    if mode == "rank0" and settings.track_all_ranks:
        return "each"
    return mode


def node_id(settings: Settings) -> str | None:
    """``rank_<n>`` when the ranks of a multi-process job each write system metrics.

    MLflow's ``node_id`` convention puts it after the prefix:
    ``system/rank_1/cpu_utilization_percentage``.
    """
    launch = detect()
    if launch is None or not launch.multi or mode_of(settings) == "rank0":
        return None
    return f"rank_{launch.rank}"


def for_run(settings: Settings, *, nested: bool) -> tuple[bool, Launch | None]:
    """Whether this process's run is untracked (another rank's), and its shared launch.

    The launch is returned for a top-level run of a ``shared`` job, else None.
    """
    launch = detect()
    if launch is None or not launch.multi:
        return False, None
    mode = mode_of(settings)
    if launch.rank != 0 and (mode == "rank0" or (mode == "shared" and nested)):
        return True, None
    return False, launch if mode == "shared" and not nested else None


def shared_key(launch: Launch | None, key: str | None, run_key: str | None) -> str | None:
    """The shared run's key: ``tracked(key=...)``, ``TRACKSDK_RUN_KEY``, else the job id's.

    Raises:
        ConfigError: The launcher gives no id that all ranks share, and none is set.
    """
    if launch is None:
        return None
    chosen = key or run_key or (f"{launch.launcher}:{launch.job_id}" if launch.job_id else None)
    if chosen is None:
        from tracksdk.exceptions import ConfigError

        raise ConfigError(
            f"TRACKSDK_DISTRIBUTED__MODE=shared: {launch.launcher} gives no job id that "
            "every rank shares, so the ranks cannot find one run. Set TRACKSDK_RUN_KEY "
            "to one value for all ranks of the job (for example its job id), or give "
            "tracked(key=...) (docs/distributed.md)"
        )
    return chosen


def end_rank(
    store: Store, run_id: str, shared: tuple[int, int, str], status: str, end_ms: int,
    tags: dict[str, str],
) -> str:  # fmt: skip
    """End one rank's part of a shared run; the last rank to end ends the run.

    Each rank tags its status, then reads the run: the store orders the writes, so of two
    ranks ending together at least the second sees both statuses (both may, and both
    then set the same status).

    Returns:
        The status the run ended with, or ``"rank ended"`` while other ranks run.
    """
    rank, world, attempt = shared
    tags[RANK_STATUS_PREFIX + str(rank)] = f"{attempt}:{status}"
    store.log_batch(run_id, [], {}, tags)
    ended = rank_statuses(store.get_run(run_id).tags, attempt)
    if len(ended) < world:
        return "rank ended"  # the run ends with the last rank
    final = final_status(ended)
    store.end_run(run_id, final, end_ms)
    return final


def creation_tags(launch: Launch) -> dict[str, str]:
    """The tags a shared run is created with (by whichever rank creates it)."""
    return {
        LAUNCHER_TAG: launch.launcher,
        WORLD_SIZE_TAG: str(launch.world_size),
        ATTEMPT_TAG: launch.attempt,
    }


def resumed(creation: Creation | None, launch: Launch) -> bool:
    """Whether a rank's shared run existed before this launch's attempt (a restart).

    The ranks of one attempt join the run one of them created: that is no resume. The
    first rank of a restart marks the run with its attempt (and counts a resume), so the
    later ones find ``tracksdk.resumed`` set.
    """
    state = creation.resumed if creation is not None else None
    if state is None:
        return False
    return state.tags.get(ATTEMPT_TAG) != launch.attempt or RESUMED_TAG in state.tags


def rank_statuses(tags: Mapping[str, str], attempt: str) -> dict[int, str]:
    """The ranks of ``attempt`` that ended, with their statuses, from the run's tags."""
    found: dict[int, str] = {}
    for name, value in tags.items():
        if not name.startswith(RANK_STATUS_PREFIX):
            continue
        tried, _, status = value.partition(":")
        if tried == attempt and status:
            found[_int(name[len(RANK_STATUS_PREFIX) :], -1)] = status
    return found


def parse_shared(text: str | None) -> tuple[int, int, str] | None:
    """A journal's ``"<rank>/<world size>/<attempt>"`` (Create.shared), or None."""
    if not text:
        return None
    parts = text.split("/", 2)
    if len(parts) != 3:
        return None
    rank, world = _int(parts[0], -1), _int(parts[1], 0)
    if rank < 0 or world < 1:
        return None
    return rank, world, parts[2]


def final_status(statuses: Mapping[int, str]) -> str:
    """A shared run's status: FAILED if a rank failed, else KILLED if one was, else FINISHED."""
    values = set(statuses.values())
    for status in ("FAILED", "KILLED"):
        if status in values:
            return status
    return "FINISHED"
