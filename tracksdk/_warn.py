"""Warnings that point at the user's line, not at tracksdk's insides."""

from __future__ import annotations

import os
import sys
import warnings

from tracksdk.exceptions import TrackSDKWarning

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = TrackSDKWarning) -> None:
    """Warn with the location of the first caller outside the tracksdk package."""
    from tracksdk._redact import redact, strip_userinfo

    level = 2
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    # A store URI in a message may carry a password MLflow needs (postgresql://u:pw@...).
    warnings.warn(strip_userinfo(redact(message)), category, stacklevel=level)
