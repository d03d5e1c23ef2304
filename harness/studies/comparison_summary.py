"""The RNN-vs-ARMA comparison's table as a terminal reads it: one-step test MSE per series and model.

The whole table (every horizon and window, ± over seeds, intervals, DM per seed) runs to 16 columns and
450 characters a row; the terminal gets this summary instead, a series x model grid (on a terminal narrower
than that, one line per series and model, the legend wrapped to its width), and the whole table stays in the
store.
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
    model, variant, reference, seeds, mse_mean, oracle_ratio_mean, dm_pooled_stat, dm_pooled_pvalue), as
    Markdown with a short legend. whole_table: where the reader finds every row (a sentence's end).
    width: the characters a line may take (None: any); print_width() gives the terminal's. notes: more legend
    lines, after its own."""
    lowest = one_step.groupby("series", sort=False)["mse_mean"].transform("min")
    significant = one_step["dm_pooled_pvalue"] < dm_level  # NaN (ARMA rows, no DM) is not
    marks = [(BEST if best else "") + ((BETTER if stat < 0 else WORSE) if dm else "") for best, dm, stat
             in zip(one_step["mse_mean"] == lowest, significant, one_step["dm_pooled_stat"], strict=True)]
    cells = pd.DataFrame({
        "series": one_step["series"],
        "model": [model if not variant else f"{model} {variant}"
                  for model, variant in zip(one_step["model"], one_step["variant"], strict=True)],
        "score": [_score(mse, ratio, mark) for mse, ratio, mark in
                  zip(one_step["mse_mean"], one_step["oracle_ratio_mean"], marks, strict=True)],
    })
    grid = cells.pivot(index="series", columns="model", values="score")
    grid = grid.loc[list(dict.fromkeys(cells["series"])), list(dict.fromkeys(cells["model"]))]
    markdown = grid.fillna("").reset_index().to_markdown(index=False, disable_numparse=True)
    if width is not None and max(map(len, markdown.splitlines())) > width:
        markdown = cells.rename(columns={"score": "test MSE (oracle ratio)"}).to_markdown(
            index=False, disable_numparse=True)
    seeds = sorted(set(one_step["seeds"]))
    over = ("one seed" if seeds == [1] else f"mean over {seeds[0]} seeds" if len(seeds) == 1
            else f"mean over {seeds[0]}-{seeds[-1]} seeds")
    references = sorted({reference for reference in one_step["reference"] if reference})
    against = references[0] if len(references) == 1 else "its reference"
    legend = [
        f"One-step forecasts of the whole test part: test MSE, {over}, and in brackets the oracle ratio "
        "(MSE / the series' optimal one-step MSE, 1 the best possible; none where no optimum is known).",
        f"{BEST} the series' lowest MSE; {BETTER} / {WORSE} an RNN whose one-step errors are significantly "
        f"smaller / larger than {against}'s (Diebold-Mariano on all seeds' errors pooled, p < {dm_level:g}).",
        f"The whole table (every horizon and window, ± over seeds, intervals, DM per seed): {whole_table}.",
        *notes,
    ]
    return markdown + "\n\n" + "\n".join(_item(line, width) for line in legend)


def print_width() -> int | None:
    """The width of the terminal standard output goes to; None when it goes elsewhere (a file, a pipe), where
    no line is too long."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _item(text: str, width: int | None) -> str:
    """text as a Markdown list item, wrapped to width (its lines after the first indented under the text)."""
    if width is None:
        return f"- {text}"
    return textwrap.fill(text, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)


def _score(mse: float, oracle_ratio: float, marks: str) -> str:
    """One cell: ``0.9871 (1.012) *+``, the mean MSE, the oracle ratio (none when NaN), the marks."""
    ratio = "" if math.isnan(oracle_ratio) else f" ({oracle_ratio:.3f})"
    # four significant digits, trailing zeros kept (0.6000 beside 0.7705), without the point # leaves on 1235.
    return f"{mse:#.4g}".rstrip(".") + ratio + (f" {marks}" if marks else "")
