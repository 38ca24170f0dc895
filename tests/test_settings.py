"""Settings sources, precedence and the errors a bad setting produces."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracksdk
from tracksdk import ConfigError, tracked
from tracksdk._config import resolve, resolve_with_connection
from tracksdk.settings import find_project_root, load_settings


def write_pyproject(root: Path, body: str) -> None:
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\n\n[tool.tracksdk]\n{body}\n')


def test_precedence_arguments_env_dotenv_pyproject(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arguments beat env, env beats .env, .env beats pyproject, pyproject beats defaults."""
    write_pyproject(project, 'experiment = "from-pyproject"\nhttp_retries = 5\nstrict = true')
    (project / ".env").write_text("TRACKSDK_EXPERIMENT=from-dotenv\nTRACKSDK_HTTP_RETRIES=4\n")
    monkeypatch.setenv("TRACKSDK_EXPERIMENT", "from-env")
    explained = resolve({"experiment": "from-args"})
    assert explained.settings.experiment == "from-args"
    assert explained.source_of("experiment") == "arguments to tracked()/configure()"
    explained = resolve()
    assert explained.settings.experiment == "from-env"
    assert explained.source_of("experiment") == "environment"
    assert explained.settings.http_retries == 4
    assert explained.source_of("http_retries") == str(project / ".env")
    assert explained.settings.strict is True
    assert explained.source_of("strict").endswith("pyproject.toml [tool.tracksdk]")
    assert explained.source_of("http_timeout") == "default"


def test_nested_sections_from_env_and_pyproject(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested settings come from TRACKSDK_X__Y variables and [tool.tracksdk.x] tables."""
    write_pyproject(project, '[tool.tracksdk.server]\nuri = "https://mlflow.example.com"')
    monkeypatch.setenv("TRACKSDK_SERVER__VERIFY_TLS", "false")
    settings = resolve().settings
    assert settings.server.uri == "https://mlflow.example.com"
    assert settings.server.verify_tls is False


def test_configure_sits_between_arguments_and_env(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() beats the environment; tracked(experiment=...) beats configure()."""
    monkeypatch.setenv("TRACKSDK_EXPERIMENT", "env")
    tracksdk.configure(experiment="configured")
    with tracked() as run:
        pass
    with tracked(experiment="argument") as other:
        pass
    from core_fixtures import local_client

    client = local_client(project)
    assert client.get_experiment(run.experiment_id).name == "configured"
    assert client.get_experiment(other.experiment_id).name == "argument"


def test_unknown_env_variable_is_an_error_with_suggestion(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt TRACKSDK_ variable raises ConfigError suggesting the right name."""
    monkeypatch.setenv("TRACKSDK_EXPERIMNT", "x")
    with pytest.raises(ConfigError, match=r"TRACKSDK_EXPERIMNT.*Did you mean TRACKSDK_EXPERIMENT"):
        resolve()


def test_unknown_pyproject_key_is_an_error(project: Path) -> None:
    """A misspelt key in [tool.tracksdk] raises ConfigError naming it."""
    write_pyproject(project, 'backnd = "server"')
    with pytest.raises(ConfigError, match=r"unknown setting 'backnd'.*pyproject.toml"):
        resolve()


def test_bad_value_names_variable_source_and_fix(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed value names the variable, where it came from and what is valid."""
    monkeypatch.setenv("TRACKSDK_SERVER__VERIFY_TLS", "maybe")
    with pytest.raises(ConfigError) as caught:
        resolve()
    message = str(caught.value)
    assert "TRACKSDK_SERVER__VERIFY_TLS = 'maybe' (from environment)" in message
    assert "valid boolean" in message


def test_bad_mode_lists_valid_values(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown mode lists online and disabled."""
    (project / ".env").write_text("TRACKSDK_MODE=sometimes\n")
    with pytest.raises(ConfigError, match=r"TRACKSDK_MODE = 'sometimes' \(from .*\.env\).*online"):
        resolve()


def test_unknown_backend_raises_before_function_runs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown backend raises ConfigError listing the valid ones; the function never runs."""
    monkeypatch.setenv("TRACKSDK_BACKEND", "s3")
    ran = []

    @tracked
    def train() -> None:
        ran.append(True)

    with pytest.raises(
        ConfigError, match=r"Unknown backend 's3'.*Valid backends: dagshub, .*local, memory, server"
    ):
        train()
    assert ran == []


def test_secret_values_are_masked_in_errors(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected secret setting never appears in the error."""
    secret = "canary-token-value-98765"
    monkeypatch.setenv("TRACKSDK_SERVER__TOKEN", secret)
    monkeypatch.setenv("TRACKSDK_SERVER__USERNAME", "bob")
    monkeypatch.setenv("TRACKSDK_BACKEND", "server")
    monkeypatch.setenv("TRACKSDK_SERVER__URI", "https://mlflow.example.com")
    with pytest.raises(ConfigError) as caught:
        resolve_with_connection()
    assert "Both TRACKSDK_SERVER__TOKEN and TRACKSDK_SERVER__USERNAME" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_settings_repr_masks_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings objects never show tokens in their repr."""
    monkeypatch.setenv("TRACKSDK_DAGSHUB__TOKEN", "canary-dagshub-token-123")
    settings = load_settings().settings
    assert "canary-dagshub-token-123" not in repr(settings)
    assert "canary-dagshub-token-123" not in str(settings.model_dump())


def test_settings_class_reads_env_like_any_pydantic_settings(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tracksdk.Settings() is a regular pydantic-settings model over the same sources."""
    write_pyproject(project, 'experiment = "py"')
    monkeypatch.setenv("TRACKSDK_HTTP_TIMEOUT", "12.5")
    settings = tracksdk.Settings()
    assert settings.experiment == "py"
    assert settings.http_timeout == 12.5


def test_project_root_discovery(tmp_path: Path) -> None:
    """The root is the git root, else the nearest pyproject.toml folder, else the folder."""
    plain = tmp_path / "plain" / "sub"
    plain.mkdir(parents=True)
    assert find_project_root(plain) == plain.resolve()
    (tmp_path / "plain" / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert find_project_root(plain) == (tmp_path / "plain").resolve()
    (tmp_path / ".git").mkdir()
    assert find_project_root(plain) == tmp_path.resolve()


def test_settings_cache_follows_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a TRACKSDK_ variable in-process is seen by the next resolution."""
    monkeypatch.setenv("TRACKSDK_EXPERIMENT", "one")
    assert resolve().settings.experiment == "one"
    monkeypatch.setenv("TRACKSDK_EXPERIMENT", "two")
    assert resolve().settings.experiment == "two"
