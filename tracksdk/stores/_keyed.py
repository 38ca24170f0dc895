"""Finding runs by their run key (``tracked(key=...)``), shared by the REST and local stores.

MLflow's search filter takes a string value between single or double quotes and compares
the text between them as it is: it never un-doubles ``''`` nor drops a backslash (MLflow
3.17's ``SearchUtils._strip_quotes`` only trims the two ends), so ``'exp''1'`` looks for
the value ``exp''1``. A key is therefore quoted with the quote it does not contain. A key
holding both quotes cannot be written as an exact value at all: it is searched with
``LIKE``, each quote and backslash (an escape character in PostgreSQL's ``LIKE``) a
``_`` wildcard, and the answer narrowed to the exact key here. :func:`exactly` narrows
every answer the same way, so a server whose filter matches more than it should (case
folding, wildcards) still never hands back another key's run.
"""

from __future__ import annotations

from collections.abc import Iterable

from tracksdk._schema import RUN_KEY_TAG
from tracksdk.stores.base import RunState


def key_filter(key: str) -> str:
    """MLflow's search filter for the runs tagged ``tracksdk.run_key`` = ``key``.

    Args:
        key: The run key, any text.

    Returns:
        A filter whose matches include every run with that exact key (and, for a key
        holding both kinds of quote, maybe a few others: see the module docstring).
    """
    tag = f"tags.`{RUN_KEY_TAG}`"
    if "'" not in key:
        return f"{tag} = '{key}'"
    if '"' not in key:
        return f'{tag} = "{key}"'
    pattern = key.replace("'", "_").replace("\\", "_")
    return f"{tag} LIKE '{pattern}'"


def exactly(states: Iterable[RunState], key: str) -> list[RunState]:
    """The active runs of ``states`` with exactly ``key``, oldest first.

    Oldest is the lowest ``(start_ms, run_id)``, so that every process picks the same run
    when several carry the key.
    """
    found = [s for s in states if s.tags.get(RUN_KEY_TAG) == key and s.lifecycle_stage == "active"]
    return sorted(found, key=lambda s: (s.start_ms, s.run.run_id))
