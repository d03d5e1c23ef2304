"""A one-line progress bar on stderr, drawn only when stderr is a terminal (silent in logs, CI and sweeps)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """`with ProgressBar(total, "adding-elman-s0") as bar: bar.update(step, loss=0.1)`.

    Redraws at most every min_interval seconds (and at the last step), so calling update every step is cheap.
    enabled None means: draw when stream is a TTY.
    """

    def __init__(self, total: int, description: str = "", *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 30, min_interval: float = 0.1) -> None:
        if total < 1:
            raise ValueError(f"total must be an integer >= 1, got {total!r}")
        self.total = total
        self.description = description
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._drawn = False

    def render(self, step: int, **values: float) -> str:
        """The bar's text at step (no carriage return)."""
        filled = round(self.width * min(step, self.total) / self.total)
        elapsed = time.monotonic() - self._start
        rate = step / elapsed if elapsed > 0 else 0.0
        shown = " ".join(f"{key}={value:.4g}" for key, value in values.items())
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{self.description} [{bar}] {step}/{self.total} {rate:.0f} it/s {shown}".strip()

    def update(self, step: int, **values: float) -> None:
        """Show progress at step (1..total) with optional named values (e.g. the current loss)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < self.min_interval and step < self.total:
            return
        self._last_draw = now
        self.stream.write("\r" + self.render(step, **values) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
