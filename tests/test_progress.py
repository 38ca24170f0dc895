"""The progress bar a long flush or sync shows on stderr (tracksdk._progress, on rich)."""

from __future__ import annotations

import io
import os
import pty
import re
import select

import pytest

from tracksdk._progress import Progress


class Log(io.StringIO):
    """A stream that is not a terminal, like a CI log or a file."""

    def isatty(self) -> bool:
        return False


def test_nothing_is_shown_before_the_delay() -> None:
    """A wait shorter than the delay prints nothing, not even at close."""
    log = Log()
    bar = Progress("tracksdk: sending run quick", 100, unit="B", delay=60.0, stream=log)
    bar.update(50)
    bar.close()
    assert log.getvalue() == ""


def test_outside_a_terminal_a_line_at_most_every_five_seconds() -> None:
    """In a log each shown state is one whole line (a long run name does not wrap), and
    further updates within five seconds print nothing.
    """
    log = Log()
    label = "tracksdk: sending run " + "a-very-long-run-name-" * 5
    bar = Progress(label, 3_000_000, unit="B", delay=0.0, stream=log)
    bar.update(1_000_000)
    bar.update(2_000_000)  # within five seconds of the first line: not printed
    bar._last_line -= 5.0
    bar.update(2_000_000)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(label) for line in lines)
    assert "1.0/3.0 MB" in lines[0] and "2.0/3.0 MB" in lines[1]


def test_counts_with_a_unit_and_a_new_total() -> None:
    log = Log()
    bar = Progress("tracksdk: syncing", 4, unit="runs", delay=0.0, stream=log)
    bar.update(7, total=10)
    assert "7/10 runs" in log.getvalue()


def test_a_closed_stream_does_not_break_the_wait() -> None:
    """stderr closed under the bar: update and close return quietly."""
    log = Log()
    bar = Progress("tracksdk: sending run x", 10, delay=0.0, stream=log)
    log.close()
    bar.update(5)
    bar.close()
    assert not bar.shown


def test_on_a_terminal_the_bar_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (a real pseudo-terminal here) every update redraws the one line, and
    close ends that line, leaving the last state shown.
    """
    monkeypatch.setenv("TERM", "xterm")
    main, side = pty.openpty()
    with os.fdopen(side, "w", encoding="utf-8") as terminal:
        bar = Progress("tracksdk: sending run tty", 4, unit="files", delay=0.0, stream=terminal)
        for done in range(5):
            bar.update(done)
        bar.close()
        terminal.flush()
        shown = b""
        while select.select([main], [], [], 0.5)[0]:
            shown += os.read(main, 65536)
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode("utf-8"))  # no colours
    assert text.count("\n") == 1 and text.endswith("\n"), repr(text)  # one line, ended
    states = [state for state in text.strip().split("\r") if state]
    assert len(states) >= 5 and all(s.startswith("tracksdk: sending run tty") for s in states)
    assert "0/4 files" in states[0] and "4/4 files" in states[-1]


def test_outside_a_terminal_rich_is_not_imported() -> None:
    """A batch job whose stderr is a file gets its lines without paying rich's import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tracksdk._progress import Progress\n"
        "bar = Progress('tracksdk: sending run job', 2_000_000, unit='B', delay=0.0)\n"
        "bar.update(500_000)\n"
        "bar.close()\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
    line = done.stderr.strip()
    assert line.startswith("tracksdk: sending run job ━") and "0.5/2.0 MB 0:00:00" in line, line
