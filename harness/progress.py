"""Progress on stderr, shown only when stderr is a terminal (silent in logs, CI and sweeps): a one-line bar
redrawn in place (a training run's steps) and one line per finished unit (the comparison's (series, seed)).
Jobs that run side by side on one terminal (the joblib launcher's workers) draw no bar: each would redraw
the others' line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

SHARED_TERMINAL = "HARNESS_SHARED_TERMINAL"  # set (to "1") in a process whose terminal others draw on too


class ProgressBar:
    """`with ProgressBar(total, "adding-elman-s0") as bar: bar.update(step, loss=0.1)`.

    Redraws at most every min_interval seconds (and at the last step), so calling update every step is cheap.
    enabled None means: draw when stream is a TTY that no other process draws on (SHARED_TERMINAL unset).
    """

    def __init__(self, total: int, description: str = "", *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 30, min_interval: float = 0.1) -> None:
        if total < 1:
            raise ValueError(f"total must be an integer >= 1, got {total!r}")
        self.total = total
        self.description = description
        self.stream = sys.stderr if stream is None else stream
        self.enabled = (self.stream.isatty() and not os.environ.get(SHARED_TERMINAL)) if enabled is None \
            else enabled
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


def _duration(seconds: float) -> str:
    """'14 s' below 100 s, else whole minutes ('3 min'): what a person waiting reads at a glance."""
    return f"{seconds:.0f} s" if seconds < 99.5 else f"{seconds / 60:.0f} min"


class ProgressLines:
    """One line per finished unit of a long job, for output that is not redrawn (logs keep every line):
    `[5/21] arma11 seed 1: 4 models, 14 s; 16 left, about 1 min`, and an unnumbered line per extra piece of
    the job that is no unit (the comparison's link section): `link section (arma11 seed 0): 12 s; all done
    in 3 min`.

    done: units finished before this job started (a resumed study's), counted in the numbers but not in the
    estimate of what is left: the wall time so far per unit finished here times the units left (units of
    one job cost about the same and finish in order). extras: the names of the extra pieces to come; until
    they are finished the last unit's line names them instead of saying all is done. enabled None means:
    write when stream is a TTY, as ProgressBar does, so tests' and sweeps' captured output stays free of it.
    """

    def __init__(self, total: int, *, done: int = 0, extras: Sequence[str] = (), stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        if total < 1:
            raise ValueError(f"total must be an integer >= 1, got {total!r}")
        if not 0 <= done <= total:
            raise ValueError(f"done must be an integer in 0..{total}, got {done!r}")
        self.total = total
        self.done = done
        self.extras = list(extras)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._done_before = done
        self._start = time.monotonic()

    def render(self, what: str) -> str:
        """The line for the unit just finished (counted in self.done), described by what."""
        return f"[{self.done}/{self.total}] {what}; {self._left()}"

    def _left(self) -> str:
        """What is left: '16 left, about 1 min', 'link section left' or 'all done in 3 min'."""
        left, elapsed = self.total - self.done, time.monotonic() - self._start
        finished_here = self.done - self._done_before
        if left and finished_here:
            return f"{left} left, about {_duration(elapsed / finished_here * left)}"
        if left:
            return f"{left} left"  # no unit finished here yet to time the rest by
        if self.extras:
            return f"{' and '.join(self.extras)} left"
        return f"all done in {_duration(elapsed)}"

    def finished(self, what: str) -> None:
        """Count one more unit done and write its line (what: e.g. 'arma11 seed 1: 4 models, 14 s')."""
        self.done += 1
        self._write(self.render(what))

    def extra_finished(self, name: str, what: str) -> None:
        """The extra piece name (one of extras) is done: write its unnumbered line (what: e.g. 'link section
        (arma11 seed 0): 12 s')."""
        self.extras.remove(name)
        self._write(f"{what}; {self._left()}")

    def _write(self, line: str) -> None:
        if self.enabled:
            self.stream.write(line + "\n")
            self.stream.flush()
