"""trainer.resume_sweep end to end: a sweep stopped by a signal, then continued by its command with the one
override, equals an uninterrupted sweep bit for bit (basic and joblib launchers); finished jobs are not
trained again, killed ones continue their runs, a grown grid runs only its new points, and every bad input
is one line before anything is created or reopened. Real Hydra multiruns (experiments/train.py
subprocesses), real MLflow on temporary SQLite stores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from test_configs import composed
from test_resume import histories, store_overrides, weights
from test_sweep_signals import children_of, start, wait_for
from test_train_app import ROOT, TINY, app, app_env, runs_of

from harness.config import ConfigError
from harness.run import run
from harness.sweep_continuation import PLAN_FILE
from harness.tracking import TrackingSettings, ensure_store
from harness.tracking.orphans import RERUN_TAG, process_tags
from harness.ui import ui_hint

# about a second of training per job: a signal sent once a job's first losses are stored lands mid-run
SWEEP = (*TINY, "model=elman", "trainer.steps=3000", "trainer.eval_interval=500",
         "trainer.diagnostics_interval=1000", "trainer.checkpoint_every=500", "trainer.progress=false",
         "seed=0,1,2,3")


def numbers(client: MlflowClient, parent_id: str, folder: Path) -> dict[str, tuple]:
    """Run name -> (status, every metric history, final weights) of the sweep's children not re-run."""
    parent = client.get_run(parent_id)
    found = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: (run.info.status, histories(client, run.info.run_id),
                                weights(client, run.info.run_id, folder / run.info.run_id))
            for run in found if RERUN_TAG not in run.data.tags}


def same(ours: dict[str, tuple], theirs: dict[str, tuple]) -> bool:
    return ours.keys() == theirs.keys() and all(
        ours[name][:2] == theirs[name][:2]
        and all(np.array_equal(ours[name][2][k], theirs[name][2][k]) for k in theirs[name][2])
        for name in theirs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, template_store: Path) -> dict[str, tuple]:
    """The numbers of the sweep SWEEP uninterrupted (basic launcher), in a store of its own."""
    folder = tmp_path_factory.mktemp("reference")
    shutil.copyfile(template_store, folder / "mlflow.db")
    settings = TrackingSettings(mode="local", uri=f"sqlite:///{folder / 'mlflow.db'}", experiment="test",
                                artifact_root=str(folder / "artifacts"))
    done = app(folder, settings, "-m", *SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), _ = children_of(settings)
    return numbers(MlflowClient(settings.tracking_uri), parent.info.run_id, folder / "weights")


def stop_mid_sweep(command: list[str], tmp_path: Path, settings, signum: int) -> None:
    """Start the sweep command and send signum to its launching process once its second job has stored
    losses (SIGKILL: past its first periodic checkpoint, step 500, so that it can continue from there)."""
    process, stderr = start(command, tmp_path)
    client = MlflowClient(settings.tracking_uri)
    needed = 600 if signum == signal.SIGKILL else 1
    try:
        def training() -> bool:
            _, children = children_of(settings)
            return len(children) == 2 and all(
                max((m.step for m in client.get_metric_history(run.info.run_id, "train/loss")), default=0)
                >= (needed if run.info.status == "RUNNING" else 1) for run in children)
        deadline = time.monotonic() + 300
        while not training():
            assert process.poll() is None, stderr.read_text()[-3000:]
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)
        process.send_signal(signum)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    expected = -signum if signum == signal.SIGKILL else 128 + signum
    assert process.returncode == expected, stderr.read_text()[-3000:]


@pytest.mark.parametrize(("launcher", "signum"), [
    pytest.param("basic", signal.SIGTERM, id="basic-SIGTERM"),
    pytest.param("joblib", signal.SIGTERM, id="joblib-SIGTERM", marks=pytest.mark.slow),  # ~30 s
    # the launcher's metric writer ends the parent and the job's run (reaped); ~35 s
    pytest.param("basic", signal.SIGKILL, id="basic-SIGKILL", marks=pytest.mark.slow),
])
def test_a_stopped_sweep_continued_equals_an_uninterrupted_one(tmp_path: Path, tracking_settings,
                                                               reference: dict, launcher: str,
                                                               signum: int) -> None:
    # basic: job 0 finishes, job 1 is stopped mid-run; joblib (2 workers): jobs 0 and 1 are stopped, the
    # second mid-run, the first maybe after its last step or (on a loaded machine) once done, when job 2
    # may have started
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), "-m", *SWEEP, *extra,
               *store_overrides(tracking_settings)]
    stop_mid_sweep(command, tmp_path, tracking_settings, signum)
    client = MlflowClient(tracking_settings.tracking_uri)
    if signum == signal.SIGKILL:
        wait_for(lambda: "RUNNING" not in {run.info.status for run in runs_of(tracking_settings)}, 20.0,
                 "the metric writer's end of the parent and of the job's run")
    (parent,), children = children_of(tracking_settings)
    assert parent.info.status == "KILLED"
    before = {run.info.run_id: run for run in children}
    finished = sum(run.info.status == "FINISHED" for run in children)
    killed = sum(run.info.status == "KILLED" for run in children)
    assert finished + killed == len(children) and killed >= 1
    if launcher == "basic":
        assert (finished, killed) == (1, 1)

    continued = app(tmp_path, tracking_settings, "-m", *SWEEP, *extra,
                    f"trainer.resume_sweep={parent.info.run_id}")
    assert continued.returncode == 0, continued.stderr[-3000:]
    counts = [(finished, "already finished"), (killed, "continued"), (4 - finished - killed, "run")]
    jobs = ", ".join(f"{count} {label}" for count, label in counts if count)
    report = f"sweep {parent.info.run_id}: 4 jobs ({jobs}), 4 runs (4 finished)"
    assert report in continued.stdout.splitlines()
    # a grid sweep ends, after its table of runs, with its parent's page in the UI
    assert continued.stdout.splitlines()[-1] == ui_hint(tracking_settings.tracking_uri,
                                                         (parent.info.experiment_id, parent.info.run_id))
    (again,), children = children_of(tracking_settings)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert "error" not in again.data.tags and again.data.tags["harness.continued"] == "1"
    note = again.data.tags["mlflow.note.content"]  # the report and the table of all four runs, no stop
    assert note.startswith(f"**Sweep: 4 jobs ({jobs}), 4 runs (4 finished).**\n\n| job | run | seed |")
    assert note.count(" | finished | 3000 | ") == 4, note
    assert again.data.metrics["jobs_continued"] == killed and again.data.metrics["finished"] == 4.0
    resumed = []
    for child in children:
        earlier = before.get(child.info.run_id)
        if earlier is not None and earlier.info.status == "FINISHED":  # not trained again
            assert (child.info.end_time, child.data.metrics) == (earlier.info.end_time, earlier.data.metrics)
        elif earlier is not None:  # continued from its checkpoint; its stop's error is gone
            resumed.append(int(child.data.tags["resumed_from_step"]))
            assert "error" not in child.data.tags and "harness.reaped" not in child.data.tags
    # the job whose losses were awaited was stopped mid-run (SIGKILL: it continues from a periodic one)
    assert len(resumed) == killed and 0 < min(resumed) < 3000
    if signum == signal.SIGKILL:
        assert all(step % 500 == 0 for step in resumed)
    assert same(numbers(client, parent.info.run_id, tmp_path / "weights"), reference)


def test_a_grown_grid_runs_only_its_new_points_and_a_failed_job_again(tmp_path: Path,
                                                                       tracking_settings) -> None:
    tiny = (*TINY, "trainer.progress=false")
    done = app(tmp_path, tracking_settings, "-m", *tiny, "seed=0,1")
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = children_of(tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    by_name = {run.info.run_name: run for run in children}
    client.set_terminated(by_name["bit_sum-lstm-s1"].info.run_id, "FAILED")  # as a job that raised
    parent_id = parent.info.run_id

    grown = app(tmp_path, tracking_settings, "-m", *tiny, "seed=0,1,2", f"trainer.resume_sweep={parent_id}")
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert (f"sweep {parent_id}: 3 jobs (1 already finished, 2 run), 4 runs (3 finished, 1 re-run)"
            in grown.stdout.splitlines())
    (_,), children = children_of(tracking_settings)
    kept = client.get_run(by_name["bit_sum-lstm-s0"].info.run_id)
    assert kept.info.end_time == by_name["bit_sum-lstm-s0"].info.end_time
    failed = client.get_run(by_name["bit_sum-lstm-s1"].info.run_id)
    assert failed.info.status == "FAILED" and failed.data.tags[RERUN_TAG].startswith("continued sweep: job 1")
    assert sorted(run.info.run_name for run in children if run.info.status == "FINISHED") == [
        "bit_sum-lstm-s0", "bit_sum-lstm-s1", "bit_sum-lstm-s2"]
    plan = json.loads(next((tmp_path / "mlruns" / "hydra" / "multiruns").glob(f"*/{PLAN_FILE}")).read_text())
    assert [job["action"] for job in plan["jobs"].values()] == ["finished", "new", "new"]
    # the table of runs shows each job once: the replaced FAILED attempt is superseded, as the counts say
    rows = [line for line in grown.stdout.splitlines() if line.startswith("| ") and "bit_sum-lstm-s" in line]
    assert [row.split(" | ")[1] for row in rows] == ["bit_sum-lstm-s0", "bit_sum-lstm-s1", "bit_sum-lstm-s2"]
    assert all(" | finished | " in row for row in rows)


def refused(tmp_path: Path, settings, *args: str, script: str = "train.py") -> str:
    """The one line an app refuses args with; nothing changed in the store."""
    before = [(run.info.run_id, run.info.status, run.info.end_time) for run in runs_of(settings)]
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args,
                           *store_overrides(settings)[:2]], capture_output=True, text=True,
                          env=app_env(tmp_path), cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert [(run.info.run_id, run.info.status, run.info.end_time) for run in runs_of(settings)] == before
    return lines[0]


def test_bad_continuations_are_refused_in_one_line_before_any_run_changes(tmp_path: Path,
                                                                           tracking_settings) -> None:
    tiny = (*TINY, "trainer.progress=false", "tracking.experiment=test")
    done = app(tmp_path, tracking_settings, "-m", *tiny, "seed=0")
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), (child,) = children_of(tracking_settings)
    key = "config error: trainer.resume_sweep"

    assert refused(tmp_path, tracking_settings, "-m", *tiny, f"trainer.resume_sweep={child.info.run_id}") == (
        f"{key}: run {child.info.run_id} ({child.info.run_name}) is not the parent run of a train.py sweep; "
        f"allowed: a sweep parent's run id (<sweep dir>/parent_run_id)")
    assert refused(tmp_path, tracking_settings, "-m", *tiny, "trainer.resume_sweep=0123abc").startswith(
        f"{key}: no run '0123abc' in this store")
    other = refused(tmp_path, tracking_settings, "-m", *TINY, "tracking.experiment=other",
                    f"trainer.resume_sweep={parent.info.run_id}")
    assert other == (f"{key}: run {parent.info.run_id} is in experiment 'test', not in this sweep's; set "
                     f"tracking.experiment=test as the sweep had it")
    assert refused(tmp_path, tracking_settings, "-m", *tiny, "tracking=off",
                   f"trainer.resume_sweep={parent.info.run_id}").startswith(f"{key} needs the tracking store")
    optuna = ("hydra/sweeper=optuna", "optimizer.lr=interval(1e-3,1e-2)")
    assert refused(tmp_path, tracking_settings, "-m", *tiny, *optuna,
                   f"trainer.resume_sweep={parent.info.run_id}").startswith(
        f"{key} continues grid sweeps (the basic sweeper); an Optuna search resumes by its study's name")
    assert refused(tmp_path, tracking_settings, "-m", "study=closed_form",
                   f"trainer.resume_sweep={parent.info.run_id}", script="gradient_flow.py") == (
        f"{key} continues sweeps of experiments/train.py only; a study app's sweep continues with "
        f"resume_sweep=<its parent run id>")

    # a sweep whose launcher still runs (here: this test process)
    client, experiment_id = ensure_store(tracking_settings)
    running = client.create_run(experiment_id, run_name="train-sweep-now",
                                tags={**process_tags(), "harness.swept_keys": "seed"}).info.run_id
    assert refused(tmp_path, tracking_settings, "-m", *tiny, f"trainer.resume_sweep={running}").startswith(
        f"{key}: sweep {running} is still running (process {os.getpid()} on ")
    client.set_terminated(running, "KILLED")

    # without -m, and with trainer.resume: before any run is reopened, in the run itself
    single = composed(*TINY, *store_overrides(tracking_settings),
                      f"trainer.resume_sweep={parent.info.run_id}")
    with pytest.raises(ConfigError, match=r"^trainer.resume_sweep continues a sweep: run the sweep's command "
                                          r"again with -m and trainer.resume_sweep=<its parent run id>$"):
        run(single)
    single["trainer"]["resume"] = child.info.run_id
    with pytest.raises(ConfigError, match=r"^trainer.resume: not with trainer.resume_sweep"):
        run(single)
    assert [(run.info.run_id, run.info.status) for run in runs_of(tracking_settings)] == [
        (running, "KILLED"), (child.info.run_id, "FINISHED"), (parent.info.run_id, "FINISHED")]


def test_a_continuation_of_a_store_that_does_not_exist_is_refused_without_creating_it(tmp_path: Path) -> None:
    mlruns = tmp_path / "mlruns"  # a fresh checkout's: no mlflow.db yet
    mlruns.mkdir()
    settings = TrackingSettings(mode="local", uri=f"sqlite:///{mlruns / 'mlflow.db'}", experiment="test",
                                artifact_root=str(mlruns / "artifacts"))
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "-m", *TINY,
                           "trainer.resume_sweep=0123abc", *store_overrides(settings)], capture_output=True,
                          text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        "config error: trainer.resume_sweep: no run '0123abc' in this store; give the sweep parent's run id "
        "(the sweep printed it; also in <sweep dir>/parent_run_id)"]
    # before: mlflow.db, its lock and the artifact root were created for the lookup
    assert sorted(path.name for path in mlruns.iterdir()) == ["hydra"]
