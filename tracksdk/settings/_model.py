"""The :class:`Settings` model: every tracksdk setting, its sections, defaults and checks."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tracksdk import _redact
from tracksdk.settings._sources import (
    ENV_PREFIX,
    NESTED,
    env_var_name,
    file_sources,
    find_project_root,
)


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
    datasets: bool = Field(
        default=True,
        description="A tracked function's data arguments (DataFrames, arrays, data file "
        "paths) as the run's dataset inputs, with a context from the argument's name.",
    )
    ci: bool = Field(
        default=True,
        description="CI pipeline URL, job, pull request, ref and actor as tracksdk.ci.* tags "
        "(GitHub Actions, GitLab CI).",
    )
    max_diff_bytes: int = Field(default=1_000_000, ge=0, description="Diff size limit.")
    max_source_bytes: int = Field(default=1_000_000, ge=0, description="Source file size limit.")
    max_untracked_files: int = Field(default=1_000, ge=0, description="Untracked list limit.")


class SystemMetricsSettings(_Section):
    """``TRACKSDK_SYSTEM_METRICS__*``: CPU, memory, disk, network and GPU over a run."""

    enabled: bool = Field(
        default=True,
        description="Sample system metrics during each top-level run (docs/system-metrics.md).",
    )
    interval: float = Field(
        default=10.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds between two samples: one step of the system/* metrics each.",
    )


class DistributedSettings(_Section):
    """``TRACKSDK_DISTRIBUTED__*``: what the ranks of torchrun, srun or mpirun track."""

    mode: Literal["rank0", "shared", "each"] = Field(
        default="rank0",
        description="rank0: one run, written by rank 0 only; shared: one run every rank "
        "writes to (series of rank N > 0 end in /rank_N); each: a run per rank "
        "(docs/distributed.md).",
    )


class Settings(BaseSettings):
    """Every tracksdk setting. ``Settings()`` reads the sources :mod:`tracksdk.settings` lists."""

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
        description="In multi-process jobs, a run per rank instead of rank 0's only: "
        "TRACKSDK_DISTRIBUTED__MODE=each, which it stays for.",
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
    reproduces: str | None = Field(
        default=None,
        description="The run a rerun reproduces, tagged tracksdk.reproduces on each run; "
        "set by `tracksdk reproduce --run` (docs/reproduce.md).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Seed for Python's random, numpy's global generator and torch, applied "
        "at each run's start and logged as the param `seed` (docs/reproduce.md).",
    )
    sigterm_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a SIGTERM (preemption) waits for the journal to drain before "
        "the run is left KILLED and the process ends.",
    )
    console: Literal["fd", "python", "off"] = Field(
        default="fd",
        description="Console capture of a top-level run into logs/console.log: fd (file "
        "descriptors 1 and 2, native output included; python in notebooks), python "
        "(sys.stdout and sys.stderr only), off.",
    )
    console_max_mb: int = Field(
        default=10,
        ge=1,
        description="Size of logs/console.log: the first and the last half are kept, "
        "with a line saying how much was left out between them.",
    )
    run_key: str | None = Field(
        default=None,
        description="Key of the top-level run: a run with this key in the experiment is "
        "continued, else created (e.g. TRACKSDK_RUN_KEY=$SLURM_JOB_ID for a requeued job).",
    )
    resume: Literal["allow", "must", "never"] = Field(
        default="allow",
        description="With a run key: allow (continue the run if it exists), must (fail "
        "when none exists), never (fail when one exists).",
    )
    journal: JournalSettings = Field(default_factory=JournalSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    dagshub: DagsHubSettings = Field(default_factory=DagsHubSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    system_metrics: SystemMetricsSettings = Field(default_factory=SystemMetricsSettings)
    distributed: DistributedSettings = Field(default_factory=DistributedSettings)

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
        return (init_settings, *(source for _, source in file_sources(settings_cls, root)))


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
    # TRACKSDK_PARENT_RUN is no setting: a run's reference for its spawned children.
    return frozenset(env_var_name(p) for p in _known_paths(Settings)) | {"TRACKSDK_PARENT_RUN"}
