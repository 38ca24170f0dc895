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
from typing import Any

from tracksdk import _warn
from tracksdk.exceptions import ValidationError

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
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
            self.problem(kind, repr(key), f"{kind} key {key!r} is not a string; logged as str().")
        from tracksdk._redact import redact

        text = redact(str(key))
        if not text:
            self.problem(kind, text, f"{kind} key is empty: nothing logged. Give it a name.")
            return None
        clean_path = posixpath.normpath(text) == text and not text.startswith(("/", ".."))
        if len(text) <= MAX_KEY and _KEY_OK.match(text) and clean_path and text != ".":
            if text == key and len(self._valid) < 10_000:
                self._valid.add(text)
            return text
        key = text
        fixed = _KEY_BAD_CHAR.sub("_", key)
        reasons = []
        if fixed != key:
            reasons.append("has characters other than letters, digits, _ - . / : and space")
        segments = [part for part in fixed.split("/") if part not in ("", ".", "..")]
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
        shown = key if len(key) <= 80 else key[:77] + "..."
        self.problem(
            kind, key, f"{kind} key {shown!r} {' and '.join(reasons)}; logged as {fixed!r}."
        )
        return fixed

    def metric_value(self, key: str, value: Any) -> float | None:
        """Return the float to log, or None to drop the point."""
        if type(value) is float and math.isfinite(value):  # the common case, fast
            return value
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
            number = math.copysign(math.inf, 1 if str(value)[:1] != "-" else -1)
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
        if type(step) is int and step >= 0:  # the common case, fast
            return step
        if step is None:
            return 0
        if isinstance(step, numbers.Integral) and not isinstance(step, bool) and int(step) >= 0:
            return int(step)
        self.problem(
            "step",
            key,
            f"metric {key!r} got step {step!r}: steps are integers >= 0. The point was "
            "dropped; pass int(step).",
        )
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
