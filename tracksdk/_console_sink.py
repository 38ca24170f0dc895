"""Captured console output on its way into the journal: whole lines, redacted, in chunks.

The capture (:mod:`tracksdk._console`: file descriptors or ``sys.stdout``) feeds the bytes
a run prints to a :class:`Sink` as they come. The sink keeps them in memory, cut into
whole lines in the order they were printed, and a flusher thread journals them as
:class:`~tracksdk._journal.records.Output` records about once a second, or as soon as
64 KiB wait: a SIGKILL loses at most the last second. Each chunk is whole lines, so a
secret is never split between two chunks, and it is redacted (:func:`tracksdk._redact.redact`)
before it is journaled. A line's carriage returns are collapsed to what a terminal shows
at its end (a progress bar's last state).

The thread that feeds (the tee thread of the fd capture, or the user's own thread in
python mode) never waits on the journal: feeding is a copy into memory under a lock. When
the journal does not keep up, at most ``MAX_PENDING`` bytes wait; beyond that, and beyond
the journal's own cap (``TRACKSDK_JOURNAL__MAX_MB``), output is left out and one line in
the log says how much.
"""

from __future__ import annotations

import codecs
import contextlib
import threading
from typing import TYPE_CHECKING

from tracksdk import _redact
from tracksdk._threads import Thread

if TYPE_CHECKING:
    from tracksdk._writer import Writer

FLUSH_EVERY = 1.0  # seconds between two chunks of a stream that prints
CHUNK_BYTES = 64 << 10  # a chunk is journaled at once when this much waits
MAX_PENDING = 8 << 20  # bytes kept in memory when the journal falls behind


def collapse(text: str) -> str:
    r"""Each line as a terminal shows it at its end: the text after its last ``\r``.

    ``"10%\r50%\r100%\n"`` is ``"100%\n"``; a line ending ``\r\n`` keeps its text.
    """
    if "\r" not in text:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "\r" in line:
            body = line[:-1] if line.endswith("\r") else line
            lines[i] = body.rpartition("\r")[2]
    return "\n".join(lines)


def _cut(data: bytes, start: int, limit: int) -> int:
    """The end of the chunk of ``data`` that begins at ``start``.

    At most ``limit`` bytes: after a newline when there is one, else at a character's start.
    """
    if len(data) - start <= limit:
        return len(data)
    end = data.rfind(b"\n", start, start + limit) + 1
    if end == 0:
        end = start + limit
        while end > start and (data[end] & 0xC0) == 0x80:  # inside a UTF-8 character
            end -= 1
    return end if end > start else start + limit


class Sink:
    """Takes a run's printed bytes, journals them as redacted chunks of whole lines.

    Args:
        writer: The top-level run's writer.
    """

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        # Re-entrant: a SIGTERM handler ends the run on the main thread, which may be
        # inside feed() (python mode) when the signal arrives.
        self._lock = threading.RLock()
        self._lines: list[tuple[str, bytearray]] = []  # whole lines, in order, by stream
        self._partial: dict[str, bytearray] = {}  # each stream's line not ended yet
        self._pending = 0
        self._dropped = 0  # bytes left out since the last chunk
        self._closed = False
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()  # chunks are journaled in order, one at a time
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._thread = Thread(self._run, name="tracksdk-console")

    def start(self) -> None:
        """Start the flusher thread now, not at the first output."""
        with self._lock:
            self._start_flusher()

    def _start_flusher(self) -> None:
        """Start the flusher once (the lock is held): a run that prints nothing has none."""
        if self._thread.ident is None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no thread to be had: flushed at the end
                self._thread.start()

    def feed(self, stream: str, data: bytes) -> None:
        """Take bytes printed on ``stream`` (never blocks for long; ignored once closed)."""
        with self._lock:
            if self._closed:
                return
            partial = self._partial.get(stream)
            if partial is None:
                partial = self._partial[stream] = bytearray()
            partial += data
            if self._thread.ident is None:
                self._start_flusher()  # the first output
            if b"\n" in data:
                end = partial.rfind(b"\n") + 1
                if end == len(partial):  # the usual case: it ends a line
                    self._add(stream, partial)
                    self._partial[stream] = partial = bytearray()
                else:
                    self._add(stream, partial[:end])
                    del partial[:end]
            if len(partial) > CHUNK_BYTES:
                # A progress bar's states, or one very long line: keep its last state,
                # and when even that is long, journal it as it is.
                last = partial.rfind(b"\r", 0, len(partial) - 1)
                if last >= 0:
                    del partial[:last]
                if len(partial) > CHUNK_BYTES:
                    self._add(stream, partial)
                    self._partial[stream] = bytearray()
            if self._pending >= CHUNK_BYTES and not self._wake.is_set():
                self._wake.set()

    def _add(self, stream: str, data: bytearray) -> None:
        """Queue whole lines (the lock is held)."""
        if self._pending + len(data) > MAX_PENDING:
            self._dropped += len(data)
            return
        self._pending += len(data)
        if self._lines and self._lines[-1][0] == stream:
            self._lines[-1][1].extend(data)
        else:
            self._lines.append((stream, bytearray(data)))

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_EVERY)
            self._wake.clear()
            with contextlib.suppress(Exception):  # never let the flusher die on a bug
                self.flush()

    def flush(self) -> None:
        """Journal the whole lines waiting."""
        with self._flush_lock:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        """Journal the whole lines waiting; with ``final``, the lines not ended too."""
        with self._lock:
            if final:
                for stream, partial in self._partial.items():
                    if partial:
                        self._add(stream, partial)
                self._partial.clear()
            lines, self._lines, self._pending = self._lines, [], 0
            dropped, self._dropped = self._dropped, 0
        for stream, data in lines:
            decoder = self._decoders.get(stream)
            if decoder is None:
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
                self._decoders[stream] = decoder
            raw, start = bytes(data), 0
            while start < len(raw):
                end = _cut(raw, start, CHUNK_BYTES)
                dropped += self._journal(stream, collapse(decoder.decode(raw[start:end])))
                start = end
        if dropped:
            self._journal(
                "stderr",
                f"[tracksdk: {dropped} bytes of console output were left out here: the "
                "journal did not keep up (TRACKSDK_JOURNAL__MAX_MB)]\n",
            )

    def _journal(self, stream: str, text: str) -> int:
        """Journal one chunk; the bytes left out when the journal is over its cap."""
        journal = self.writer.journal
        if not text:
            return 0
        if journal.pending_bytes() >= journal.max_bytes:
            return len(text.encode())
        self.writer.output(stream, _redact.redact(text))
        return 0

    def close(self, wait: float) -> None:
        """Stop the flusher and journal everything left, waiting at most about ``wait`` s.

        Bounded even from a SIGTERM handler that interrupted a journal append: the
        flusher may then wait for the journal's lock, held by the interrupted thread.
        """
        self._closed = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(wait)
        if self._flush_lock.acquire(timeout=max(wait, 0.01)):
            try:
                self._flush(final=True)
            finally:
                self._flush_lock.release()
