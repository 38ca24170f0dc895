"""tracksdk's own autolog engine: scopes, patches, one record per outermost call.

MLflow's autolog computes things on every fit that nobody asked for (training-set metrics
and plots, ``estimator.html``, importance plots, requirements inference): seconds on a fit
that takes milliseconds. tracksdk's engine patches the framework's training calls itself
and logs only cheap facts through tracksdk's public API (``tracksdk.log_params``, ...),
so every record goes through tracksdk's writer. What it logs per framework lives in each
plugin (``tracksdk_sklearn.sklearn_engine``, ``tracksdk_lightgbm.engine``); this module
holds the parts they share:

- **Scopes.** A tracked run that turns autolog on opens a :class:`Scope` (engine and
  options) in a :class:`~contextvars.ContextVar`, the same mechanism tracksdk uses for its
  current run. A patched ``fit`` reads the scope of its own thread or asyncio task: a fit
  in another thread, outside that run, is not logged, and a child run sees its parent's
  scope unless it opens its own. Closing a scope marks it closed, so a scope closed from
  another context is skipped rather than resurrected.
- **Patches.** Installed when the first scope of a framework opens anywhere in the
  process and removed when the last one closes (reference counted). Outside every scope a
  patched call costs one context-variable lookup. Removal puts the original back only
  when the patch is still the attribute's value: if someone patched over it meanwhile
  (MLflow's own autolog, in another run), the patch stays, inert outside scopes.
- **One record per fit.** Only the outermost patched call logs, across frameworks: the
  fits a Pipeline, a search or a LightGBM scikit-learn model make inside it do not.
- **Never in the way.** Every logging step runs under :func:`guarded`: an exception
  becomes one warning per scope, and the user's fit always runs and returns (or raises)
  exactly as without autolog.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tracksdk._warn import warn

__all__ = [
    "ENGINE_MLFLOW",
    "ENGINE_OFF",
    "ENGINE_TRACKSDK",
    "Scope",
    "acquire_patches",
    "active_scope",
    "bind_arguments",
    "estimator_tags",
    "guarded",
    "once",
    "open_scope",
    "patch_attribute",
    "patched_call",
    "pickles_by_reference",
    "tracked_run",
]

#: tracksdk's own engine: cheap facts through tracksdk's API.
ENGINE_TRACKSDK = "tracksdk"
#: MLflow's ``mlflow.<flavor>.autolog``: tracksdk's patches step aside.
ENGINE_MLFLOW = "mlflow"
#: ``disable=True``: nothing is autologged in the scope.
ENGINE_OFF = "off"

T = TypeVar("T")

# Marks the functions this module installs, so a patch is never wrapped twice.
_MARK = "__tracksdk_autolog__"

_lock = threading.RLock()
_scope_vars: dict[str, contextvars.ContextVar[Scope | None]] = {}
# True while a patched call of any framework is logging: nested patched calls pass through.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tracksdk_autolog_inside", default=False
)


@dataclass(eq=False)
class Scope:
    """One tracked run's autolog settings for one framework.

    Attributes:
        framework: ``"sklearn"``, ``"lightgbm"``.
        engine: :data:`ENGINE_TRACKSDK`, :data:`ENGINE_MLFLOW` or :data:`ENGINE_OFF`.
        options: The engine's options, defaults merged.
        previous: The scope this one hides (a parent run's), restored when it closes.
        closed: Set when the run ends.
        warned: Whether a logging failure was already reported for this scope.
    """

    framework: str
    engine: str
    options: Mapping[str, Any] = field(default_factory=dict)
    previous: Scope | None = None
    closed: bool = False
    warned: bool = False


def _var(framework: str) -> contextvars.ContextVar[Scope | None]:
    with _lock:
        var = _scope_vars.get(framework)
        if var is None:
            var = contextvars.ContextVar(f"tracksdk_autolog_{framework}", default=None)
            _scope_vars[framework] = var
        return var


def _open(scope: Scope | None) -> Scope | None:
    while scope is not None and scope.closed:
        scope = scope.previous
    return scope


def active_scope(framework: str) -> Scope | None:
    """The open scope of ``framework`` in the current context, or None."""
    var = _scope_vars.get(framework)
    return None if var is None else _open(var.get())


def open_scope(framework: str, engine: str, options: Mapping[str, Any]) -> Callable[[], None]:
    """Open a scope in the current context; return the callable that closes it."""
    var = _var(framework)
    scope = Scope(framework, engine, dict(options), previous=_open(var.get()))
    var.set(scope)

    def close() -> None:
        if scope.closed:
            return
        scope.closed = True
        # Not ContextVar.reset(): runs may end out of order, and from another context.
        # Only a context that still shows this scope is moved back to the previous one.
        if var.get() is scope:
            var.set(_open(scope.previous))

    return close


class _Patches:
    """The installed patches of one framework and how many scopes need them."""

    def __init__(self) -> None:
        self.users = 0
        self.installed = False
        self.undo: list[Callable[[], None]] = []
        # Guards `undo` and `installed` only, and is never held while importing: a class
        # created in another thread (its module being imported) adds its undo step here
        # while this thread may hold `_lock` and import a module.
        self.undo_lock = threading.Lock()

    def add_undo(self, step: Callable[[], None]) -> None:
        with self.undo_lock:
            if self.installed:
                self.undo.append(step)
                return
        step()  # the patches were removed meanwhile: this one goes at once

    def undo_all(self) -> None:
        with self.undo_lock:
            undo, self.undo, self.installed = self.undo, [], False
        for step in reversed(undo):
            try:
                step()
            except Exception as error:  # one broken undo must not keep the others in place
                warn(f"tracksdk autolog could not remove a patch: {type(error).__name__}: {error}")


_patches: dict[str, _Patches] = {}


def acquire_patches(
    framework: str, install: Callable[[Callable[[Callable[[], None]], None]], None]
) -> Callable[[], None]:
    """Make sure ``framework``'s patches are installed; return the callable releasing them.

    Args:
        framework: The framework name.
        install: Called (under the lock) when no patch is installed yet. It receives
            ``add_undo``: call it with each undo step, also later (e.g. for a class
            defined while the patches are in place).

    Returns:
        A callable that releases this use; the last release undoes every patch, newest
        first. Calling it twice does nothing.
    """
    with _lock:
        state = _patches.setdefault(framework, _Patches())
        if state.users == 0:
            with state.undo_lock:
                state.installed = True
            try:
                install(state.add_undo)
            except BaseException:
                state.undo_all()
                raise
        state.users += 1

    @once
    def release() -> None:
        with _lock:
            state.users -= 1
            if state.users == 0:
                state.undo_all()

    return release


def once(action: Callable[[], None]) -> Callable[[], None]:
    """``action`` run by the first call only; later calls, from any thread, do nothing.

    For restore callables, which the core and nested runs may call more than once.
    """
    lock = threading.Lock()
    done = False

    def run_once() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        action()

    return run_once


def patch_attribute(
    owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Callable[[], None] | None:
    """Replace the plain function ``owner.<name>`` (own attribute) with ``make(original)``.

    Returns the undo step, or None when there is nothing to patch: no such attribute of
    its own, not a plain function (a descriptor, a builtin), or already a tracksdk patch.
    """
    own = owner.__dict__ if isinstance(owner, type) else vars(owner)
    original = own.get(name)
    if not inspect.isfunction(original) or getattr(original, _MARK, False):
        return None
    replacement = make(original)
    setattr(replacement, _MARK, True)
    setattr(owner, name, replacement)

    def undo() -> None:
        current = owner.__dict__ if isinstance(owner, type) else vars(owner)
        # Someone patched over ours (MLflow's autolog in another run): leave theirs in
        # place. Ours stays underneath, passing every call through outside a scope.
        if current.get(name) is replacement:
            setattr(owner, name, original)

    return undo


def pickles_by_reference(cls: type, *, new: bool = False) -> bool:
    """Whether pickle and cloudpickle store ``cls`` by name, not by copying its body.

    Only such classes are patched: a class copied by value (defined in ``__main__``, a
    notebook, or inside a function) would carry the patch into every pickle of its
    instances, a saved model included. A class being created (``new``) is not bound to
    its name yet: its module must be an imported module other than ``__main__`` and its
    name not local to a function.
    """
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        return False
    module = sys.modules.get(cls.__module__)
    if module is None:
        return False
    if new:
        return True
    found: Any = module
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def estimator_tags(estimator: Any) -> dict[str, str]:
    """The tags ``estimator_name`` and ``estimator_class``, as MLflow's autolog sets them."""
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}


def tracked_run() -> Any:
    """The current tracked run when it writes somewhere, else None."""
    from tracksdk._context import active_run

    run = active_run()
    return run if run is not None and run.tracked else None


def patched_call(
    framework: str,
    original: Callable[..., T],
    log: Callable[[Scope, Callable[..., T], tuple[Any, ...], dict[str, Any]], T],
    applies: Callable[[tuple[Any, ...]], bool] | None = None,
) -> Callable[..., T]:
    """A replacement for ``original`` that hands the outermost call in a scope to ``log``.

    Args:
        framework: Whose scope decides.
        original: The function being patched (a method takes ``self`` as ``args[0]``).
        log: ``log(scope, original, args, kwargs)`` must call ``original(*args, **kwargs)``
            once and return its result; it logs around it, each step under
            :func:`guarded`.
        applies: Optional last check on the call's arguments (e.g. that ``self`` belongs
            to the framework); a call it rejects passes straight through.
    """

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> T:
        if _inside.get():
            return original(*args, **kwargs)
        scope = active_scope(framework)
        if scope is None or scope.engine != ENGINE_TRACKSDK or tracked_run() is None:
            return original(*args, **kwargs)
        if applies is not None and not applies(args):
            return original(*args, **kwargs)
        token = _inside.set(True)
        try:
            return log(scope, original, args, kwargs)
        finally:
            _inside.reset(token)

    return patched


def guarded(scope: Scope, what: str, action: Callable[[], T]) -> T | None:
    """Run one logging step; an exception becomes a warning (once per scope) and None.

    Used for everything autolog does around the user's fit, so that tracking can never
    change what the fit returns or raises. Even when warnings are errors
    (``-W error``), the warning is not allowed to escape.
    """
    try:
        return action()
    except Exception as error:
        if not scope.warned:
            scope.warned = True
            with contextlib.suppress(Exception):
                warn(
                    f"tracksdk autolog ({scope.framework}) could not {what}: "
                    f"{type(error).__name__}: {error}. The fit itself is not affected; "
                    "further autolog failures in this run are not reported."
                )
        return None


@functools.lru_cache(maxsize=256)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def bind_arguments(
    function: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments | None:
    """``function``'s arguments for this call, by name; None when they do not bind."""
    try:
        return _signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
