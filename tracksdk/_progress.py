"""A progress bar on stderr (``rich.progress``), shown only when waiting takes a while."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import rich.progress

# Seconds between two lines where the bar cannot be redrawn in place (CI logs, files).
LINE_EVERY = 5.0
BAR_WIDTH = 24
# Where the bar is printed as lines: wide enough that no line wraps (rich's default is 80).
LOG_WIDTH = 1000


class Progress:
    """Shows ``label ━━━━━━━━      done/total unit 0:00:05`` once ``delay`` seconds have passed.

    On a terminal the bar is redrawn in place by rich; otherwise (CI logs, files,
    notebooks) a plain line is printed every five seconds, so logs are not flooded. rich
    is imported only when a bar is first shown on a terminal: most waits end before
    ``delay``, and ``rich.progress`` takes ~50 ms of CPU to import, which a batch job
    logging to a file should not pay.
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
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None
        self._is_terminal: bool | None = None
        self.done = 0

    def update(self, done: int, total: int | None = None) -> None:
        """Report ``done`` of ``total``; draws when the delay has passed."""
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if now - self.started < self.delay:
            return
        if not self._terminal():
            # Logs and files get plain lines, without rich: a batch job waiting on a busy
            # team server should not pay rich's import (~50 ms of CPU) for them.
            if self.shown and now - self._last_line < LINE_EVERY:
                return
            self.done = min(max(done, 0), self.total)
            try:
                self.stream.write(self._line(now) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed stderr must not break the flush
                return
            self.shown = True
            self._last_line = now
            return
        bar = self._bar
        live = bar is not None and bar.console.is_terminal
        if self.shown and not live and now - self._last_line < LINE_EVERY:
            return
        try:
            if bar is None:
                bar = self._bar = self._make()
                live = bar.console.is_terminal
                if live:
                    bar.start()
            assert self._task is not None
            bar.update(self._task, completed=min(max(done, 0), self.total), total=self.total)
            if live:
                bar.refresh()
            else:
                bar.console.print(bar.get_renderable())
        except (OSError, ValueError):  # a closed stderr must not break the flush
            return
        self.shown = True
        self._last_line = now

    def close(self) -> None:
        """End the bar's line."""
        bar = self._bar
        if bar is not None and bar.live.is_started:
            with contextlib.suppress(OSError, ValueError):
                bar.stop()

    def _terminal(self) -> bool:
        """Whether the bar can be redrawn in place (rich decides the finer points then)."""
        if self._is_terminal is None:
            try:
                self._is_terminal = bool(self.stream.isatty())
            except (AttributeError, OSError, ValueError):
                self._is_terminal = False
        return self._is_terminal

    def _line(self, now: float) -> str:
        """``label ━━━━━━━━━━━━            done/total unit H:MM:SS``, as rich draws it."""
        filled = round(BAR_WIDTH * self.done / self.total)
        bar = "━" * filled + " " * (BAR_WIDTH - filled)
        if self.unit == "B":
            amount = _sizes(self.done, self.total)
        else:
            amount = f"{self.done}/{self.total}" + (f" {self.unit}" if self.unit else "")
        elapsed = int(now - self.started)
        clock = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        return f"{self.label} {bar} {amount} {clock}"

    def _make(self) -> rich.progress.Progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        amount: list[ProgressColumn] = [MofNCompleteColumn()]
        if self.unit == "B":
            amount = [DownloadColumn()]  # 1.2/3.4 MB
        elif self.unit:
            amount.append(TextColumn(self.unit))
        # No notebook widgets and no colour codes outside a terminal: plain lines in logs.
        console = Console(file=self.stream, force_jupyter=False, highlight=False)
        if not console.is_terminal:
            console.width = LOG_WIDTH  # one line each time, however long the run's name
        bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(bar_width=BAR_WIDTH),
            *amount,
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,  # redrawn by update(): no thread of rich's own
            redirect_stdout=False,  # other threads' output is left alone
            redirect_stderr=False,
        )
        self._task = bar.add_task(self.label, total=self.total)
        return bar


def _sizes(done: int, total: int) -> str:
    """``1.2/3.4 MB``: both amounts in the total's decimal unit, as rich's DownloadColumn."""
    for power, suffix in ((4, "TB"), (3, "GB"), (2, "MB"), (1, "kB")):
        if total >= 1000**power:
            unit = 1000**power
            return f"{done / unit:.1f}/{total / unit:.1f} {suffix}"
    return f"{done}/{total} bytes"
