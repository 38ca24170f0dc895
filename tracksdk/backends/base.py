"""What a backend produces and the checks backends share: no backend imports the registry.

:class:`Connection` and :class:`Credentials` are the values a backend's ``connect``
returns; :class:`Backend` is the protocol a backend implements.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.settings import Explained


@dataclass(frozen=True)
class Credentials:
    """HTTP credentials for a tracking server. The repr never shows the secret."""

    kind: Literal["basic", "bearer"]
    secret: str = field(repr=False)
    username: str | None = None
    source: str = "settings"
    # True when they are MLflow's own MLFLOW_TRACKING_* variables: MLflow reads those
    # itself, so a run leaves them in the environment (other threads' runs need them).
    in_environment: bool = False

    def __repr__(self) -> str:
        who = f"{self.username}:" if self.username else ""
        return f"Credentials({self.kind}, {who}***, from {self.source})"

    def header(self) -> str:
        """The value of the ``Authorization`` header these credentials produce."""
        if self.kind == "bearer":
            return f"Bearer {self.secret}"
        import base64

        pair = f"{self.username or ''}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True)
class Connection:
    """Everything needed to reach one tracking store. Holds no live objects.

    Attributes:
        backend: The backend's name.
        tracking_uri: The MLflow tracking URI, never with credentials inside.
        registry_uri: The model registry URI (usually the tracking URI).
        credentials: HTTP credentials, or None.
        ui_url: Base URL of the MLflow UI, for links to runs; None when unknown.
        artifact_root: For local stores, the folder new experiments keep artifacts in.
        verify_tls: Whether to verify the server's TLS certificate.
        ca_bundle: A CA bundle to verify it with.
        description: One line for humans (``tracksdk doctor``).
    """

    backend: str
    tracking_uri: str
    registry_uri: str
    credentials: Credentials | None = None
    ui_url: str | None = None
    artifact_root: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    description: str = ""

    @classmethod
    def server(
        cls,
        backend: str,
        url: str,
        credentials: Credentials | None,
        description: str,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
    ) -> Connection:
        """A connection to the MLflow server at ``url``: its runs, registry and UI."""
        return cls(
            backend=backend,
            tracking_uri=url,
            registry_uri=url,
            credentials=credentials,
            ui_url=url,
            verify_tls=verify_tls,
            ca_bundle=ca_bundle,
            description=description,
        )

    @property
    def is_remote(self) -> bool:
        """Whether the store is reached over HTTP."""
        return self.tracking_uri.startswith(("http://", "https://"))

    @property
    def display_uri(self) -> str:
        """The tracking URI to show a person: user info (``user:password@``) is ``***@``.

        A database URI (``postgresql://user:pw@host/db``) must keep its password for
        MLflow to connect, so ``tracking_uri`` may hold one; every message, repr and
        command output uses this instead.
        """
        from tracksdk._redact import strip_userinfo

        return strip_userinfo(self.tracking_uri)

    def __repr__(self) -> str:
        from tracksdk._redact import strip_userinfo

        fields = (f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)
        return strip_userinfo(f"Connection({', '.join(fields)})")


@runtime_checkable
class Backend(Protocol):
    """What a backend implements. Its docstring is the plugin author's reference.

    Attributes:
        name: The value of ``TRACKSDK_BACKEND`` that selects it.
    """

    name: str

    def connect(self, explained: Explained) -> Connection:
        """Resolve settings into a connection; raise ConfigError naming the fix."""
        ...


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: localhost or a loopback address."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_http_url(url: str, variable: str, source: str, has_credentials: bool) -> None:
    """Reject a malformed URL, and credentials over plain http to a remote host.

    Raises:
        ConfigError: naming ``variable`` and ``source``.
    """
    from tracksdk._redact import strip_userinfo

    parts = urlsplit(url)
    url = strip_userinfo(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{variable} = {url!r} (from {source}) is not an http(s) URL. "
            "Give the server's address, e.g. https://mlflow.example.com or "
            "http://127.0.0.1:5000."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(
            f"{variable} = {url!r} (from {source}) has an invalid port. "
            "Use a number from 1 to 65535."
        ) from None
    if has_credentials and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{variable} = {url!r} (from {source}) uses plain http to a remote host, and "
            "credentials are configured: they would cross the network unencrypted. "
            "Use https, or reach the server through 127.0.0.1 (an SSH tunnel, say)."
        )
