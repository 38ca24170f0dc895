"""What a continued run's start knows of its earlier parts (docs/resume.md).

The store resolves a key when it can (:mod:`tracksdk._resume`, in the sender). A key's
earlier parts may also be journals on this machine that no store has seen yet: a run
started offline, or while the store was down. They are found here, by the key in their
``meta.json``, so an offline run can be continued offline; ``tracksdk sync`` later sends
every part to the one run. From the store's run and those journals, the start learns
whether the run is a continuation, the last step of each metric (``Run.last_step``) and
the params already logged (a conflicting value follows the params policy).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tracksdk._journal import folders, layout
from tracksdk._journal.reader import Reader
from tracksdk._journal.records import Metrics, Params

if TYPE_CHECKING:
    from pathlib import Path

    from tracksdk._options import RunOptions
    from tracksdk._sender import Creation
    from tracksdk._writer import Writer
    from tracksdk.settings import Explained, Settings
    from tracksdk.stores import RunState

__all__ = ["Continued", "check_refused", "discard", "key_of", "local_parts", "prepare", "settle"]


@dataclass
class Continued:
    """What the earlier parts of a run left: nothing, for a run this process creates.

    Attributes:
        resumed: The run existed before this process: in the store or in a journal here.
        last_steps: The highest step logged for each metric by the earlier parts.
        params: The params the earlier parts logged (the first value of each).
    """

    resumed: bool = False
    last_steps: dict[str, int] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def add_state(self, state: RunState) -> None:
        """Add what the store holds of the run."""
        self.resumed = True
        self._add_steps(state.last_steps)
        for key, value in state.params.items():
            self.params.setdefault(key, value)

    def add_journal(self, path: Path) -> None:
        """Add the records of an earlier part's journal not yet sent (never raises)."""
        self.resumed = True
        reader = Reader(path, layout.read_ack(path))
        try:
            while entries := reader.read(5000, final=True):
                for entry in entries:
                    record = entry.record
                    if isinstance(record, Metrics):
                        self._add_steps({p[0]: p[3] for p in record.points})
                    elif isinstance(record, Params):
                        for key, value in record.values.items():
                            self.params.setdefault(key, value)
        except (OSError, ValueError):  # sent and deleted meanwhile: the store has it
            pass
        finally:
            with contextlib.suppress(Exception):
                reader.close()

    def _add_steps(self, steps: Mapping[str, int]) -> None:
        for key, step in steps.items():
            if key not in self.last_steps or step > self.last_steps[key]:
                self.last_steps[key] = int(step)


#: Set by the process whose run took ``TRACKSDK_RUN_KEY``, to its pid: a subprocess (an
#: evaluation script, a spawned worker) inherits the variable, and must not take it.
KEY_OWNER_VAR = "_TRACKSDK_RUN_KEY_OWNER"


def key_of(options: RunOptions, settings: Settings, nested: bool) -> str | None:
    """The run's key: ``tracked(key=...)``, else ``TRACKSDK_RUN_KEY`` for a top-level run.

    The variable names one job's run: a nested run never takes it, or every child of the
    job would continue the job's own run; nor does a run in a process the job started,
    which would end the job's run as its own. Top-level runs of the job's own process
    one after another all take it: each continues the run.
    """
    if options.key is not None:
        return options.key
    if nested or settings.run_key is None:
        return None
    key = settings.run_key.strip()
    owner = os.environ.get(KEY_OWNER_VAR)
    if not key or owner not in (None, str(os.getpid())):
        return None
    os.environ[KEY_OWNER_VAR] = str(os.getpid())
    return key


def local_parts(folder: Path, key: str, experiment: str, target: str | None) -> list[Path]:
    """The journals here of runs with ``key`` in ``experiment``, oldest first.

    Only those bound for ``target`` (a masked tracking URI), or for no store yet
    (offline); offline (``target`` None), all of them.
    """
    return [
        found.path
        for found in folders.find(folder)
        if found.meta.get("run_key") == key
        and found.meta.get("experiment") == experiment
        and (target is None or found.meta.get("target") in (None, target))
    ]


def prepare(
    options: RunOptions,
    explained: Explained,
    nested: bool,
    experiment: str,
    target: str | None,
    shared_key: str | None = None,
) -> tuple[str | None, str | None, Continued]:
    """The run's key, its resume mode, and what its earlier parts journaled here.

    ``shared_key`` is the key of a distributed job's shared run (:mod:`tracksdk._distributed`),
    which every rank takes.

    Raises:
        ConfigError: ``resume=`` without a key or a run id.
        ResumeError: ``resume="never"`` and a run with the key is journaled here.
    """
    from tracksdk import _journal

    settings = explained.settings
    key = shared_key or key_of(options, settings, nested)
    if options.resume is not None and key is None and options.run_id is None:
        from tracksdk.exceptions import ConfigError

        raise ConfigError(
            f"tracked(resume={options.resume!r}) needs a run key: key=... or "
            "TRACKSDK_RUN_KEY (docs/resume.md)"
        )
    resume = settings.resume if key is not None else None
    continued = Continued()
    if key is None or options.run_id is not None:
        return key, resume, continued
    # Earlier parts journaled here and not yet in any store (offline, or the store was
    # down): the run continues them, and they settle resume="must" and "never".
    for path in local_parts(_journal.journal_dir(explained), key, experiment, target):
        continued.add_journal(path)
    if continued.resumed:
        if resume == "never":
            from tracksdk.exceptions import ResumeError

            raise ResumeError(
                f'resume="never": a run of experiment {experiment!r} with key {key!r} is '
                "journaled on this machine and not yet synced (`tracksdk sync --dry-run` "
                "lists it). Use another key, or resume='allow' to continue it"
            )
        resume = "allow"  # met here; the store may not have the run yet
    return key, resume, continued


def check_refused(creation: Creation, writer: Writer) -> None:
    """Raise the store's refusal to continue the run as asked, as a ResumeError."""
    from tracksdk._resume import REFUSED
    from tracksdk.stores.errors import Rejected

    error = creation.last_error
    if isinstance(error, Rejected) and error.code == REFUSED:
        from tracksdk.exceptions import ResumeError

        if writer.sender is not None:
            writer.sender.stop()
        raise ResumeError(f"tracked(): {error}")


def settle(
    creation: Creation | None, continued: Continued, resume: str | None, key: str | None
) -> Continued:
    """What the run continues, from the store's answer and the journals here.

    Raises:
        ResumeError: ``resume="must"``, and neither the store (not reached, or offline)
            nor this machine's journals have the run.
    """
    state = creation.resumed if creation is not None else None
    if state is not None:
        continued.add_state(state)
    created = creation is not None and creation.created is not None
    if resume == "must" and not created and not continued.resumed:
        from tracksdk.exceptions import ResumeError

        raise ResumeError(
            f'resume="must": the run with key {key!r} could not be looked up (the store '
            "was not reached, or the run is offline) and no journal on this machine has "
            "it. Retry when the store answers (`tracksdk doctor`), or use resume='allow'"
        )
    return continued


def discard(path: Path) -> None:
    """Remove the journal of a run the store refused to continue: nothing of it exists."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
