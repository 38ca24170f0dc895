"""Warnings that point at the user's line, not at tracksdk's insides or its plugins'."""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType

from tracksdk.exceptions import TrackSDKWarning

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(frame: FrameType) -> bool:
    """A frame of tracksdk, of a plugin package (``tracksdk_<name>``), or of pluggy."""
    if frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        return True
    top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
    return top.startswith("tracksdk_") or top == "pluggy"


def user_frame() -> FrameType | None:
    """The innermost frame of the caller's stack outside tracksdk, its plugins and pluggy."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _internal(frame):
        frame = frame.f_back
    return frame


def warn(message: str, category: type[Warning] = TrackSDKWarning) -> None:
    """Warn at the first caller outside tracksdk, its plugins and pluggy.

    Secrets and URL credentials in ``message`` are masked. Plugins warn through this too
    (as :func:`tracksdk.hookspecs.warn`): a plugin's package is recognised by its name,
    ``tracksdk_<name>``.
    """
    from tracksdk._redact import redact, strip_userinfo

    level = 2
    frame = sys._getframe(1)
    while frame is not None and _internal(frame):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    # A store URI in a message may carry a password MLflow needs (postgresql://u:pw@...).
    warnings.warn(strip_userinfo(redact(message)), category, stacklevel=level)
