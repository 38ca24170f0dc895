"""Known secrets and the one function that scrubs them from text.

Every value tracksdk writes (params, tags, text artifacts, warnings, exception messages)
passes through :func:`redact`. Secrets are registered when settings are resolved: tokens
and passwords from settings, URI userinfo, and environment variables whose names look
secret; and when a value is logged under a secret-looking name, at any depth of a dict,
list, dataclass or pydantic model. Registration is process-wide and only ever grows, so a
secret seen once stays masked for the life of the process.

Which names look secret is decided by :mod:`tracksdk._secret_names`; this module keeps the
registry and walks values: :func:`redact_obj`, :func:`register_all` and :class:`Walk`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

# The rules that tell a secret name; callers ask them here too (`_redact.looks_secret`).
from tracksdk._secret_names import is_secret_env_name as is_secret_env_name
from tracksdk._secret_names import looks_secret as looks_secret

MASK = "***"

# Shorter strings are too likely to occur by chance ("1", "true") to mask everywhere.
_MIN_SECRET_LEN = 6
# How far a logged value is searched for secret-looking keys: nesting depth and the
# number of containers and items looked at. Beyond that a value is left as it is (its
# param is then too long to show anyway: `dict(len=...)`).
MAX_DEPTH = 8
MAX_ITEMS = 1000

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


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
        if is_secret_env_name(name):
            add_secret(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret, and URL user info, masked as ``***``."""
    if not text:
        return text
    if "@" in text and "://" in text:  # a URL's user:password@ (cheap test first)
        text = strip_userinfo(text)
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside nested dicts, lists and tuples (keys included).

    A value under a secret-looking key becomes ``***`` at any depth, and its strings are
    registered as secrets, so they are masked everywhere else too.
    """
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if isinstance(key, str) and looks_secret(key):
                register_all(value)
                out[redact(key)] = MASK
            else:
                out[redact_obj(key)] = redact_obj(value)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def mask_value(value: Any) -> str:
    """Register the strings in ``value`` (logged under a secret name) and return ``***``."""
    register_all(value)
    return MASK


def register_all(value: Any) -> None:
    """Register every string inside ``value`` as a secret (bounded like :func:`walk`)."""
    budget = [MAX_ITEMS]

    def visit(item: Any, depth: int) -> None:
        if budget[0] <= 0 or depth > MAX_DEPTH:
            return
        budget[0] -= 1
        if isinstance(item, str):
            add_secret(item)
        elif isinstance(item, int | float | bool) or item is None:
            return
        elif _secret_str(item) is not None:
            add_secret(_secret_str(item))
        else:
            for _, child in _children(item) or ():
                visit(child, depth + 1)

    visit(value, 0)


def _secret_str(value: Any) -> str | None:
    """The value of a pydantic ``SecretStr``, else None."""
    getter = getattr(value, "get_secret_value", None)
    if getter is None or type(value).__name__ not in ("SecretStr", "SecretBytes"):
        return None
    try:
        secret = getter()
    except Exception:
        return None
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", errors="replace")
    return secret if isinstance(secret, str) else None


def _fields(value: Any) -> list[str] | None:
    """Field names of a dataclass instance or pydantic model shown in its repr, else None."""
    cls = type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [f.name for f in dataclasses.fields(value) if f.repr]
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict) and hasattr(value, "model_dump"):
        return [name for name, info in model_fields.items() if getattr(info, "repr", True)]
    fields = getattr(cls, "_fields", None)  # a namedtuple
    if isinstance(value, tuple) and isinstance(fields, tuple):
        return list(fields)
    return None


def _children(value: Any) -> Any:
    """The (key, value) pairs of a container or record, lazily; None for a leaf."""
    if isinstance(value, Mapping):
        return value.items()
    if isinstance(value, list | tuple | set | frozenset) and _fields(value) is None:
        return ((None, v) for v in value)
    names = _fields(value)
    if names is not None:
        return ((name, getattr(value, name, None)) for name in names)
    return None


_LEAVES = frozenset({str, int, float, bool, type(None), bytes, complex})


class Walk:
    """The repr of a value with every secret-looking key's value shown as ``'***'``.

    Like Python's repr for dicts (insertion order), lists, tuples, sets, dataclasses,
    pydantic models and namedtuples; other objects by their own repr. The walk registers
    the strings under secret keys as secrets. It stops building text after ``limit``
    characters (``fits`` is then False and ``text`` is cut) and stops looking after
    ``MAX_DEPTH`` levels and ``MAX_ITEMS`` items.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.budget = MAX_ITEMS

    @property
    def fits(self) -> bool:
        """Whether the whole repr is at most ``limit`` characters."""
        return self.size <= self.limit

    @property
    def text(self) -> str:
        """The repr, or its first ``limit`` characters and more when it does not fit."""
        return "".join(self.parts)

    def emit(self, text: str) -> None:
        if self.size <= self.limit:
            self.parts.append(text)
        self.size += len(text)

    def run(self, value: Any) -> Walk:
        """Walk ``value``; return self."""
        self.value(value, 0)
        return self

    def value(self, value: Any, depth: int) -> None:
        if self.size > self.limit and (value is None or isinstance(value, str | int | float)):
            return  # past the limit only secrets under keys are looked for
        if isinstance(value, str):
            if len(value) > self.limit:  # no need to repr megabytes to know it is too long
                self.emit(repr(value[: self.limit]))
                self.size = self.limit + 1
            else:
                self.emit(repr(value))
            return
        if value is None or isinstance(value, bool | int | float):
            self.emit(repr(value))
            return
        self.budget -= 1
        if depth >= MAX_DEPTH or self.budget <= 0:
            self.leaf(value)
            return
        secret = _secret_str(value)
        if secret is not None:
            add_secret(secret)
            self.leaf(value)
            return
        if isinstance(value, Mapping):
            self.emit("{")
            self._entries(value, depth)
            self.emit("}")
            return
        names = _fields(value)
        if names is not None:
            self.record(value, names, depth)
            return
        if isinstance(value, list | tuple | set | frozenset):
            self.sequence(value, depth)
            return
        self.leaf(value)

    def leaf(self, value: Any) -> None:
        """An object shown by its own repr, computed only while the text still fits."""
        if self.size <= self.limit:
            self.emit(_safe_repr(value))

    def item(self, key: Any, item: Any, depth: int) -> None:
        if isinstance(key, str) and looks_secret(key):
            register_all(item)
            self.emit(repr(MASK))
        else:
            self.value(item, depth + 1)

    def sequence(self, value: Any, depth: int) -> None:
        if isinstance(value, set | frozenset) and not value:
            self.emit(f"{type(value).__name__}()")
            return
        if isinstance(value, list):
            opening, closing = "[", "]"
        elif isinstance(value, tuple):
            opening, closing = "(", ")"
        elif isinstance(value, frozenset):
            opening, closing = "frozenset({", "})"
        else:
            opening, closing = "{", "}"
        self.emit(opening)
        self._entries(value, depth)
        if isinstance(value, tuple) and len(value) == 1:
            self.emit(",")
        self.emit(closing)

    def _entries(self, value: Any, depth: int) -> None:
        """A mapping's ``key: value`` pairs or a sequence's items, comma-separated.

        Past the limit the rest is skimmed (:meth:`_skim`); the budget ends the walk.
        """
        mapping = isinstance(value, Mapping)
        for i, entry in enumerate(value.items() if mapping else value):
            if self.size > self.limit:
                self._skim(value, i, depth)
                break
            if i:
                self.emit(", ")
            if mapping:
                key, item = entry
                self.value(key, depth + 1)
                self.emit(": ")
                self.item(key, item, depth)
            else:
                self.value(entry, depth + 1)
            self.budget -= 1
            if self.budget <= 0:
                break

    def _skim(self, value: Any, start: int, depth: int) -> None:
        """Past the limit: secret keys and the values that can hold keys, within the budget.

        ``value`` is a mapping, or a sequence or set (whose items have no key), from its
        ``start``-th item on.
        """
        pairs = value.items() if isinstance(value, Mapping) else ((None, v) for v in value)
        for key, item in itertools.islice(pairs, start, start + max(0, self.budget)):
            if type(key) is str and looks_secret(key):
                register_all(item)
            elif type(item) not in _LEAVES:
                self.value(item, depth + 1)
        self.budget -= min(self.budget, max(0, len(value) - start))

    def record(self, value: Any, names: list[str], depth: int) -> None:
        cls = type(value)
        is_dataclass = hasattr(cls, "__dataclass_fields__")
        if is_dataclass and not _generated_repr(cls):
            # A dataclass with a repr of its own: keep it, after registering its secrets.
            for field in names:
                if looks_secret(field):
                    register_all(getattr(value, field, None))
            if self.size <= self.limit:
                self.emit(redact(_safe_repr(value)))
            return
        # Dataclasses show their qualified name; pydantic models and namedtuples their name.
        name = cls.__qualname__ if is_dataclass else cls.__name__
        self.emit(f"{name}(")
        for i, field in enumerate(names):
            if i:
                self.emit(", ")
            self.emit(f"{field}=")
            self.item(field, getattr(value, field, None), depth)
        self.emit(")")


def _generated_repr(cls: type) -> bool:
    """Whether a dataclass's repr is the one ``@dataclass`` wrote (it wraps a generated one)."""
    wrapped = getattr(cls.__repr__, "__wrapped__", None)
    return "__create_fn__" in getattr(wrapped, "__qualname__", "")


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


# Scheme, then user info up to the last @ before the path: a password may hold an @.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")


def strip_userinfo(text: str, *, remove: bool = False) -> str:
    """Mask the credentials of every URL inside ``text``: ``user:password@`` -> ``***@``.

    The one scrubber of URL credentials, for messages, reprs, params and tags alike.

    Args:
        text: Any text: a URL, a command-line argument, a message.
        remove: Remove the credentials instead, leaving an address that still works for
            reading (a git remote shown in the MLflow UI). On http(s) the whole user part
            goes, since tokens are often passed as the user name alone
            (``https://user:token@host/x`` -> ``https://host/x``); on other schemes only a
            password (``ssh://git:pw@host`` -> ``ssh://git@host``). An scp-like
            ``git@host:path`` has no scheme and is left as it is.
    """
    if "@" not in text:
        return text
    if remove:
        return _USERINFO.sub(_without_credentials, text)
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def _without_credentials(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    if scheme.lower() in ("http://", "https://"):
        return scheme
    user = match.group("userinfo").partition(":")[0]
    return f"{scheme}{user}@"
