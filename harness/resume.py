"""Checkpoints of a tracked run and continuing a run from them (`trainer.resume=<run id>`, submitit requeue).

A `Checkpointer` writes the run's checkpoint (harness.checkpoint) into the run's output folder (the Hydra
job folder; a temporary one without Hydra) and logs it as the run's artifact ``checkpoint/checkpoint.npz``,
counting the writes, bytes and seconds (tags ``checkpoint.count``, ``checkpoint.bytes``,
``checkpoint.seconds`` at the end: tags, so that metric histories stay free of timings).

`resume_point` decides, before any run is reopened, which run continues from which checkpoint:
- ``trainer.resume=<run id>``: that run, from the newer valid one of its artifact and its local copy;
- else a checkpoint in the job's output folder whose run did not finish and has this config (a submitit job
  requeued after a time limit or a preemption runs again in the same folder): that run;
- else None (a fresh run).
Every refusal is a ConfigError with one line: no such run, no usable checkpoint, a config that differs in
more than the budget (trainer.steps), a budget below the steps already done, a run with nothing left to do.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.checkpoint import (
    FILENAME,
    Checkpoint,
    CheckpointError,
    config_differences,
    describe_differences,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from harness.config import ConfigError, RunConfig
from harness.early_stopping import EarlyStopping
from harness.tracking import TrackingSettings, store_client
from harness.training import FitResult

ARTIFACT_DIR = "checkpoint"
LOCAL_TAG = "checkpoint.local"
# Keys that change no number of a run: how it was started (a resumption, a sweep's continuation) and shown.
RUN_CONTROL_KEYS = ("trainer.resume", "trainer.resume_sweep", "trainer.progress")
# What may change between a run and its resumption: the budget and the keys above.
RESUMABLE_KEYS = ("trainer.steps", *RUN_CONTROL_KEYS)


class Checkpointer:
    """Writes checkpoints of one run: local_dir/checkpoint.npz, then the run's artifact (logger); counts
their number, bytes and seconds (the metric flush before each included)."""

    def __init__(self, logger: Any, local_dir: Path) -> None:
        self.logger = logger
        self.path = local_dir / FILENAME
        self.count = 0
        self.bytes = 0
        self.seconds = 0.0

    def save(self, checkpoint: Checkpoint) -> None:
        """Flush the run's metrics, then write the checkpoint: the store then always holds every metric up
        to the newest checkpoint's step (a run killed outright loses none that its resumption skips)."""
        start = time.perf_counter()
        self.logger.flush()
        self.bytes += save_checkpoint(checkpoint, self.path)
        self.logger.log_artifact(self.path, ARTIFACT_DIR)
        self.seconds += time.perf_counter() - start
        self.count += 1

    def cost_tags(self) -> dict[str, str]:
        return {"checkpoint.count": str(self.count), "checkpoint.bytes": str(self.bytes),
                "checkpoint.seconds": f"{self.seconds:.4f}"}


@dataclass(frozen=True)
class ResumePoint:
    """A run to continue (run_id, named run_name in the store) and the checkpoint it continues from."""

    run_id: str
    run_name: str
    checkpoint: Checkpoint


def _artifact_checkpoint(client: Any, run_id: str) -> Checkpoint:
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{FILENAME}", folder)
        except Exception as exc:  # MLflow raises OSError or MlflowException for an absent artifact
            raise CheckpointError(f"no checkpoint artifact ({type(exc).__name__})") from exc
        return load_checkpoint(path)


def _newest_checkpoint(client: Any, run: Any) -> Checkpoint:
    """The newer valid one of the run's artifact checkpoint and its local copy; CheckpointError naming both
    problems when neither is usable."""
    found: list[Checkpoint] = []
    problems: list[str] = []
    sources = [lambda: _artifact_checkpoint(client, run.info.run_id)]
    if run.data.tags.get(LOCAL_TAG):
        sources.append(lambda: load_checkpoint(run.data.tags[LOCAL_TAG]))
    for source in sources:
        try:
            found.append(source())
        except CheckpointError as exc:
            problems.append(str(exc))
    if not found:
        raise CheckpointError("; ".join(problems))
    return max(found, key=lambda checkpoint: checkpoint.step)


def _check_continuable(run: Any, checkpoint: Checkpoint, cfg: dict[str, Any], config: RunConfig) -> None:
    run_id = run.info.run_id
    if checkpoint.run_id not in (None, run_id):
        raise ConfigError(f"trainer.resume: the checkpoint of run {run_id} is run {checkpoint.run_id}'s")
    differ = config_differences(checkpoint.config, cfg, ignore=RESUMABLE_KEYS)
    if differ:
        started = run.data.tags.get("overrides")
        again = f"; it was started with the overrides `{started}`: give them again" if started else ""
        raise ConfigError(f"trainer.resume: run {run_id} was trained with another config; keys that differ: "
                          f"{describe_differences(checkpoint.config, cfg, differ)}{again} (only "
                          f"trainer.steps may change on resume)")
    steps = config.trainer.steps
    curves = checkpoint.curves
    if steps < checkpoint.step:
        raise ConfigError(f"trainer.steps must be >= {checkpoint.step} (the steps run {run_id} has done) to "
                          f"resume it, got {steps}")
    ended = curves.get("diverged_step") is not None or curves.get("stopped_step") is not None
    if run.info.status == "FINISHED" and (ended or steps == checkpoint.step):
        why = "it diverged or stopped early" if ended else f"raise trainer.steps above {checkpoint.step}"
        raise ConfigError(f"trainer.resume: run {run_id} has finished; nothing to continue ({why})")


def resume_point(config: RunConfig, cfg: dict[str, Any], settings: TrackingSettings,
                 output_dir: Path | None, run_id: str | None = None) -> ResumePoint | None:
    """The run to continue and its checkpoint, or None for a fresh run; ConfigError (one line) when the
    requested resumption is impossible. See the module docstring. run_id: the run to continue in place of
    trainer.resume (a continued sweep's job, harness.sweep_continuation)."""
    run_id = run_id or config.trainer.resume
    local = output_dir / FILENAME if output_dir is not None else None
    if run_id is None and (local is None or not local.is_file()):
        return None
    if settings.mode == "off":
        if run_id is None:
            return None
        raise ConfigError("trainer.resume needs a tracking store to find the run in; tracking=off has none")
    from mlflow.exceptions import MlflowException

    client = store_client(settings)
    if run_id is None:
        try:
            checkpoint = load_checkpoint(local)
        except CheckpointError as exc:
            raise ConfigError(f"{exc}; delete it to start afresh, or pass trainer.resume=<run id>") from exc
        if checkpoint.run_id is None:
            return None  # left by a tracking=off run in the same folder: nothing to continue
        try:
            run = client.get_run(checkpoint.run_id)
        except MlflowException:
            return None  # the checkpoint of a run in another store: this job starts its own run
        differ = config_differences(checkpoint.config, cfg, ignore=RESUMABLE_KEYS)
        if run.info.status == "FINISHED" or differ:
            return None  # a finished run, or another job's (an earlier sweep in the same folder)
    else:
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            raise ConfigError(f"trainer.resume: no run {run_id!r} in {settings.tracking_uri}") from exc
        try:
            checkpoint = _newest_checkpoint(client, run)
        except CheckpointError as exc:
            raise ConfigError(f"trainer.resume: run {run_id} has no usable checkpoint: {exc}") from exc
    _check_continuable(run, checkpoint, cfg, config)
    return ResumePoint(run.info.run_id, run.info.run_name, checkpoint)


def snapshot(result: FitResult, model: Any, optimizer: Any, streams: dict[str, np.random.Generator],
             early_stopping: EarlyStopping | None, config: dict[str, Any], run_id: str | None) -> Checkpoint:
    """The checkpoint of a fit after result.steps_done steps; its arrays are the live ones (not copied):
    write it before the next step."""
    return Checkpoint(
        step=result.steps_done, params=model.params, optimizer=optimizer.state_dict(),
        rng=rng_states(streams), config=config, run_id=run_id,
        early_stopping={} if early_stopping is None else early_stopping.state(),
        best_params={} if early_stopping is None else early_stopping.best_params, curves=result.curves(),
        grad_flow=result.grad_flow, lag_norms=result.lag_norms)


def restore(point: ResumePoint, model: Any, optimizer: Any, streams: dict[str, np.random.Generator],
            early_stopping: EarlyStopping | None) -> FitResult:
    """Put model, optimizer, random streams and early stopping in the checkpoint's state; returns its
    FitResult, from which fit continues."""
    checkpoint = point.checkpoint
    if set(checkpoint.params) != set(model.params):
        raise ConfigError(f"trainer.resume: the checkpoint of run {point.run_id} holds other parameters "
                          f"({sorted(checkpoint.params)}) than the model ({sorted(model.params)})")
    model.params = {k: checkpoint.params[k].copy() for k in model.params}
    optimizer.load_state_dict(checkpoint.optimizer)
    restore_rng_states(streams, checkpoint.rng)
    if early_stopping is not None:
        early_stopping.restore(checkpoint.early_stopping, checkpoint.best_params)
    return FitResult.restore(checkpoint.curves, checkpoint.grad_flow, checkpoint.lag_norms)


def _value_key(key: str, step: int, value: float) -> tuple[str, int, str]:
    return key, int(step), repr(float(value))  # repr: NaN equals NaN, and every float keeps its bits


class SkipLogged:
    """The logger of a resumed run, minus the metric values the store already holds.

    A run killed without a signal (SIGKILL, a node lost) has logged the steps after its last checkpoint; the
    resumed run computes them again, bit for bit, and would log every one twice. Values with the same key,
    step and value as a stored one are left out; everything else goes to the wrapped logger.
    """

    def __init__(self, logger: Any, client: Any, run_id: str) -> None:
        self.logger = logger
        self.logged = {_value_key(key, m.step, m.value) for key in client.get_run(run_id).data.metrics
                       for m in client.get_metric_history(run_id, key)}

    def log_metrics(self, metrics: Any, step: int) -> None:
        fresh = {k: v for k, v in metrics.items() if _value_key(k, step, v) not in self.logged}
        if fresh:
            self.logger.log_metrics(fresh, step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)
