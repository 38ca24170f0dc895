"""A small progress bar on stderr, shown only when waiting takes a while."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Shows ``label [####    ] done/total unit`` once ``delay`` seconds have passed.

    On a terminal the bar is redrawn in place; otherwise (CI logs, files) a line is
    printed every five seconds, so logs are not flooded.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        delay: float = 2.0,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.shown = False
        self._last_line = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, total: int | None = None) -> None:
        """Report ``done`` of ``total``; draws when the delay has passed."""
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if now - self.started < self.delay:
            return
        if not self._tty and self.shown and now - self._last_line < 5.0:
            return
        done = min(max(done, 0), self.total)
        width = 24
        filled = int(width * done / self.total)
        bar = "#" * filled + " " * (width - filled)
        if self.unit == "B":
            amount = f"{_human(done)}/{_human(self.total)}"
        else:
            amount = f"{done}/{self.total}{' ' + self.unit if self.unit else ''}"
        text = f"{self.label} [{bar}] {amount} ({now - self.started:.0f} s)"
        try:
            if self._tty:
                self.stream.write("\r" + text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not break the flush
            return
        self.shown = True
        self._last_line = now

    def close(self) -> None:
        """End the bar's line."""
        if self.shown and self._tty:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def _human(size: int) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
