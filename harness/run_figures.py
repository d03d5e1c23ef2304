"""The figures every training run logs: loss, gradient norm, and the two gradient-flow heatmaps.

Built with matplotlib's object API (no pyplot, so any thread or worker can draw) at a fixed size with fixed
margins. A sweep of short runs used to spend more time drawing these four figures than training. Where that
time went, and what replaced it:
- a layout engine (constrained or tight) measures every text by drawing the figure an extra time; the labels
  here are known in advance, so fixed margins hold them (tests/test_run_figures.py checks every label stays
  on the canvas, for axes spanning 1e-150 to 1e154);
- log axes label their ticks with mathtext, which a new figure parses afresh every time (the parser's cache
  belongs to the renderer); LogLabels writes the same labels as plain Unicode text (10⁻³, 2×10⁻³);
- eight minor ticks per decade are eight Tick objects each; two (at 2 and 5) read as well.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogLocator

from harness.training import FitResult

FIGSIZE = (7.0, 4.0)  # inches; at 100 dpi a 700 x 400 PNG
# Room for log tick labels such as 10^-12 on the left and a title on top; the colorbar of a heatmap takes
# its width out of the axes.
MARGINS = {"left": 0.14, "right": 0.97, "bottom": 0.12, "top": 0.92}


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
MINOR_SUBS = (2.0, 5.0)


class LogLabels(Formatter):
    """Tick labels of a base-10 log axis in plain text: 10⁻³ at a decade, 2×10⁻³ between decades.

    minor: label the ticks between decades only while the view spans at most one decade (beyond that the
    decades alone are enough and the labels would crowd).
    """

    def __init__(self, minor: bool = False) -> None:
        self.minor = minor

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not (x > 0 and math.isfinite(x)):
            return ""
        exponent = math.floor(math.log10(x) + 1e-9)
        mantissa = x / 10.0**exponent
        decade = f"10{str(exponent).translate(SUPERSCRIPT)}"
        if abs(mantissa - 1.0) < 1e-6:
            return "" if self.minor else decade
        low, high = self.axis.get_view_interval()
        if self.minor and low > 0 and math.log10(high / low) > 1.0:
            return ""
        return f"{mantissa:.3g}×{decade}"


def log_ticks(axis: Axis) -> None:
    """Decade ticks with LogLabels and minor ticks at 2 and 5 on a log-scaled axis."""
    axis.set_major_formatter(LogLabels())
    axis.set_minor_locator(LogLocator(subs=MINOR_SUBS))
    axis.set_minor_formatter(LogLabels(minor=True))


def log_colorbar(fig: Figure, mappable, ax: Axes, label: str) -> None:
    """A colorbar for mappable (log-normed) beside ax, ticked like log_ticks."""
    colorbar = fig.colorbar(mappable, ax=ax, label=label)
    colorbar.formatter = LogLabels()
    colorbar.minorlocator = LogLocator(subs=MINOR_SUBS)
    colorbar.minorformatter = LogLabels(minor=True)


def run_figure() -> tuple[Figure, Axes]:
    """A FIGSIZE figure with one axes placed by MARGINS."""
    fig = Figure(figsize=FIGSIZE)
    fig.subplots_adjust(**MARGINS)
    return fig, fig.add_subplot()


def loss_figure(result: FitResult) -> Figure:
    """Training and validation loss against the step (log scale)."""
    fig, ax = run_figure()
    ax.plot(result.train_steps, result.train_loss, lw=0.8, alpha=0.7, label="train")
    ax.plot(result.val_steps, result.val_loss, marker="o", ms=3, label="validation")
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return fig


def gradient_norm_figure(result: FitResult) -> Figure:
    """Global gradient norm (before clipping) against the step (log scale)."""
    fig, ax = run_figure()
    ax.plot(result.train_steps, result.grad_norm, lw=0.8)
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient norm")
    return fig


def step_norm_figure(result: FitResult) -> Figure:
    """Heatmap of ||dL/dh_t||: diagnostics checks (rows) by time step t (columns), log10 colour scale."""
    steps = [step for step, _ in result.grad_flow]
    norms = np.array([profile for _, profile in result.grad_flow])
    with np.errstate(divide="ignore"):
        shown = np.log10(norms)
    fig, ax = run_figure()
    image = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", origin="lower", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log10 ||dL/dh_t||")
    ax.set_yticks(range(len(steps)), [str(step) for step in steps])
    ax.set_xlabel("time step t")
    ax.set_ylabel("training step")
    return fig


def gradient_flow_heatmap(steps: np.ndarray, lag_norms: np.ndarray) -> Figure:
    """Heatmap of ||dh_T/dh_k|| over training: steps (n_checks,) on x, lags 1..L on y, log colour scale.

    lag_norms (n_checks, L), one `harness.diagnostics.jacobian_product_norms` curve per check. Zero or
    non-finite norms are left blank.
    """
    steps = np.asarray(steps, dtype=np.float64)
    lag_norms = np.asarray(lag_norms, dtype=np.float64)
    if lag_norms.ndim != 2:
        raise ValueError(f"lag_norms must have shape (n_checks, L), got shape {lag_norms.shape}")
    if steps.shape != (lag_norms.shape[0],):
        raise ValueError(f"steps must have shape ({lag_norms.shape[0]},) to match lag_norms, "
                         f"got {steps.shape}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    shown = np.ma.masked_where(~(np.isfinite(lag_norms) & (lag_norms > 0)), lag_norms)
    if shown.count() == 0:
        raise ValueError("lag_norms must contain at least one positive finite value for a log colour scale")
    lags = np.arange(1, lag_norms.shape[1] + 1)
    fig, ax = run_figure()
    mesh = ax.pcolormesh(_cell_edges(steps), _cell_edges(lags.astype(np.float64)), shown.T,
                         norm=LogNorm(vmin=shown.min(), vmax=shown.max()), cmap="viridis")
    log_colorbar(fig, mesh, ax, "||∂h_T/∂h_k||")
    ax.set_xlabel("training step")
    ax.set_ylabel("lag T − k")
    ax.set_title("Jacobian-product norms over training")
    return fig


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """(n,) increasing cell centres -> (n + 1,) edges halfway between them (unit width for a single cell)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])
