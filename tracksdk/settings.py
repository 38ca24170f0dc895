"""Settings: where every tracksdk value comes from.

Sources, highest first:

1. arguments to ``tracked(...)`` and ``tracksdk.configure(...)``;
2. environment variables (``TRACKSDK_*``, nested with ``__``: ``TRACKSDK_SERVER__URI``);
3. ``.env`` in the project root;
4. ``[tool.tracksdk]`` in the project root's ``pyproject.toml``;
5. the defaults below.

The project root is the git root, else the nearest folder holding ``pyproject.toml``,
else the working directory. docs/configuration.md lists every variable.

This module imports pydantic-settings (about 250 ms), so ``import tracksdk`` does not
import it: it is loaded on the first tracked call.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from tracksdk import _redact
from tracksdk.exceptions import ConfigError
from tracksdk.provenance.git import find_repo_root

__all__ = [
    "CaptureSettings",
    "DagsHubSettings",
    "JournalSettings",
    "LocalSettings",
    "ServerSettings",
    "Settings",
    "env_var_name",
    "find_project_root",
    "load_settings",
]

ENV_PREFIX = "TRACKSDK_"
NESTED = "__"


class _Section(BaseModel):
    # A typo in pyproject.toml or .env must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid")

    def __repr_args__(self) -> Any:
        # A URL may carry user:password@; the repr must not (SecretStr masks the rest).
        for name, value in super().__repr_args__():
            yield name, _redact.strip_userinfo(value) if isinstance(value, str) else value


class LocalSettings(_Section):
    """The embedded local store (``TRACKSDK_BACKEND=local``, the default)."""

    root: Path | None = Field(
        default=None,
        description="Folder holding mlflow.db and mlruns/. Default: the project root.",
    )
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Where `tracksdk ui` serves this store (its default host and port), "
        "and the base of the run links tracked runs print (run.url).",
    )


class DagsHubSettings(_Section):
    """DagsHub's hosted MLflow (``TRACKSDK_BACKEND=dagshub``)."""

    owner: str | None = Field(default=None, description="Repository owner on DagsHub.")
    repo: str | None = Field(default=None, description="Repository name on DagsHub.")
    host: str = Field(default="https://dagshub.com", description="DagsHub host URL.")
    token: SecretStr | None = Field(
        default=None,
        description="Access token. Else DAGSHUB_USER_TOKEN, else the dagshub token cache.",
    )
    username: str | None = Field(
        default=None, description="DagsHub user name. Else asked from the DagsHub API."
    )


class ServerSettings(_Section):
    """A self-hosted ``mlflow server`` (``TRACKSDK_BACKEND=server``)."""

    uri: str | None = Field(default=None, description="Tracking server URL, http(s)://host[:port]")
    username: str | None = Field(default=None, description="HTTP basic auth user name.")
    password: SecretStr | None = Field(default=None, description="HTTP basic auth password.")
    token: SecretStr | None = Field(default=None, description="Bearer token.")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_bundle: Path | None = Field(default=None, description="CA bundle to verify TLS with.")


class JournalSettings(_Section):
    """``TRACKSDK_JOURNAL__*``: the on-disk journal every run writes to first."""

    dir: Path | None = Field(
        default=None,
        description="Where journals live (a spool folder). Default: "
        "<project root>/.tracksdk/journal.",
    )
    max_mb: int = Field(
        default=1024,
        ge=1,
        description="Unsent data one run may keep; over it, new metric points are dropped "
        "and counted (params, tags, artifacts and status are always kept).",
    )


class CaptureSettings(_Section):
    """What provenance each run records (docs/collected-information.md)."""

    git: bool = Field(default=True, description="Commit, branch, remote URL, dirty flag.")
    diff: bool = Field(default=True, description="Uncommitted changes as source/diff.txt.")
    untracked: bool = Field(default=True, description="Untracked files as source/untracked.txt.")
    source: bool = Field(default=True, description="Entry script and function module file.")
    command: bool = Field(default=True, description="The command line, secrets redacted.")
    environment: bool = Field(default=True, description="Python, OS, host, versions as tags.")
    requirements: bool = Field(
        default=True, description="Installed packages as environment/requirements.txt."
    )
    max_diff_bytes: int = Field(default=1_000_000, ge=0, description="Diff size limit.")
    max_source_bytes: int = Field(default=1_000_000, ge=0, description="Source file size limit.")
    max_untracked_files: int = Field(default=1_000, ge=0, description="Untracked list limit.")


class Settings(BaseSettings):
    """Every tracksdk setting. ``Settings()`` reads the sources listed in the module doc."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        case_sensitive=False,
        extra="forbid",
        pyproject_toml_table_header=("tool", "tracksdk"),
    )

    backend: str | None = Field(
        default=None,
        description="local, dagshub, server, or a plugin's name. Unset: MLFLOW_TRACKING_URI "
        "if that is set, else local.",
    )
    experiment: str | None = Field(
        default=None, description="Experiment name. Default: the project folder's name."
    )
    mode: Literal["online", "offline", "disabled"] = Field(
        default="online",
        description="online; offline: runs are only journaled, `tracksdk sync` uploads "
        "them; disabled: tracked is a pass-through.",
    )
    strict: bool = Field(
        default=False,
        description="Raise instead of warning on tracking failures and invalid values.",
    )
    track_all_ranks: bool = Field(
        default=False,
        description="In multi-process jobs (RANK/LOCAL_RANK/WORLD_SIZE set), track every "
        "rank instead of rank 0 only.",
    )
    autolog: bool | list[str] | dict[str, dict[str, Any]] = Field(
        default=False,
        description="Frameworks to autolog inside each run: true (all installed plugins), "
        "a comma-separated list (sklearn,lightgbm), or JSON with per-framework options.",
    )
    plugins: list[str] | None = Field(
        default=None,
        description="Comma-separated plugin names to load; default: every installed plugin.",
    )
    http_timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")
    http_retries: int = Field(
        default=2, ge=0, description="Retries of a failed HTTP request made through MLflow."
    )
    flush_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a run's end waits for its journal to reach the store; the "
        "rest is sent later (background, `tracksdk sync`, the next run).",
    )
    start_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a run's start waits for a remote store to create the run "
        "before the function starts anyway (the run is created in the background).",
    )
    sigterm_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a SIGTERM (preemption) waits for the journal to drain before "
        "the run is left KILLED and the process ends.",
    )
    journal: JournalSettings = Field(default_factory=JournalSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    dagshub: DagsHubSettings = Field(default_factory=DagsHubSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    capture: CaptureSettings = Field(default_factory=CaptureSettings)

    @field_validator("autolog", mode="before")
    @classmethod
    def _autolog_from_text(cls, value: Any) -> Any:
        return _parse_list_setting(value, allow_bool=True)

    @field_validator("plugins", mode="before")
    @classmethod
    def _plugins_from_text(cls, value: Any) -> Any:
        return _parse_list_setting(value, allow_bool=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: arguments, environment, .env, pyproject.toml."""
        root = find_project_root()
        return (init_settings, *(source for _, source in _file_sources(settings_cls, root)))


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


def _parse_list_setting(value: Any, *, allow_bool: bool) -> Any:
    """Accept ``"a,b"``, ``"true"``/``"false"`` and JSON for list-like settings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith(("[", "{")):
        import json

        return json.loads(text)
    if allow_bool and text.lower() in ("true", "false", "1", "0", "yes", "no", ""):
        return text.lower() in ("true", "1", "yes")
    return [part.strip() for part in text.split(",") if part.strip()]


def _file_sources(
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


def _known_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_known_paths(annotation, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


@cache
def known_env_vars() -> frozenset[str]:
    """Every ``TRACKSDK_*`` variable a setting reads, upper-case."""
    return frozenset(env_var_name(p) for p in _known_paths(Settings))


class Explained(BaseModel):
    """Settings with, for each dotted key that was set, the source that set it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    sources: dict[str, str]
    root: Path

    def source_of(self, dotted: str) -> str:
        """Where the value of ``dotted`` (e.g. ``"server.uri"``) came from."""
        return self.sources.get(dotted, "default")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` on top: nested sections merge key by key, other values replace.

    Neither argument is changed.
    """
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _check_unknown_env(extra_prefixes: tuple[str, ...]) -> None:
    known = known_env_vars()
    for name in os.environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        if any(upper.startswith(ENV_PREFIX + p.upper() + NESTED) for p in extra_prefixes):
            continue  # read by a third-party backend
        guess = difflib.get_close_matches(upper, sorted(known), n=1)
        hint = f" Did you mean {guess[0]}?" if guess else ""
        raise ConfigError(
            f"Unknown setting {name} in the environment.{hint} "
            "docs/configuration.md lists every variable; unset this one or fix its name."
        )


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    extra_env_prefixes: tuple[str, ...] = (),
) -> Explained:
    """Resolve settings from every source and remember which source set each value.

    Args:
        overrides: Values from ``tracked(...)`` / ``configure(...)``, nested as dicts.
        root: The project root; found from the working directory when omitted.
        extra_env_prefixes: Backend names whose ``TRACKSDK_<NAME>__*`` variables belong to
            a third-party backend and must not be reported as unknown.

    Raises:
        ConfigError: A value is malformed or a variable is unknown. The message names the
            variable, the source of its value, what is valid, and the fix.
    """
    root = root or find_project_root()
    _check_unknown_env(extra_env_prefixes)
    layers: list[tuple[str, dict[str, Any]]] = []
    try:
        for label, source in reversed(_file_sources(Settings, root)):
            layers.append((label, dict(source())))
    except (PydanticValidationError, ValueError) as exc:
        raise ConfigError(f"Could not read the settings: {exc}") from None
    layers.append(("arguments to tracked()/configure()", dict(overrides or {})))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, data in layers:
        merged = deep_merge(merged, data)
        for dotted in _flatten(data):
            sources[dotted] = label
    try:
        # Validate the merged data without re-reading the sources.
        settings = Settings.model_validate(merged)
    except PydanticValidationError as exc:
        raise _config_error(exc, sources) from None
    _register_secrets(settings)
    return Explained(settings=settings, sources=sources, root=root)


def _register_secrets(settings: Settings) -> None:
    from urllib.parse import unquote, urlsplit

    for secret in (settings.dagshub.token, settings.server.password, settings.server.token):
        if secret is not None:
            _redact.add_secret(secret.get_secret_value())
    for uri in (settings.server.uri, os.environ.get("MLFLOW_TRACKING_URI")):
        try:
            password = urlsplit(uri).password if uri else None
        except ValueError:
            password = None
        if password:
            _redact.add_secret(unquote(password))
    _redact.add_secrets_from_environ()


def _config_error(exc: PydanticValidationError, sources: Mapping[str, str]) -> ConfigError:
    lines = []
    for error in exc.errors():
        path = tuple(str(p) for p in error["loc"])
        dotted = ".".join(path)
        var = env_var_name(path)
        source = sources.get(dotted, "default")
        if error["type"] == "extra_forbidden":
            guess = difflib.get_close_matches(var, sorted(known_env_vars()), n=1)
            hint = f" Did you mean {guess[0]}?" if guess else ""
            lines.append(f"- unknown setting {dotted!r} (from {source}).{hint}")
            continue
        secret = _redact.looks_secret(dotted)
        shown = "***" if secret else repr(error.get("input"))
        lines.append(f"- {var} = {shown} (from {source}): {error['msg']}.")
    return ConfigError(
        "Invalid tracksdk settings:\n"
        + "\n".join(lines)
        + "\nFix the value where it came from; docs/configuration.md lists valid values."
    )
