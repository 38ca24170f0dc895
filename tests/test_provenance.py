"""Tests of tracksdk.provenance against real git repositories made in tmp_path."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tracksdk.provenance as provenance
from tracksdk._redact import strip_userinfo
from tracksdk.provenance import CaptureOptions, Provenance, _git_process, collect, redact_argv
from tracksdk.provenance import environment as environment_module
from tracksdk.provenance import git as git_module

GIT_ONLY = CaptureOptions(source=False, command=False, environment=False, requirements=False)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None, *, commit: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "commit.gpgsign", "false")
    for name, text in (files or {"train.py": "print('hello')\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


def capture(
    entry: Path | None,
    options: CaptureOptions = GIT_ONLY,
    *,
    function_file: Path | None = None,
    argv: list[str] | None = None,
    redact: object = None,
) -> Provenance:
    if argv is None:
        argv = [str(entry)] if entry is not None else ["-c"]
    if redact is None:
        return collect(options, entry_script=entry, function_file=function_file, argv=argv)
    assert callable(redact)
    return collect(
        options, entry_script=entry, function_file=function_file, argv=argv, redact=redact
    )


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's git configuration and any hook variables out of the tests."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "global.gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(variable, raising=False)


def test_commit_branch_and_remote_with_credentials_stripped(tmp_path: Path) -> None:
    """A clean repository gives commit, branch, status ok, and origin's URL without credentials."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "https://example.com/upstream/r.git")
    git(repo, "remote", "add", "origin", "https://user:s3cr3t@github.com/owner/repo.git")

    result = capture(repo / "train.py")

    assert result.tags == {
        "tracksdk.git.status": "ok",
        "mlflow.source.git.commit": git(repo, "rev-parse", "HEAD"),
        "mlflow.source.git.branch": "main",
        "mlflow.source.git.repoURL": "https://github.com/owner/repo.git",
        "mlflow.source.git.dirty": "false",
        "tracksdk.git.untracked": "0",
    }
    assert result.texts == {}
    assert result.warnings == []


def test_first_remote_is_used_without_origin(tmp_path: Path) -> None:
    """Without an origin remote, the first configured remote's URL is recorded."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "fork", "https://ghp_token@github.com/me/fork.git")
    git(repo, "remote", "add", "zeta", "https://example.com/z.git")

    result = capture(repo / "train.py")

    assert result.tags["mlflow.source.git.repoURL"] == "https://github.com/me/fork.git"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@host/x.git", "https://host/x.git"),
        ("http://tok@host:8080/x", "http://host:8080/x"),
        ("https://host/x.git", "https://host/x.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"),
        ("HTTPS://user:p@ss@host/x.git", "HTTPS://host/x.git"),  # an @ inside the password
    ],
)
def test_strip_url_credentials(url: str, expected: str) -> None:
    """Credentials leave http(s) URLs entirely and other URLs lose only their password."""
    assert strip_userinfo(url, remove=True) == expected


def test_dirty_staged_and_unstaged_changes_are_in_the_diff(tmp_path: Path) -> None:
    """Staged and unstaged changes to tracked files make the run dirty and both are in the diff."""
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n", "b.py": "b = 1\n"})
    (repo / "a.py").write_text("a = 2  # unstaged\n")
    (repo / "b.py").write_text("b = 2  # staged\n")
    git(repo, "add", "b.py")

    result = capture(repo / "a.py")

    assert result.tags["mlflow.source.git.dirty"] == "true"
    diff = result.texts["source/diff.txt"]
    assert "+a = 2  # unstaged" in diff
    assert "+b = 2  # staged" in diff
    assert "diff --git a/a.py b/a.py" in diff
    assert "tracksdk.git.diff_truncated" not in result.tags


def test_diff_of_named_paths_equals_the_full_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Limiting the diff to the changed paths gives git's full diff, odd file names included."""
    names = ["a b.py", "*.py", ":(glob)x", "[ab].py", "ab.py", "-dash.py", "gone.py"]
    repo = make_repo(tmp_path / "repo", {name: f"{name} = 1\n" for name in names})
    for name in names[:4]:
        (repo / name).write_text(f"{name} = 2\n")
    (repo / "gone.py").unlink()
    expected = subprocess.run(
        ["git", "diff", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout

    named = capture(repo / "a b.py").texts["source/diff.txt"]
    monkeypatch.setattr(git_module, "_MAX_PATHSPECS", 0)
    full = capture(repo / "a b.py").texts["source/diff.txt"]

    assert named == expected
    assert full == expected
    assert "ab.py" not in expected.replace("[ab].py", "")


def test_binary_changes_do_not_break_the_diff(tmp_path: Path) -> None:
    """A changed binary file and non-UTF-8 text give a readable diff instead of an error."""
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n"})
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    (repo / "latin.txt").write_bytes(b"caf\xe9\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "binary")
    (repo / "blob.bin").write_bytes(bytes(reversed(range(256))))
    (repo / "latin.txt").write_bytes(b"na\xefve\n")

    result = capture(repo / "train.py")

    diff = result.texts["source/diff.txt"]
    assert "Binary files a/blob.bin and b/blob.bin differ" in diff
    assert "+na\ufffdve" in diff
    assert result.warnings == []


def test_untracked_files_are_listed_and_do_not_make_the_run_dirty(tmp_path: Path) -> None:
    """Untracked files are counted and listed relative to the root; ignored files are not."""
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n", ".gitignore": "*.log\n"})
    (repo / "notes.txt").write_text("n")
    (repo / "data").mkdir()
    (repo / "data" / "new.csv").write_text("a,b\n")
    (repo / "debug.log").write_text("ignored")

    result = capture(repo / "train.py")

    assert result.tags["mlflow.source.git.dirty"] == "false"
    assert result.tags["tracksdk.git.untracked"] == "2"
    assert result.texts["source/untracked.txt"] == "data/new.csv\nnotes.txt\n"
    assert "source/diff.txt" not in result.texts


def test_untracked_list_is_capped_with_a_note(tmp_path: Path) -> None:
    """Only max_untracked_files paths are listed, followed by a note with the total."""
    repo = make_repo(tmp_path / "repo")
    for index in range(5):
        (repo / f"extra{index}.txt").write_text("x")

    result = capture(repo / "train.py", CaptureOptions(max_untracked_files=2))

    assert result.tags["tracksdk.git.untracked"] == "5"
    assert result.texts["source/untracked.txt"].splitlines() == [
        "extra0.txt",
        "extra1.txt",
        "# tracksdk: 3 more untracked files not listed (5 in total)",
    ]


def test_script_in_a_subfolder_finds_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script in a subfolder, run from anywhere, finds its repository and a root-relative name."""
    repo = make_repo(tmp_path / "repo", {"scripts/train.py": "print(1)\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    script = repo / "scripts" / "train.py"

    result = capture(script, CaptureOptions(requirements=False), argv=[str(script)])

    assert result.tags["tracksdk.git.status"] == "ok"
    assert result.tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert result.tags["mlflow.source.name"] == "scripts/train.py"

    monkeypatch.chdir(repo / "scripts")
    relative = capture(Path("train.py"), CaptureOptions(requirements=False), argv=["train.py"])
    assert relative.tags["mlflow.source.name"] == "scripts/train.py"
    assert relative.tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")


def test_outside_any_repository_nothing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a repository the status is no-repository, with no git tags and no warnings."""
    folder = tmp_path / "plain"
    folder.mkdir()
    script = folder / "train.py"
    script.write_text("print(1)\n")
    monkeypatch.chdir(folder)

    result = capture(script, CaptureOptions(requirements=False))

    assert result.tags["tracksdk.git.status"] == "no-repository"
    assert not [key for key in result.tags if key.startswith("mlflow.source.git")]
    assert result.tags["mlflow.source.name"] == str(script)
    assert result.texts == {"source/train.py": "print(1)\n"}
    assert result.warnings == []


def test_repository_without_commits(tmp_path: Path) -> None:
    """A fresh repository reports no-commits, its branch, and the staged files as the diff."""
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n"}, commit=False)
    git(repo, "add", "train.py")
    (repo / "train.py").write_text("x = 2\n")
    (repo / "loose.txt").write_text("untracked")

    result = capture(repo / "train.py")

    assert result.tags["tracksdk.git.status"] == "no-commits"
    assert "mlflow.source.git.commit" not in result.tags
    assert result.tags["mlflow.source.git.branch"] == "main"
    assert result.tags["mlflow.source.git.dirty"] == "true"
    assert result.tags["tracksdk.git.untracked"] == "1"
    diff = result.texts["source/diff.txt"]
    assert "new file mode" in diff
    assert "+x = 1" in diff
    assert "+x = 2" in diff
    assert result.warnings == []


def test_detached_head_omits_the_branch(tmp_path: Path) -> None:
    """On a detached HEAD the commit is recorded and the branch tag is left out."""
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach")

    result = capture(repo / "train.py")

    assert result.tags["tracksdk.git.status"] == "ok"
    assert result.tags["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert "mlflow.source.git.branch" not in result.tags


def test_long_diff_is_truncated_with_a_note_and_a_tag(tmp_path: Path) -> None:
    """A diff over max_diff_bytes is cut at a line end, ends with a note, and is tagged."""
    repo = make_repo(tmp_path / "repo", {"big.txt": "".join(f"line {i}\n" for i in range(5000))})
    (repo / "big.txt").write_text("".join(f"changed {i}\n" for i in range(5000)))
    full = git(repo, "diff", "HEAD").encode() + b"\n"

    result = capture(repo / "big.txt", CaptureOptions(max_diff_bytes=1000))

    diff = result.texts["source/diff.txt"]
    body, note = diff.rstrip("\n").rsplit("\n", 1)
    kept = len((body + "\n").encode())
    assert note == f"# tracksdk: diff truncated at {kept} bytes of {len(full)}"
    assert kept <= 1000
    assert full.decode().startswith(body)
    assert result.tags["tracksdk.git.diff_truncated"] == "true"


def test_source_artifacts_for_entry_script_and_function_module(tmp_path: Path) -> None:
    """The entry script and the function's module are copied under source/, a shared file once."""
    repo = make_repo(
        tmp_path / "repo", {"train.py": "import model\n", "pkg/model.py": "def fit(): ...\n"}
    )
    options = CaptureOptions(git=False, diff=False, untracked=False, requirements=False)

    both = capture(repo / "train.py", options, function_file=repo / "pkg" / "model.py")
    assert both.texts == {
        "source/train.py": "import model\n",
        "source/model.py": "def fit(): ...\n",
    }
    assert both.tags["mlflow.source.type"] == "LOCAL"

    same = capture(repo / "train.py", options, function_file=repo / "train.py")
    assert same.texts == {"source/train.py": "import model\n"}

    (repo / "pkg" / "train.py").write_text("# other\n")
    clash = capture(repo / "train.py", options, function_file=repo / "pkg" / "train.py")
    assert clash.texts == {
        "source/train.py": "import model\n",
        "source/function/train.py": "# other\n",
    }


def test_large_and_missing_source_files_are_skipped(tmp_path: Path) -> None:
    """Files over max_source_bytes are skipped with a warning, missing ones (python -c) silently."""
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 100)
    options = CaptureOptions(
        git=False, diff=False, untracked=False, requirements=False, max_source_bytes=50
    )

    result = capture(big, options, function_file=tmp_path / "missing.py")

    assert result.texts == {}
    assert len(result.warnings) == 1
    assert "big.py" in result.warnings[0]
    assert "max_source_bytes" in result.warnings[0]
    assert result.tags["tracksdk.provenance.warnings"] == result.warnings[0]

    from_c = capture(None, options, argv=["-c"])
    assert from_c.texts == {}
    assert from_c.warnings == []
    assert from_c.tags["mlflow.source.name"] == "-c"


def test_notebook_is_detected_without_importing_ipython(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An active IPython shell in sys.modules makes the type NOTEBOOK and skips the launcher."""
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    launcher = tmp_path / "ipykernel_launcher.py"
    launcher.write_text("# launcher\n")
    options = CaptureOptions(git=False, diff=False, untracked=False, requirements=False)

    result = capture(launcher, options)

    assert result.tags["mlflow.source.type"] == "NOTEBOOK"
    assert result.texts == {}

    fake.get_ipython = lambda: None  # type: ignore[attr-defined]
    assert capture(launcher, options).tags["mlflow.source.type"] == "LOCAL"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--token", "abc", "--lr", "0.1"], ["--token", "***", "--lr", "0.1"]),
        (["--token=abc"], ["--token=***"]),
        (["--api-key", "k"], ["--api-key", "***"]),
        (["--api_key=k"], ["--api_key=***"]),
        (["--apiKey=k"], ["--apiKey=***"]),
        (["--password", "p"], ["--password", "***"]),
        (["--passwd=p"], ["--passwd=***"]),
        (["--secret", "s"], ["--secret", "***"]),
        (["--client-secret", "s"], ["--client-secret", "***"]),
        (["--access-key=a"], ["--access-key=***"]),
        (["--auth", "user:pw"], ["--auth", "***"]),
        (["--credentials", "c.json"], ["--credentials", "***"]),
        (["--hf_token", "hf_x"], ["--hf_token", "***"]),
        (["-token", "t"], ["-token", "***"]),
        (["DAGSHUB_USER_TOKEN=abc"], ["DAGSHUB_USER_TOKEN=***"]),
        (["db.password=x", "+auth.api_key=y"], ["db.password=***", "+auth.api_key=***"]),
        (["https://u:pw@host/x"], ["https://***@host/x"]),
        (["--uri=postgresql://u:pw@db/x"], ["--uri=postgresql://***@db/x"]),
        (["--header", "Authorization: Bearer abc.def"], ["--header", "Authorization: Bearer ***"]),
        # Flags and look-alikes are left alone.
        (["--use-auth-token", "--epochs", "3"], ["--use-auth-token", "--epochs", "3"]),
        (
            ["--tokenizer", "bert", "--max-tokens", "512"],
            ["--tokenizer", "bert", "--max-tokens", "512"],
        ),
        (["--author", "me", "--key-column", "id"], ["--author", "me", "--key-column", "id"]),
        (["-p", "8080", "-k", "5"], ["-p", "8080", "-k", "5"]),
        (["lr=0.1", "model.tokenizer=bert"], ["lr=0.1", "model.tokenizer=bert"]),
        (["--token"], ["--token"]),
    ],
)
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    """Secret-looking option values, KEY=VALUE secrets and URL credentials become ***."""
    assert redact_argv(argv) == expected


def test_command_tag_is_the_redacted_command_line(tmp_path: Path) -> None:
    """The command tag joins the interpreter's name and the redacted arguments, shell-quoted."""
    options = CaptureOptions(
        git=False, diff=False, untracked=False, source=False, environment=False, requirements=False
    )
    argv = ["train.py", "--token", "abc", "--name", "two words"]

    result = capture(None, options, argv=argv)

    interpreter = Path(sys.executable).name
    assert result.tags == {
        "tracksdk.command": f"{interpreter} train.py --token '***' --name 'two words'"
    }
    assert shlex.split(result.tags["tracksdk.command"])[1:] == redact_argv(argv)


def test_redact_callable_is_applied_to_every_tag_and_text(tmp_path: Path) -> None:
    """A canary planted in a file, the diff, argv, paths, branch and remote appears nowhere."""
    canary = "CANARY-9f8e7d"
    repo = make_repo(tmp_path / "repo", {"train.py": "x = 1\n", "conf.py": "key = 'old'\n"})
    git(repo, "checkout", "-q", "-b", f"feature-{canary}")
    git(repo, "remote", "add", "origin", f"https://github.com/{canary}/repo.git")
    (repo / "train.py").write_text(f"token = '{canary}'\n")
    (repo / "conf.py").write_text(f"key = '{canary}'\n")
    (repo / f"notes-{canary}.txt").write_text("x")
    argv = [str(repo / "train.py"), "--run-name", canary]

    def redact(text: str) -> str:
        return text.replace(canary, "[REDACTED]")

    result = capture(
        repo / "train.py",
        CaptureOptions(),
        function_file=repo / "conf.py",
        argv=argv,
        redact=redact,
    )

    everything = [*result.tags.values(), *result.texts.values(), *result.warnings]
    assert not [value for value in everything if canary in value]
    assert "[REDACTED]" in result.texts["source/diff.txt"]
    assert "[REDACTED]" in result.texts["source/train.py"]
    assert "[REDACTED]" in result.texts["source/conf.py"]
    assert "[REDACTED]" in result.texts["source/untracked.txt"]
    assert "[REDACTED]" in result.tags["tracksdk.command"]
    assert result.tags["mlflow.source.git.branch"] == "feature-[REDACTED]"
    assert result.tags["mlflow.source.git.repoURL"] == "https://github.com/[REDACTED]/repo.git"


def test_a_failing_redact_callable_drops_values_instead_of_leaking(tmp_path: Path) -> None:
    """When redact raises, the values are dropped with warnings and collect does not raise."""
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("changed\n")

    def redact(text: str) -> str:
        raise RuntimeError(text)

    result = capture(repo / "train.py", CaptureOptions(requirements=False), redact=redact)

    assert result.texts == {}
    assert list(result.tags) == ["tracksdk.provenance.warnings"]
    assert result.warnings
    assert "changed" not in result.tags["tracksdk.provenance.warnings"]


def test_missing_git_executable_is_an_error_status_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a git executable on PATH the status is error, with a warning."""
    repo = make_repo(tmp_path / "repo")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    result = capture(repo / "train.py")

    assert result.tags["tracksdk.git.status"] == "error"
    assert "mlflow.source.git.commit" not in result.tags
    assert any("git executable was not found" in warning for warning in result.warnings)


@pytest.mark.skipif(os.name != "posix", reason="the fake git is a shell script")
def test_a_hanging_git_is_stopped_by_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A git call that hangs is killed after the time limit and reported as an error."""
    repo = make_repo(tmp_path / "repo")
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake_git = fake_bin / "git"
    fake_git.write_text("#!/bin/sh\nexec sleep 30\n")
    fake_git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(git_module, "GIT_TIMEOUT_SECONDS", 0.5)

    result = capture(repo / "train.py")

    assert result.tags["tracksdk.git.status"] == "error"
    assert any("took longer than 0.5 s" in warning for warning in result.warnings)


@pytest.mark.skipif(os.name != "posix", reason="the holder of the pipes is a shell job")
@pytest.mark.parametrize("status", [0, 3])
def test_a_process_holding_the_pipes_does_not_hold_up_git(tmp_path: Path, status: int) -> None:
    """Git's output and error are read when git exits, though another process holds its pipes.

    A worker forked by the user's code while a git call's pipes are open keeps their write
    ends open as long as it lives, so end-of-file comes long after git exits. Here a shell
    alias leaves a background job holding both pipes: the call returns while that job lives.
    """
    repo = make_repo(tmp_path / "repo")
    pid_file = tmp_path / "holder.pid"
    alias = f"!sleep 60 & echo $! > '{pid_file}'; echo out; echo oops >&2; exit {status}"
    pending = _git_process.start(repo, ["-c", f"alias.hold={alias}", "hold"], timeout=30)
    output: _git_process.Output | None = None
    failure = ""
    try:
        try:
            output = _git_process.finish(pending)
        except _git_process.GitFailed as exc:
            failure = str(exc)
        assert pending.reader is not None
        pending.reader.join(timeout=30)
        # Still running: the call did not wait for the pipes' end-of-file (the holder's exit).
        os.kill(int(pid_file.read_text()), 0)
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert not pending.reader.is_alive()
    if status == 0:
        assert (output, failure) == (_git_process.Output(stdout=b"out\n", total=4), "")
    else:
        assert (output, failure.endswith("failed: oops")) == (None, True), failure


def test_options_switch_every_part_off(tmp_path: Path) -> None:
    """With every option off nothing is captured and no git runs."""
    repo = make_repo(tmp_path / "repo")
    options = CaptureOptions(
        git=False,
        diff=False,
        untracked=False,
        source=False,
        command=False,
        environment=False,
        requirements=False,
    )

    assert capture(repo / "train.py", options) == Provenance(tags={}, texts={}, warnings=[])


def test_environment_tags() -> None:
    """The environment tags describe this interpreter and mlflow's installed version."""
    import importlib.metadata
    import platform

    options = CaptureOptions(
        git=False, diff=False, untracked=False, source=False, command=False, requirements=False
    )

    tags = capture(None, options).tags

    assert tags["tracksdk.env.python"] == platform.python_version()
    assert tags["tracksdk.env.implementation"] == platform.python_implementation()
    assert tags["tracksdk.env.os"] == platform.platform()
    assert tags["tracksdk.env.cpu_count"] == str(os.cpu_count())
    assert tags["tracksdk.env.hostname"]
    assert tags["tracksdk.env.mlflow_version"] == importlib.metadata.version("mlflow")
    try:
        expected_version = importlib.metadata.version("tracksdk")
    except importlib.metadata.PackageNotFoundError:
        expected_version = "unknown"
    assert tags["tracksdk.version"] == expected_version


def test_requirements_list_installed_packages_sorted() -> None:
    """The requirements list pytest at its version, sorted case-insensitively, without repeats."""
    environment_module.clear_cache()
    options = CaptureOptions(
        git=False, diff=False, untracked=False, source=False, command=False, environment=False
    )

    text = capture(None, options).texts["environment/requirements.txt"]

    lines = text.splitlines()
    assert f"pytest=={pytest.__version__}" in lines
    names = [line.split("==", 1)[0] for line in lines]
    assert names == sorted(names, key=str.lower)
    assert len({name.lower().replace("_", "-") for name in names}) == len(names)
    assert environment_module.requirements_text() is environment_module.requirements_text()


def test_import_does_not_import_mlflow_or_gitpython() -> None:
    """Importing tracksdk.provenance loads neither mlflow nor GitPython."""
    code = (
        "import sys, tracksdk.provenance; "
        "assert 'mlflow' not in sys.modules and 'git' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'git'))"
    )

    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names() -> None:
    """The package exports exactly its documented public interface."""
    assert sorted(provenance.__all__) == ["CaptureOptions", "Provenance", "collect", "redact_argv"]


def test_the_diff_artifact_is_previewed_as_text_by_the_installed_mlflow_ui() -> None:
    """The diff's file extension is one the installed MLflow UI previews as text."""
    import re

    import mlflow

    from tracksdk.provenance.git import DIFF_ARTIFACT

    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    # The UI's list of text extensions: new Set(["txt","pbtxt","log",...]).
    pattern = re.compile(r'new Set\(\[("txt","pbtxt"[^\]]*)\]\)')
    found = [m.group(1) for f in build.glob("*.js") for m in pattern.finditer(f.read_text())]
    assert found, f"no text-extension list found in {build}"
    extensions = set(re.findall(r'"([^"]+)"', found[0]))
    assert "patch" not in extensions  # why the diff is not named diff.patch
    assert DIFF_ARTIFACT.rsplit(".", 1)[-1] in extensions
