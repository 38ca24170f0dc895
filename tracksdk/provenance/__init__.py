"""Provenance capture: where a run's code came from and what it ran on, as plain data.

:func:`collect` returns tags and small texts; another module writes them to MLflow. This
package never imports mlflow, and importing it is cheap: no GitPython (git runs as a
subprocess, see :mod:`tracksdk.provenance.git`), no third-party import at all.

What is recorded (each part switched by a :class:`CaptureOptions` field):

=========================================  ===================================================
Tag or artifact                            Value
=========================================  ===================================================
``mlflow.source.git.commit``               HEAD's full hash (absent without commits)
``mlflow.source.git.branch``               branch name (absent on a detached HEAD)
``mlflow.source.git.repoURL``              ``origin``'s URL, else the first remote's; no
                                           credentials
``mlflow.source.git.dirty``                ``"true"``/``"false"``: staged or unstaged changes
                                           to tracked files (untracked files do not count)
``tracksdk.git.status``                    ``ok``, ``no-repository``, ``no-commits``, ``error``
``tracksdk.git.untracked``                 number of untracked files (``.gitignore`` respected)
``tracksdk.git.diff_truncated``            ``"true"`` when the diff was cut (absent otherwise)
``source/diff.txt``                      ``git diff HEAD`` when non-empty
``source/untracked.txt``                   untracked paths relative to the root, one a line
``mlflow.source.name``                     ``argv[0]``, relative to the repository root inside
``mlflow.source.type``                     ``LOCAL``, or ``NOTEBOOK`` under IPython/Jupyter
``source/<file name>``                     the entry script, and the tracked function's module
                                           (``source/function/<name>`` if the names collide)
``tracksdk.command``                       ``python3.11 train.py --lr 0.1 --token '***'``
``tracksdk.env.python``                    ``3.11.7``
``tracksdk.env.implementation``            ``CPython``
``tracksdk.env.os``                        ``platform.platform()``
``tracksdk.env.hostname``                  ``socket.gethostname()``
``tracksdk.env.cpu_count``                 ``os.cpu_count()``
``tracksdk.version``                       tracksdk's installed version, or ``unknown``
``tracksdk.env.mlflow_version``            mlflow's installed version, or ``unknown``
``environment/requirements.txt``           ``name==version`` of every installed distribution
``tracksdk.provenance.warnings``           the warnings joined by `` | `` (absent if none)
=========================================  ===================================================

The ``mlflow.source.*`` names are MLflow's own, so the MLflow UI shows them; MLflow's default
run-context providers set the same names, with ``mlflow.source.name`` not made relative.

Secrets: :func:`redact_argv` hides secret-looking command-line values, git remote URLs lose
their credentials, and the caller's ``redact`` callable is applied to every tag value, every
text (source files and the diff included) and every warning. If ``redact`` itself raises on a
value, that value is dropped rather than recorded unredacted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tracksdk._schema import (
    COMMAND_TAG,
    MAX_TAG_VALUE,
    PROVENANCE_WARNINGS_TAG,
    SOURCE_NAME_TAG,
    SOURCE_TYPE_TAG,
)
from tracksdk.provenance import ci as _ci
from tracksdk.provenance import environment as _environment
from tracksdk.provenance import git as _git
from tracksdk.provenance import source as _source
from tracksdk.provenance.source import redact_argv

__all__ = ["CaptureOptions", "Provenance", "collect", "redact_argv"]

_TRUNCATION_MARK = " ...[truncated by tracksdk]"


@dataclass(frozen=True)
class CaptureOptions:
    """Which provenance to capture, and how much of it.

    Attributes:
        git: Commit, branch, remote URL and dirty flag as tags.
        diff: Uncommitted changes to tracked files as ``source/diff.txt``.
        untracked: Untracked files as ``source/untracked.txt`` and their count as a tag.
        source: Entry script and the tracked function's module under ``source/``, and the
            ``mlflow.source.name``/``mlflow.source.type`` tags.
        command: The command line as a tag, secret-looking arguments redacted.
        environment: Python, OS, host, CPU count, tracksdk and mlflow versions as tags.
        requirements: Installed distributions as ``environment/requirements.txt``.
        ci: The CI pipeline, job, pull request, ref and actor as ``tracksdk.ci.*`` tags
            (GitHub Actions, GitLab CI).
        max_diff_bytes: Longer diffs are cut, with a note line and a tag.
        max_source_bytes: Larger source files are not copied (a warning says so).
        max_untracked_files: At most this many untracked paths are listed.
    """

    git: bool = True
    diff: bool = True
    untracked: bool = True
    source: bool = True
    command: bool = True
    environment: bool = True
    requirements: bool = True
    ci: bool = True
    max_diff_bytes: int = 1_000_000
    max_source_bytes: int = 1_000_000
    max_untracked_files: int = 1_000


@dataclass(frozen=True)
class Provenance:
    """The result of :func:`collect`.

    Attributes:
        tags: Run tags, name -> value (values at most :data:`~tracksdk._schema.MAX_TAG_VALUE` long).
        texts: Artifact path inside the run (e.g. ``"source/diff.txt"``) -> text.
        warnings: What went wrong, as short sentences; empty when everything was captured.
    """

    tags: dict[str, str]
    texts: dict[str, str]
    warnings: list[str]


def _keep(text: str) -> str:
    return text


def collect(
    options: CaptureOptions,
    *,
    entry_script: Path | None,
    function_file: Path | None,
    argv: Sequence[str],
    redact: Callable[[str], str] = _keep,
) -> Provenance:
    """Capture the provenance of the current run.

    Never raises (except for ``KeyboardInterrupt`` and the like): whatever fails becomes a
    warning, repeated in the ``tracksdk.provenance.warnings`` tag, and the rest is still
    captured. Takes a few tens of milliseconds on a small repository; the first call in a
    process also reads the installed packages' metadata (cached afterwards).

    Args:
        options: What to capture.
        entry_script: The script Python was started with (``sys.argv[0]`` as a path), or None
            (``python -c``, a notebook).
        function_file: The file defining the tracked function, or None. The git repository
            is searched from its folder, then the entry script's, then the current
            directory; the first one inside a repository wins.
        argv: The command-line arguments, usually ``sys.argv``.
        redact: Replaces known secret values in a text; applied to every tag value, text and
            warning.

    Returns:
        Tags, texts and warnings.
    """
    tags: dict[str, str] = {}
    texts: dict[str, str] = {}
    warnings: list[str] = []
    with _guard("provenance", warnings):
        _collect_into(tags, texts, warnings, options, entry_script, function_file, argv, redact)
    return _redacted(tags, texts, warnings, redact)


def _collect_into(
    tags: dict[str, str],
    texts: dict[str, str],
    warnings: list[str],
    options: CaptureOptions,
    entry_script: Path | None,
    function_file: Path | None,
    argv: Sequence[str],
    redact: Callable[[str], str],
) -> None:
    root: Path | None = None
    if options.git or options.diff or options.untracked:
        with _guard("git information", warnings):
            captured = _git.capture_git(_search_start(entry_script, function_file), options, redact)
            root = captured.root
            tags.update(captured.tags)
            texts.update(captured.texts)
            warnings.extend(captured.warnings)
    if options.source:
        with _guard("source files", warnings):
            if root is None:  # git capture off (or failed): the root is still needed here
                root = _git.find_repo_root(_search_start(entry_script, function_file))
            notebook = _source.running_in_notebook()
            tags[SOURCE_TYPE_TAG] = "NOTEBOOK" if notebook else "LOCAL"
            argv0 = argv[0] if argv else (str(entry_script) if entry_script else "")
            name = _source.source_name(argv0, root)
            if name:
                tags[SOURCE_NAME_TAG] = name
            source_texts, source_warnings = _source.read_sources(
                entry_script,
                function_file,
                max_bytes=options.max_source_bytes,
                # In a notebook the "script" is ipykernel's launcher, not the user's code.
                include_entry=not notebook,
            )
            texts.update(source_texts)
            warnings.extend(source_warnings)
    if options.command:
        with _guard("command line", warnings):
            tags[COMMAND_TAG] = _source.command_line(argv)
    if options.environment:
        with _guard("environment", warnings):
            tags.update(_environment.environment_tags())
    if options.ci:
        with _guard("CI", warnings):
            tags.update(_ci.ci_tags(os.environ))
    if options.requirements:
        with _guard("installed packages", warnings):
            texts[_environment.REQUIREMENTS_ARTIFACT] = _environment.requirements_text()


def _search_start(entry_script: Path | None, function_file: Path | None) -> Path:
    """The folder to find the repository from: the tracked code's, when it is in one.

    The function's own file comes first: the entry script may be a launcher (pytest,
    torchrun, a console script inside a virtualenv). The first candidate inside a git
    repository wins; without one, the first existing folder (so status says
    no-repository for the code that ran).
    """
    folders = []
    for candidate in (function_file, entry_script):
        if candidate is not None:
            folder = candidate.absolute().parent
            if folder.is_dir():
                folders.append(folder)
    folders.append(Path.cwd())
    for folder in folders:
        if _git.find_repo_root(folder) is not None:
            return folder
    return folders[0]


@contextlib.contextmanager
def _guard(part: str, warnings: list[str]) -> Iterator[None]:
    # Provenance is a nice-to-have: a bug or an odd machine must never fail the user's run.
    try:
        yield
    except Exception as exc:
        warnings.append(f"The {part} could not be captured: {type(exc).__name__}: {exc}")


def _redacted(
    tags: dict[str, str],
    texts: dict[str, str],
    warnings: list[str],
    redact: Callable[[str], str],
) -> Provenance:
    problems: list[str] = []
    clean_tags: dict[str, str] = {}
    for key, value in tags.items():
        try:
            clean_tags[key] = _fit_tag(redact(value))
        except Exception:  # fail closed: an unredacted value is worse than a missing one
            problems.append(f"Tag {key} was not recorded: the redact function failed on it.")
    clean_texts: dict[str, str] = {}
    for path, text in texts.items():
        try:
            clean_texts[path] = redact(text)
        except Exception:
            problems.append(f"Artifact {path} was not recorded: the redact function failed on it.")
    clean_warnings: list[str] = []
    for warning in warnings:
        try:
            clean_warnings.append(redact(warning))
        except Exception:
            problems.append("A warning was not recorded: the redact function failed on it.")
    clean_warnings.extend(problems)
    if clean_warnings:
        clean_tags[PROVENANCE_WARNINGS_TAG] = _fit_tag(" | ".join(clean_warnings))
    return Provenance(tags=clean_tags, texts=clean_texts, warnings=clean_warnings)


def _fit_tag(value: str) -> str:
    # MLflow cuts a longer value silently; it is cut visibly here. Cut after redaction, so a
    # cut never leaves half of a secret that redact would have found.
    if len(value) <= MAX_TAG_VALUE:
        return value
    return value[: MAX_TAG_VALUE - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK
