"""Guards around a session: a failure inside tracksdk never changes what the user's code does.

``start``, ``log_result`` and ``end`` call the session and turn an unexpected error (a bug in
tracksdk or a plugin) into one warning; tracksdk's own documented errors still propagate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tracksdk._session import Session

R = TypeVar("R")
# Makes the session of one call from its arguments.
OpenSession = Callable[[tuple[Any, ...], dict[str, Any]], "Session"]

__all__ = ["OpenSession", "begin", "end", "internal_error", "log_result", "returned", "start"]


def internal_error(when: str, exc: BaseException, outcome: str) -> None:
    from tracksdk import _warn

    _warn.warn(
        f"tracksdk: unexpected error while {when}: {type(exc).__name__}: {exc}. {outcome} "
        "This is a bug in tracksdk or one of its plugins; please report it with this message."
    )


def start(session: Session) -> bool:
    """Start ``session``; False (one warning, run untracked) on an unexpected error.

    tracksdk's own errors (``ConfigError``, and ``TrackingError`` when strict) propagate:
    they are documented to be raised before the function runs.
    """
    from tracksdk.exceptions import TrackSDKError

    try:
        session.start()
        return True
    except TrackSDKError:
        raise
    except Exception as exc:
        internal_error("starting the run", exc, "The code runs untracked.")
        abandon(session, exc)
        return False


def begin(
    open_session: OpenSession,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Session | None:
    """A started session for one call, or None when the call must run untracked."""
    from tracksdk.exceptions import TrackSDKError

    try:
        session = open_session(args, kwargs)
    except TrackSDKError:
        raise
    except Exception as exc:
        internal_error("starting the run", exc, "The function runs untracked.")
        return None
    return session if start(session) else None


def abandon(session: Session, exc: BaseException) -> None:
    """Undo what a failed start did: end a run already created, restore MLflow's state."""
    with contextlib.suppress(Exception):
        session.finish(exc)
    with contextlib.suppress(Exception):
        session.restore_mlflow()


def log_result(session: Session, result: Any) -> None:
    """Log the returned value; a failure is a warning (strict: the run fails, and raises)."""
    from tracksdk.exceptions import TrackSDKError

    try:
        session.handle_result(result)
    except TrackSDKError as exc:
        end(session, exc)
        raise
    except Exception as exc:
        internal_error("logging the returned value", exc, "The value is returned unchanged.")


def returned(session: Session, value: R) -> R:
    """End the run of a call that returned ``value``, after logging it; return it."""
    log_result(session, value)
    end(session, None)
    return value


def end(session: Session, exc: BaseException | None, status: str | None = None) -> None:
    """Finish ``session`` (with ``status``, else the one ``exc`` implies).

    Only a strict-mode error of a successful call may propagate.
    """
    from tracksdk.exceptions import TrackSDKError

    try:
        session.finish(exc, status)
    except TrackSDKError:
        if exc is None:
            raise
    except Exception as err:
        internal_error("ending the run", err, "Your code's outcome is unchanged.")
        with contextlib.suppress(Exception):  # still end it, so it is not left RUNNING
            session.end_anyway(exc, status)
        with contextlib.suppress(Exception):
            session.restore_mlflow()
