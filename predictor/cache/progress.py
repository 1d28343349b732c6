"""Bytes, rate and ETA of a transfer: a bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

logger = logging.getLogger(__name__)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Reports a transfer of ``total`` bytes (None when the size is unknown).

    ``bar=True`` redraws one terminal line (the CLI); otherwise a log line goes
    out every ``interval_s`` (the server, whose output ends up in pod logs).
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        bar: bool,
        interval_s: float = 5.0,
        stream: TextIO = sys.stderr,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._bar = bar
        self._interval_s = interval_s if not bar else 0.2
        self._stream = stream
        self._started = time.monotonic()
        self._last_report = self._started

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_report >= self._interval_s:
            self._last_report = now
            self._report(now)

    def finish(self) -> None:
        self._report(time.monotonic())
        if self._bar:
            self._stream.write("\n")
            self._stream.flush()

    def describe(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{format_bytes(self.done)}"
        if self.total:
            text += f" / {format_bytes(self.total)} ({100 * self.done / self.total:.0f}%)"
        text += f"  {format_bytes(rate)}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f"  ETA {(self.total - self.done) / rate:.0f}s"
        return text

    def _report(self, now: float) -> None:
        if not self._bar:
            logger.info("%s: %s", self.label, self.describe(now))
            return
        width = 30
        filled = int(width * self.done / self.total) if self.total else 0
        bar = "#" * filled + "-" * (width - filled) if self.total else ""
        self._stream.write(f"\r{self.label} [{bar}] {self.describe(now)}\033[K")
        self._stream.flush()
