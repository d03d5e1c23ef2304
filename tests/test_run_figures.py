"""harness.run_figures: what each run figure shows, and that fixed margins keep every label on the canvas."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from harness.run_figures import gradient_flow_heatmap, gradient_norm_figure, loss_figure, step_norm_figure
from harness.training import FitResult


def fit_result(low: float, high: float, last_step: int = 300) -> FitResult:
    """A FitResult of 300 logged steps up to last_step whose curves and gradient-flow checks span [low, high]
    (log-spaced); three checks, at steps 0, last_step / 2 and last_step."""
    steps = [int(step) for step in np.linspace(1, last_step, 300)]
    curve = list(np.geomspace(high, low, len(steps)))
    checks = (0, last_step // 2, last_step)
    profiles = [(step, np.geomspace(low, high, 50)) for step in checks]
    return FitResult(steps_done=last_step, train_steps=steps, train_loss=curve, grad_norm=curve,
                     val_steps=[0, *steps[99::100]], val_loss=[curve[0], *curve[99::100]], grad_flow=profiles,
                     lag_norms=[profile for _, profile in profiles])


def axes_past_the_edges(fig: Figure) -> list[str]:
    """The axes of fig (colorbars included) whose labels, tick labels or title reach past the canvas."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = canvas.get_width_height()
    return [f"{ax.get_label() or 'axes'} {ax.get_ylabel()!r}: {box}" for ax in fig.axes
            if (box := ax.get_tightbbox(renderer)).x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height]


@pytest.mark.parametrize(("low", "high", "last_step"),
                         [(0.3, 1.5, 300), (1e-12, 1.0, 2000), (1e-150, 1e154, 300), (0.02, 0.9, 250_000)])
def test_every_label_stays_on_the_canvas(low, high, last_step):
    result = fit_result(low, high, last_step)
    checks = np.array([step for step, _ in result.grad_flow])
    figures = [loss_figure(result), gradient_norm_figure(result), step_norm_figure(result),
               gradient_flow_heatmap(checks, np.array(result.lag_norms))]
    for fig in figures:
        assert axes_past_the_edges(fig) == []


def test_curves_are_log_scaled_and_carry_the_run_data():
    result = fit_result(1e-3, 2.0)
    loss = loss_figure(result).axes[0]
    assert loss.get_yscale() == "log" and loss.get_xlabel() == "step" and loss.get_ylabel() == "loss"
    train, validation = loss.get_lines()
    np.testing.assert_array_equal(train.get_ydata(), result.train_loss)
    np.testing.assert_array_equal(validation.get_xdata(), result.val_steps)
    norm = gradient_norm_figure(result).axes[0]
    assert norm.get_yscale() == "log"
    np.testing.assert_array_equal(norm.get_lines()[0].get_ydata(), result.grad_norm)


def test_step_norm_heatmap_rows_are_the_checks_in_log10():
    result = fit_result(1e-4, 1.0)
    ax = step_norm_figure(result).axes[0]
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 50)
    np.testing.assert_allclose(image[0], np.log10(result.grad_flow[0][1]))
    assert [label.get_text() for label in ax.get_yticklabels()] == ["0", "150", "300"]


def test_lag_heatmap_is_a_log_scaled_figure_with_labelled_axes():
    lag_norms = np.array([[1.0, 0.5, 0.25], [2.0, 0.0, 1e-3]])
    fig = gradient_flow_heatmap(np.array([0, 100]), lag_norms)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training step"
    assert ax.get_ylabel() == "lag T − k"
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, LogNorm)
    assert mesh.norm.vmin == pytest.approx(1e-3) and mesh.norm.vmax == pytest.approx(2.0)
    assert isinstance(gradient_flow_heatmap(np.array([7]), lag_norms[:1]), Figure)


@pytest.mark.parametrize(("steps", "lag_norms", "message"), [
    (np.arange(3), np.ones((2, 4)), r"steps must have shape \(2,\) to match lag_norms, got \(3,\)"),
    (np.array([5, 1]), np.ones((2, 4)), "steps must be strictly increasing"),
    (np.arange(2), np.zeros((2, 4)), "lag_norms must contain at least one positive finite value"),
    (np.arange(2), np.ones(4), r"lag_norms must have shape \(n_checks, L\), got shape \(4,\)"),
])
def test_lag_heatmap_input_validation(steps, lag_norms, message):
    with pytest.raises(ValueError, match=message):
        gradient_flow_heatmap(steps, lag_norms)
