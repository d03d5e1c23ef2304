"""The RNN-vs-ARMA comparison's table as a terminal reads it: one-step test MSE per series and model.

The whole table (every horizon and window, ± over seeds, intervals, DM per seed) runs to 16 columns and
450 characters a row; the terminal gets this summary instead, series x model grids of the test MSE and the
oracle ratio (on a terminal narrower than those, one line per series and model; the legend wrapped to its
width), and the whole table stays in the store.
"""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
from collections.abc import Sequence

import pandas as pd

BEST = "*"
BETTER, WORSE = "+", "-"  # an RNN significantly better / worse than its reference (pooled DM)


def terminal_summary(one_step: pd.DataFrame, dm_level: float, whole_table: str,
                     width: int | None = None, notes: Sequence[str] = ()) -> str:
    """The summary of one_step, the comparison table's rows of the whole test part at h = 1 (columns series,
    model, variant, reference, seeds, identical_seeds, mse_mean, oracle_ratio_mean, dm_pooled_stat,
    dm_pooled_pvalue), as Markdown: a series x model grid of the mean test MSEs with their marks, one of the
    oracle ratios (the series that have one), and a short legend. whole_table: where the reader finds every
    row (a sentence's end). width: the characters a line may take (None: any; print_width() gives the
    terminal's), the grids becoming one line per series and model where they are wider. notes: more legend
    lines, after its own."""
    lowest = one_step.groupby("series", sort=False)["mse_mean"].transform("min")
    significant = one_step["dm_pooled_pvalue"] < dm_level  # NaN (ARMA rows, no DM) is not
    marks = [(BEST if best else "") + ((BETTER if stat < 0 else WORSE) if dm else "") for best, dm, stat
             in zip(one_step["mse_mean"] == lowest, significant, one_step["dm_pooled_stat"], strict=True)]
    cells = pd.DataFrame({
        "series": one_step["series"],
        "model": [model if not variant else f"{model} {variant}"
                  for model, variant in zip(one_step["model"], one_step["variant"], strict=True)],
        # 0.6000 beside 0.7705; the marks in brackets, as a Markdown cell in the MLflow UI has no padding
        "test MSE": [f"{mse:#.4g}".rstrip(".") + (f" ({mark})" if mark else "")
                     for mse, mark in zip(one_step["mse_mean"], marks, strict=True)],
        "oracle ratio": ["" if math.isnan(ratio) else f"{ratio:.3f}"
                         for ratio in one_step["oracle_ratio_mean"]],
    })
    known = cells[cells["oracle ratio"] != ""]
    tables = [_grid(cells, "test MSE")] + ([_grid(known, "oracle ratio")] if len(known) else [])
    if width is not None and max(len(line) for table in tables for line in table.splitlines()) > width:
        tables = [cells.to_markdown(index=False, disable_numparse=True)]
    repeated = one_step["identical_seeds"] > 0  # one fit that every seed repeated: counted once
    seeds = sorted(set(one_step.loc[~repeated, "seeds"]) | set(one_step.loc[repeated, "identical_seeds"]))
    over = ("one seed" if seeds == [1] else f"mean over {seeds[0]} seeds" if len(seeds) == 1
            else f"mean over {', '.join(map(str, seeds[:-1]))} or {seeds[-1]} seeds")
    if repeated.any():
        fits = ", ".join(f"{model} on {series}" for model, series in
                         zip(cells.loc[repeated, "model"], cells.loc[repeated, "series"], strict=True))
        over += f" ({fits}: one fit that every seed repeats bit for bit)"
    references = sorted({reference for reference in one_step["reference"] if reference})
    against = references[0] if len(references) == 1 else "its reference"
    legend = [
        f"One-step forecasts of the whole test part: the test MSE, {over}, and the oracle ratio, the MSE / "
        "the series' optimal one-step MSE (only for series with a known optimum; 1 is the best possible in "
        "expectation, and a finite test part whose noise happens to be small gives less).",
        f"({BEST}) the series' lowest MSE; ({BETTER}) / ({WORSE}) an RNN whose one-step errors are "
        f"significantly smaller / larger than {against}'s (Diebold-Mariano on all seeds' errors pooled, "
        f"p<{dm_level:g}).",
        f"The whole table (every horizon and window, ± over seeds, intervals, DM per seed): {whole_table}.",
        *notes,
    ]
    return "\n\n".join([*tables, "\n".join(_item(line, width) for line in legend)])


def _grid(cells: pd.DataFrame, column: str) -> str:
    """column of cells as a Markdown grid, a row per series and a column per model, both in cells' order;
    its corner says what the grid shows."""
    grid = cells.pivot(index="series", columns="model", values=column)
    grid = grid.loc[list(dict.fromkeys(cells["series"])), list(dict.fromkeys(cells["model"]))].fillna("")
    return grid.rename_axis(index=column, columns=None).reset_index().to_markdown(
        index=False, disable_numparse=True)


def print_width() -> int | None:
    """The width of the terminal standard output goes to; None when it goes elsewhere (a file, a pipe), where
    no line is too long."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _item(text: str, width: int | None) -> str:
    """text as a Markdown list item, wrapped to width (its lines after the first indented under the text)."""
    if width is None:
        return f"- {text}"
    return textwrap.fill(text, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)
