"""Tracked generator functions: the run spans the whole iteration.

The run starts at the first ``next()`` (when the body starts) and ends when the
generator returns, raises, or is closed early. Between items the consumer's code runs in
its own context, so its ``tracksdk.log_*`` calls do not land in the generator's run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tracksdk._guarded import OpenSession, begin, end, returned

if TYPE_CHECKING:
    from tracksdk._run import Run
    from tracksdk._session import Session

__all__ = ["async_generator_wrapper", "generator_wrapper"]


class _Steps:
    """Puts a generator's run on the context stack while its body runs, and only then.

    Between items the consumer's code runs in its own context: its ``tracksdk.log_*``
    calls must not land in the generator's run. The runs the body opened and left open
    across a ``yield`` (a ``with tracked()`` around it) are kept for the next step.
    """

    def __init__(self, session: Session) -> None:
        from tracksdk._context import current

        self.current = current
        self.stack: tuple[Run, ...] = (session.run,)
        session.leave_context()  # start() pushed the run on the consumer's stack: undo

    def enter(self) -> tuple[tuple[Run, ...], Any]:
        base = self.current.get()
        return base, self.current.set(base + self.stack)

    def leave(self, entered: tuple[tuple[Run, ...], Any]) -> None:
        base, token = entered
        now = self.current.get()
        if now[: len(base)] == base and len(now) > len(base):
            self.stack = now[len(base) :]
        try:
            self.current.reset(token)
        except ValueError:  # stepped in another context: put back what it had
            self.current.set(base)


def generator_wrapper(
    func: Callable[..., Any], open_session: OpenSession, is_disabled: Callable[[], bool]
) -> Callable[..., Any]:
    @functools.wraps(func)
    def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_disabled():
            return (yield from func(*args, **kwargs))
        # A generator's body runs at the first next(): so does this, and the run starts.
        session = begin(open_session, args, kwargs)
        if session is None:
            return (yield from func(*args, **kwargs))
        steps = _Steps(session)

        def step(call: Callable[..., Any], *a: Any) -> Any:
            entered = steps.enter()
            try:
                return call(*a)
            finally:
                steps.leave(entered)

        try:
            inner = step(lambda: func(*args, **kwargs))
            value = step(next, inner)
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    step(inner.close)
                    raise
                except BaseException as thrown:
                    value = step(inner.throw, thrown)
                else:
                    value = step(inner.send, sent)
        except StopIteration as stop:
            return returned(session, stop.value)
        except GeneratorExit:  # closed early (break, close(), garbage collected)
            end(session, None)
            raise
        except BaseException as exc:
            end(session, exc)
            raise

    return generator_wrapper


def async_generator_wrapper(
    func: Callable[..., Any], open_session: OpenSession, is_disabled: Callable[[], bool]
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_disabled():
            async for item in func(*args, **kwargs):
                yield item
            return
        session = begin(open_session, args, kwargs)
        if session is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        steps = _Steps(session)

        async def step(awaitable: Awaitable[Any]) -> Any:
            entered = steps.enter()
            try:
                return await awaitable
            finally:
                steps.leave(entered)

        entered = steps.enter()
        try:
            inner = func(*args, **kwargs)
        finally:
            steps.leave(entered)
        try:
            value = await step(inner.__anext__())
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    await step(inner.aclose())
                    raise
                except BaseException as thrown:
                    value = await step(inner.athrow(thrown))
                else:
                    value = await step(inner.asend(sent))
        except StopAsyncIteration:
            end(session, None)
        except GeneratorExit:  # closed early (break, aclose(), shut down by the loop)
            end(session, None)
            raise
        except BaseException as exc:
            end(session, exc)
            raise

    return async_generator_wrapper
