"""The patches of a gradient-boosting library: its native ``train`` and its scikit-learn API.

LightGBM and XGBoost are built alike: a native ``train`` function (exported from the
package and from its training module), and scikit-learn API models (subclasses of one
base model) whose ``fit`` calls that ``train`` through the scikit-learn module's own
reference to it. :func:`patch_boosting_library` patches all three places once for such a
library; the plugin (tracksdk-lightgbm, tracksdk-xgboost) writes only what a training logs.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tracksdk.autolog._engines import AddUndo
from tracksdk.autolog._patching import patch_attribute, patched_call, pickles_by_reference

__all__ = ["BoostingLibrary", "SklearnTrainHook", "patch_boosting_library"]

#: Called with ``(train, args, kwargs)`` when a logged ``fit`` reaches the library's
#: ``train``; it may return new ``(args, kwargs)`` for the call (a callback added), or None.
SklearnTrainHook = Callable[
    [Callable[..., Any], tuple[Any, ...], dict[str, Any]],
    "tuple[tuple[Any, ...], dict[str, Any]] | None",
]


@dataclass(frozen=True)
class BoostingLibrary:
    """Where a boosting library trains, and what the plugin logs there.

    Attributes:
        framework: The plugin's framework name (``"lightgbm"``).
        train_modules: The modules whose ``train`` users call (the package, its engine).
        sklearn_module: The scikit-learn API's module, whose own ``train`` its ``fit`` calls.
        base_class: The scikit-learn API's base model; it and every subclass defined
            when autolog turns on get ``fit`` patched.
        skip_prefix: Models of modules starting with it are left alone (the Dask models).
        log_train: :func:`~tracksdk.autolog.patched_call`'s ``log`` for ``train``.
        log_sklearn_fit: The same, for a scikit-learn API model's ``fit``.
        sklearn_train_hook: Set by ``log_sklearn_fit`` while it runs: how the ``train``
            its ``fit`` calls is handed over (one lookup per training, none per iteration).
    """

    framework: str
    train_modules: Sequence[ModuleType]
    sklearn_module: ModuleType
    base_class: type
    skip_prefix: str
    log_train: Callable[..., Any]
    log_sklearn_fit: Callable[..., Any]
    sklearn_train_hook: contextvars.ContextVar[SklearnTrainHook | None]


def patch_boosting_library(add_undo: AddUndo, library: BoostingLibrary) -> None:
    """Patch ``library``'s ``train`` functions and its scikit-learn API models' ``fit``."""

    def patch(owner: Any, name: str, make: Callable[[Callable[..., Any]], Any]) -> None:
        undo = patch_attribute(owner, name, make)
        if undo is not None:
            add_undo(undo)

    def logged_train(original: Callable[..., Any]) -> Callable[..., Any]:
        return patched_call(library.framework, original, library.log_train)

    def logged_fit(original: Callable[..., Any]) -> Callable[..., Any]:
        return patched_call(library.framework, original, library.log_sklearn_fit)

    def handed_over(original: Callable[..., Any]) -> Callable[..., Any]:
        # Outside a logged fit the call passes straight through.
        @functools.wraps(original)
        def patched(*args: Any, **kwargs: Any) -> Any:
            hook = library.sklearn_train_hook.get()
            if hook is not None:
                changed = hook(original, args, kwargs)
                if changed is not None:
                    args, kwargs = changed
            return original(*args, **kwargs)

        return patched

    for module in library.train_modules:
        patch(module, "train", logged_train)
    # The scikit-learn API's own reference to train (`from .engine import train`).
    patch(library.sklearn_module, "train", handed_over)
    seen: set[type] = set()
    stack: list[type] = [library.base_class]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        # Not the Dask models (distributed training), nor classes pickles copy by value
        # (a subclass in __main__: a saved model would carry the patch).
        if cls.__module__.startswith(library.skip_prefix) or not pickles_by_reference(cls):
            continue
        patch(cls, "fit", logged_fit)
