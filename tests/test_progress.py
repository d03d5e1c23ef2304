"""harness.progress: the one-line-per-unit progress of long jobs (the comparison's (series, seed) units)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

import harness.progress as progress_module
from harness.progress import ProgressLines


def test_one_line_per_finished_unit_with_the_count_and_what_is_left():
    stream = io.StringIO()
    progress = ProgressLines(2, stream=stream, enabled=True)
    for what in ("ar2 seed 0: 4 models, 2 s", "ar2 seed 1: 4 models, 3 s"):
        progress.finished(what)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[1/2\] ar2 seed 0: 4 models, 2 s; 1 left, about \d+ s", lines[0]), lines
    assert re.fullmatch(r"\[2/2\] ar2 seed 1: 4 models, 3 s; all done in \d+ s", lines[1]), lines


def test_an_extra_piece_is_unnumbered_and_the_last_unit_names_it_until_it_is_done():
    """The comparison's link section is no unit: not in [k/N], and the last unit's line does not say all is
    done while it is still to come."""
    stream = io.StringIO()
    progress = ProgressLines(2, extras=["link section"], stream=stream, enabled=True)
    progress.finished("ar2 seed 0: 4 models, 2 s")
    progress.extra_finished("link section", "link section (arma11 seed 0): 1 s")
    progress.finished("ar2 seed 1: 4 models, 3 s")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\[1/2\] ar2 seed 0: 4 models, 2 s; 1 left, about \d+ s", lines[0]), lines
    assert re.fullmatch(r"link section \(arma11 seed 0\): 1 s; 1 left, about \d+ s", lines[1]), lines
    assert re.fullmatch(r"\[2/2\] ar2 seed 1: 4 models, 3 s; all done in \d+ s", lines[2]), lines

    stream = io.StringIO()
    progress = ProgressLines(1, extras=["link section"], stream=stream, enabled=True)
    progress.finished("ar2 seed 0: 4 models, 2 s")
    progress.extra_finished("link section", "link section (arma11 seed 0): 1 s")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/1] ar2 seed 0: 4 models, 2 s; link section left", lines
    assert re.fullmatch(r"link section \(arma11 seed 0\): 1 s; all done in \d+ s", lines[1]), lines


def test_units_done_before_count_in_the_numbers_but_not_in_the_estimate(monkeypatch):
    """A resumed study's held units: [3/4] as its account says 3 of 4, and what is left is timed by the units
    finished here (10 s for the one unit, not 10 s over the 3 counted: about 3 s)."""
    clock = iter([100.0, 110.0, 120.0])  # the start, then each line
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    stream = io.StringIO()
    progress = ProgressLines(4, done=2, stream=stream, enabled=True)
    progress.finished("ar2 seed 2: 4 models, 9 s")
    progress.finished("ar2 seed 3: 4 models, 9 s")
    assert stream.getvalue().splitlines() == ["[3/4] ar2 seed 2: 4 models, 9 s; 1 left, about 10 s",
                                              "[4/4] ar2 seed 3: 4 models, 9 s; all done in 20 s"]


def test_silent_when_the_stream_is_no_terminal_or_when_turned_off():
    """A StringIO is no TTY: the default (enabled=None) writes nothing, as in tests', CI's, sweeps' logs."""
    for enabled in (None, False):
        stream = io.StringIO()
        progress = ProgressLines(2, stream=stream, enabled=enabled)
        progress.finished("ar2 seed 0: 4 models, 2 s")
        assert stream.getvalue() == ""
        assert progress.done == 1


def test_a_job_without_units_or_with_more_done_than_it_has_is_refused():
    with pytest.raises(ValueError, match="total must be an integer >= 1, got 0"):
        ProgressLines(0)
    with pytest.raises(ValueError, match=r"done must be an integer in 0\.\.2, got 3"):
        ProgressLines(2, done=3)
