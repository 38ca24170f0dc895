"""``tracked``: a typed decorator and context manager over :class:`tracksdk._run.Session`.

``@tracked``, ``@tracked(...)`` and ``with tracked(...) as run:`` share one lifecycle. The
decorated function keeps its name, docstring, signature and static type (ParamSpec), and
``async def`` functions stay coroutines.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from tracksdk._options import RunOptions

if TYPE_CHECKING:
    from tracksdk._run import Run, Session
    from tracksdk.registry import Gate, Register

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Tracked", "tracked"]


class Tracked:
    """What ``tracked(...)`` returns: a decorator and a (sync or async) context manager."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self._sessions: list[Session] = []

    def __repr__(self) -> str:
        return f"tracked({self.options!r})"

    # -- decorator -------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``func`` so that each call is one run."""
        # Loaded here, not at `import tracksdk`: inspect alone costs ~15 ms to import.
        import inspect

        from tracksdk._config import is_disabled
        from tracksdk._run import Session

        signature = inspect.signature(func)
        source_file = _source_file(func)
        options = self.options
        select = options.params

        def open_session(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Session:
            from tracksdk._params import bind_params

            params = bind_params(func, signature, args, kwargs, select)
            return Session(
                options,
                function=func,
                params=params,
                source_file=source_file,
                arguments=(*args, *kwargs.values()),
            )

        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[..., Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if is_disabled():
                    return await async_func(*args, **kwargs)
                session = open_session(args, kwargs)
                session.start()
                try:
                    result = await async_func(*args, **kwargs)
                except BaseException as exc:
                    session.finish(exc)
                    raise
                session.handle_result(result)
                session.finish(None)
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if is_disabled():
                return func(*args, **kwargs)
            session = open_session(args, kwargs)
            session.start()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                session.finish(exc)
                raise
            session.handle_result(result)
            session.finish(None)
            return result

        return wrapper

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> Run:
        from tracksdk._run import Session

        caller = sys._getframe(1).f_code.co_filename
        session = Session(self.options, source_file=caller)
        run = session.start()
        self._sessions.append(session)
        return run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sessions.pop().finish(exc)

    async def __aenter__(self) -> Run:
        from tracksdk._run import Session

        caller = sys._getframe(1).f_code.co_filename
        session = Session(self.options, source_file=caller)
        run = session.start()
        self._sessions.append(session)
        return run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sessions.pop().finish(exc)


def _source_file(func: Callable[..., Any]) -> str | None:
    import inspect

    try:
        return inspect.getsourcefile(func)
    except TypeError:
        return None


@overload
def tracked(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tracked(
    func: None = None,
    /,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: bool | Iterable[str] = True,
    nested: bool | None = None,
    strict: bool | None = None,
    settings: Mapping[str, Any] | None = None,
    autolog: bool | Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
    register: str | Register | None = None,
    formats: Iterable[str] = (),
    best: str | Gate | None = None,
) -> Tracked: ...


def tracked(
    func: Callable[P, R] | None = None,
    /,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: bool | Iterable[str] = True,
    nested: bool | None = None,
    strict: bool | None = None,
    settings: Mapping[str, Any] | None = None,
    autolog: bool | Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
    register: str | Register | None = None,
    formats: Iterable[str] = (),
    best: str | Gate | None = None,
) -> Callable[P, R] | Tracked:
    """Track a function or a block as an MLflow run.

    Use it bare (``@tracked``), with options (``@tracked(experiment="churn")``), or as a
    context manager (``with tracked(experiment="churn") as run:``). Each call of a
    decorated function is one run; inside another tracked run it is a child run.

    Args:
        func: The function, when used bare as ``@tracked``.
        experiment: Experiment name; default ``TRACKSDK_EXPERIMENT``, else the project
            folder's name.
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

    Returns:
        The wrapped function when used bare, else a :class:`Tracked` object that
        decorates and is a context manager yielding the :class:`~tracksdk.Run`.

    Raises:
        ConfigError: When settings are invalid, before the function starts.
    """
    options = RunOptions(
        experiment=experiment,
        run_name=run_name,
        tags=tags,
        params=params,
        nested=nested,
        strict=strict,
        settings=settings,
        autolog=autolog,
        register=register,
        formats=formats,
        best=best,
    )
    if func is not None:
        return Tracked(options)(func)
    return Tracked(options)
