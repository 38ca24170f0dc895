"""A self-hosted ``mlflow server``, with no auth, basic auth or a bearer token."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from tracksdk import _redact
from tracksdk.backends import Connection, Credentials, check_http_url
from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.settings import Explained


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Return ``url`` without ``user:password@``, and the user name and password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    _redact.add_secret(password)
    return clean, user, password


class ServerBackend:
    """Selected by ``TRACKSDK_BACKEND=server`` with ``TRACKSDK_SERVER__URI``."""

    name = "server"

    def connect(self, explained: Explained) -> Connection:
        """Resolve the server URL and its credentials."""
        cfg = explained.settings.server
        source = explained.source_of("server.uri")
        if not cfg.uri:
            raise ConfigError(
                "TRACKSDK_BACKEND=server needs the server's address, and TRACKSDK_SERVER__URI "
                "is not set. Set it, e.g. TRACKSDK_SERVER__URI=https://mlflow.example.com."
            )
        uri, url_user, url_password = split_userinfo(cfg.uri.rstrip("/"))
        credentials: Credentials | None = None
        password = cfg.password.get_secret_value() if cfg.password else None
        token = cfg.token.get_secret_value() if cfg.token else None
        if token and (password or cfg.username):
            raise ConfigError(
                "Both TRACKSDK_SERVER__TOKEN and TRACKSDK_SERVER__USERNAME/PASSWORD are set "
                f"(from {explained.source_of('server.token')} and "
                f"{explained.source_of('server.password')}). Keep one way to log in: unset "
                "the token, or the user name and password."
            )
        if token:
            credentials = Credentials("bearer", token, source="TRACKSDK_SERVER__TOKEN")
        elif password or cfg.username:
            if not (password and cfg.username):
                missing = "PASSWORD" if cfg.username else "USERNAME"
                raise ConfigError(
                    f"HTTP basic auth needs both a user name and a password, and "
                    f"TRACKSDK_SERVER__{missing} is not set. Set it, or unset the other one."
                )
            credentials = Credentials(
                "basic", password, username=cfg.username, source="TRACKSDK_SERVER__PASSWORD"
            )
        elif url_password:
            credentials = Credentials(
                "basic", url_password, username=url_user, source="user info in the server URI"
            )
        check_http_url(uri, "TRACKSDK_SERVER__URI", source, credentials is not None)
        if cfg.ca_bundle is not None and not cfg.ca_bundle.is_file():
            raise ConfigError(
                f"TRACKSDK_SERVER__CA_BUNDLE = {str(cfg.ca_bundle)!r} (from "
                f"{explained.source_of('server.ca_bundle')}) is not a file. Point it at the "
                "PEM file of the CA that signed the server's certificate."
            )
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            credentials=credentials,
            ui_url=uri,
            verify_tls=cfg.verify_tls,
            ca_bundle=str(cfg.ca_bundle) if cfg.ca_bundle else None,
            description=f"MLflow server {uri}",
        )


class EnvironmentBackend:
    """``MLFLOW_TRACKING_URI`` as it is, when no tracksdk backend is named.

    Existing setups keep working: MLflow itself reads ``MLFLOW_TRACKING_USERNAME`` and
    friends. User info inside the URI is moved out of it, so it never reaches a log line.
    """

    name = "mlflow-env"

    def connect(self, explained: Explained, uri: str) -> Connection:
        """Use ``uri`` (the value of MLFLOW_TRACKING_URI)."""
        if uri.startswith(("http://", "https://")):
            clean, user, password = split_userinfo(uri.rstrip("/"))
            credentials = (
                Credentials("basic", password, username=user, source="MLFLOW_TRACKING_URI")
                if password
                else None
            )
            # MLflow's own credential variables count too: they would cross the network.
            env_credentials = any(
                os.environ.get(k) for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
            )
            check_http_url(
                clean, "MLFLOW_TRACKING_URI", "environment", bool(credentials) or env_credentials
            )
            return Connection(
                backend=self.name,
                tracking_uri=clean,
                registry_uri=clean,
                credentials=credentials,
                ui_url=clean,
                description=f"MLFLOW_TRACKING_URI {clean}",
            )
        # sqlite, postgresql, databricks and other schemes go to MLflow untouched.
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            description=f"MLFLOW_TRACKING_URI {uri}",
        )
