"""Settings: where every tracksdk value comes from.

Sources, highest first:

1. arguments to ``tracked(...)`` and ``tracksdk.configure(...)``;
2. environment variables (``TRACKSDK_*``, nested with ``__``: ``TRACKSDK_SERVER__URI``);
3. ``.env`` in the project root;
4. ``[tool.tracksdk]`` in the project root's ``pyproject.toml``;
5. the defaults below.

The project root is the git root, else the nearest folder holding ``pyproject.toml``,
else the working directory. docs/configuration.md lists every variable.

This package imports pydantic-settings (about 250 ms), so ``import tracksdk`` does not
import it: it is loaded on the first tracked call.

It is split by job: :mod:`._model` is the :class:`Settings` model and its
sections, :mod:`._sources` reads the environment, ``.env`` and ``pyproject.toml`` (and finds
the project root), :mod:`._explain` merges them and remembers where each value came from
(:class:`Explained`). Every name is imported from ``tracksdk.settings``.
"""

from __future__ import annotations

# The names outside __all__ are tracksdk's own; they are imported from here all the same.
from tracksdk.settings._explain import Explained as Explained
from tracksdk.settings._explain import deep_merge as deep_merge
from tracksdk.settings._explain import load_settings
from tracksdk.settings._model import (
    CaptureSettings,
    DagsHubSettings,
    JournalSettings,
    LocalSettings,
    ServerSettings,
    Settings,
    SystemMetricsSettings,
)
from tracksdk.settings._model import known_env_vars as known_env_vars
from tracksdk.settings._sources import ENV_PREFIX as ENV_PREFIX
from tracksdk.settings._sources import NESTED as NESTED
from tracksdk.settings._sources import dotenv_value as dotenv_value
from tracksdk.settings._sources import env_var_name, find_project_root

__all__ = [
    "CaptureSettings",
    "DagsHubSettings",
    "JournalSettings",
    "LocalSettings",
    "ServerSettings",
    "Settings",
    "SystemMetricsSettings",
    "env_var_name",
    "find_project_root",
    "load_settings",
]
