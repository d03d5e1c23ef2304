"""The training loop: sample a batch, backpropagate through time, step the optimizer, report, repeat.

Pure NumPy: every number goes out through a `Logger` (harness.tracking.loggers.Logger: MlflowLogger, or
MemoryLogger for tests and tracking=off). The caller hands in the random stream of the training batches and
the fixed validation / diagnostics batches, so a run's numbers depend only on them and the model's seed.

Metric keys (step = number of optimizer updates done):
- every log_every steps: train/loss, train/grad_norm (global, before clipping), train/clipped,
  train/step_size (mean |Δθ|), Rprop's extras, grad_norm/<parameter> (per-parameter L2 norms);
- step 0, every eval_interval steps and the last step: val/loss, val/<each task metric>, val/solved;
- step 0, every diagnostics_interval steps and the last step: grad_flow/grad_norm_first_step and
  grad_flow/grad_norm_last_step (||dL/dh_t|| at t = 1 and T); for one-layer Elman networks also
  harness.diagnostics' decay_rate, bound_rate, sigma_max, spectral_radius (GradientFlowReport.scalars);
- at every such check, its curves as one metric each whose step is the index, the check's training step in
  the key (zero-padded): grad_flow/step_norm/step_<s> (||dL/dh_t||, step = time step t, 0-based) and, for
  one-layer Elman networks, grad_flow/lag_norm/step_<s> (||dh_T/dh_k||, step = lag T - k), each with a
  log10 twin (grad_flow/step_norm_log10/step_<s>, grad_flow/lag_norm_log10/step_<s>: exponential decay is a
  straight line on a linear axis; zeros left out); at the end the last check's curves again as
  grad_flow/step_norm, grad_flow/lag_norm and their _log10 twins; the full history of every check stays in
  FitResult (run.py draws it as heatmaps);
- diverged (0/1) at the end; on divergence (non-finite loss or gradient) the loop stops and diverged = 1 and
  diverged_step are logged at that step;
- with early stopping: stopped_step when it fires (FitResult.stopped_reason says why).

Checkpoints: `save(result)` (run.py writes the checkpoint) is called every trainer.checkpoint_every steps,
at the end, and - when a signal reaches open_run's guard (logger.interrupts) - at the end of the step it
arrived in, after which the loop raises RunInterrupted. A fit resumed from a checkpoint gets the restored
FitResult (steps_done > 0) and continues at the next step, so its history equals an uninterrupted fit's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.config import TrainerConfig
from harness.diagnostics import GradientFlowReport, gradient_flow_report, step_gradient_norms
from harness.early_stopping import EarlyStopping
from harness.nn import Elman
from harness.progress import ProgressBar
from harness.tasks import Batch, SequenceTask
from harness.tracking.loggers import Logger


@dataclass
class FitResult:
    """What fit did.

    steps_done: optimizer updates made. diverged_step: the step whose loss/gradient was not finite, or None.
    train_steps (n,), train_loss (n,), grad_norm (n,): the logged training curve. val_steps (m,),
    val_loss (m,), val_metric (m,): the validation curve (val_metric is the task's metric_name).
    grad_flow: (step, ||dL/dh_t|| (T,) averaged over the diagnostics batch) per check; lag_norms:
    ||dh_T/dh_k|| (L,) per check (one-layer Elman networks only). final: the last validation metrics.
    stopped_step / stopped_reason: where and why early stopping ended the run. finished: the loop ended (all
    steps, early stopping or divergence), as opposed to a checkpoint taken on the way.
    """

    steps_done: int = 0
    diverged_step: int | None = None
    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    grad_flow: list[tuple[int, np.ndarray]] = field(default_factory=list)
    lag_norms: list[np.ndarray] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    stopped_step: int | None = None
    stopped_reason: str | None = None
    finished: bool = False

    _CURVES = ("steps_done", "diverged_step", "train_steps", "train_loss", "grad_norm", "val_steps",
               "val_loss", "val_metric", "final", "stopped_step", "stopped_reason", "finished")

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None

    def curves(self) -> dict[str, Any]:
        """Everything but the gradient-flow arrays, JSON-safe (for checkpoints)."""
        return {name: getattr(self, name) for name in self._CURVES}

    @classmethod
    def restore(cls, curves: dict[str, Any], grad_flow: list[tuple[int, np.ndarray]],
                lag_norms: list[np.ndarray]) -> FitResult:
        """The FitResult whose curves() and arrays a checkpoint holds."""
        return cls(**curves, grad_flow=list(grad_flow), lag_norms=list(lag_norms))


def evaluate(model, task: SequenceTask, batch: Batch) -> dict[str, float]:
    """val/loss, val/<task metrics> and val/solved (0/1) of model on batch."""
    loss, predictions = model.loss_and_predict(batch.X, batch.Y, batch.mask)
    scores = task.evaluate(predictions, batch)
    metrics = {"val/loss": float(loss), **{f"val/{key}": float(value) for key, value in scores.items()}}
    metrics["val/solved"] = float(task.solved(scores))
    return metrics


def gradient_flow(model, batch: Batch) -> GradientFlowReport | np.ndarray:
    """The gradient-flow check on batch: a full GradientFlowReport for a one-layer Elman network (linear,
    IRNN included), else only the per-step norms ||dL/dh_t|| (T,) of the top layer (the Jacobian products of
    harness.diagnostics are derived for the Elman recurrence)."""
    one_layer_elman = type(model) is Elman and model.num_layers == 1
    _, _, dh, *H = model.loss_and_grads(batch.X, batch.Y, batch.mask, return_hidden_grads=True,
                                        return_hidden_states=one_layer_elman)
    if one_layer_elman:
        return gradient_flow_report(model.recurrent_matrix(), H[0], model.activation, dh)
    return step_gradient_norms(dh)


def _is_check(step: int, interval: int, steps: int) -> bool:
    return interval > 0 and (step % interval == 0 or step == steps)


def fit(model, task: SequenceTask, optimizer, trainer: TrainerConfig, *, train_rng: np.random.Generator,
        val_batch: Batch, diagnostics_batch: Batch, logger: Logger, description: str = "",
        early_stopping: EarlyStopping | None = None, result: FitResult | None = None,
        save: Callable[[FitResult], None] | None = None) -> FitResult:
    """Train model on task for trainer.steps updates; see the module docstring for what gets logged.

    early_stopping: stop on the validation task metric (its best_params are the best weights). result: the
    restored FitResult of a resumed run (model, optimizer, train_rng and early_stopping restored by the
    caller). save: writes a checkpoint of the current state (see the module docstring).
    """
    result = result or FitResult()
    steps = trainer.steps
    metric = f"val/{task.metric_name}"

    def check(step: int) -> bool:
        """Validation and diagnostics due at step; True when early stopping ends the run."""
        stop = False
        if _is_check(step, trainer.eval_interval, steps):
            metrics = evaluate(model, task, val_batch)
            logger.log_metrics(metrics, step)
            result.val_steps.append(step)
            result.val_loss.append(metrics["val/loss"])
            result.val_metric.append(metrics[metric])
            result.final = metrics
            stop = early_stopping is not None and early_stopping.update(metrics[metric], step, model.params)
        if _is_check(step, trainer.diagnostics_interval, steps):
            report = gradient_flow(model, diagnostics_batch)
            report_key = f"step_{step:0{len(str(steps))}d}"  # zero-padded: the UI lists reports in order
            if isinstance(report, GradientFlowReport):
                logger.log_metrics(report.scalars("grad_flow/"), step)
                result.grad_flow.append((step, report.step_norms))
                result.lag_norms.append(report.lag_norms)
                log_curve(logger, "grad_flow/lag_norm", report.lag_norms, first=1, report=report_key)
            else:
                logger.log_metrics({"grad_flow/grad_norm_first_step": float(report[0]),
                                    "grad_flow/grad_norm_last_step": float(report[-1])}, step)
                result.grad_flow.append((step, report))
            log_curve(logger, "grad_flow/step_norm", result.grad_flow[-1][1], first=0, report=report_key)
        return stop

    interrupts = logger.interrupts
    grad_keys = {name: f"grad_norm/{name}" for name in model.params}
    if result.steps_done == 0:
        check(0)
    # A resumed run that had already diverged or stopped early trains no further.
    last = result.steps_done if result.diverged or result.stopped_step is not None else steps
    with ProgressBar(steps, description, enabled=None if trainer.progress else False) as bar, \
            (interrupts.deferred() if interrupts is not None else nullcontext()):
        for step in range(result.steps_done + 1, last + 1):
            batch = task.sample(trainer.batch_size, train_rng)
            # Overflow is how a diverging run shows itself; it is detected below, not warned about.
            with np.errstate(over="ignore", invalid="ignore"):
                loss, grads = model.loss_and_grads(batch.X, batch.Y, batch.mask)
                grad_norms = {name: float(np.linalg.norm(g)) for name, g in grads.items()}
            if not (math.isfinite(loss) and all(map(math.isfinite, grad_norms.values()))):
                result.diverged_step = step
                logger.log_metrics({"diverged_step": float(step)}, step)
                break
            info = optimizer.step(model.params, grads, loss=loss)
            result.steps_done = step
            if step % trainer.log_every == 0 or step == steps:
                logger.log_metrics({"train/loss": float(loss), **info.as_metrics("train/"),
                                    **{grad_keys[name]: norm for name, norm in grad_norms.items()}}, step)
                result.train_steps.append(step)
                result.train_loss.append(float(loss))
                result.grad_norm.append(info.grad_norm)
            bar.update(step, loss=float(loss))
            if check(step):
                result.stopped_step = step
                result.stopped_reason = early_stopping.reason(metric, step)
                logger.log_metrics({"stopped_step": float(step)}, step)
                break
            signalled = interrupts is not None and interrupts.pending is not None
            periodic = trainer.checkpoint_every and step % trainer.checkpoint_every == 0 and step < steps
            if save is not None and (signalled or periodic):  # the last step's checkpoint follows the loop
                save(result)
            if signalled:
                interrupts.raise_pending()
        result.finished = True
        if save is not None:
            save(result)
        if interrupts is not None:
            interrupts.raise_pending()
    logger.log_metrics({"diverged": float(result.diverged)}, result.diverged_step or result.steps_done)
    # The last check's curves again under short keys, indexed by time step / lag through the metric step.
    if result.grad_flow:
        log_curve(logger, "grad_flow/step_norm", result.grad_flow[-1][1], first=0)
    if result.lag_norms:
        log_curve(logger, "grad_flow/lag_norm", result.lag_norms[-1], first=1)
    return result


def log_curve(logger: Logger, name: str, values: np.ndarray, first: int, report: str = "") -> None:
    """values (L,) as metric ``<name>[/<report>]`` with steps first, first + 1, ...; and log10 of the positive
    ones as ``<name>_log10[/<report>]``, so that exponential decay is a straight line on the UI's default
    linear axis."""
    key, log_key = (f"{name}/{report}", f"{name}_log10/{report}") if report else (name, f"{name}_log10")
    for index, value in enumerate(np.asarray(values, dtype=float), start=first):
        logger.log_metrics({key: float(value)}, index)
        if value > 0:
            logger.log_metrics({log_key: float(np.log10(value))}, index)
