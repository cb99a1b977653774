"""How far a slow report is, on the terminal (``--format table`` only)."""

from __future__ import annotations

import threading
import time
from typing import IO

#: Seconds of aggregation after which the table format shows progress.
PROGRESS_AFTER = 1.0


class Progress:
    """Shows, on ``stream``, how far the aggregation is once it takes longer than ``after``.

    Nothing is written for a report that finishes in time. On a terminal the
    line is rewritten in place; elsewhere one line per finished query.
    """

    def __init__(self, stream: IO[str], after: float = PROGRESS_AFTER) -> None:
        self.stream = stream
        self.after = after
        self.started = time.perf_counter()
        self.done = 0
        self.total = 0
        self.shown = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.shown:
            self._write(f"aggregated in {time.perf_counter() - self.started:.1f} s", final=True)

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = done, total
            if self.shown:
                self._write(self._line())

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        if not self.total:
            return f"aggregating receipts … {elapsed:.0f} s"
        return f"aggregating receipts … {self.done}/{self.total} queries, {elapsed:.0f} s"

    def _watch(self) -> None:
        if self._stop.wait(self.after):
            return
        with self._lock:
            self.shown = True
            self._write(self._line())
        while not self._stop.wait(0.5):
            if self._tty:
                with self._lock:
                    self._write(self._line())

    def _write(self, line: str, final: bool = False) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
