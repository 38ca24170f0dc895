"""What differs between two runs, from what tracksdk recorded (``tracksdk diff``).

A run is read back from its store (:func:`load`): params, final metrics, tags, the
uncommitted diff (``source/diff.txt``), the installed packages
(``environment/requirements.txt``) and the dataset inputs. :func:`compare` turns two of
them into one JSON-able dict, which the command prints as tables or as JSON.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracksdk._schema import (
    FUNCTION_TAG,
    GIT_BRANCH_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    GIT_REPO_URL_TAG,
    SOURCE_NAME_TAG,
    USER_TAG,
)
from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.backends import Connection

DIFF_ARTIFACT = "source/diff.txt"
REQUIREMENTS_ARTIFACT = "environment/requirements.txt"
#: The tags worth showing when they differ: where the code came from, and who ran what.
TAGS = (
    GIT_COMMIT_TAG,
    GIT_BRANCH_TAG,
    GIT_DIRTY_TAG,
    GIT_REPO_URL_TAG,
    SOURCE_NAME_TAG,
    FUNCTION_TAG,
    USER_TAG,
    "tracksdk.command",
    "tracksdk.env.python",
    "tracksdk.env.hostname",
    "tracksdk.ci.pr",
    "tracksdk.ci.ref",
)
_FILE_HEADER = re.compile(r"^diff --git a/(.+?) b/(.+)$", re.MULTILINE)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


@dataclass
class RunRecord:
    """What :func:`compare` reads of one run."""

    run_id: str
    name: str
    status: str
    experiment_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    diff: str | None = None  # None: no diff recorded (clean tree, or capture off)
    requirements: dict[str, str] | None = None
    requirements_text: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)


def load(conn: Connection, run_id: str) -> RunRecord:
    """Read ``run_id`` (or a unique prefix of one in the configured store) back.

    Raises:
        ConfigError: No such run (the user's mistake), with what to give instead.
        TrackingError: The store failed.
    """
    from mlflow.exceptions import MlflowException

    from tracksdk import _mlflow

    with _mlflow.errors(f"Reading run {run_id}"):
        client = _mlflow.client(conn)
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            run = None
    if run is None:
        raise ConfigError(
            f"no run {run_id!r} on {conn.display_uri}: give the whole run id "
            "(`tracksdk runs` shows the first 12 characters; the UI's run page the rest)"
        )
    record = RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        status=run.info.status,
        experiment_id=run.info.experiment_id,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        inputs=[
            {
                "name": i.dataset.name,
                "digest": i.dataset.digest,
                "context": next((t.value for t in i.tags if t.key == "mlflow.data.context"), None),
            }
            for i in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    )
    record.diff = _artifact_text(client, record.run_id, DIFF_ARTIFACT)
    requirements = _artifact_text(client, record.run_id, REQUIREMENTS_ARTIFACT)
    if requirements is not None:
        record.requirements = parse_requirements(requirements)
        record.requirements_text = requirements
    return record


def _artifact_text(client: Any, run_id: str, path: str) -> str | None:
    """An artifact's text, or None when the run has none at ``path``."""
    folder, _, name = path.rpartition("/")
    try:
        if name not in {Path(f.path).name for f in client.list_artifacts(run_id, folder)}:
            return None
        with tempfile.TemporaryDirectory(prefix="tracksdk-diff-") as tmp:
            local = client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text(encoding="utf-8", errors="replace")
    except Exception:  # an artifact store that cannot be read: shown as not recorded
        return None


def parse_requirements(text: str) -> dict[str, str]:
    """``name==version`` lines as {normalized name: version}; other lines are skipped."""
    found = {}
    for line in text.splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def diff_files(diff: str | None) -> dict[str, str]:
    """A ``git diff`` text split by file: {path: that file's part of the diff}."""
    if not diff:
        return {}
    headers = list(_FILE_HEADER.finditer(diff))
    ends = [match.start() for match in headers[1:]] + [len(diff)]
    pairs = zip(headers, ends, strict=False)  # no header: no file (the diff was cut)
    return {match.group(2): diff[match.start() : end] for match, end in pairs}


def compare(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Every difference between ``a`` and ``b``, and a one-line verdict, as JSON values."""
    params = _mapping_diff(a.params, b.params)
    metrics = {
        key: {
            "a": a.metrics.get(key),
            "b": b.metrics.get(key),
            "delta": b.metrics[key] - a.metrics[key]
            if key in a.metrics and key in b.metrics
            else None,
        }
        for key in sorted({*a.metrics, *b.metrics})
        if a.metrics.get(key) != b.metrics.get(key) and not key.startswith("system/")
    }
    tags = {
        key: [a.tags.get(key), b.tags.get(key)]
        for key in TAGS
        if a.tags.get(key) != b.tags.get(key)
    }
    files_a, files_b = diff_files(a.diff), diff_files(b.diff)
    code: dict[str, Any] = {
        "commit": [a.tags.get(GIT_COMMIT_TAG), b.tags.get(GIT_COMMIT_TAG)],
        "same_commit": a.tags.get(GIT_COMMIT_TAG) == b.tags.get(GIT_COMMIT_TAG),
        "same_diff": (a.diff or "") == (b.diff or ""),
        "files": {
            "only_a": sorted(set(files_a) - set(files_b)),
            "only_b": sorted(set(files_b) - set(files_a)),
            "changed": sorted(k for k in set(files_a) & set(files_b) if files_a[k] != files_b[k]),
        },
    }
    code["same"] = bool(code["same_commit"] and code["same_diff"] and code["commit"][0])
    packages = (
        _mapping_diff(a.requirements, b.requirements)
        if a.requirements is not None and b.requirements is not None
        else None
    )
    data = _data_diff(a.inputs, b.inputs)
    return {
        "a": {"run_id": a.run_id, "name": a.name, "status": a.status},
        "b": {"run_id": b.run_id, "name": b.name, "status": b.status},
        "verdict": _verdict(code, data, params, packages),
        "params": params,
        "metrics": metrics,
        "tags": tags,
        "code": code,
        "packages": packages,
        "data": data,
    }


def _mapping_diff(a: dict[str, str], b: dict[str, str]) -> dict[str, Any]:
    return {
        "changed": {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
        "added": {k: b[k] for k in sorted(b.keys() - a.keys())},
        "removed": {k: a[k] for k in sorted(a.keys() - b.keys())},
    }


def _data_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """The inputs side by side by name; ``same`` is None when neither run recorded any."""
    by_a, by_b = {i["name"]: i for i in a}, {i["name"]: i for i in b}
    rows = [
        {
            "name": name,
            "context": (by_a.get(name) or by_b.get(name) or {}).get("context"),
            "a": (by_a.get(name) or {}).get("digest"),
            "b": (by_b.get(name) or {}).get("digest"),
        }
        for name in sorted({*by_a, *by_b})
    ]
    same = None if not rows else all(row["a"] == row["b"] for row in rows)
    return {"same": same, "inputs": rows}


def _verdict(
    code: dict[str, Any],
    data: dict[str, Any],
    params: dict[str, Any],
    packages: dict[str, Any] | None,
) -> str:
    """The one line a reader looks for first: "same code, different data", and the like."""
    if code["commit"][0] is None or code["commit"][1] is None:
        code_words = "code unknown (no git information)"
    else:
        code_words = "same code" if code["same"] else "different code"
    data_words = {None: "no data recorded", True: "same data", False: "different data"}[
        data["same"]
    ]
    words = [code_words, data_words]
    changed_params = sum(len(part) for part in params.values())
    words.append(f"{changed_params} param(s) differ" if changed_params else "same params")
    if packages is not None and any(packages.values()):
        words.append(f"{sum(len(part) for part in packages.values())} package(s) differ")
    return ", ".join(words)
