"""trainer.resume end to end on a real SQLite store: refusals in one line before the run is reopened, budget
extension, and a run stopped by SIGTERM at a random step then resumed whose every metric history and final
weights equal those of an uninterrupted run (experiments/train.py subprocesses, basic launcher)."""

from __future__ import annotations

import random
import shlex
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from logged_models import the_logged_model
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from test_configs import composed
from test_sweep_signals import wait_for
from test_train_app import TINY, app, app_command, app_env, runs_of, signal_when_training

from harness.config import ConfigError
from harness.nn import load_model
from harness.run import run
from harness.tracking.orphans import reaped

STEPS = 6000


def store_overrides(settings) -> tuple[str, ...]:
    return (f"tracking.uri={settings.tracking_uri}", f"tracking.artifact_root={settings.artifact_root}",
            "tracking.experiment=test")


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run: key -> its (step, value) pairs in step order (duplicates kept)."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def weights(client: MlflowClient, run_id: str, folder: Path) -> dict[str, np.ndarray]:
    return load_model(client.download_artifacts(run_id, "model.npz", str(folder))).params


def refusal(cfg: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        run(cfg)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_resume_refusals_are_one_line_and_leave_the_run_alone(tmp_path: Path, tracking_settings) -> None:
    overrides = (*TINY, *store_overrides(tracking_settings), "trainer.progress=false")
    run(composed(*overrides), overrides=TINY)  # the overrides the run records
    (finished,) = runs_of(tracking_settings)
    run_id = finished.info.run_id
    client = MlflowClient(tracking_settings.tracking_uri)
    again = (*overrides, f"trainer.resume={run_id}")

    assert refusal(composed(*again, "model.hidden_size=5", "seed=3")) == (
        f"trainer.resume: run {run_id} was trained with another config; keys that differ: model.hidden_size "
        f"(4 in the run, 5 now), seed (0 in the run, 3 now); it was started with the overrides "
        f"`{' '.join(TINY)}`: give them again (only trainer.steps may change on resume)")
    assert refusal(composed(*again)) == (
        f"trainer.resume: run {run_id} has finished; nothing to continue (raise trainer.steps above 8)")
    assert refusal(composed(*again, "trainer.steps=4")).startswith("trainer.steps must be >= 8")
    assert refusal(composed(*overrides, "trainer.resume=0123abc")).startswith(
        "trainer.resume: no run '0123abc'")
    assert refusal(composed(*again, "tracking=off")).startswith("trainer.resume needs a tracking store")

    artifact = Path(client.download_artifacts(run_id, "checkpoint/checkpoint.npz", str(tmp_path)))
    stored = Path(tracking_settings.artifact_root).rglob("checkpoint.npz")
    (stored,) = list(stored)
    stored.write_bytes(artifact.read_bytes()[:1000])
    assert refusal(composed(*again, "trainer.steps=12")).startswith(
        f"trainer.resume: run {run_id} has no usable checkpoint: checkpoint ")
    stored.unlink()
    assert "no checkpoint artifact" in refusal(composed(*again, "trainer.steps=12"))
    after = client.get_run(run_id)
    assert (after.info.status, after.info.end_time) == ("FINISHED", finished.info.end_time)
    assert after.data.metrics == finished.data.metrics


def test_a_finished_run_trains_on_when_its_budget_grows(tmp_path: Path, tracking_settings) -> None:
    overrides = (*TINY, *store_overrides(tracking_settings), "trainer.progress=false")
    run(composed(*overrides, "trainer.checkpoint_every=4"))
    (first,) = runs_of(tracking_settings)
    assert first.data.tags["checkpoint.count"] == "2"  # step 4, then the end (step 8) once
    run(composed(*overrides, "trainer.checkpoint_every=4", "trainer.steps=12",
                 f"trainer.resume={first.info.run_id}"))
    (again,) = runs_of(tracking_settings)
    assert again.info.status == "FINISHED" and again.data.metrics["steps_done"] == 12
    assert again.data.tags["resumed_from_step"] == "8" and again.data.tags["trainer.steps"] == "12"
    client = MlflowClient(tracking_settings.tracking_uri)
    assert [m.step for m in client.get_metric_history(first.info.run_id, "train/loss")] == list(range(1, 13))
    # one LoggedModel still, the one of step 12: the one of step 8 is deleted
    model = the_logged_model(client, again)
    # MLflow returns a run's outputs in no particular order
    older, newer = sorted(client.get_run(again.info.run_id).outputs.model_outputs, key=lambda out: out.step)
    assert (older.step, newer.step, newer.model_id) == (8, 12, model.model_id)
    with pytest.raises(MlflowException, match="not found"):
        client.get_logged_model(older.model_id)


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_a_run_stopped_at_a_random_step_then_resumed_equals_an_uninterrupted_run(tmp_path: Path,
                                                                                tracking_settings,
                                                                                signum: int) -> None:
    # long enough per step (about 5 s of training on a quiet core) that a signal sent within a second of the
    # first stored loss always lands mid-run, however fast the machine
    long = (*TINY, "model=elman", "task.length=40", "model.hidden_size=32", "trainer.batch_size=32",
            f"trainer.steps={STEPS}", "trainer.eval_interval=50", "trainer.diagnostics_interval=700",
            "trainer.checkpoint_every=100")
    reference = app(tmp_path, tracking_settings, *long, "seed=1", experiment="reference")
    assert reference.returncode == 0, reference.stderr[-3000:]

    delay = random.Random().uniform(0.0, 1.0) + (0.5 if signum == signal.SIGKILL else 0.0)
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        process = subprocess.Popen(app_command(tracking_settings, *long, "seed=1"), env=app_env(tmp_path),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)
    signal_when_training(process, tracking_settings, stderr, delay=delay, poll=0.25, signum=signum)
    client = MlflowClient(tracking_settings.tracking_uri)
    (interrupted,) = runs_of(tracking_settings)
    run_id = interrupted.info.run_id
    stopped_at = max(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert 0 < stopped_at < STEPS, f"the signal (after {delay:.2f} s) missed the run"
    if signum == signal.SIGTERM:  # a checkpoint at the signal's step, the run ended KILLED
        assert process.returncode == 128 + signum and interrupted.info.status == "KILLED", stderr.read_text()
        # its description says where it stopped and gives the command that continues it
        note = interrupted.data.tags["mlflow.note.content"]
        assert note.startswith(f"**Stopped at step {stopped_at} of {STEPS}** (interrupted by SIGTERM)")
        overrides = app_command(tracking_settings, *long, "seed=1")[2:]
        assert note.endswith(f"`{shlex.join(['python', 'experiments/train.py', *overrides])} "
                             f"trainer.resume={run_id}`")
    else:  # no chance to react: its metric writer ends it, steps after the last periodic checkpoint logged
        assert process.returncode == -signum
        wait_for(lambda: reaped(client.get_run(run_id)), 10.0, "the writer's end of the run")

    resumed = app(tmp_path, tracking_settings, *long, "seed=1", f"trainer.resume={run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Downloading artifacts" not in resumed.stderr  # the checkpoint's download draws no progress bar
    (reference_run,) = runs_of(tracking_settings, "reference")
    (done,) = runs_of(tracking_settings)
    assert done.info.run_id == run_id and done.info.status == "FINISHED"
    # the stop's account (RunInterrupted, or the writer's reaped ending) went when the run went on
    assert "error" not in done.data.tags and "harness.reaped" not in done.data.tags
    resumed_from = int(done.data.tags["resumed_from_step"])
    if signum == signal.SIGTERM:
        assert resumed_from == stopped_at, "the checkpoint is the signal's step"
    else:
        assert resumed_from % 100 == 0 and resumed_from <= stopped_at
    assert histories(client, run_id) == histories(client, reference_run.info.run_id), resumed_from
    ours, theirs = weights(client, run_id, tmp_path / "a"), weights(client, reference_run.info.run_id,
                                                                       tmp_path / "b")
    assert all(np.array_equal(ours[name], theirs[name]) for name in theirs)


def test_early_stopping_run_logs_the_best_weights_says_so_and_keeps_the_last(tmp_path: Path,
                                                                           tracking_settings) -> None:
    early = ("trainer.early_stopping.patience=5", "trainer.early_stopping.min_delta=1e-3",
             "trainer.early_stopping.keep_last=true")
    objective = run(composed(*TINY, *store_overrides(tracking_settings), "trainer.progress=false",
                             "trainer.steps=3000", "trainer.eval_interval=10", "trainer.eval_batch_size=64",
                             "trainer.batch_size=32", "optimizer.lr=0.01", *early))
    (tracked,) = runs_of(tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    run_id = tracked.info.run_id
    stopped = int(tracked.data.metrics["stopped_step"])
    best_step = int(tracked.data.metrics["best_step"])
    accuracy = dict((m.step, m.value) for m in client.get_metric_history(run_id, "val/accuracy"))
    assert stopped < 3000 and stopped == max(accuracy) and best_step == stopped - 50
    assert objective == accuracy[best_step] == max(accuracy.values()) == tracked.data.metrics["objective"]
    assert tracked.data.tags["stopped_reason"].startswith(f"early stopping at step {stopped}: val/accuracy")
    assert tracked.data.tags["weights"] == f"best: {objective:.6g} at step {best_step}"
    best, last = weights(client, run_id, tmp_path / "best"), load_model(
        client.download_artifacts(run_id, "model_last.npz", str(tmp_path))).params
    assert any(not np.array_equal(best[name], last[name]) for name in best)


def test_a_tracked_run_starts_afresh_in_a_folder_a_tracking_off_run_checkpointed(tmp_path: Path,
                                                                                 tracking_settings) -> None:
    job = tmp_path / "job"
    offline = composed(*TINY, "tracking=off", "trainer.progress=false", "trainer.checkpoint_every=4")
    run(offline, output_dir=job)
    assert (job / "checkpoint.npz").is_file()
    run(composed(*TINY, *store_overrides(tracking_settings), "trainer.progress=false"), output_dir=job)
    (fresh,) = runs_of(tracking_settings)
    assert fresh.info.status == "FINISHED" and "resumed_from_step" not in fresh.data.tags
