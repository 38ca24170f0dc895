"""Resolving the settings from every source, remembering which source set each value.

:func:`load_settings` reads each source, merges them (a call's arguments over the
environment over ``.env`` over ``pyproject.toml``), validates the result once, and
returns it :class:`Explained`: with the source of every value that was set. Its errors
name the variable, where its value came from and what is valid.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from tracksdk import _redact
from tracksdk.exceptions import ConfigError
from tracksdk.settings._model import Settings, known_env_vars
from tracksdk.settings._sources import (
    ENV_PREFIX,
    NESTED,
    env_var_name,
    file_sources,
    find_project_root,
)


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
        for label, source in reversed(file_sources(Settings, root)):
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
