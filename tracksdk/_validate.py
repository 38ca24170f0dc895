"""Keys and values checked before they reach any store, the same way on every backend.

Plain MLflow behaves differently per store (a float step passes sqlite and fails the
server), truncates long values silently, and raises raw TypeErrors from deep inside. Here
every rule is checked up front. In strict mode a violation raises
:class:`~tracksdk.exceptions.ValidationError`; otherwise one warning per key, and the
normalisation documented in docs/configuration.md ("Invalid values"):

- metric value not a real number (str, bool, complex, None, objects): the point is dropped;
- NaN or ±inf: logged as NaN (MLflow would store inf as 1.797e308, which looks real);
- step that is not a non-negative integer: the point is dropped;
- key with invalid characters: each invalid character becomes ``_``;
- key that is not a clean relative path (``/a``, ``a//b``, ``./a``, ``../a``, ``a/``): the
  empty, ``.`` and ``..`` segments are removed (MLflow stores keys as file paths);
- key over 250 characters: cut to 241 plus ``-`` and 8 hex digits of its hash;
- param over 6,000 / tag over 8,000 characters: the full value goes to an artifact
  (``params/<key>.txt`` / ``tags/<key>.txt``) and the value logged points to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
import posixpath
import re
from typing import TYPE_CHECKING, Any

from tracksdk import _warn
from tracksdk._schema import MAX_KEY, MAX_STEP

if TYPE_CHECKING:
    from tracksdk._writer import Writer
from tracksdk.exceptions import ValidationError

_KEY_OK = re.compile(r"^[/\w.\- :]+$")
_KEY_BAD_CHAR = re.compile(r"[^/\w.\- :]")


class Checker:
    """Checks one run's keys and values; remembers what it warned about."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self._warned: set[tuple[str, str]] = set()
        # Keys already found valid, as they are: a training loop logs the same few keys
        # thousands of times. Emptied when a new secret changes what redaction does.
        self._valid: set[str] = set()
        self._valid_for: object = None

    def problem(self, kind: str, key: str, message: str) -> None:
        """Raise in strict mode, else warn once per (kind, key)."""
        if self.strict:
            raise ValidationError(message)
        if (kind, key) in self._warned:
            return
        self._warned.add((kind, key))
        _warn.warn(f"tracksdk: {message}")

    def key(self, kind: str, key: Any) -> str | None:
        """Return a valid key for ``key``, or None when nothing can be logged."""
        if type(key) is str:
            from tracksdk import _redact

            if _redact._pattern is not self._valid_for:
                self._valid.clear()
                self._valid_for = _redact._pattern
            if key in self._valid:
                return key
        if not isinstance(key, str):
            shown = _short(key)
            self.problem(kind, shown, f"{kind} key {shown} is not a string; logged as str().")
        from tracksdk._redact import redact

        text = redact(safe_str(key))
        if not text:
            self.problem(kind, text, f"{kind} key is empty: nothing logged. Give it a name.")
            return None
        clean_path = posixpath.normpath(text) == text and not text.startswith(("/", ".."))
        if len(text) <= MAX_KEY and _KEY_OK.fullmatch(text) and clean_path and text != ".":
            if text == key and len(self._valid) < 10_000:
                self._valid.add(text)
            return text
        key = text
        fixed = _KEY_BAD_CHAR.sub("_", key)
        reasons = []
        if fixed != key:
            reasons.append("has characters other than letters, digits, _ - . / : and space")
        # MLflow refuses a key whose normalised path starts with ".." or "/", or is not
        # its own normal form: empty and all-dot segments go, and leading dots become _.
        segments = [part for part in fixed.split("/") if part.strip(".")]
        if segments and segments[0].startswith(".."):
            head = segments[0]
            segments[0] = "_" * (len(head) - len(head.lstrip("."))) + head.lstrip(".")
        if "/".join(segments) != fixed:
            fixed = "/".join(segments)
            reasons.append("is not a clean relative path")
        if not fixed:
            self.problem(kind, key, f"{kind} key {key!r} has no usable name: nothing logged.")
            return None
        if len(fixed) > MAX_KEY:
            digest = hashlib.sha1(key.encode()).hexdigest()[:8]
            fixed = f"{fixed[: MAX_KEY - 9]}-{digest}"
            reasons.append(f"is longer than {MAX_KEY} characters")
        shown = shorten(key)
        self.problem(
            kind, key, f"{kind} key {shown!r} {' and '.join(reasons)}; logged as {fixed!r}."
        )
        return fixed

    def metric_value(self, key: str, value: Any) -> float | None:
        """Return the float to log, or None to drop the point."""
        if type(value) is float and math.isfinite(value):  # the common case, fast
            return value
        if type(value) is int and -(2**1023) < value < 2**1023:
            return float(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            item = getattr(value, "item", None)  # numpy and torch 0-d values
            if callable(item) and not isinstance(value, bool):
                with contextlib.suppress(TypeError, ValueError):
                    value = item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.problem(
                "metric",
                key,
                f"metric {key!r} got {type(value).__name__} {_short(value)}, not a real "
                "number: the point was dropped. Log float(value), or a param/tag for text.",
            )
            return None
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf if value > 0 else -math.inf  # type: ignore[operator]
        if not math.isfinite(number):
            self.problem(
                "metric",
                key,
                f"metric {key!r} is {number}, not finite: logged as NaN. Check for "
                "divergence, or clip the value before logging.",
            )
            return math.nan
        return number

    def step(self, key: str, step: Any) -> int | None:
        """Return the integer step, or None to drop the point."""
        if type(step) is int and 0 <= step <= MAX_STEP:  # the common case, fast
            return step
        if step is None:
            return 0
        integral = isinstance(step, numbers.Integral) and not isinstance(step, bool)
        if integral and 0 <= int(step) <= MAX_STEP:
            return int(step)
        self.problem(
            "step",
            key,
            f"metric {key!r} got step {_short(step)}: steps are integers from 0 to 2**63-1. "
            "The point was dropped; pass int(step).",
        )
        return None

    def text(self, kind: str, key: str, value: str) -> str:
        """A param or tag value any store accepts: no NUL, no lone surrogates.

        PostgreSQL refuses NUL in text (the server answers 500) and a lone surrogate
        cannot be encoded; each is replaced, with one warning per key.
        """
        if "\x00" not in value and value.isascii():
            return value
        clean = value.replace("\x00", "")
        try:
            clean.encode("utf-8")
        except UnicodeEncodeError:
            clean = clean.encode("utf-8", "replace").decode("utf-8")
        if clean != value:
            self.problem(
                f"{kind}-text",
                key,
                f"{kind} {key!r} has NUL characters or unpaired surrogates, which stores "
                "refuse: they were removed (surrogates became '?').",
            )
        return clean


def safe_str(value: Any) -> str:
    """``str(value)``, also for ints too long to print (Python refuses over 4,300 digits)."""
    try:
        return str(value)
    except ValueError:
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__}>"


def artifact_name(key: str) -> str:
    """A safe file path for a key's long value: ``params/<this>.txt``.

    Keeps letters, digits, ``_ - .`` and ``/`` (sub-folders); anything else, a leading dot
    or space, or a segment over 200 bytes gets a hash so two keys never share a file.
    """
    parts = []
    changed = False
    for part in key.split("/"):
        clean = re.sub(r"[^\w.\-]", "_", part, flags=re.ASCII).lstrip(".") or "_"
        if len(clean.encode()) > 200:
            clean = clean[:180]
        changed = changed or clean != part
        parts.append(clean)
    name = "/".join(parts)
    if changed:
        name += "-" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return name


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:
        text = safe_str(value)
    return shorten(text, 40)


def shorten(text: str, width: int = 80) -> str:
    """``text`` cut to ``width`` characters with ``...``, for messages."""
    return text if len(text) <= width else text[: width - 3] + "..."


def fit_long(
    writer: Writer, checker: Checker, kind: str, folder: str, key: str, value: str, limit: int
) -> str:
    """A value over MLflow's ``limit``: kept whole in an artifact, a pointer to it logged."""
    artifact = f"{folder}/{artifact_name(key)}.txt"
    checker.problem(
        f"long-{kind}",
        key,
        f"{kind} {key!r} is {len(value)} characters, over MLflow's limit of {limit}: the "
        f"full value is in artifact {artifact} and the {kind} points to it.",
    )
    writer.text(value, artifact)
    return f"{value[:200]}… [{len(value)} characters; full value in artifact {artifact}]"
