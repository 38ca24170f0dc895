"""What the store did not take is kept: refused requests, and journals set aside.

A request the store refuses (a 4xx other than 401/403) is written in full to the
journal's ``rejected.jsonl``, with the store's answer: ``tracksdk sync --rejected`` sends
it again once the cause is fixed. When a journal has been read to its end, it is deleted
if everything reached the store, else set aside in ``<journal dir>/kept/`` with a note
(:func:`tracksdk._journal.folders.set_aside`), never deleted.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tracksdk._journal import folders, layout
from tracksdk._journal.reader import Damage
from tracksdk._send_plan import Op
from tracksdk.exceptions import TrackingError


def write_rejected(path: Path, op: Op, exc: TrackingError) -> None:
    """Keep a request the store refused, in full, in the journal's ``rejected.jsonl``."""
    line = {
        "at": int(time.time() * 1000),
        "request": op.describe(),
        "error": str(exc),
        # In full: `tracksdk sync --rejected` replays them.
        "records": [record.as_json() for record in op.records()],
    }
    with contextlib.suppress(OSError, ValueError, TypeError):
        layout.append_line(path / "rejected.jsonl", json.dumps(line))


@dataclass(frozen=True)
class Kept:
    """A journal set aside once read to its end.

    Attributes:
        path: Where it is now, under ``kept/``.
        reasons: What was not sent, in words.
        refused: Requests the store refused (lines of ``rejected.jsonl``).
    """

    path: Path
    reasons: list[str]
    refused: int

    def warning(self, label: str) -> str:
        """The one warning a run gives when it was not sent in full."""
        what = " and ".join(self.reasons)
        if self.refused:
            how = "fix the cause, then run `tracksdk sync --rejected` to send them."
        else:
            how = "the rest of the run was sent."
        return (
            f"tracksdk: run {label} was not sent in full: {what}. They are kept in "
            f"{self.path}; {how}"
        )


def finish(path: Path, damage: list[Damage], recreated: str | None) -> Kept | None:
    """Delete a journal read to its end, or set it aside when part of it was not sent.

    Args:
        path: The journal.
        damage: The parts of it that could not be read.
        recreated: Why its run was created again (for the note), if it was.

    Returns:
        None when the journal was sent in full and deleted.
    """
    refused = layout.count_lines(path / "rejected.jsonl")
    damaged_before = (path / "damage.json").exists()  # kept, resent by --rejected
    if not (damage or refused or damaged_before):
        folders.remove(path)
        return None
    lines: list[str] = []
    reasons: list[str] = []
    if damage:
        with contextlib.suppress(OSError):
            layout.write_json(path / "damage.json", {"damage": [d.as_dict() for d in damage]})
        lost = sum(d.end - d.start for d in damage)
        reasons.append(f"{len(damage)} unreadable part(s), {lost} B")
        lines.append("Unreadable parts (their records could not be sent):")
        lines.extend(f"  {d.describe()}" for d in damage)
        lines.append("Everything else was sent.")
    if not damage and damaged_before:
        reasons.append("unreadable parts found before (damage.json)")
        lines.append("damage.json lists the parts that could not be read.")
    if refused:
        reasons.append(f"{refused} request(s) refused by the store")
        lines.append(
            f"rejected.jsonl holds the {refused} request(s) the store refused, in full, "
            "with the store's answer."
        )
    if recreated:
        lines.append(f"The run was created again: {recreated}.")
    kept_at = folders.set_aside(path, "; ".join(reasons), lines)
    return Kept(kept_at, reasons, refused)
