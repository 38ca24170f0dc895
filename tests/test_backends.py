"""Backend selection and connection data, without contacting any server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracksdk import ConfigError
from tracksdk._auth import credentials_for, register, unregister
from tracksdk._config import resolve_with_connection
from tracksdk.backends import Credentials
from tracksdk.backends.dagshub import read_cached_token


def connect():  # type: ignore[no-untyped-def]
    return resolve_with_connection()[1]


def test_local_is_the_default_with_absolute_paths(project: Path) -> None:
    """No settings: the sqlite store and mlruns at the project root, absolute."""
    conn = connect()
    assert conn.backend == "local"
    assert conn.tracking_uri == f"sqlite:///{project / 'mlflow.db'}"
    assert conn.artifact_root == str(project / "mlruns")
    assert conn.credentials is None


def test_local_root_setting(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TRACKSDK_LOCAL__ROOT moves the store."""
    monkeypatch.setenv("TRACKSDK_LOCAL__ROOT", str(tmp_path / "elsewhere"))
    assert connect().tracking_uri == f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"


def test_mlflow_tracking_uri_is_honoured_when_no_backend_named(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_URI is used as it is unless TRACKSDK_BACKEND names a backend."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    conn = connect()
    assert (conn.backend, conn.tracking_uri) == ("mlflow-env", "http://127.0.0.1:5999")
    monkeypatch.setenv("TRACKSDK_BACKEND", "local")
    assert connect().backend == "local"


def test_mlflow_tracking_uri_userinfo_is_moved_to_credentials(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:password@ in MLFLOW_TRACKING_URI becomes credentials, never part of the URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ann:canary-pass-4321@127.0.0.1:5999")
    conn = connect()
    assert conn.tracking_uri == "http://127.0.0.1:5999"
    assert conn.credentials is not None
    assert (conn.credentials.username, conn.credentials.secret) == ("ann", "canary-pass-4321")
    assert "canary-pass-4321" not in repr(conn)


def test_server_requires_uri(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACKSDK_BACKEND=server without a URI says which variable to set."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    with pytest.raises(ConfigError, match="TRACKSDK_SERVER__URI is not set"):
        connect()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlflow.example.com", "is not an http"),
        ("ftp://mlflow.example.com", "is not an http"),
        ("http://host:99999", "invalid port"),
    ],
)
def test_server_malformed_uri(
    project: Path, monkeypatch: pytest.MonkeyPatch, uri: str, message: str
) -> None:
    """A malformed server URI raises ConfigError naming the variable and its source."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", uri)
    with pytest.raises(
        ConfigError, match=f"TRACKSDK_SERVER__URI.*\\(from environment\\).*{message}"
    ):
        connect()


def test_server_basic_and_bearer(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic auth needs user and password; a token gives bearer auth."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "https://mlflow.example.com/")
    monkeypatch.setenv("TRACKSDK_SERVER__USERNAME", "bob")
    with pytest.raises(ConfigError, match="TRACKSDK_SERVER__PASSWORD is not set"):
        connect()
    monkeypatch.setenv("TRACKSDK_SERVER__PASSWORD", "pw-123456")
    conn = connect()
    assert conn.tracking_uri == "https://mlflow.example.com"
    assert conn.credentials == Credentials("basic", "pw-123456", "bob", "TRACKSDK_SERVER__PASSWORD")
    monkeypatch.delenv("TRACKSDK_SERVER__USERNAME")
    monkeypatch.delenv("TRACKSDK_SERVER__PASSWORD")
    monkeypatch.setenv("TRACKSDK_SERVER__TOKEN", "tok-123456")
    assert connect().credentials.header() == "Bearer tok-123456"  # type: ignore[union-attr]


def test_credentials_never_over_plain_http_to_remote(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials with http:// to a non-loopback host are refused; loopback is allowed."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__TOKEN", "tok-123456")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "http://mlflow.example.com")
    with pytest.raises(ConfigError, match="plain http to a remote host"):
        connect()
    for host in ("127.0.0.1", "localhost", "[::1]"):
        monkeypatch.setenv("TRACKSDK_SERVER__URI", f"http://{host}:5000")
        assert connect().credentials is not None
    monkeypatch.delenv("TRACKSDK_SERVER__TOKEN")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "http://mlflow.example.com")
    assert connect().credentials is None  # no credentials: plain http is the user's call


def test_dagshub_requires_owner_and_repo(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dagshub without owner/repo names both variables and promises no repo creation."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    with pytest.raises(
        ConfigError,
        match=r"TRACKSDK_DAGSHUB__OWNER and TRACKSDK_DAGSHUB__REPO.*never creates a repository",
    ):
        connect()


def test_dagshub_without_token_and_no_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token anywhere and no terminal: a ConfigError saying how to get one, no prompt."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__OWNER", "me")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__REPO", "churn")
    with pytest.raises(ConfigError, match=r"No DagsHub token found.*DAGSHUB_USER_TOKEN"):
        connect()


def test_dagshub_uri_and_username_from_settings(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a username set, no API call is made; the URI is <host>/<owner>/<repo>.mlflow."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "dagshub")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__OWNER", "me")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__REPO", "churn")
    monkeypatch.setenv("TRACKSDK_DAGSHUB__USERNAME", "me")
    monkeypatch.setenv("DAGSHUB_USER_TOKEN", "env-token-123456")
    conn = connect()
    assert conn.tracking_uri == "https://dagshub.com/me/churn.mlflow"
    assert conn.credentials is not None
    assert conn.credentials.source == "DAGSHUB_USER_TOKEN"
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", "settings-token-123456")
    assert connect().credentials.source == "TRACKSDK_DAGSHUB__TOKEN"  # type: ignore[union-attr]


def test_dagshub_token_cache_is_read_safely(tmp_path: Path) -> None:
    """Tokens come from the dagshub client's cache; expired ones are skipped."""
    cache = tmp_path / "tokens"
    cache.write_text(
        "version: '1'\n"
        "https://dagshub.com:\n"
        "- access_token: expired-token-1\n"
        "  expiry: '2001-01-01T00:00:00.000000Z'\n"
        "  token_type: bearer\n"
        "- access_token: good-token-2\n"
        "  expiry: never\n"
        "  token_type: app-token\n"
    )
    assert read_cached_token("https://dagshub.com", cache) == "good-token-2"
    assert read_cached_token("https://other.example.com", cache) is None
    cache.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert read_cached_token("https://dagshub.com", cache) is None


def test_auth_is_scoped_to_the_tracking_uri() -> None:
    """Credentials are attached only to URLs under the registered tracking URI."""
    creds = Credentials("bearer", "scoped-token-1")
    register("https://mlflow.example.com/team", creds)
    try:
        assert credentials_for("https://mlflow.example.com/team/api/2.0/x") is creds
        assert credentials_for("https://mlflow.example.com/team") is creds
        assert credentials_for("https://mlflow.example.com/teamother/api") is None
        assert credentials_for("https://s3.amazonaws.com/bucket/obj") is None
    finally:
        unregister("https://mlflow.example.com/team")
    assert credentials_for("https://mlflow.example.com/team/api") is None


def test_third_party_backend_from_an_installed_package(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A backend shipped by another package (tests/resources/tracksdk-dummy) is selectable."""
    from tracksdk import tracked

    monkeypatch.setenv("TRACKSDK_BACKEND", "folder")
    monkeypatch.setenv("TRACKSDK_FOLDER__PATH", str(tmp_path / "third-party"))
    with tracked(experiment="plugged") as run:
        run.log_metric("m", 1.0)
    assert run.tracking_uri == f"sqlite:///{tmp_path / 'third-party' / 'store.db'}"
    from mlflow.tracking import MlflowClient

    stored = MlflowClient(tracking_uri=run.tracking_uri).get_run(str(run.run_id))
    assert stored.data.metrics == {"m": 1.0}
    assert stored.info.artifact_uri.startswith(str(tmp_path / "third-party" / "artifacts"))


def test_unknown_backend_lists_installed_third_party_ones(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error for an unknown backend lists plugin backends too."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "nope")
    with pytest.raises(ConfigError, match="Valid backends: dagshub, folder, local, memory, server"):
        connect()
