"""``tracked``: a typed decorator and context manager over :class:`tracksdk._session.Session`.

``@tracked``, ``@tracked(...)`` and ``with tracked(...) as run:`` share one lifecycle. The
decorated function keeps its name, docstring, signature and static type (ParamSpec), and
``async def`` functions stay coroutines.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack, cast, overload

from tracksdk._options import RunOptions, TrackedOptions

if TYPE_CHECKING:
    from tracksdk._run import Run
    from tracksdk._session import Session

P = ParamSpec("P")
R = TypeVar("R")
# What __exit__ and __aexit__ are given: the type, the exception and its traceback.
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

__all__ = ["Tracked", "tracked"]

# The blocks entered in this thread or asyncio task and not yet left, innermost last. One
# Tracked object may be entered in several threads and tasks at once (and inside itself):
# each exit must end the run its own block opened, so what a block opened is kept per
# context, not on the object.
_entered: contextvars.ContextVar[tuple[tuple[Tracked, Session], ...]] = contextvars.ContextVar(
    "tracksdk_entered", default=()
)


class Tracked:
    """What ``tracked(...)`` returns: a decorator and a (sync or async) context manager.

    One object may be used as a context manager from several threads and asyncio tasks at
    once, and nested inside itself: each ``with`` block's exit ends the run that block
    opened.
    """

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        # Every block entered and not yet left, in any context, oldest first: for an exit
        # in another context than its entry (an async fixture's teardown runs in a task of
        # its own), which finds no block of this object in its own context. No lock: a
        # list's append, remove and [-1] are atomic, and a lock could be inherited held by
        # a forked child.
        self._open: list[Session] = []

    def __repr__(self) -> str:
        return f"tracked({self.options!r})"

    # -- decorator -------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``func`` so that each call is one run.

        ``func`` may be a function, a method (bound or not), a ``staticmethod`` or
        ``classmethod`` object, a ``functools.partial``, or a callable instance. A
        generator function's run spans the whole iteration.
        """
        # Loaded here, not at `import tracksdk`: inspect alone costs ~15 ms to import.
        import inspect

        from tracksdk import _generators
        from tracksdk._config import is_disabled
        from tracksdk._guarded import begin, end, returned
        from tracksdk._session import Session

        if isinstance(func, staticmethod | classmethod):  # @tracked above @staticmethod
            wrapped: Any = type(func)(self(func.__func__))
            return cast(Callable[P, R], wrapped)

        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have none: no params then
            signature = None
        source_file = _source_file(func)
        options = self.options
        select = options.params
        kind = _kind(func)

        def open_session(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Session:
            from tracksdk._lineage import candidates
            from tracksdk._params import bind_params, call_arguments

            named = call_arguments(signature, args, kwargs) if signature is not None else None
            return Session(
                options,
                function=func,
                params=bind_params(named, select),
                source_file=source_file,
                arguments=(*args, *kwargs.values()),
                datasets=candidates(named),
            )

        if kind == "async":
            async_func = cast(Callable[..., Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                session = None if is_disabled() else begin(open_session, args, kwargs)
                if session is None:
                    return await async_func(*args, **kwargs)
                try:
                    result = await async_func(*args, **kwargs)
                except BaseException as exc:
                    end(session, exc)
                    raise
                return returned(session, result)

            return cast(Callable[P, R], async_wrapper)

        if kind == "generator":
            return cast(
                Callable[P, R], _generators.generator_wrapper(func, open_session, is_disabled)
            )
        if kind == "async generator":
            return cast(
                Callable[P, R], _generators.async_generator_wrapper(func, open_session, is_disabled)
            )

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            session = None if is_disabled() else begin(open_session, args, kwargs)
            if session is None:
                return func(*args, **kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                end(session, exc)
                raise
            return returned(session, result)

        return wrapper

    # -- context manager -------------------------------------------------------------

    def _enter(self, caller: str) -> Run:
        from tracksdk._guarded import start
        from tracksdk._session import Session

        session = Session(self.options, source_file=caller)
        start(session)  # on an unexpected error the run is untracked; the block runs
        self._open.append(session)
        _entered.set((*_entered.get(), (self, session)))
        return session.run

    def _exit(self, exc: BaseException | None) -> None:
        from tracksdk._guarded import end

        session = self._leave()
        if session is not None:
            end(session, exc)

    def _leave(self) -> Session | None:
        """Forget the block being left; return the session it opened.

        That is this object's innermost block in the calling thread or task. Left in
        another context than it was entered in (none of this object's blocks is open here),
        it is the block of this object entered last.
        """
        entered = _entered.get()
        session: Session | None = None
        for index in range(len(entered) - 1, -1, -1):
            if entered[index][0] is self:
                session = entered[index][1]
                _entered.set(entered[:index] + entered[index + 1 :])
                break
        if session is None:
            try:
                session = self._open[-1]
            except IndexError:
                return None  # left without being entered: nothing to end
        with contextlib.suppress(ValueError):  # gone: a block left elsewhere ended it
            self._open.remove(session)
        return session

    def __enter__(self) -> Run:
        return self._enter(sys._getframe(1).f_code.co_filename)

    def __exit__(self, *exc_info: *ExcInfo) -> None:
        self._exit(exc_info[1])

    async def __aenter__(self) -> Run:
        return self._enter(sys._getframe(1).f_code.co_filename)

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        self._exit(exc_info[1])


def _kind(func: Callable[..., Any]) -> str:
    """``"async"``, ``"generator"``, ``"async generator"`` or ``"sync"``.

    ``inspect`` sees through partials and methods; for a callable instance, its
    ``__call__`` decides.
    """
    import inspect

    target: Any = func
    if not (
        inspect.isfunction(func) or inspect.ismethod(func) or isinstance(func, functools.partial)
    ):
        target = type(func).__call__  # the class's, not the instance's
    if inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(target):
        return "async generator"
    if inspect.isgeneratorfunction(func) or inspect.isgeneratorfunction(target):
        return "generator"
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(target):
        return "async"
    return "sync"


def _source_file(func: Callable[..., Any]) -> str | None:
    import inspect

    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isclass(target)):
        target = type(target)  # a callable instance: where its class is defined
    if str(getattr(target, "__module__", "")).startswith("tracksdk_"):
        # A plugin's own function (tracksdk_optuna's search): the code that ran is the
        # user's that called the plugin, and its repository is the one to record.
        from tracksdk._warn import user_frame

        frame = user_frame()
        if frame is not None:
            return frame.f_code.co_filename
    try:
        return inspect.getsourcefile(target)
    except TypeError:
        return None


@overload
def tracked(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tracked(func: None = None, /, **options: Unpack[TrackedOptions]) -> Tracked: ...


def tracked(
    func: Callable[P, R] | None = None, /, **options: Unpack[TrackedOptions]
) -> Callable[P, R] | Tracked:
    """Track a function or a block as an MLflow run.

    Use it bare (``@tracked``), with options (``@tracked(experiment="churn")``), or as a
    context manager (``with tracked(experiment="churn") as run:``). Each call of a
    decorated function is one run; inside another tracked run it is a child run. Any
    callable can be decorated (methods, ``staticmethod``, ``classmethod``, partials,
    callable instances); a generator function's run spans its whole iteration. An
    unexpected error inside tracksdk is a warning and never changes what the function
    returns or raises.

    Args:
        func: The function, when used bare as ``@tracked``.
        experiment: Experiment name; default ``TRACKSDK_EXPERIMENT``, else MLflow's
            active experiment (``mlflow.set_experiment``), else the project folder's name.
        run_name: The run's name; default: MLflow picks one.
        tags: Tags to set on the run.
        params: Which arguments of the call to log as params: True (all, defaults
            applied), False (none), or a list of argument names.
        nested: None (default): a child run when called inside a tracked run. False:
            always a top-level run.
        strict: Raise on tracking failures and invalid values instead of warning;
            default ``TRACKSDK_STRICT``.
        settings: Any other setting, as in ``tracksdk.configure``, for this run only.
        autolog: Frameworks to autolog inside this run only: True (every installed
            plugin's), a list of names (``["lightgbm"]``), or per-framework options
            (``{"sklearn": {"max_tuning_runs": 3}}``). Default ``TRACKSDK_AUTOLOG``.
        register: Register the returned model: a registered model name, or a
            :class:`~tracksdk.Register` with an alias and a champion :class:`~tracksdk.Gate`.
        formats: Extra model formats to log, e.g. ``["onnx"]`` (needs skl2onnx).
        best: For a parent run (a search): a metric name (higher is better) or a
            :class:`~tracksdk.Gate`; when the run ends it records the best child's value
            as ``best_<metric>`` and its run id as tag ``tracksdk.best_run_id``.
        key: A stable key of the run, unique in its experiment (tag ``tracksdk.run_key``):
            the first run with it is created, a later one continues it (same run id,
            RUNNING again), even offline. Default ``TRACKSDK_RUN_KEY`` for a top-level
            run, e.g. ``$SLURM_JOB_ID`` (docs/resume.md).
        resume: With a key: ``"allow"`` (default) continues the run when it exists,
            ``"must"`` raises :class:`~tracksdk.ResumeError` when none does, ``"never"``
            when one does. Default ``TRACKSDK_RESUME``.
        run_id: Continue this run by MLflow's id, like ``mlflow.start_run(run_id=...)``.
        distributed: Under torchrun, srun or mpirun: ``"rank0"`` (rank 0's run only),
            ``"shared"`` (one run all ranks write to) or ``"each"`` (a run per rank).
            Default ``TRACKSDK_DISTRIBUTED__MODE`` (docs/distributed.md).
        seed: Seed Python's ``random``, numpy's global generator and torch (when
            imported) with this integer before the body runs, and log it as the param
            ``seed``. Default ``TRACKSDK_SEED``; none: nothing is seeded (docs/reproduce.md).

    Returns:
        The wrapped function when used bare, else a :class:`Tracked` object that
        decorates and is a context manager yielding the :class:`~tracksdk.Run`.

    Raises:
        ConfigError: When settings are invalid, before the function starts.
        ResumeError: The run cannot be continued as ``resume=`` or ``run_id=`` asks,
            before the function starts.
        TypeError: An option that does not exist.
    """
    run_options = RunOptions(**options)
    if func is not None:
        return Tracked(run_options)(func)
    return Tracked(run_options)
