"""``tracked(seed=N)`` / ``TRACKSDK_SEED``: seed the usual generators, log the seed.

Seeded at the run's start, before the body runs: Python's ``random``, numpy's global
generator (numpy is imported for it when installed: a function that imports numpy later
would otherwise draw from an unseeded generator), and torch's generators when torch is
already imported (``torch.manual_seed`` covers the CPU and every CUDA device). Seeding
happens whether or not the run is tracked (disabled mode, another rank's untracked run):
the results must not depend on where they are logged.

Without a seed nothing is seeded and nothing is recorded: tracksdk does not invent a seed
state it cannot restore (docs/reproduce.md says what that means for a rerun).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Mapping
from typing import Any

from tracksdk import _warn

#: numpy's legacy seeding takes 0 <= seed < 2**32; the same bound for every generator.
MAX_SEED = 2**32 - 1


def check(seed: Any, where: str = "tracked(seed=...)") -> int | None:
    """``seed`` as an int in ``0..2**32-1`` (None: no seed).

    Raises:
        ConfigError: Anything else (a bool, a float, a negative number, text).
    """
    from tracksdk.exceptions import ConfigError

    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"{where}: the seed must be an integer from 0 to {MAX_SEED} (numpy's range), "
            f"got {seed!r}; e.g. tracked(seed=42) or TRACKSDK_SEED=42"
        )
    return seed


def for_run(given: int | None, setting: int | None, *, nested: bool) -> int | None:
    """The seed of a run: ``tracked(seed=)``'s, else ``TRACKSDK_SEED`` for a top-level run.

    A child run does not reseed from the setting: a search that draws its candidates
    from ``random`` in the parent would draw the same candidate for every child.
    """
    if given is not None:
        return given
    return None if nested else setting


def at_start(seed: int | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's start: seed when ``seed`` is set; the params to log (with ``seed``)."""
    if seed is None:
        return dict(params)
    apply(seed)
    return with_param(params, seed)


def apply(seed: int) -> list[str]:
    """Seed ``random``, numpy's global generator and torch (if imported); what was seeded."""
    random.seed(seed)
    seeded = ["random"]
    numpy = sys.modules.get("numpy")
    if numpy is None and importlib.util.find_spec("numpy") is not None:
        import numpy
    if numpy is not None:
        numpy.random.seed(seed)
        seeded.append("numpy")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(seed)
        seeded.append("torch")
    return seeded


def with_param(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The run's params with ``seed``; a function argument ``seed`` that differs is said."""
    given = params.get("seed")
    if given is not None and str(given) != str(seed):
        _warn.warn(
            f"tracksdk: the function's argument seed={given} is not the seed tracksdk "
            f"applied ({seed}, from tracked(seed=...) or TRACKSDK_SEED); the param `seed` "
            "records the applied one. Pass one of them only."
        )
    return {**params, "seed": seed}
