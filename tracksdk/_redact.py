"""Known secrets and the one function that scrubs them from text.

Every value tracksdk writes (params, tags, text artifacts, warnings, exception messages)
passes through :func:`redact`. Secrets are registered when settings are resolved: tokens
and passwords from settings, URI userinfo, and environment variables whose names look
secret. Registration is process-wide and only ever grows, so a secret seen once stays
masked for the life of the process.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Words that mark a name as secret. Names are split into words on - _ . and camelCase, so
# `tokenizer`, `max_tokens` and `author` are not secret while `api_key` and `apiToken` are.
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "accesskey",
        "auth",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "privatekey",
        "pwd",
        "secret",
        "secretkey",
        "token",
    }
)
_SECRET_PAIRS = frozenset(
    {("access", "key"), ("api", "key"), ("private", "key"), ("secret", "key")}
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SEPARATORS = re.compile(r"[-_.\s]+")
# Variables whose names look secret but whose values are not (a provider name, a path).
_NOT_SECRET = frozenset({"MLFLOW_TRACKING_AUTH", "MLFLOW_AUTH_CONFIG_PATH"})
# Shorter strings are too likely to occur by chance ("1", "true") to mask everywhere.
_MIN_SECRET_LEN = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def looks_secret(name: str) -> bool:
    """Tell whether a variable or argument name suggests its value is a secret."""
    words = tuple(
        word.lower()
        for word in _WORD_SEPARATORS.split(_CAMEL_BOUNDARY.sub("-", name.lstrip("+~")))
        if word
    )
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


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
        if name.upper() not in _NOT_SECRET and looks_secret(name):
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


def after_fork_in_child() -> None:
    """In a forked child: a fresh lock (a parent thread may have held this one)."""
    global _lock
    _lock = threading.Lock()
