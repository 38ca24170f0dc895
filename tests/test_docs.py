"""The docs keep up with the code: every variable, command and public name is documented."""

from __future__ import annotations

import re
from pathlib import Path

import tracksdk
from tracksdk.cli import app
from tracksdk.settings import known_env_vars

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def test_configuration_lists_every_variable() -> None:
    """docs/configuration.md names every TRACKSDK_* variable the settings read."""
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"`(TRACKSDK_[A-Z0-9_]+)`", text))
    missing = sorted(known_env_vars() - documented)
    assert missing == []


def test_configuration_lists_no_variable_that_does_not_exist() -> None:
    """Every TRACKSDK_* variable the docs mention is one the settings read."""
    documented = set(re.findall(r"\b(TRACKSDK_[A-Z0-9_]*[A-Z0-9])\b", all_docs()))
    # A third-party backend's own variables, and the misspelling shown as an error example.
    examples = {"TRACKSDK_ACME__URL", "TRACKSDK_ACME__LOGIN_FILE", "TRACKSDK_EXPERIMNT"}
    assert sorted(documented - known_env_vars() - examples) == []


def test_cli_doc_covers_every_command() -> None:
    """docs/cli.md documents each tracksdk command."""
    text = (DOCS / "cli.md").read_text()
    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    assert commands
    for command in commands:
        assert f"tracksdk {command}" in text, command


def test_public_names_are_documented() -> None:
    """Every name in tracksdk.__all__ appears in the docs."""
    text = all_docs()
    missing = [name for name in tracksdk.__all__ if name != "__version__" and name not in text]
    assert missing == []


def test_readme_links_resolve() -> None:
    """Every relative link in README.md points to a file or folder in the repository."""
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target
