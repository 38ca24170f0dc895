"""DagsHub's hosted MLflow: ``<host>/<owner>/<repo>.mlflow`` with HTTP basic auth.

Unlike ``dagshub.init``, this backend never creates a repository, never writes the token
into ``os.environ``, and never starts an interactive (browser) login.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk import _redact
from tracksdk.backends.base import Connection, Credentials, check_http_url
from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.settings import Explained

_username_cache: dict[tuple[str, str], str] = {}


def token_cache_path() -> Path:
    """Where the dagshub client keeps its tokens (``DAGSHUB_CLIENT_TOKENS_CACHE`` wins)."""
    configured = os.environ.get("DAGSHUB_CLIENT_TOKENS_CACHE")
    if configured:
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "dagshub" / "tokens"


def read_cached_token(host: str, path: Path | None = None) -> str | None:
    """Return an unexpired token for ``host`` from the dagshub client's token cache.

    The dagshub client loads this YAML file with an unsafe loader; tracksdk uses
    ``yaml.safe_load``, since the file holds only strings.
    """
    import yaml

    path = path or token_cache_path()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    tokens = data.get(host.rstrip("/")) or data.get(host.rstrip("/") + "/") or []
    now = dt.datetime.now(dt.UTC)
    for entry in tokens if isinstance(tokens, list) else []:
        if not isinstance(entry, dict) or not entry.get("access_token"):
            continue
        expiry = str(entry.get("expiry", "never"))
        if expiry != "never":
            try:
                when = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00"))
            except ValueError:
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            if when < now:
                continue
        token = str(entry["access_token"])
        _redact.add_secret(token)
        return token
    return None


def lookup_username(host: str, token: str, timeout: float) -> str:
    """Ask the DagsHub API who owns ``token`` (``GET <host>/api/v1/user``, Bearer auth).

    Raises:
        ConfigError: The token is rejected, or the host does not answer.
    """
    key = (host, token)
    if key in _username_cache:
        return _username_cache[key]
    import requests

    url = host.rstrip("/") + "/api/v1/user"
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except requests.RequestException as exc:
        raise ConfigError(
            f"Could not reach {url} to find the DagsHub user name ({type(exc).__name__}). "
            "Set TRACKSDK_DAGSHUB__USERNAME to skip this lookup, or check the network."
        ) from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"DagsHub rejected the token (HTTP {response.status_code} from {url}). Create a "
            "new token in DagsHub's user settings and set DAGSHUB_USER_TOKEN or "
            "TRACKSDK_DAGSHUB__TOKEN."
        )
    try:
        response.raise_for_status()
        login = str(response.json()["login"])
    except Exception:
        raise ConfigError(
            f"Unexpected answer from {url} (HTTP {response.status_code}). "
            "Set TRACKSDK_DAGSHUB__USERNAME to skip this lookup."
        ) from None
    _username_cache[key] = login
    return login


class DagsHubBackend:
    """Selected by ``TRACKSDK_BACKEND=dagshub`` with owner and repo."""

    name = "dagshub"

    def connect(self, explained: Explained) -> Connection:
        """Resolve the repository's MLflow URL, the token and the user name."""
        settings = explained.settings
        cfg = settings.dagshub
        missing = [
            f"TRACKSDK_DAGSHUB__{k.upper()}" for k in ("owner", "repo") if not getattr(cfg, k)
        ]
        if missing:
            raise ConfigError(
                f"TRACKSDK_BACKEND=dagshub (from {explained.source_of('backend')}) needs "
                f"{' and '.join(missing)}: the repository whose MLflow to log to, as in "
                "https://dagshub.com/<owner>/<repo>. Set them; tracksdk never creates a "
                "repository for you."
            )
        host = cfg.host.rstrip("/")
        token, token_source = self._token(host, explained)
        check_http_url(host, "TRACKSDK_DAGSHUB__HOST", explained.source_of("dagshub.host"), True)
        username = cfg.username or lookup_username(host, token, settings.http_timeout)
        uri = f"{host}/{cfg.owner}/{cfg.repo}.mlflow"
        credentials = Credentials("basic", token, username=username, source=token_source)
        description = f"DagsHub repository {cfg.owner}/{cfg.repo} at {host}"
        return Connection.server(self.name, uri, credentials, description)

    @staticmethod
    def _token(host: str, explained: Explained) -> tuple[str, str]:
        cfg = explained.settings.dagshub
        if cfg.token is not None:
            return cfg.token.get_secret_value(), "TRACKSDK_DAGSHUB__TOKEN"
        env = os.environ.get("DAGSHUB_USER_TOKEN")
        if env:
            _redact.add_secret(env)
            return env, "DAGSHUB_USER_TOKEN"
        from tracksdk.settings import dotenv_value

        dotenv = dotenv_value(explained.root, "DAGSHUB_USER_TOKEN")
        if dotenv:
            return dotenv, f"DAGSHUB_USER_TOKEN in {explained.root / '.env'}"
        cached = read_cached_token(host)
        if cached:
            return cached, f"dagshub token cache ({token_cache_path()})"
        # Never the dagshub client's browser login, even with a terminal: a diagnostic or
        # a training script must not stop to wait for a person (and offline it crashes).
        raise ConfigError(
            "No DagsHub token found: TRACKSDK_DAGSHUB__TOKEN and DAGSHUB_USER_TOKEN are not "
            f"set and the dagshub token cache ({token_cache_path()}) has none for {host}. "
            "Create a token in DagsHub's user settings and set DAGSHUB_USER_TOKEN, or run "
            "`dagshub login` once (it stores a token in that cache)."
        )


def refused_hint(conn: Connection, status: int, target: str | None) -> str:
    """Why DagsHub refused a request (401 or 403) and how to fix it; never the token.

    A 403 with a token means the token was accepted but its user may not write to the
    repository; anything else means the token is missing or wrong.
    """
    creds = conn.credentials
    if status == 403 and creds is not None:
        what = target or "the experiment or model this request is for"
        return (
            f"the DagsHub token (from {creds.source}) was accepted, but "
            f"{creds.username or 'its user'!r} may not write to this repository "
            f"({what}). Ask the repository's owner for write access, or log to a "
            "repository of yours (TRACKSDK_DAGSHUB__OWNER, TRACKSDK_DAGSHUB__REPO)"
        )
    return (
        "fix the DagsHub token (TRACKSDK_DAGSHUB__TOKEN or DAGSHUB_USER_TOKEN; "
        f"now from {creds.source if creds else 'nowhere'}) and check that it may write "
        "to the repository"
    )
