"""A self-hosted ``mlflow server``, with no auth, basic auth or a bearer token."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from tracksdk import _redact
from tracksdk.backends.base import Connection, Credentials, check_http_url
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
        ca_bundle = str(cfg.ca_bundle) if cfg.ca_bundle else None
        description = f"MLflow server {uri}"
        return Connection.server(
            self.name, uri, credentials, description, cfg.verify_tls, ca_bundle
        )


class EnvironmentBackend:
    """``MLFLOW_TRACKING_URI`` as it is, when no tracksdk backend is named.

    Existing setups keep working: for an ``http(s)`` URI, MLflow's own credential and TLS
    variables become the connection's, so every part of tracksdk that talks to the server
    (runs, the journal's sender, ``tracksdk sync``, ``tracksdk doctor``, the capability
    probe) uses them, as MLflow would. User info inside the URI is moved out of it, so it
    never reaches a log line.
    """

    name = "mlflow-env"

    def connect(self, explained: Explained, uri: str) -> Connection:
        """Use ``uri`` (the value of MLFLOW_TRACKING_URI)."""
        if uri.startswith(("http://", "https://")):
            clean, user, password = split_userinfo(uri.rstrip("/"))
            credentials = (
                Credentials("basic", password, username=user, source="MLFLOW_TRACKING_URI")
                if password
                else environment_credentials()
            )
            verify_tls, ca_bundle = environment_tls()
            check_http_url(clean, "MLFLOW_TRACKING_URI", "environment", credentials is not None)
            description = f"MLFLOW_TRACKING_URI {clean}"
            return Connection.server(
                self.name, clean, credentials, description, verify_tls, ca_bundle
            )
        # sqlite, postgresql, databricks and other schemes go to MLflow untouched; a
        # password in them stays in tracking_uri (MLflow needs it) and out of every message.
        return Connection(
            backend=self.name,
            tracking_uri=uri,
            registry_uri=uri,
            description=f"MLFLOW_TRACKING_URI {_redact.strip_userinfo(uri)}",
        )


def environment_credentials() -> Credentials | None:
    """MLflow's ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``.

    MLflow's own rule: a user name and a password make basic auth and win over a token;
    one without the other is ignored.
    """
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if username and password:
        _redact.add_secret(password)
        return Credentials(
            "basic",
            password,
            username=username,
            source="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
            in_environment=True,
        )
    if token:
        _redact.add_secret(token)
        return Credentials("bearer", token, source="MLFLOW_TRACKING_TOKEN", in_environment=True)
    return None


def environment_tls() -> tuple[bool, str | None]:
    """MLflow's ``MLFLOW_TRACKING_INSECURE_TLS`` and ``MLFLOW_TRACKING_SERVER_CERT_PATH``.

    Raises:
        ConfigError: Both are set (MLflow refuses that too), or the file is missing.
    """
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() == "true"
    cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    if insecure and cert:
        raise ConfigError(
            "MLFLOW_TRACKING_INSECURE_TLS=true and MLFLOW_TRACKING_SERVER_CERT_PATH are both "
            "set: either skip verifying the server's certificate or verify it with that CA "
            "bundle. Unset one of them."
        )
    if cert is not None and not os.path.isfile(cert):
        raise ConfigError(
            f"MLFLOW_TRACKING_SERVER_CERT_PATH = {cert!r} (from the environment) is not a "
            "file. Point it at the PEM file of the CA that signed the server's certificate."
        )
    return not insecure, cert
