"""The setting sources below a call's arguments: the environment, ``.env``, ``pyproject.toml``.

Also where the project root is (it holds ``.env`` and ``pyproject.toml``) and the
``TRACKSDK_*`` name of each setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
)

from tracksdk import _redact
from tracksdk.provenance.git import find_repo_root

ENV_PREFIX = "TRACKSDK_"
NESTED = "__"


class _TrackSDKDotEnv(DotEnvSettingsSource):
    """The ``.env`` source, reading only ``TRACKSDK_*`` lines.

    A project's ``.env`` holds other tools' variables too; pydantic-settings would report
    them as unknown settings. They are left alone here (``DAGSHUB_USER_TOKEN`` is read by
    the dagshub backend through :func:`dotenv_value`).
    """

    def _load_env_vars(self) -> Any:
        prefix = ENV_PREFIX.lower()
        return {k: v for k, v in super()._load_env_vars().items() if k.lower().startswith(prefix)}


def dotenv_value(root: Path, name: str) -> str | None:
    """The value of ``name`` in the project's ``.env``, if it has one."""
    path = root / ".env"
    if not path.is_file():
        return None
    from dotenv import dotenv_values

    value = dotenv_values(path).get(name)
    if value and _redact.looks_secret(name):
        _redact.add_secret(value)
    return value


def file_sources(
    settings_cls: type[BaseSettings], root: Path
) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """The sources below the call's arguments, highest first, each with a label."""
    return [
        ("environment", EnvSettingsSource(settings_cls)),
        (str(root / ".env"), _TrackSDKDotEnv(settings_cls, env_file=root / ".env")),
        (
            f"{root / 'pyproject.toml'} [tool.tracksdk]",
            PyprojectTomlConfigSettingsSource(settings_cls, toml_file=root / "pyproject.toml"),
        ),
    ]


def find_project_root(start: Path | None = None) -> Path:
    """Return the project root: the git root, else the pyproject.toml folder, else cwd.

    Looks for a ``.git`` entry rather than running git: this runs on every tracked call.
    """
    here = (start or Path.cwd()).resolve()
    repository = find_repo_root(here)
    if repository is not None:
        return repository
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return here


def env_var_name(path: tuple[str | int, ...]) -> str:
    """Return the environment variable for a settings path: ``("server", "uri")``."""
    return ENV_PREFIX + NESTED.join(str(p).upper() for p in path)
