"""Known secrets and the one function that scrubs them from text.

Every value tracksdk writes (params, tags, text artifacts, warnings, exception messages)
passes through :func:`redact`. Secrets are registered when settings are resolved: tokens
and passwords from settings, URI userinfo, and environment variables whose names look
secret. Registration is process-wide and only ever grows, so a secret seen once stays
masked for the life of the process.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Names that mark a value as secret, in environment variables and in argument names.
_SECRET_NAME = re.compile(
    r"(TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)",
    re.IGNORECASE,
)
# Shorter strings are too likely to occur by chance ("1", "true") to mask everywhere.
_MIN_SECRET_LEN = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def looks_secret(name: str) -> bool:
    """Tell whether a variable or argument name suggests its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def add_secret(value: str | None) -> None:
    """Register ``value`` so that it is masked wherever it appears from now on."""
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def add_secrets_from_environ() -> None:
    """Register the values of environment variables whose names look secret."""
    for name, value in os.environ.items():
        if looks_secret(name):
            add_secret(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside nested dicts, lists and tuples (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")


def strip_userinfo(text: str) -> str:
    """Replace ``user:password@`` in every URL inside ``text`` by ``***@``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
