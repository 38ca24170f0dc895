"""``tracksdk reproduce RUN_ID``: the code exactly as the run ran it, and how to rerun it.

From what the run recorded (docs/reproduce.md): a git worktree of the local repository
at the run's commit, in a new folder; the run's uncommitted diff applied; the untracked
files it saved (``source/untracked/``) restored. Then the installed packages compared with
the run's ``environment/requirements.txt``, and the command and params to rerun it.

The repository work goes through GitPython, the project's declared git dependency (its
import, ~0.1-0.4 s, is paid here only, never on a run's hot path).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk._compare import RunRecord, load, parse_requirements
from tracksdk._schema import (
    COMMAND_TAG,
    GIT_COMMIT_TAG,
    GIT_DIFF_TRUNCATED_TAG,
    GIT_REPO_URL_TAG,
    SOURCE_NAME_TAG,
)
from tracksdk.exceptions import ConfigError, TrackingError
from tracksdk.provenance.untracked import PREFIX as UNTRACKED_PREFIX

if TYPE_CHECKING:
    from tracksdk.backends import Connection


@dataclass
class Reproduction:
    """What :func:`checkout` made, and what to tell the user."""

    record: RunRecord
    folder: Path
    commit: str
    diff_applied: bool
    restored: list[str] = field(default_factory=list)
    command: list[str] | None = None  # argv, the interpreter first
    workdir: Path | None = None  # where the command ran, inside ``folder``
    packages: dict[str, Any] | None = None  # from compare_packages
    requirements_text: str | None = None


def checkout(conn: Connection, run_id: str, folder: Path) -> Reproduction:
    """Recreate run ``run_id``'s code in ``folder`` (a new git worktree).

    Raises:
        ConfigError: The run has no git information, its commit is not in the local
            repository, its diff no longer applies, or ``folder`` is not empty; each with
            what to do.
        TrackingError: The store failed, or git could not make the worktree.
    """
    import git

    record = load(conn, run_id)
    commit = record.tags.get(GIT_COMMIT_TAG)
    if not commit:
        raise ConfigError(
            f"run {record.run_id} has no git information (it ran outside a git repository, "
            "or with TRACKSDK_CAPTURE__GIT=false): reproduce needs the commit it ran at"
        )
    if record.tags.get(GIT_DIFF_TRUNCATED_TAG) == "true":
        raise ConfigError(
            f"run {record.run_id}'s uncommitted changes were recorded cut short "
            "(TRACKSDK_CAPTURE__MAX_DIFF_BYTES): its code cannot be recreated exactly"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--dir {folder} is not empty: give a new or an empty folder")
    try:
        repo = git.Repo(Path.cwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        where = record.tags.get(GIT_REPO_URL_TAG) or "the run's repository"
        raise ConfigError(
            f"run tracksdk reproduce inside a clone of {where}: {Path.cwd()} is not in a "
            "git repository"
        ) from None
    try:
        repo.commit(commit)
    except (ValueError, git.BadName, git.BadObject):
        raise ConfigError(
            f"commit {commit[:12]} of run {record.run_id} is not in the repository at "
            f"{repo.working_tree_dir}: fetch it first (git fetch {_remote_for(repo, record)})"
        ) from None
    reproduction = Reproduction(record, folder, commit, diff_applied=False)
    try:
        repo.git.worktree("add", "--detach", str(folder), commit)
    except git.GitCommandError as exc:  # a full disk, a folder that cannot be made
        reason = (str(exc.stderr).strip().splitlines() or ["failed"])[-1]
        raise TrackingError(f"git worktree add {folder}: {reason.strip(chr(39))}") from None
    try:
        if record.diff:
            _apply(folder, record.diff, commit)
            reproduction.diff_applied = True
        reproduction.restored = _restore_untracked(conn, record.run_id, folder)
    except BaseException:
        repo.git.worktree("remove", "--force", str(folder))
        raise
    reproduction.command, reproduction.workdir = command_of(record, folder)
    return reproduction


def default_folder(run_id: str) -> Path:
    """``<repository>-reproduce-<run id>`` beside the repository of the working directory.

    Not inside it: a worktree nested in the repository's folder would show up as
    untracked files of the next run made there.
    """
    import git

    try:
        root = Path(str(git.Repo(Path.cwd(), search_parent_directories=True).working_tree_dir))
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        root = Path.cwd()  # checkout says that a repository is needed
    return root.parent / f"{root.name}-reproduce-{run_id[:12]}"


def _remote_for(repo: Any, record: RunRecord) -> str:
    """The remote to fetch the run's commit from: the one with the run's URL, or origin."""
    wanted = (record.tags.get(GIT_REPO_URL_TAG) or "").rstrip("/").removesuffix(".git")
    for remote in repo.remotes:
        for url in remote.urls:
            if wanted and url.rstrip("/").removesuffix(".git").endswith(wanted.split("://")[-1]):
                return str(remote.name)
    names = [str(r.name) for r in repo.remotes]
    if "origin" in names or not names:
        return "origin" if names else (wanted or "<the run's remote>")
    return names[0]


def _apply(folder: Path, diff: str, commit: str) -> None:
    import git

    with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False, encoding="utf-8") as f:
        f.write(diff)
    try:
        git.Repo(folder).git.apply("--whitespace=nowarn", f.name)
    except git.GitCommandError as exc:
        reason = (str(exc.stderr).strip().splitlines() or ["git apply failed"])[0]
        raise ConfigError(
            f"the run's uncommitted changes no longer apply at commit {commit[:12]}: "
            f"{reason.removeprefix('stderr: ').strip(chr(39))}"
        ) from None
    finally:
        os.unlink(f.name)


def _restore_untracked(conn: Connection, run_id: str, folder: Path) -> list[str]:
    """Write the run's saved untracked files into ``folder``; their paths."""
    from tracksdk import _mlflow

    client = _mlflow.client(conn)
    saved = UNTRACKED_PREFIX.rstrip("/")
    if "untracked" not in {Path(f.path).name for f in client.list_artifacts(run_id, "source")}:
        return []
    restored = []
    with tempfile.TemporaryDirectory(prefix="tracksdk-reproduce-") as tmp:
        local = Path(client.download_artifacts(run_id, saved, tmp))
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            relative = path.relative_to(local)
            target = folder / relative
            if target.exists():  # tracked since: the worktree's copy is the commit's
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            restored.append(relative.as_posix())
    return restored


def command_of(record: RunRecord, folder: Path) -> tuple[list[str] | None, Path | None]:
    """The run's command (this interpreter in place of the recorded one), and its folder.

    The folder is found from the script's recorded path in the repository
    (``mlflow.source.name``) and the path the command gave it: ``python train.py`` run as
    ``src/train.py`` ran in ``src/``.
    """
    text = record.tags.get(COMMAND_TAG)
    if not text:
        return None, None
    argv = shlex.split(text)
    workdir = folder
    source = record.tags.get(SOURCE_NAME_TAG)
    if source and len(argv) > 1 and not Path(argv[1]).is_absolute():
        script = Path(argv[1]).as_posix()
        if source == script or source.endswith("/" + script):
            workdir = folder / source[: len(source) - len(script)]
    return [sys.executable, *argv[1:]], workdir


def compare_packages(requirements_text: str | None) -> dict[str, Any] | None:
    """The run's pinned packages against this environment's: changed and missing.

    This environment's list is the one a run here would record
    (:func:`tracksdk.provenance.environment.requirements_text`), parsed the same way.
    """
    if requirements_text is None:
        return None
    from tracksdk.provenance.environment import requirements_text as installed

    here = parse_requirements(installed())
    pinned = sorted(parse_requirements(requirements_text).items())
    return {
        "changed": {k: [v, here[k]] for k, v in pinned if k in here and here[k] != v},
        "missing": {k: v for k, v in pinned if k not in here},
    }
