"""Source provenance: entry-script name and type, source-file copies and the command line.

Secrets on the command line are redacted by :func:`redact_argv` before the command becomes a
tag; the caller's ``redact`` callable (known secret values) is applied afterwards by
:func:`tracksdk.provenance.collect` to every tag and text.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from tracksdk._redact import MASK, looks_secret, strip_userinfo

__all__ = [
    "command_line",
    "read_sources",
    "redact_argv",
    "running_in_notebook",
    "source_name",
]

# Whether an option or KEY=VALUE name is secret is one rule for argument names, parameter
# names and variables (tracksdk._redact.looks_secret). Names are split into words first
# (`--hf_token` -> hf, token; `--apiKey` -> api, key), so ML options that merely contain such
# letters stay visible: `--tokenizer`, `--max-tokens`, `--author`, `--keyword`.
# A long option: one or two dashes and a name of at least two characters (`-p` is not one).
_LONG_OPTION = re.compile(r"^(--?)([A-Za-z][A-Za-z0-9_.-]+)(=.*)?$", re.DOTALL)
# KEY=VALUE, as in environment-style or Hydra overrides (`+db.password=...`).
_ASSIGNMENT = re.compile(r"^([+~]{0,2}[A-Za-z_][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)
# An HTTP bearer token, as in `--header "Authorization: Bearer abc"`.
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with secret-looking values replaced by ``"***"``.

    Redacted:

    * the value of a secret-looking long option, in both forms: ``--token X`` and
      ``--token=X`` (also ``--api-key``, ``--api_key``, ``--apiKey``, ``--password``,
      ``--passwd``, ``--secret``, ``--client-secret``, ``--access-key``, ``--auth``,
      ``--auth-token``, ``--credentials``, ``--hf_token``, ...; single-dash long options such
      as ``-token X`` too). A name is secret when one of its words (split on ``-``, ``_``,
      ``.`` and camelCase) is token, password, passwd, pwd, secret, passphrase, auth,
      credential(s), or a pair like api+key, access+key, private+key, secret+key. So
      ``--tokenizer``, ``--max-tokens`` and ``--author`` are left alone. In the separate form,
      the next argument is taken as the value unless it starts with ``-`` (then the option is
      a flag, such as ``--use-auth-token``);
    * ``KEY=VALUE`` arguments whose KEY is secret by the same rule
      (``DAGSHUB_USER_TOKEN=abc`` -> ``DAGSHUB_USER_TOKEN=***``, Hydra's ``db.password=x``);
    * the user part of any URL, anywhere in an argument
      (``https://u:pw@host/x`` -> ``https://***@host/x``) and ``Bearer <token>``.

    Short options (``-p X``, ``-k X``) are **never** redacted: single letters mean port,
    patience, top-k... in training scripts, and guessing would hide ordinary parameters. Pass
    secrets through long options or the environment.

    Args:
        argv: The arguments, e.g. ``sys.argv``.

    Returns:
        A new list of the same length.
    """
    result: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            redact_next = False
            if not (arg.startswith("-") and len(arg) > 1):
                result.append(MASK)
                continue
        option = _LONG_OPTION.match(arg)
        if option is not None and looks_secret(option.group(2)):
            if option.group(3) is None:
                redact_next = True
                result.append(arg)
            else:
                result.append(f"{option.group(1)}{option.group(2)}={MASK}")
            continue
        assignment = _ASSIGNMENT.match(arg)
        if assignment is not None and looks_secret(assignment.group(1)):
            result.append(f"{assignment.group(1)}={MASK}")
            continue
        result.append(_redact_inline(arg))
    return result


def _redact_inline(text: str) -> str:
    return _BEARER.sub(rf"\1{MASK}", strip_userinfo(text))


def command_line(argv: Sequence[str]) -> str:
    """Return the command line as one shell-quoted string, with secrets redacted.

    It starts with the interpreter's file name (``python3.11``, not its full path, which says
    nothing useful and may contain a user name), followed by :func:`redact_argv` of ``argv``.

    Args:
        argv: The arguments, e.g. ``sys.argv``.
    """
    interpreter = Path(sys.executable).name or "python"
    return shlex.join([interpreter, *redact_argv(argv)])


def running_in_notebook() -> bool:
    """Return True under IPython or Jupyter.

    Checked without importing IPython: it is asked only if something already imported it, and
    a script that merely imports IPython as a library is still a script (``get_ipython()``
    returns None outside a shell).
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if not callable(get_ipython):
        return False
    try:
        return get_ipython() is not None
    except Exception:  # a half-initialised IPython: not worth failing the run for
        return False


def source_name(argv0: str, repo_root: Path | None) -> str | None:
    """Return the value of ``mlflow.source.name``.

    That is ``argv[0]`` as typed, made relative to the repository root (with ``/`` separators)
    when the file lies inside the repository, so the same script has the same name on every
    machine and from every working directory.

    Args:
        argv0: ``sys.argv[0]``; empty in an interactive interpreter (then None is returned).
        repo_root: The repository's top folder, if any.
    """
    if not argv0:
        return None
    if repo_root is None or argv0 in ("-c", "-m"):
        return argv0
    try:
        relative = Path(argv0).resolve().relative_to(repo_root.resolve())
    except (OSError, ValueError):  # outside the repository, or an unresolvable path
        return argv0
    return relative.as_posix()


def read_sources(
    entry_script: Path | None,
    function_file: Path | None,
    *,
    max_bytes: int,
    include_entry: bool = True,
) -> tuple[dict[str, str], list[str]]:
    """Read the entry script and the decorated function's module for ``source/``.

    The entry script goes to ``source/<file name>``, the function's module to
    ``source/<file name>`` as well, or to ``source/function/<file name>`` when another file of
    the same name is already there. The module is skipped when it is the entry script itself.
    Missing files (``python -c``, code typed in a notebook) are skipped silently; files larger
    than ``max_bytes`` are skipped with a warning. Bytes that are not UTF-8 are replaced.

    Args:
        entry_script: The script Python was started with, if any.
        function_file: The file that defines the tracked function, if any.
        max_bytes: Largest file size copied.
        include_entry: False to skip the entry script (in a notebook it is the kernel launcher).

    Returns:
        Artifact path -> text, and warnings.
    """
    texts: dict[str, str] = {}
    warnings: list[str] = []
    seen: set[Path] = set()
    candidates = [(entry_script if include_entry else None, "entry script")]
    candidates.append((function_file, "module of the tracked function"))
    for path, role in candidates:
        if path is None:
            continue
        try:
            resolved = path.resolve()
            if resolved in seen or not resolved.is_file():
                continue
            seen.add(resolved)
            size = resolved.stat().st_size
            if size > max_bytes:
                warnings.append(
                    f"The {role} {path.name} was not saved: {size} bytes is over the "
                    f"max_source_bytes limit of {max_bytes}."
                )
                continue
            with resolved.open("rb") as handle:
                data = handle.read(max_bytes + 1)  # the file may have grown since stat()
            if len(data) > max_bytes:
                warnings.append(f"The {role} {path.name} was not saved: it grew past the limit.")
                continue
        except OSError as exc:
            warnings.append(f"The {role} {path.name} could not be read: {exc.strerror or exc}.")
            continue
        artifact = f"source/{resolved.name}"
        if artifact in texts:
            artifact = f"source/function/{resolved.name}"
        texts[artifact] = data.decode("utf-8", errors="replace")
    return texts, warnings
