"""A one-line progress bar with an ETA, drawn on stderr only when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Callable as progress(phase, done, total); redraws at most ten times a second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._phase = ""
        self._started = 0.0
        self._drawn = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._started = phase, now
        if now - self._drawn < 0.1 and done < total:
            return
        self._drawn = now
        elapsed = now - self._started
        eta = elapsed / done * (total - done) if done else 0.0
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{phase} [{bar}] {done}/{total}  ETA {eta:5.0f}s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._phase:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
