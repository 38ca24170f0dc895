"""The exceptions tracksdk raises.

Every error tracksdk raises on purpose derives from one root, so a caller can catch
them all with ``except tracksdk.TrackSDKError``::

    TrackSDKError
    ├── ConfigError        a setting is missing, malformed or contradictory (raised before
    │                      the user's function starts)
    ├── ValidationError    a logged value is not acceptable (raised only in strict mode;
    │                      otherwise tracksdk warns and normalises, see docs/configuration.md)
    ├── ResumeError        a run cannot be continued as asked (resume="must"/"never", an
    │                      unknown run_id; raised before the function starts)
    └── TrackingError      the tracking store failed (raised only in strict mode; otherwise
                           one warning, and the user's function is unaffected)

Messages say what happened, what is valid, and how to fix it. They never contain a
credential: every message passes through the secret redactor before it is raised, and
every URL in it loses its user info.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ResumeError",
    "TrackSDKError",
    "TrackSDKWarning",
    "TrackingError",
    "ValidationError",
]


class TrackSDKError(Exception):
    """Root of every exception tracksdk raises on purpose."""

    def __init__(self, message: str) -> None:
        # Imported here to keep this module import-free; the redactor is tiny.
        from tracksdk._redact import redact, strip_userinfo

        super().__init__(strip_userinfo(redact(message)))


class ConfigError(TrackSDKError, ValueError):
    """A setting is missing, malformed or names something that does not exist.

    Raised before the user's function starts, so no training time is lost. The message
    names the variable, where its value came from, the valid values and the fix.
    """


class ValidationError(TrackSDKError, ValueError):
    """A logged key or value is invalid (raised only when ``TRACKSDK_STRICT=true``)."""


class TrackingError(TrackSDKError):
    """The tracking store failed (raised only when ``TRACKSDK_STRICT=true``)."""


class ResumeError(TrackSDKError):
    """A run cannot be continued as asked (docs/resume.md).

    ``resume="must"`` and no run has the key, ``resume="never"`` and one has, or the
    ``run_id`` to continue does not exist or is in the trash. Raised before the function
    starts: nothing of the run was stored.
    """


class TrackSDKWarning(UserWarning):
    """Warned when tracksdk normalises a value or a write to the store fails."""
