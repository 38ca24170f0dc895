"""Environment provenance: interpreter, machine and package versions.

Both results are computed once per process and then reused (see :func:`environment_tags` and
:func:`requirements_text`): the interpreter, the machine and the installed packages do not
change while a program runs, and reading the metadata of a few hundred packages costs tens of
milliseconds, too much to pay for every tracked call of a function. A program that does install
packages mid-run can call :func:`clear_cache`.

Nothing here imports mlflow: its version comes from its installed metadata.
"""

from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING

from tracksdk._redact import strip_userinfo
from tracksdk._schema import (
    ENV_CPU_COUNT_TAG,
    ENV_HOSTNAME_TAG,
    ENV_IMPLEMENTATION_TAG,
    ENV_MLFLOW_VERSION_TAG,
    ENV_OS_TAG,
    ENV_PYTHON_TAG,
    VERSION_TAG,
)

if TYPE_CHECKING:
    # importlib.metadata (with the email parser it pulls in) costs ~60 ms to import here;
    # it, platform, socket and json are imported when first used, to keep the package cheap.
    from importlib.metadata import Distribution

__all__ = [
    "REQUIREMENTS_ARTIFACT",
    "clear_cache",
    "environment_tags",
    "requirements_text",
]

REQUIREMENTS_ARTIFACT = "environment/requirements.txt"

_UNKNOWN = "unknown"
_NAME_SEPARATORS = re.compile(r"[-_.]+")


def environment_tags() -> dict[str, str]:
    """Return the environment tags (a new dict each time; the values are cached).

    Returns:
        ``tracksdk.env.python`` (e.g. ``3.11.7``), ``tracksdk.env.implementation``
        (``CPython``), ``tracksdk.env.os`` (``platform.platform()``),
        ``tracksdk.env.hostname``, ``tracksdk.env.cpu_count``, ``tracksdk.version`` and
        ``tracksdk.env.mlflow_version`` (``"unknown"`` when not installed).
    """
    return dict(_environment_tags())


@functools.cache
def _environment_tags() -> dict[str, str]:
    import platform
    import socket

    cpu_count = os.cpu_count()
    return {
        ENV_PYTHON_TAG: platform.python_version(),
        ENV_IMPLEMENTATION_TAG: platform.python_implementation(),
        # ~10 ms on Linux (it reads the interpreter binary to find the libc version): one more
        # reason to cache.
        ENV_OS_TAG: platform.platform(),
        ENV_HOSTNAME_TAG: socket.gethostname(),
        ENV_CPU_COUNT_TAG: str(cpu_count) if cpu_count is not None else _UNKNOWN,
        VERSION_TAG: _version("tracksdk"),
        ENV_MLFLOW_VERSION_TAG: _version("mlflow"),
    }


def _version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return _UNKNOWN


@functools.cache
def requirements_text() -> str:
    """Return every installed distribution as ``name==version``, one a line.

    Read through :mod:`importlib.metadata` (no ``pip freeze`` subprocess), sorted
    case-insensitively and de-duplicated by normalised name; when the same distribution is
    installed twice on ``sys.path``, the first one (the one Python imports) wins. Editable and
    direct-URL installs get a comment, e.g. ``tracksdk==0.1.0  # editable install``, because
    ``pip install`` of that line alone would not reproduce them. Credentials in direct URLs are
    replaced by ``***``.

    Cached for the life of the process: see the module's docstring.
    """
    import importlib.metadata

    lines: dict[str, tuple[str, str]] = {}
    for distribution in importlib.metadata.distributions():
        name, version = _name_and_version(distribution)
        if not name:  # a broken or half-removed installation
            continue
        key = _NAME_SEPARATORS.sub("-", name).lower()
        if key in lines:
            continue
        line = f"{name}=={version or _UNKNOWN}"
        note = _install_note(distribution)
        if note:
            line += f"  # {note}"
        lines[key] = (name.lower(), line)
    return "".join(line + "\n" for _, line in sorted(lines.values()))


def clear_cache() -> None:
    """Forget the cached tags and requirements, e.g. after installing packages at run time."""
    _environment_tags.cache_clear()
    requirements_text.cache_clear()


def _name_and_version(distribution: Distribution) -> tuple[str, str]:
    # `distribution.metadata` parses the whole METADATA file with the email parser (long
    # descriptions included), and `.version` parses it again: ~2 ms per package here. Name and
    # Version are in the first header lines, so read only those; fall back to the full parser
    # for anything unusual.
    try:
        text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO")
    except OSError:
        text = None
    name = version = ""
    if text:
        headers = text.split("\n\n", 1)[0]  # the headers end at the first empty line
        for line in headers.splitlines():
            if line.startswith("Name:") and not name:
                name = line[len("Name:") :].strip()
            elif line.startswith("Version:") and not version:
                version = line[len("Version:") :].strip()
            if name and version:
                return name, version
    try:
        metadata = distribution.metadata
        return (metadata["Name"] or "", metadata["Version"] or "")
    except Exception:  # a broken package must not stop the listing
        return name, version


def _install_note(distribution: Distribution) -> str:
    try:
        raw = distribution.read_text("direct_url.json")
    except OSError:
        return ""
    if not raw:
        return ""
    import json

    try:
        info = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(info, dict):
        return ""
    dir_info = info.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return "editable install"
    url = info.get("url")
    if isinstance(url, str) and url and not url.startswith("file:"):
        return f"installed from {strip_userinfo(url)}"
    return "installed from a local path" if isinstance(url, str) else ""
