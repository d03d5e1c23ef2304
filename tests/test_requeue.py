"""Interrupted jobs of the parallel and cluster launchers continue bit-identically: a joblib job stopped by
SIGTERM and resumed with trainer.resume, and a submitit_local job sent submitit's requeue signal (SIGUSR2),
requeued by submitit's checkpointing protocol and resumed from its checkpoint into the same MLflow run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from test_resume import STEPS, histories, weights
from test_train_app import TINY, app, app_command, app_env, runs_of

# long enough per step that a signal sent within a second of the first stored loss lands mid-run
LONG = (*TINY, "model=elman", "task.length=40", "model.hidden_size=32", "trainer.batch_size=32",
        f"trainer.steps={STEPS}", "trainer.eval_interval=50", "trainer.diagnostics_interval=700")


def descendants(pid: int) -> list[tuple[int, str, int, int]]:
    """(pid, command line, CPU ticks used, parent pid) of every process below pid, read from /proc."""
    parents: dict[int, int] = {}
    details: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        details[int(entry.name)] = (command, int(fields[11]) + int(fields[12]))  # utime + stime
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += [(child, *details[child], current) for child in children]
        frontier += children
    return found


def sweep_with_signal(tmp_path: Path, settings, args: tuple[str, ...], marker: str, signum: int
                      ) -> tuple[int, str]:
    """Start a sweep; once its child run has logged train/loss, wait a random moment and send signum to the
    job's process (the busiest descendant whose command line contains marker, and whose parent's does not:
    idle pool workers use no CPU, and the job's metric writer, forked with its command line, can use more
    than the job: it did on 2026-12-03's machine, took the signal, and the run finished); returns the
    sweep's exit code and stderr."""
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        process = subprocess.Popen(app_command(settings, "-m", *LONG, "seed=1", *args), env=app_env(tmp_path),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)
    client = MlflowClient(settings.tracking_uri)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = [run for run in runs_of(settings) if "mlflow.parentRunId" in run.data.tags]
            if runs and client.get_metric_history(runs[0].info.run_id, "train/loss"):
                break
            assert process.poll() is None, stderr.read_text()[-3000:]
            time.sleep(0.25)
        time.sleep(random.Random().uniform(0.0, 1.0))
        below = descendants(process.pid)
        marked = {pid for pid, command, _, _ in below if marker in command}
        jobs = [(ticks, pid) for pid, _, ticks, parent in below if pid in marked and parent not in marked]
        assert jobs, descendants(process.pid)
        os.kill(max(jobs)[1], signum)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr.read_text()


def reference_history(tmp_path: Path, settings) -> tuple[dict, dict]:
    done = app(tmp_path, settings, *LONG, "seed=1", experiment="reference")
    assert done.returncode == 0, done.stderr[-3000:]
    (reference,) = runs_of(settings, "reference")
    client = MlflowClient(settings.tracking_uri)
    return histories(client, reference.info.run_id), weights(client, reference.info.run_id, tmp_path / "ref")


def assert_same_run(client: MlflowClient, run_id: str, expected: tuple[dict, dict], folder: Path) -> None:
    assert histories(client, run_id) == expected[0]
    ours = weights(client, run_id, folder)
    assert all(np.array_equal(ours[name], value) for name, value in expected[1].items())


@pytest.mark.slow  # ~1.5 min on 2 loaded cores: three app processes and a loky pool
def test_joblib_job_stopped_by_sigterm_resumes_bit_identically(tmp_path: Path, tracking_settings) -> None:
    expected = reference_history(tmp_path, tracking_settings)
    joblib = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    _, stderr = sweep_with_signal(tmp_path, tracking_settings, joblib, "loky", signal.SIGTERM)
    (child,) = [run for run in runs_of(tracking_settings) if "mlflow.parentRunId" in run.data.tags]
    assert child.info.status == "KILLED", stderr[-3000:]
    client = MlflowClient(tracking_settings.tracking_uri)
    stopped_at = max(m.step for m in client.get_metric_history(child.info.run_id, "train/loss"))
    assert 0 < stopped_at < STEPS

    resumed = app(tmp_path, tracking_settings, "-m", *LONG, "seed=1", "hydra/launcher=joblib",
                  f"trainer.resume={child.info.run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = client.get_run(child.info.run_id)
    assert again.info.status == "FINISHED" and again.data.tags["resumed_from_step"] == str(stopped_at)
    assert_same_run(client, child.info.run_id, expected, tmp_path / "ours")


@pytest.mark.slow  # ~1.5 min: a reference run, a submitit job and its requeued attempt
def test_submitit_local_job_requeued_after_its_signal_resumes_into_the_same_run(tmp_path: Path,
                                                                               tracking_settings) -> None:
    expected = reference_history(tmp_path, tracking_settings)
    sweep_dir = tmp_path / "sweep"
    code, stderr = sweep_with_signal(tmp_path, tracking_settings, ("hydra/launcher=submitit_local",
                                                                   f"hydra.sweep.dir={sweep_dir}"),
                                     "submitit.core._submit", signal.SIGUSR2)
    assert code == 0, stderr[-3000:]
    runs = runs_of(tracking_settings)
    (child,) = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert child.info.status == "FINISHED" and 0 < int(child.data.tags["resumed_from_step"]) < STEPS
    assert parent.info.status == "FINISHED" and parent.data.metrics["finished"] == 1.0
    logs = "".join(path.read_text() for path in (sweep_dir / ".submitit").rglob("*_log.out"))
    assert "Calling checkpoint method" in logs and "Requeued job" in logs, logs[-3000:]  # submitit's protocol
    client = MlflowClient(tracking_settings.tracking_uri)
    assert_same_run(client, child.info.run_id, expected, tmp_path / "ours")
