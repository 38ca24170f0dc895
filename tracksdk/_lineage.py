"""Data lineage from a tracked function's arguments: its data as the run's dataset inputs.

An argument that is a pandas DataFrame, a numpy array (2-D or more, or 1-D with at least
:data:`MIN_VECTOR` elements: a list of layer sizes is not data), or a ``str``/``Path``
naming an existing data file (by its suffix, :data:`DATA_SUFFIXES`) is recorded with
``log_input`` when the run starts, before the body can change it. Its name is the
argument's; its context comes from that name (``X_train``, ``train_df``: "training";
``val``, ``valid``: "validation"; ``test``: "test"). Off with
``TRACKSDK_CAPTURE__DATASETS=false``.

The cost is bounded, since this runs on the training thread at every call:

- frames and arrays: MLflow's digest, schema and profile, computed on the first
  :data:`MAX_ROWS` rows (MLflow's own digest reads no more, but its frame digest types
  every cell of the whole frame first, which takes seconds on a million rows); the
  profile's row count is the whole frame's;
- files: size, modification time and an MD5 of the whole file up to :data:`WHOLE_FILE`
  bytes, else of its first and last :data:`SAMPLE` bytes (profile ``"sampled": true``):
  a 1 GB file costs two 4 MiB reads, not a 1 GB one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracksdk._run import Run
    from tracksdk.backends import Connection

MAX_ROWS = 10_000  # MLflow's digest_utils.MAX_ROWS
SCHEMA_ROWS = 1_000  # rows the schema is inferred from (MLflow types each of their cells)
MIN_VECTOR = 100
WHOLE_FILE = 8 << 20
SAMPLE = 4 << 20
DATA_SUFFIXES = frozenset({
    ".csv", ".tsv", ".parquet", ".pq", ".feather", ".arrow", ".ipc", ".json", ".jsonl",
    ".ndjson", ".npy", ".npz", ".h5", ".hdf5", ".hdf", ".xlsx", ".xls", ".avro", ".orc",
    ".pkl", ".pickle", ".txt", ".tfrecord", ".libsvm", ".svm",
})  # fmt: skip
_CONTEXTS = (
    ("training", frozenset({"train", "training", "trn"})),
    ("validation", frozenset({"val", "valid", "validation", "dev"})),
    ("test", frozenset({"test", "testing", "tst", "holdout"})),
)
_WORDS = re.compile(r"[a-z]+")


def candidates(arguments: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """The call's arguments (:func:`tracksdk._params.call_arguments`) that are data."""
    return [(name, value) for name, value in arguments or () if _is_data(value)]


def context_of(name: str) -> str | None:
    """The context of an argument: training, validation, test (by its name), or None."""
    words = set(_WORDS.findall(name.lower()))
    for context, markers in _CONTEXTS:
        if words & markers:
            return context
    return None


def wanted(conn: Connection | None) -> bool:
    """Whether a run on ``conn`` records its data arguments.

    Not on the memory store (tracksdk.testing): describing data imports MLflow (~1 s),
    which a unit test of the training code should not pay, and the store keeps no inputs
    a test could read back. Offline runs do: their journal goes to a real store later.
    """
    from tracksdk import stores

    return conn is None or stores.uses_mlflow(conn)


def log(run: Run, found: list[tuple[str, Any]]) -> None:
    """Record each data argument as a dataset input of ``run`` (never raises)."""
    for name, value in found:
        try:
            if isinstance(value, str | PurePath):
                described = describe_file(Path(value), name)
            else:
                described = describe_data(value, name)
            run._writer.input(described, context_of(name))
        except Exception:  # lineage is a bonus: never the reason a training fails
            continue


def describe_file(path: Path, name: str) -> dict[str, Any]:
    """A data file as MLflow's dataset record: a bounded content digest, size, location."""
    stat = path.stat()
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(str(stat.st_size).encode())
    sampled = stat.st_size > WHOLE_FILE
    with path.open("rb") as f:
        if not sampled:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(f.read(SAMPLE))
            f.seek(-SAMPLE, os.SEEK_END)
            digest.update(f.read(SAMPLE))
    profile = {"size_bytes": stat.st_size, "modified": int(stat.st_mtime), "sampled": sampled}
    return {
        "name": name,
        "digest": digest.hexdigest()[:8],
        "source_type": "local",
        "source": json.dumps({"uri": path.resolve().as_uri()}),
        "schema": None,
        "profile": json.dumps(profile),
    }


def _is_data(value: Any) -> bool:
    if isinstance(value, str | PurePath):
        return _is_data_file(value)
    kind = type(value)
    module = kind.__module__ or ""
    if module.startswith("pandas") and kind.__name__ == "DataFrame":
        return True
    if module == "numpy" and kind.__name__ == "ndarray":
        return bool(value.ndim >= 2 or (value.ndim == 1 and value.size >= MIN_VECTOR))
    return False


def _is_data_file(value: str | PurePath) -> bool:
    text = str(value)
    if not text or len(text) > 4096 or "\n" in text:
        return False
    path = Path(text)
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if not suffixes or not (set(suffixes) & DATA_SUFFIXES):
        return False
    try:
        return path.is_file()
    except OSError:
        return False


def describe_data(value: Any, name: str) -> dict[str, Any]:
    """A frame or array as MLflow's dataset record, with MLflow's digest, in bounded time.

    The digest is the one ``mlflow.data.from_pandas``/``from_numpy`` computes, so the
    same data logged by hand has the same digest; but a frame's text columns are found
    with pandas' C type inference instead of MLflow's ``df.map(type)`` over every cell,
    and an array is not copied whole (MLflow's ``flatten``). The schema is inferred from
    the first :data:`MAX_ROWS` rows; the profile describes the whole data.
    """
    import numpy as np
    from mlflow.data.digest_utils import get_normalized_md5_digest

    from tracksdk import _mlflow

    if hasattr(value, "columns"):
        import pandas as pd

        head = value.head(MAX_ROWS)
        text = [
            c for c in value.columns if pd.api.types.infer_dtype(value[c], skipna=False) == "string"
        ]
        numeric = head.select_dtypes(include=[np.number]).columns
        kept = head[pd.Index(text).union(numeric)]
        elements: list[Any] = [pd.util.hash_pandas_object(kept).values, np.int64(len(value))]
        elements += [str(c).encode() for c in value.columns]
        profile: dict[str, Any] = {"num_rows": len(value), "num_elements": int(value.size)}
    else:
        import pandas as pd

        head = value[:MAX_ROWS]
        flat = value.reshape(-1)[:MAX_ROWS]  # a view where MLflow's flatten() copies it all
        try:
            elements = [pd.util.hash_array(flat)]
        except TypeError:
            elements = [np.int64(flat.size)]
        elements += [np.int64(x) for x in value.shape]
        profile = {
            "features_shape": list(value.shape),
            "features_size": int(value.size),
            "features_nbytes": int(value.nbytes),
        }
    described = _mlflow.describe_dataset(head[:SCHEMA_ROWS], name=name, targets=None)
    described["digest"] = get_normalized_md5_digest(elements)
    described["profile"] = json.dumps(profile)
    return described
