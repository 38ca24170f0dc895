"""Artifacts waiting for upload: copies the journal keeps until the store has them.

A logged file may change or vanish after the call returns, and its upload may happen in
a later process, so it is copied first: under the journal's ``files/`` folder or, when
that cannot be written (a full disk, a journal kept in memory), under a private
temporary folder, from which it is still uploaded while the process lives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tracksdk._journal.layout import make_private_dir


class Spool:
    """Where one journal's artifacts are copied before they are uploaded."""

    def __init__(self, journal_path: Path) -> None:
        self.root = journal_path / "files"
        self._fallback: Path | None = None

    def new_path(self, unique: str, name: str, *, on_disk: bool) -> Path:
        """A fresh path ``<unique>/<name>`` to copy an artifact to.

        Under ``files/`` when ``on_disk`` and that folder can be written, else under a
        private temporary folder.
        """
        if on_disk:
            try:
                make_private_dir(self.root)
                folder = self.root / unique
                make_private_dir(folder)
                return folder / name
            except OSError:
                pass
        if self._fallback is None:
            self._fallback = Path(tempfile.mkdtemp(prefix="tracksdk-spool-"))
        folder = self._fallback / unique
        make_private_dir(folder)
        return folder / name
