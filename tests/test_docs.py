"""The docs keep up with the code: every variable, command and public name is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


# --- promises the docs make that the code must keep --------------------------------------

#: Every Markdown file a user reads: docs/, examples/, the README and the plugins' READMEs.
MARKDOWN = sorted(
    [
        *DOCS.glob("*.md"),
        *(ROOT / "examples").glob("*.md"),
        ROOT / "README.md",
        *(ROOT / "plugins").glob("*/README.md"),
    ]
)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code(text: str) -> list[str]:
    """The fenced code blocks and the inline code spans of a Markdown text."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def _cli_commands() -> dict[str, set[str]]:
    """Each tracksdk command and the option names it accepts (from Typer/Click)."""
    import typer.main

    group = typer.main.get_command(app)
    commands: dict[str, set[str]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        options = {"--help"}
        for param in command.params:
            options.update(param.opts)
            options.update(param.secondary_opts)
        commands[name] = options
    return commands


#: `tracksdk <command> ...` as typed: at the start of a line or code span (after a `$ `
#: prompt, VAR=value assignments and a path such as .venv/bin/) or of a string in an
#: example; the words up to the end of the line, a backtick, a pipe, a comment or a quote.
CLI_CALL = re.compile(
    r"(?:^|`|(?<!\"\")\")[ \t]*(?:\$[ \t]+)?(?:[A-Z_][A-Z0-9_]*=\S+[ \t]+)*(?:[\w.~-]*/)?"
    r"tracksdk((?:[ \t]+[^\s`|#;&)\"']+)+)",
    re.M,
)


def _cli_calls() -> list[tuple[str, str, list[str]]]:
    """(file, command, options) for each `tracksdk ...` command line in the docs and examples."""
    found = []
    sources = [(p, _code(p.read_text())) for p in MARKDOWN]
    sources += [(p, [p.read_text()]) for p in EXAMPLES]
    for path, snippets in sources:
        for snippet in snippets:
            for match in CLI_CALL.finditer(snippet):
                words = match.group(1).split()
                if not words or words[0].startswith("<") or words[0] == "--help":
                    continue
                options = [w.split("=")[0] for w in words[1:] if re.match(r"--?[a-z]", w)]
                found.append((_rel(path), words[0], options))
    return found


def test_every_cli_command_and_option_shown_in_the_docs_exists() -> None:
    """Each `tracksdk <command> --option` in docs/, examples/ and the READMEs is a real one."""
    commands = _cli_commands()
    calls = _cli_calls()
    assert len(calls) > 30  # the parser found the docs' command lines
    wrong = [
        f"{path}: tracksdk {command} {' '.join(options)}"
        for path, command, options in calls
        if command not in commands or not set(options) <= commands[command]
    ]
    assert wrong == []
    # And each documented option of each command is shown somewhere in cli.md.
    cli = (DOCS / "cli.md").read_text()
    for command, options in commands.items():
        for option in options - {"--help"}:
            if option.startswith("--"):
                assert f"`{option}" in cli, f"tracksdk {command} {option} is not in cli.md"


def _python_snippets() -> list[tuple[str, str]]:
    found = [(_rel(p), p.read_text()) for p in EXAMPLES]
    for path in MARKDOWN:
        found += [(_rel(path), snippet) for snippet in _code(path.read_text())]
    return found


def test_every_tracksdk_name_the_docs_import_or_call_exists() -> None:
    """`from tracksdk[.x] import Y`, `import tracksdk.x` and `tracksdk.f(...)` in the docs
    and examples name things that exist."""
    import importlib

    missing = []
    checked = 0
    for path, code in _python_snippets():
        for module, names in re.findall(
            r"from (tracksdk[\w.]*) import \(?([\w, \t\n]+?)\)?(?:\n|$|#)", code
        ):
            imported = importlib.import_module(module)
            for name in (n.strip() for n in names.replace("\n", ",").split(",")):
                name = name.split(" as ")[0].strip()
                if name:
                    checked += 1
                    if not hasattr(imported, name):
                        try:
                            importlib.import_module(f"{module}.{name}")
                        except ImportError:
                            missing.append(f"{path}: from {module} import {name}")
        for module in re.findall(r"^\s*import (tracksdk\.[\w.]+)", code, flags=re.M):
            checked += 1
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(f"{path}: import {module}")
        for name in re.findall(r"\btracksdk\.([A-Za-z_]\w*)\(", code):
            checked += 1
            if not hasattr(tracksdk, name):
                missing.append(f"{path}: tracksdk.{name}(...)")
    assert checked > 50
    assert missing == []


#: Words that announce a feature as missing. A doc that uses one must be talking about
#: something that really does not exist: each such line is listed here, with why.
NOT_YET_WORDS = re.compile(
    r"\bplanned\b|\bnot yet\b|\bnot a tracksdk feature\b|\bknown bug\b|\bcoming soon\b|"
    r"\bnot built into tracksdk\b|\bnot supported yet\b",
    re.I,
)
NOT_YET_ALLOWED = {
    # "a record not yet acknowledged": the journal's state, not a missing feature.
    ("docs/cli.md", "record not yet acknowledged"),
}


def test_no_doc_calls_a_feature_planned_or_not_yet_there() -> None:
    """The docs and examples do not call features planned, not yet there or known bugs."""
    found = []
    for path in [*MARKDOWN, *EXAMPLES]:
        for line in path.read_text().splitlines():
            if NOT_YET_WORDS.search(line) and not any(
                _rel(path) == where and phrase in line for where, phrase in NOT_YET_ALLOWED
            ):
                found.append(f"{_rel(path)}: {line.strip()}")
    assert found == []


#: Each exit status docs/cli.md states for a command, and the tests that check it.
EXIT_STATUS_TESTS: dict[tuple[str, int], list[str]] = {
    ("doctor", 0): ["tests/test_cli.py::test_doctor_local_ok"],
    ("doctor", 1): [
        "tests/test_cli.py::test_doctor_reports_bad_settings_and_exits_nonzero",
        "tests/test_cli.py::test_doctor_unreachable_server_exits_nonzero",
    ],
    ("ui", 0): ["tests/test_cli.py::test_ui_prints_url_for_remote_backend"],
    ("ui", 1): [
        "tests/test_cli.py::test_ui_exits_1_when_the_port_is_taken",
        "tests/test_cli.py::test_ui_that_stops_by_itself_exits_1_and_says_where_links_point",
    ],
    ("ui", 2): ["tests/test_cli.py::test_ui_url_setting_is_validated"],
    ("ui", 143): ["tests/test_cli.py::test_ui_serves_the_local_store_and_sigterm_stops_all_of_it"],
    # SIGINT and SIGHUP: the same supervisor and _exit_by_signal as serve, tested there
    # for all three signals (a ui start takes ~20-40 s here).
    ("ui", 130): ["tests/test_cli.py::test_serve_stops_every_process_and_removes_the_download"],
    ("ui", 129): ["tests/test_cli.py::test_serve_stops_every_process_and_removes_the_download"],
    ("runs", 1): ["tests/test_cli.py::test_runs_and_sync_exit_statuses"],
    ("runs", 2): ["tests/test_cli.py::test_runs_and_sync_exit_statuses"],
    ("diff", 1): ["tests/test_cli_diff.py::test_an_unknown_run_is_the_users_mistake"],
    ("diff", 2): ["tests/test_cli_diff.py::test_an_unknown_run_is_the_users_mistake"],
    ("reproduce", 1): [
        "tests/test_reproduce.py::test_a_worktree_git_cannot_make_is_an_error_not_a_traceback"
    ],
    ("reproduce", 2): [
        "tests/test_reproduce.py::test_a_run_without_git_information",
        "tests/test_reproduce.py::test_a_commit_the_local_repository_does_not_have",
        "tests/test_reproduce.py::test_a_diff_that_no_longer_applies",
        "tests/test_reproduce.py::test_a_folder_that_is_not_empty",
    ],
    ("models", 0): [
        "tests/test_cli.py::test_models_set_alias_promotes_and_rolls_back_with_audit_tags"
    ],
    ("models", 1): [
        "tests/test_cli.py::test_models_set_alias_promotes_and_rolls_back_with_audit_tags",
        "tests/test_cli.py::test_models_set_alias_on_a_server_without_registry",
    ],
    ("models", 2): ["tests/test_cli.py::test_models_reason_without_set_alias_exits_2"],
    ("sync", 0): ["tests/test_journal.py::test_offline_mode_journals_then_sync_uploads"],
    ("sync", 1): ["tests/test_cli.py::test_runs_and_sync_exit_statuses"],
    ("sync", 2): ["tests/test_cli.py::test_runs_and_sync_exit_statuses"],
    ("serve", 143): ["tests/test_cli.py::test_serve_stops_every_process_and_removes_the_download"],
    ("serve", 130): ["tests/test_cli.py::test_serve_stops_every_process_and_removes_the_download"],
    ("serve", 129): ["tests/test_cli.py::test_serve_stops_every_process_and_removes_the_download"],
}
EXIT_CODES = {0, 1, 2, 129, 130, 143}


def _documented_exit_statuses() -> set[tuple[str, int]]:
    """(command, status) for each exit status a section of docs/cli.md states."""
    text = (DOCS / "cli.md").read_text()
    found = set()
    for command, body in re.findall(r"^## `tracksdk (\w+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        prose = " ".join(body.split())
        for sentence in re.split(r"(?<=\.)\s+(?=[A-Z`(])", prose):
            if re.search(r"exit status|exits \d", sentence, re.I):
                # Statuses of other programs quoted in passing are not this command's.
                sentence = re.sub(r"`mlflow ui` exits 0", "", sentence)
                found |= {
                    (command, int(n))
                    for n in re.findall(r"(?<![\w.])(\d+)(?![\w.])", sentence)
                    if int(n) in EXIT_CODES
                }
    return found


def test_every_exit_status_in_cli_md_is_checked_by_a_test() -> None:
    """Each exit status docs/cli.md states for a command has a test that checks it."""
    documented = _documented_exit_statuses()
    assert ("ui", 1) in documented and ("sync", 2) in documented  # the parser works
    assert sorted(documented - set(EXIT_STATUS_TESTS)) == []
    assert sorted(set(EXIT_STATUS_TESTS) - documented) == []  # the table keeps up too
    for node_ids in EXIT_STATUS_TESTS.values():
        for node_id in node_ids:
            file, name = node_id.split("::")
            assert f"def {name}(" in (ROOT / file).read_text(), node_id


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_and_anchors_resolve() -> None:
    """Every relative link in the docs, examples and READMEs points to an existing file,
    and its #anchor to a heading of that file."""
    broken = []
    for path in MARKDOWN:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{_rel(path)}: {target}")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{_rel(path)}: {target} (no such heading)")
    assert broken == []


#: Paths of repository files named in code spans: `tracksdk/_pyfunc.py`, `tests/...`.
REPO_PATH = re.compile(r"^(?:tracksdk|plugins|tests|examples|bench|docs)/[\w./-]*[\w/]$")


def test_repository_files_named_in_the_docs_exist() -> None:
    """Every repository path a doc names in code (`plugins/.../test_x.py`) exists."""
    missing = []
    checked = 0
    for path in MARKDOWN:
        for span in re.findall(r"`([^`\n]+)`", path.read_text()):
            for word in span.split():
                word = word.split("::")[0].rstrip(",.:;)")
                if REPO_PATH.match(word) and "<" not in word and "*" not in word:
                    checked += 1
                    if not (ROOT / word).exists():
                        missing.append(f"{_rel(path)}: {word}")
    assert checked > 10
    assert missing == []


def test_dagshub_user_token_is_read_from_dotenv_and_other_names_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As configuration.md says: `.env` may hold other tools' names, and DAGSHUB_USER_TOKEN
    from it is the DagsHub token when the environment has none."""
    import os

    from tracksdk import _config

    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_TRACKING", "DAGSHUB_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / ".env").write_text(
        "TRACKSDK_BACKEND=dagshub\nTRACKSDK_DAGSHUB__OWNER=me\nTRACKSDK_DAGSHUB__REPO=r\n"
        "TRACKSDK_DAGSHUB__USERNAME=me\nDAGSHUB_USER_TOKEN=token-from-dotenv-123\n"
        "AWS_ACCESS_KEY_ID=abc\nFOO=bar\n"
    )
    tracksdk.reset()
    _, conn = _config.resolve_with_connection()
    assert conn.credentials is not None
    assert conn.credentials.secret == "token-from-dotenv-123"
    assert conn.credentials.source == f"DAGSHUB_USER_TOKEN in {tmp_path / '.env'}"
    assert "FOO" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ
    tracksdk.reset()
