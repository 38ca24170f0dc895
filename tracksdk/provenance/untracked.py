"""Small untracked source files, saved with the run for ``tracksdk reproduce``.

git keeps no copy of a file that was never added, so a rerun needs the run's own.
Bounded, since every run pays it: text files only (valid UTF-8, no NUL byte) of at most
:data:`MAX_FILE` bytes each, :data:`MAX_TOTAL` bytes and :data:`MAX_FILES` files in all,
smallest first; never a file whose name looks like it holds secrets (``.env``, keys,
certificates, ``*secret*``, ``*token*``, ``*credential*``, ``*password*``). Each is
stored as ``source/untracked/<path>``, through the run's redaction like every text: a
known secret value inside one is masked, so that file is not restored byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

PREFIX = "source/untracked/"
MAX_FILE = 64 << 10
MAX_TOTAL = 1 << 20
MAX_FILES = 200
_SECRET_NAME = re.compile(
    r"(^|/)(\.env(\..*)?|\.netrc|\.pgpass|id_[a-z0-9]+|.*\.(pem|key|p12|pfx|jks|keystore|kdbx))$"
    r"|secret|token|credential|password|passwd",
    re.IGNORECASE,
)


def saved_texts(root: Path, paths: Sequence[str]) -> dict[str, str]:
    """{``source/untracked/<path>``: text} for the untracked files worth keeping."""
    sizes = []
    for path in paths:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts or _SECRET_NAME.search(path):
            continue
        try:
            size = (root / path).stat().st_size
        except OSError:
            continue
        if size <= MAX_FILE:
            sizes.append((size, path))
    texts: dict[str, str] = {}
    total = 0
    for size, path in sorted(sizes):
        if len(texts) >= MAX_FILES or total + size > MAX_TOTAL:
            break
        try:
            data = (root / path).read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "\x00" in text or len(data) > MAX_FILE:
            continue
        texts[PREFIX + path] = text
        total += len(data)
    return texts
