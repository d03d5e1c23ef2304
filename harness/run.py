"""One training run, start to finish: validate -> build task, model, optimizer -> seed the data -> open the
tracked run -> fit -> log the final metrics, figures, weights and config.

`run(cfg)` takes the composed config as a plain nested dict (experiments/train.py passes the Hydra config
converted with OmegaConf.to_container); nothing here imports Hydra. Every configuration problem raises
ConfigError before a tracked run exists (or, on resume, before it is reopened): `prepare(cfg)` checks
the whole config (schema, task, memory estimate, model, optimizer, tracking) and builds the pieces; a
sweep checks each job's config with it before its parent run opens (harness.app.SweepCheck).

Checkpoints and resume (harness.resume): the run checkpoints every trainer.checkpoint_every steps, on a
signal and at the end; `trainer.resume=<run id>` - or a checkpoint of an unfinished run in the job's output
folder (a requeued submitit job) - reopens that run and continues it from its checkpoint: model, optimizer,
every random stream, early-stopping state and curves are restored, so the run's history and weights equal
those of an uninterrupted run. Early stopping (trainer.early_stopping.patience) logs the best weights.
In a sweep continued by `trainer.resume_sweep=<parent run id>` (harness.sweep_continuation) a job whose
config finished before returns that run's objective untrained, one killed before continues its run.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    TrackingConfig,
    check_keys,
    network_bytes,
    require_memory,
    validate,
)
from harness.early_stopping import EarlyStopping
from harness.environment import log_environment
from harness.nn import GRU, LSTM, Bidirectional, Elman, Jordan
from harness.optim import make_optimizer, optimizer_arguments
from harness.resume import LOCAL_TAG, Checkpointer, SkipLogged, restore, resume_point, snapshot
from harness.run_report import (
    Outcome,
    continue_command,
    describe_run,
    describe_stopped_run,
    resumed_line,
    search_rerun,
    stopped_summary,
    terminal_summary,
)
from harness.runtime import freeze_long_lived_objects, pin_blas_to_one_thread
from harness.search import current_search, current_trial, trial_run_name
from harness.tasks import SequenceTask, fingerprint, make_task
from harness.tracking import TrackingSettings, open_run, project_root
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.orphans import STOPPED_AT_TAG
from harness.tracking.redact import redact_config
from harness.tracking.runs import RunInterrupted, raise_if_stop_requested, sweep_label
from harness.training import FitResult, fit
from harness.ui import ui_hint

MODEL_CLASSES = {"elman": Elman, "linear": Elman, "irnn": Elman, "jordan": Jordan, "lstm": LSTM, "gru": GRU}
# Models that are an Elman network with a fixed activation (and, for the IRNN, a default recurrent init).
FIXED_ACTIVATION = {"linear": "identity", "irnn": "relu"}


def build_task(config: RunConfig) -> SequenceTask:
    try:
        return make_task(config.task.name, **config.task.params)
    except ValueError as exc:
        raise ConfigError(f"task.{exc}") from exc


def build_model(model: ModelConfig, task: SequenceTask, *, truncation: int | None, seed: int):
    """The network model names, sized and headed by task (the model config does not repeat them)."""
    keywords: dict[str, Any] = {
        key: value for key, value in asdict(model).items() if key not in ("name", "cell", "hidden_size")
    }
    if keywords["activation"] is None:
        del keywords["activation"]
    if model.name in FIXED_ACTIVATION:
        if keywords.get("activation", FIXED_ACTIVATION[model.name]) != FIXED_ACTIVATION[model.name]:
            raise ConfigError(f"model.activation must be {FIXED_ACTIVATION[model.name]!r} (or null) for "
                              f"model {model.name!r}, got {model.activation!r}")
        keywords["activation"] = FIXED_ACTIVATION[model.name]
    keywords.update(head=task.head, mode=task.mode, output_length=task.output_length, truncation=truncation,
                    seed=seed)
    sizes = (task.input_size, model.hidden_size, task.output_size)
    try:
        if model.name == "bidirectional":
            return Bidirectional(model.cell, *sizes, **keywords)
        return MODEL_CLASSES[model.name](*sizes, **keywords)
    except ValueError as exc:
        raise ConfigError(f"model.{exc}") from exc


def build_optimizer(config: RunConfig):
    """The run's optimizer; ConfigError naming the field (``optimizer.variant must be one of ...``): every
    optimizer's ValueError starts with the argument it refuses, a key it does not take is a misspelt key."""
    optimizer = config.optimizer
    check_keys("optimizer", optimizer.options, ["name", *optimizer_arguments(optimizer.name)])
    try:
        return make_optimizer(optimizer.name, lr=optimizer.lr, clip_norm=optimizer.clip_norm,
                              clip_value=optimizer.clip_value, **optimizer.options)
    except ValueError as exc:
        raise ConfigError(f"optimizer.{exc}") from exc


def require_run_memory(config: RunConfig, task: SequenceTask, optimizer) -> None:
    """ConfigError when the run's arrays (network_bytes at the largest batch) exceed the available memory."""
    model, trainer = config.model, config.trainer
    cell = model.cell if model.name == "bidirectional" else model.name
    length = task.length + (task.output_length or 0)
    batch = max(trainer.batch_size, trainer.eval_batch_size, trainer.diagnostics_batch_size)
    needed = network_bytes(cell, task.input_size, model.hidden_size, task.output_size, length=length,
                           batch_size=batch, num_layers=model.num_layers,
                           directions=2 if model.name == "bidirectional" else 1,
                           itemsize=8 if model.dtype == "float64" else 4,
                           parameter_copies=2 + optimizer.buffers_per_parameter())
    require_memory(needed, f"model.hidden_size={model.hidden_size}, model.num_layers={model.num_layers}, "
                           f"sequence length {length} and batches of up to {batch} sequences "
                           f"(trainer.batch_size, trainer.eval_batch_size, trainer.diagnostics_batch_size)")


def tracking_settings(tracking: TrackingConfig, app: str) -> TrackingSettings:
    """The TrackingSettings of a checked tracking section for the runs of app (TrackingSettings.app)."""
    try:
        return TrackingSettings(**asdict(tracking), app=app)
    except ValueError as exc:
        raise ConfigError(f"tracking.{exc}") from exc


def model_label(model: ModelConfig) -> str:
    return f"bidirectional_{model.cell}" if model.name == "bidirectional" else model.name


def run_name(config: RunConfig, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """'<task>-<model>-s<seed>', e.g. 'adding-lstm-s0'; in a sweep the job's values of the other swept keys
    follow the task, e.g. 'adding-T20-lstm-s0' for ``-m model=elman,lstm task.length=10,20``; an Optuna
    trial's number ends it, e.g. 'adding-elman-s0-t3' (harness.search.trial_run_name)."""
    swept = sweep_label(overrides, named=("task", "model", "seed"))
    name = "-".join(part for part in (config.task.name, swept, model_label(config.model), f"s{config.seed}")
                    if part)
    return trial_run_name(name, current_trial())


def _log_outputs(logger, model, result: FitResult, workdir: Path, early_stopping: EarlyStopping | None,
                 X_example: np.ndarray, *, keep_last: bool) -> None:
    """Figures and weights of a finished fit: the best weights when early stopping kept some (model.npz;
    the last ones too as model_last.npz when keep_last), else the last; the same weights as the run's MLflow
    LoggedModel ``model``, a pyfunc model produced at the last step (tracked runs; X_example (T, B, D) is its
    input example)."""
    # matplotlib loads here, after training, not on the way to the first step
    from harness.run_figures import gradient_flow_heatmap, gradient_norm_figure, loss_figure, step_norm_figure

    if result.train_steps:
        logger.log_figure(loss_figure(result), "figures/loss.png")
        logger.log_figure(gradient_norm_figure(result), "figures/grad_norm.png")
    if result.grad_flow:
        logger.log_figure(step_norm_figure(result), "figures/grad_flow_steps.png")
    if len(result.lag_norms) > 1 and np.any(np.array(result.lag_norms) > 0):
        steps = np.array([step for step, _ in result.grad_flow])
        heatmap = gradient_flow_heatmap(steps, np.array(result.lag_norms))
        logger.log_figure(heatmap, "figures/grad_flow_lags.png")
    weights = workdir / "model.npz"
    if early_stopping is not None and early_stopping.best_params:
        if keep_last:
            model.save(str(workdir / "model_last.npz"))
            logger.log_artifact(workdir / "model_last.npz")
        model.params = {k: v.copy() for k, v in early_stopping.best_params.items()}
        logger.set_tags({"weights": f"best: {early_stopping.best:.6g} at step {early_stopping.best_step}"})
        step = early_stopping.best_step  # the model's numbers are that step's, not the last step's
    else:
        logger.set_tags({"weights": f"last: step {result.steps_done}"})
        step = result.steps_done
    model.save(str(weights))
    logger.log_artifact(weights)
    if logger.run_id is not None:
        logger.log_model(partial(_save_network_model, model, X_example), step=step)


def _save_network_model(model, X_example: np.ndarray, folder: Path) -> str:
    """The pyfunc model of network model at folder (harness.pyfunc); module-level, so that it pickles for
    the metric writer process that logs a run's model (MlflowLogger.log_model)."""
    from harness.pyfunc import save_pyfunc

    return save_pyfunc(model, folder, X_example)


@dataclass(frozen=True)
class Prepared:
    """A checked run: its validated config and the task, model, optimizer and tracking settings it uses."""

    config: RunConfig
    task: SequenceTask
    model: Any
    optimizer: Any
    settings: TrackingSettings


def prepare(cfg: dict[str, Any]) -> Prepared:
    """Check the composed config cfg and build what its run needs; ConfigError (one line) on bad input, with
    nothing allocated beyond what the memory estimate allowed and nothing tracked."""
    config = validate(cfg)
    if config.trainer.resume is not None and config.trainer.resume_sweep is not None:
        raise ConfigError("trainer.resume: not with trainer.resume_sweep, which continues every killed job "
                          "of the sweep from its checkpoint itself; drop trainer.resume")
    task = build_task(config)
    optimizer = build_optimizer(config)
    require_run_memory(config, task, optimizer)
    model = build_model(config.model, task, truncation=config.trainer.truncation, seed=config.seed)
    return Prepared(config, task, model, optimizer, tracking_settings(config.tracking, "train"))


def run(cfg: dict[str, Any], *, overrides: list[str] | tuple[str, ...] = (),
        job_num: int | None = None, output_dir: str | Path | None = None,
        echo: Callable[[str], Any] | None = None) -> float:
    """Train and track one run of the composed config cfg; returns the final validation task metric (nan if
    the run diverged; the best one with early stopping). overrides and job_num (Hydra's) are recorded as
    tags and as overrides.yaml. output_dir (the Hydra job folder) keeps the local copy of the checkpoint.
    echo, when given, receives the closing summary lines (run name and id, the task metric next to its
    chance level and the solved flag, the run's URL in the MLflow UI), and a resumed run's first line, where
    it picks up (resumed_line)."""
    pin_blas_to_one_thread()
    prepared = prepare(cfg)
    config, task, model, optimizer, settings = (prepared.config, prepared.task, prepared.model,
                                                prepared.optimizer, prepared.settings)
    continued = None  # the run this job of a continued sweep continues (harness.sweep_continuation)
    if config.trainer.resume_sweep is not None:
        from harness.app import RESUME_SWEEP_KEY
        from harness.sweep_continuation import CONTINUE, FINISHED, planned_job

        planned = planned_job(RESUME_SWEEP_KEY, config.trainer.resume_sweep, cfg, job_num)
        if planned.action == FINISHED:
            if echo is not None:
                echo(f"job {job_num}: finished before, as run {planned.run_id}; not trained again")
            return planned.objective
        continued = planned.run_id if planned.action == CONTINUE else None
    output_dir = Path(output_dir).resolve() if output_dir is not None else None
    patience = config.trainer.early_stopping.patience
    early_stopping = None if patience is None else EarlyStopping(
        patience, config.trainer.early_stopping.min_delta, task.higher_is_better)

    # Seeding: the model draws its weights from default_rng(seed); the data streams are independent children
    # of np.random.SeedSequence(seed). The validation set and the diagnostics batch are drawn once.
    streams = task.streams(config.seed)
    val_batch = task.validation_set(config.trainer.eval_batch_size, streams["val"])
    diagnostics_batch = task.validation_set(config.trainer.diagnostics_batch_size, streams["val"])
    val_arrays = {name: array for name, array in
                  (("X", val_batch.X), ("Y", val_batch.Y), ("mask", val_batch.mask)) if array is not None}
    data_fingerprint = fingerprint(*val_arrays.values())
    recorded = redact_config(cfg)  # what is logged and checkpointed: no credentials
    point = resume_point(config, recorded, settings, output_dir, run_id=continued)
    # the caller's FitResult: a run stopped by a signal still tells how far it got
    start = FitResult() if point is None else restore(point, model, optimizer, streams, early_stopping)
    if point is not None and echo is not None:
        echo(resumed_line(point.run_name, point.run_id, point.checkpoint.step, config.trainer.steps))

    tags = {"task": config.task.name, "model": model_label(config.model), "seed": config.seed,
            "overrides": " ".join(overrides), "job_num": "" if job_num is None else job_num,
            "dataset_fingerprint": data_fingerprint, "metric_name": task.metric_name,
            "chance_level": task.chance()[task.metric_name], "solved_rule": task.solved_rule}
    # a resumed run keeps its name: a sweep's job named it after the sweep's other values too
    name = run_name(config, overrides) if point is None else point.run_name
    with open_run(settings, run_name=name, tags=tags, parent_run_id="auto",
                  resume_run_id=None if point is None else point.run_id) as logger, \
            tempfile.TemporaryDirectory() as workdir:
        log_environment(logger, project_root())
        if point is None:
            logger.log_params(cfg)
            logger.log_text(yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
            logger.log_text(yaml.safe_dump(list(overrides)), "overrides.yaml")
            # the UI lists a run's dataset inputs with their context: this is the validation set
            logger.log_dataset(f"{config.task.name}-validation", data_fingerprint, val_arrays,
                               context="validation")
        else:
            logger.set_tags({"resumed_from_step": point.checkpoint.step,
                             "trainer.steps": config.trainer.steps})
            logger = SkipLogged(logger, logger.client, point.run_id)
        checkpointer = Checkpointer(logger, output_dir or Path(workdir))
        if output_dir is not None:
            logger.set_tags({LOCAL_TAG: checkpointer.path})

        def save(result: FitResult) -> None:
            checkpointer.save(snapshot(result, model, optimizer, streams, early_stopping, recorded,
                                       logger.run_id))

        try:
            result = fit(model, task, optimizer, config.trainer, train_rng=streams["train"],
                         val_batch=val_batch, diagnostics_batch=diagnostics_batch, logger=logger,
                         description=name, early_stopping=early_stopping, result=start, save=save)
            objective, outcome = _log_result(logger, config, name, task, model, result, early_stopping,
                                             Path(workdir), val_batch.X[:, :2])
            # a signal whose exception Python dropped stops the run here, as one raised in time does
            raise_if_stop_requested()
        except RunInterrupted as stop:
            # start is the FitResult fit works on: it tells how far the run got, wherever the signal landed
            # (in training, or after it, while the run logs its result)
            _tell_stopped(logger, config, name, start.steps_done, stop, overrides, echo)
            raise
        finally:
            logger.set_tags(checkpointer.cost_tags())
    freeze_long_lived_objects()
    if echo is not None:
        hint = None if logger.run_id is None else ui_hint(settings.tracking_uri,
                                                          (str(logger.experiment_id), logger.run_id))
        for line in terminal_summary(outcome, logger.run_id, hint):
            echo(line)
    return objective


def _log_result(logger, config: RunConfig, name: str, task: SequenceTask, model, result: FitResult,
                early_stopping: EarlyStopping | None, workdir: Path, X_example: np.ndarray
                ) -> tuple[float, Outcome]:
    """Log what a fit of model that ran to its end gives: stopped_reason, the final metrics, the
    description, figures and weights (_log_outputs; X_example (T, B, D) the model's input example).
    Returns (the run's objective, its Outcome)."""
    if result.stopped_reason:
        logger.set_tags({"stopped_reason": result.stopped_reason})
    metric = f"val/{task.metric_name}"
    best = early_stopping is not None and early_stopping.best is not None
    objective = math.nan if result.diverged else early_stopping.best if best else result.final[metric]
    outcome = Outcome.of(name, model_label(config.model), task, result, objective)
    final = {"steps_done": float(result.steps_done), "solved": float(outcome.solved), "objective": objective}
    if best:
        final["best_step"] = float(early_stopping.best_step)
    logger.log_metrics(final, result.steps_done)
    logger.set_tags({NOTE_TAG: describe_run(config, outcome)})
    _log_outputs(logger, model, result, workdir, early_stopping, X_example,
                 keep_last=config.trainer.early_stopping.keep_last)
    return objective, outcome


def _tell_stopped(logger, config: RunConfig, name: str, done: int, stop: RunInterrupted,
                  overrides: list[str] | tuple[str, ...], echo: Callable[[str], Any] | None) -> None:
    """A run the signal of stop stopped after done steps: its description, its tag STOPPED_AT_TAG and
    (echo) the lines that say where it stopped and the command that continues it; an Optuna trial's say
    that its search re-runs it (trainer.resume would continue it outside its study)."""
    search = current_search()
    rerun = None if search is None else search_rerun(*search)
    command = continue_command(logger.run_id, overrides) if done and logger.run_id and not rerun else None
    logger.set_tags({NOTE_TAG: describe_stopped_run(config, done, stop, command, rerun),
                     STOPPED_AT_TAG: done})
    if echo is not None:
        for line in stopped_summary(name, logger.run_id, done, config.trainer.steps, stop, command, rerun):
            echo(line)
