"""experiments/train.py end to end: real subprocesses, real Hydra (basic and joblib launchers), real MLflow on
a temporary SQLite store (tests/conftest.py)."""

from __future__ import annotations

import getpass
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from harness.nn import load_model
from harness.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
TINY = ["task=bit_sum", "task.length=6", "model.hidden_size=4", "trainer.steps=8", "trainer.batch_size=4",
        "trainer.eval_interval=4", "trainer.eval_batch_size=16", "trainer.diagnostics_interval=4",
        "trainer.diagnostics_batch_size=4"]


def app_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an app process: Hydra's folders under tmp_path, no inherited store or sweep."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    env["HARNESS_PROJECT_ROOT"] = str(tmp_path)
    return env


def app_command(settings, *args: str, experiment: str = "test") -> list[str]:
    return [sys.executable, str(ROOT / "experiments" / "train.py"), *args,
            f"tracking.uri={settings.tracking_uri}", f"tracking.artifact_root={settings.artifact_root}",
            f"tracking.experiment={experiment}"]


def app(tmp_path: Path, settings, *args: str, experiment: str = "test") -> subprocess.CompletedProcess:
    """Run experiments/train.py from tmp_path on the store of settings."""
    return subprocess.run(app_command(settings, *args, experiment=experiment), capture_output=True, text=True,
                          env=app_env(tmp_path), cwd=tmp_path, timeout=300)


def runs_of(settings, experiment: str = "test") -> list:
    client = MlflowClient(settings.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_single_run_records_params_metrics_artifacts_and_tags(tmp_path: Path, tracking_settings) -> None:
    done = app(tmp_path, tracking_settings, *TINY, "model=elman", "seed=2")
    assert done.returncode == 0, done.stderr
    (run,) = runs_of(tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    assert (run.info.run_name, run.info.status) == ("bit_sum-elman-s2", "FINISHED")
    # the terminal tells the result: name and id, the metric by name next to its chance level, the verdict
    value, solved = run.data.metrics["val/accuracy"], run.data.metrics["solved"]
    verdict = "solved" if solved else "not solved"
    chance = make_task("bit_sum", length=6).chance()["accuracy"]  # a predictor that ignores the inputs
    assert done.stdout.splitlines()[-3:] == [
        f"run bit_sum-elman-s2 ({run.info.run_id})",
        f"validation accuracy {value:.4g} (chance level {chance:.4g}; higher is better): {verdict} "
        f"(accuracy {value:.4g}; rule: accuracy >= 0.99)",
        f"in the MLflow UI: http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
        f"  (start it with: python -m harness.ui --uri {tracking_settings.tracking_uri})",
    ]
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**bit_sum** (length=6, held_out=0.2) learned by **elman** (hidden size 4) with "
                           "adam")
    assert f"**Result: {verdict}.**" in note and f"ignores the inputs) {chance:.4g}" in note
    assert (run.data.tags["chance_level"], run.data.tags["solved_rule"]) == (str(chance), "accuracy >= 0.99")
    params = run.data.params
    assert params["task.length"] == "6" and params["model.hidden_size"] == "4" and params["seed"] == "2"
    assert params["optimizer.name"] == "adam" and params["trainer.steps"] == "8"
    for key in ("train/loss", "train/grad_norm", "train/clipped", "train/step_size", "grad_norm/W_hh"):
        assert [step for step, _ in history(client, run.info.run_id, key)] == list(range(1, 9)), key
    assert [step for step, _ in history(client, run.info.run_id, "val/accuracy")] == [0, 4, 8]
    assert run.data.metrics["diverged"] == 0.0 and run.data.metrics["steps_done"] == 8.0
    assert run.data.metrics["objective"] == run.data.metrics["val/accuracy"]
    tags = run.data.tags
    assert (tags["task"], tags["model"], tags["seed"]) == ("bit_sum", "elman", "2")
    assert "trainer.steps=8" in tags["overrides"] and "seed=2" in tags["overrides"]
    assert len(tags["dataset_fingerprint"]) == 64
    (dataset,) = run.inputs.dataset_inputs  # the validation set, shown as such in the UI
    assert dataset.dataset.name == "bit_sum-validation"
    assert {t.key: t.value for t in dataset.tags} == {"mlflow.data.context": "validation",
                                                      "fingerprint": tags["dataset_fingerprint"]}
    assert "mlflow.source.git.commit" in tags
    # the UI's Source and User columns
    assert (tags["mlflow.source.name"], tags["mlflow.source.type"]) == ("experiments/train.py", "LOCAL")
    assert tags["mlflow.user"] == getpass.getuser()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "model.npz", "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/loss.png", "figures/grad_norm.png", "figures/grad_flow_steps.png"} <= figures
    weights = client.download_artifacts(run.info.run_id, "model.npz", str(tmp_path))
    assert load_model(weights).hidden_size == 4
    # Hydra's own folders live under <project>/mlruns/hydra; the working directory gets no outputs/
    assert (tmp_path / "mlruns" / "hydra" / "runs").is_dir()
    assert stat.S_IMODE((tmp_path / "mlruns" / "hydra").stat().st_mode) == 0o700  # private, as the store
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(("override", "expected"), [
    ("model.hidden_size=abc", "config error: model.hidden_size must be an integer >= 1, got 'abc'"),
    ("optimizer.lr=-1", "config error: optimizer.lr must be a number > 0, got -1"),
    ("model=elmn", "config error: In 'config': Could not find 'model/elmn'; Available options in 'model': "
                   "bidirectional, elman, gru, irnn, jordan, linear, lstm"),
    ("trainer.stesp=5", "config error: unknown key 'trainer.stesp'; allowed: ['batch_size', "
                        "'checkpoint_every'"),
    ("task.lenght=20", "config error: unknown key 'task.lenght'; allowed: ['held_out', 'length', 'name']; "
                       "did you mean 'task.length'?"),
])
def test_bad_config_exits_with_one_line_and_no_run(tmp_path: Path, tracking_settings, override: str,
                                                  expected: str) -> None:
    done = app(tmp_path, tracking_settings, *TINY, override)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(expected)
    assert runs_of(tracking_settings) == []


def sweep_metrics(settings, experiment: str) -> tuple[list, dict[str, dict[str, list]]]:
    """(parent runs, run name -> metric key -> history) of a finished sweep."""
    client = MlflowClient(settings.tracking_uri)
    runs = runs_of(settings, experiment)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = {run.info.run_name: run for run in runs if "mlflow.parentRunId" in run.data.tags}
    return parents, {name: {key: history(client, run.info.run_id, key) for key in run.data.metrics}
                     for name, run in children.items()}


def test_joblib_multirun_nests_four_jobs_and_matches_the_basic_launcher(tmp_path: Path, tracking_settings,
                                                                       monkeypatch) -> None:
    sweep = ["-m", *TINY, "seed=0,1", "model=elman,gru"]
    # MLflow's progress bars on, as a user may set them: their tqdm lock, made in a worker's metric writer,
    # was reported by the resource tracker at the sweep's end as a leaked semaphore (writer._serve)
    with monkeypatch.context() as env:
        env.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
        parallel = app(tmp_path, tracking_settings, *sweep, "hydra/launcher=joblib",
                       f"hydra.sweep.dir={tmp_path}/sweeps/joblib", experiment="joblib")
    assert parallel.returncode == 0, parallel.stderr
    assert "Downloading artifacts" in parallel.stderr and "resource_tracker" not in parallel.stderr
    sequential = app(tmp_path, tracking_settings, *sweep, f"hydra.sweep.dir={tmp_path}/sweeps/basic",
                     experiment="basic")
    assert sequential.returncode == 0, sequential.stderr

    parents, joblib_runs = sweep_metrics(tracking_settings, "joblib")
    (parent,) = parents
    assert sorted(joblib_runs) == ["bit_sum-elman-s0", "bit_sum-elman-s1", "bit_sum-gru-s0", "bit_sum-gru-s1"]
    children = [run for run in runs_of(tracking_settings, "joblib") if run.info.run_id != parent.info.run_id]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    assert {run.info.status for run in children} == {"FINISHED"}
    assert sorted(run.data.tags["job_num"] for run in children) == ["0", "1", "2", "3"]
    # the workers' argv is loky's: the source is still the command's script
    assert {run.data.tags["mlflow.source.name"] for run in [parent, *children]} == {"experiments/train.py"}
    assert parent.info.status == "FINISHED" and parent.data.metrics["finished"] == 4.0
    # same config + seed -> bit-identical numbers, whatever the launcher
    _, basic_runs = sweep_metrics(tracking_settings, "basic")
    assert basic_runs == joblib_runs
    assert joblib_runs["bit_sum-elman-s0"]["train/loss"] != joblib_runs["bit_sum-elman-s1"]["train/loss"]


def test_sweep_goes_on_past_diverging_jobs(tmp_path: Path, tracking_settings) -> None:
    done = app(tmp_path, tracking_settings, "-m", *TINY, "task=reversal", "task.length=4", "model=linear",
               "optimizer=sgd", "optimizer.lr=1e6,0.01")
    assert done.returncode == 0, done.stderr
    children = [run for run in runs_of(tracking_settings) if "mlflow.parentRunId" in run.data.tags]
    # run names carry the swept values that differ (model and seed are in every name anyway)
    names = sorted(run.info.run_name for run in children)
    assert names == ["reversal-lr0.01-linear-s0", "reversal-lr1000000.0-linear-s0"]
    by_lr = {run.data.params["optimizer.lr"]: run for run in children}
    assert sorted(by_lr) == ["0.01", "1000000.0"]
    diverged = by_lr["1000000.0"]
    assert diverged.info.status == "FINISHED" and diverged.data.metrics["diverged"] == 1.0
    assert diverged.data.metrics["diverged_step"] >= 1 and np.isnan(diverged.data.metrics["objective"])
    assert by_lr["0.01"].data.metrics["diverged"] == 0.0
    # the sweep's results as a table, in job order: printed at its end and in the parent's description
    (parent,) = [run for run in runs_of(tracking_settings) if "mlflow.parentRunId" not in run.data.tags]
    step = f"{diverged.data.metrics['diverged_step']:.0f}"
    value = f"{by_lr['0.01'].data.metrics['objective']:.4g}"
    table = "\n".join([
        "| job | run | optimizer.lr | status | steps | val sequence_accuracy | solved |", "|" + "---|" * 7,
        f"| 0 | reversal-lr1000000.0-linear-s0 | 1000000.0 | finished | {int(step) - 1} | diverged at step "
        f"{step} | no |", f"| 1 | reversal-lr0.01-linear-s0 | 0.01 | finished | 8 | {value} | no |"])
    assert parent.data.tags["mlflow.note.content"].endswith(table)
    assert table in done.stdout


def signal_when_training(process: subprocess.Popen, settings, stderr: Path, *, delay: float = 0.0,
                         poll: float = 2.0, signum: int = signal.SIGTERM) -> None:
    """Send signum to process delay seconds after its run's first train/loss reaches the store, wait for it
    to end (kill it if it does not). Few reads (poll seconds apart): a reader can hold the SQLite lock a
    writer waits for."""
    client = MlflowClient(settings.tracking_uri)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = runs_of(settings)
            if runs and client.get_metric_history(runs[0].info.run_id, "train/loss"):
                break
            assert process.poll() is None, stderr.read_text()
            time.sleep(poll)
        time.sleep(delay)
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_leaves_the_run_killed_with_its_metrics(tmp_path: Path, tracking_settings) -> None:
    command = app_command(tracking_settings, *TINY, "trainer.steps=1000000", "trainer.eval_interval=1000",
                          "trainer.diagnostics_interval=0")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        process = subprocess.Popen(command, env=app_env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=sink)
    client = MlflowClient(tracking_settings.tracking_uri)
    signal_when_training(process, tracking_settings, stderr)
    assert process.returncode == 128 + signal.SIGTERM, stderr.read_text()[-3000:]
    (run,) = runs_of(tracking_settings)
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 1


@pytest.mark.parametrize(("sweep", "expected"), [
    (["model=elman,elmn"], "config error: job 1 (model=elmn): In 'config': Could not find 'model/elmn'"),
    (["task=reversal", "model=linear,jordan"], "config error: job 1 (model=jordan): model.mode must be one"),
])
def test_sweep_with_one_bad_job_is_refused_whole_before_any_run(tmp_path: Path, tracking_settings,
                                                                sweep: list[str], expected: str) -> None:
    done = app(tmp_path, tracking_settings, "-m", *TINY, *sweep)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert runs_of(tracking_settings) == []


@pytest.mark.slow
def test_eight_job_joblib_sweep_on_an_empty_store_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "fresh" / "mlflow.db"  # no template: the sweep itself creates the schema
    uri = f"sqlite:///{store}"
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), "-m", *TINY, "model=elman",
               "seed=0,1,2,3,4,5,6,7",
               "hydra/launcher=joblib", f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path / 'art'}",
               "tracking.experiment=test"]
    done = subprocess.run(command, capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(runs) == 9 and len(children) == 8
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in children:
        for key in ("train/loss", "train/grad_norm", "grad_norm/W_hh"):
            assert [step for step, _ in history(client, run.info.run_id, key)] == list(range(1, 9)), key
