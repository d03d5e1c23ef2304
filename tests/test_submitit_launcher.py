"""hydra/launcher=submitit_local and submitit_slurm (the hydra-submitit-launcher plugin's configs): a real
submitit sweep, each job a separate process started by submitit's local executor, on a temporary SQLite store
(conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_train_app import ROOT, TINY, app, app_env, runs_of


@pytest.mark.slow  # ~16 s
def test_submitit_local_sweep_nests_four_job_processes_under_one_parent(tmp_path: Path,
                                                                      tracking_settings) -> None:
    sweep_dir = tmp_path / "sweep"
    done = app(tmp_path, tracking_settings, "-m", *TINY, "seed=0,1,2,3", "hydra/launcher=submitit_local",
               f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_of(tracking_settings)
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    # the parent run id reached the job processes (the callback's env var and the sweep dir's file)
    assert (sweep_dir / "parent_run_id").read_text() == parent.info.run_id
    assert sorted(run.info.run_name for run in children) == [f"bit_sum-lstm-s{seed}" for seed in range(4)]
    assert len(runs) == 5 and {run.info.status for run in children} == {"FINISHED"}
    assert parent.info.status == "FINISHED" and parent.data.metrics["finished"] == 4.0
    # one submitit job folder per job: they really ran as submitit jobs
    assert len(list((sweep_dir / ".submitit").rglob("*_result.pkl"))) == 4
    client = MlflowClient(tracking_settings.tracking_uri)
    for run in children:
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 8


def test_submitit_slurm_config_maps_the_cluster_keys(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), "--cfg", "hydra", "-p",
               "hydra.launcher", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
               "hydra.launcher.timeout_min=90", "hydra.launcher.cpus_per_task=2", "hydra.launcher.mem_gb=8",
               "hydra.launcher.array_parallelism=16"]
    done = subprocess.run(command, capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in shown
    for line in ("partition: gpu", "timeout_min: 90", "cpus_per_task: 2", "mem_gb: 8",
                 "array_parallelism: 16"):
        assert f"\n{line}\n" in shown, line
