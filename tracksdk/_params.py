"""Turning a call's arguments into readable param values.

A param is for a human comparing runs: ``learning_rate=0.1``, not a 6,000-character dump
of a DataFrame. Scalars are logged as they are; arrays and frames as their shape and
dtype; containers as their plain repr when short, else their length; other objects as a
bounded repr. Values under secret-looking keys are masked at any depth (see
:class:`tracksdk._redact.Walk`).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from tracksdk import _redact

_MAX_REPR = 250
_SHOWN_ITEMS = 10


def format_value(value: Any) -> str:
    """Return a short, readable string for a param value."""
    if value is None or isinstance(value, bool | int | float | str):
        from tracksdk._validate import safe_str

        return safe_str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return str(value.item())  # numpy scalars and 0-d arrays: np.int64(3) -> "3"
    shape = getattr(value, "shape", None)
    if shape is not None and not callable(shape):
        return _format_shaped(value, tuple(shape))
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.ismethod(value):
        return f"{value.__module__}.{value.__qualname__}"
    # The walk masks secret-looking keys at any depth and registers their values, even
    # when the repr is too long to show: they may reappear in an error message.
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        # A cut repr ("[0, 1, ..., 9, ...]") hides the length, which is what matters. A
        # container with too many items is only searched for secrets, not rendered.
        short = len(value) <= _SHOWN_ITEMS
        walk = _redact.Walk(_MAX_REPR if short else -1).run(value)
        if short and walk.fits:
            return walk.text
        return f"{type(value).__name__}(len={len(value)})"
    walk = _redact.Walk(_MAX_REPR).run(value)
    text = walk.text
    return text if walk.fits else text[: _MAX_REPR - 1] + "…"


def _format_shaped(value: Any, shape: tuple[Any, ...]) -> str:
    kind = type(value).__name__
    dims = tuple(int(d) if isinstance(d, int) else d for d in shape)
    if hasattr(value, "columns") and hasattr(value, "dtypes"):  # pandas DataFrame
        columns = [str(c) for c in list(value.columns)[:8]]
        more = ", …" if len(value.columns) > 8 else ""
        return f"{kind}(shape={dims}, columns=[{', '.join(columns)}{more}])"
    dtype = getattr(value, "dtype", None)
    return f"{kind}(shape={dims}, dtype={dtype})" if dtype is not None else f"{kind}({dims})"


def call_arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[tuple[str, Any]] | None:
    """A call's arguments by name, defaults applied, ``**kwargs`` flattened, no self/cls.

    Bound once per call, for its params and its dataset inputs (tracksdk/_lineage.py).
    None when they do not fit the signature: the call itself raises the same TypeError.
    """
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    out: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if name in ("self", "cls") and kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        out += value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]
    return out


def bind_params(
    arguments: list[tuple[str, Any]] | None, select: bool | Iterable[str]
) -> dict[str, str]:
    """The call's arguments (:func:`call_arguments`) as params.

    Args:
        arguments: The call's arguments, or None when they did not fit the signature.
        select: True for all arguments, False for none, or the names to keep.

    Returns:
        Param name to formatted value. Arguments whose names look secret are masked, and
        so are values under secret-looking keys inside containers, dataclasses and
        pydantic models.
    """
    if select is False or arguments is None:
        return {}
    wanted = None if select is True else set(select)
    out: dict[str, str] = {}
    for key, item in arguments:
        if wanted is not None and key not in wanted:
            continue
        if _redact.looks_secret(key):
            out[key] = _redact.mask_value(item)
        else:
            out[key] = format_value(item)
    return out
