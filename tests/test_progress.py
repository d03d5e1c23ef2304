"""harness.progress: the one-line-per-unit progress of long jobs (the comparison's (series, seed) units)."""

from __future__ import annotations

import io
import re

import pytest

from harness.progress import ProgressLines


def test_one_line_per_finished_unit_with_the_count_and_what_is_left():
    stream = io.StringIO()
    progress = ProgressLines(3, stream=stream, enabled=True)
    for what in ("ar2 seed 0: 4 models, 2 s", "ar2 seed 1: 4 models, 3 s", "link section (arma11 seed 0)"):
        progress.finished(what)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"\[1/3\] ar2 seed 0: 4 models, 2 s; 2 left, about \d+ s", lines[0]), lines
    assert re.fullmatch(r"\[2/3\] ar2 seed 1: 4 models, 3 s; 1 left, about \d+ s", lines[1]), lines
    assert re.fullmatch(r"\[3/3\] link section \(arma11 seed 0\); all done in \d+ s", lines[2]), lines


def test_silent_when_the_stream_is_no_terminal_or_when_turned_off():
    """A StringIO is no TTY: the default (enabled=None) writes nothing, as in tests', CI's, sweeps' logs."""
    for enabled in (None, False):
        stream = io.StringIO()
        progress = ProgressLines(2, stream=stream, enabled=enabled)
        progress.finished("ar2 seed 0: 4 models, 2 s")
        assert stream.getvalue() == ""
        assert progress.done == 1


def test_a_job_without_units_is_refused():
    with pytest.raises(ValueError, match="total must be an integer >= 1, got 0"):
        ProgressLines(0)
