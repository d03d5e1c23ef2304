"""resume_sweep=<sweep parent run id> finishes a stopped study-app sweep (experiments/gradient_flow.py -m):
a job whose cells the store holds computes nothing, a job with some computes only the rest, and every job's
cells equal an uninterrupted sweep's exactly; bad input is one line before anything changes. Real Hydra
multiruns (subprocesses), real MLflow on a temporary SQLite store. A stopped sweep is made from a finished one
by deleting cell runs, leaving one half-written, and ending the parent KILLED, as a signal or a crash would
leave it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from test_resume import store_overrides
from test_sweep_continue import refused
from test_train_app import ROOT, app_env, runs_of

from harness.sweep_continuation import JOB_TAG
from harness.tracking import ensure_store
from harness.tracking.orphans import process_tags

# the cheapest study: 4 cells (v_f x T) per job, two jobs
SWEEP = ("-m", "study=closed_form", "closed_form.v_f=[0.5,1.5]", "closed_form.T=[4,8]",
         "closed_form.v_x=0.5,0.7")


def sweep(tmp_path: Path, settings, *args: str, experiment: str = "test") -> subprocess.CompletedProcess:
    """experiments/gradient_flow.py run from tmp_path on the store of settings."""
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "gradient_flow.py"), *SWEEP, *args,
                           *store_overrides(settings)[:2], f"tracking.experiment={experiment}"],
                          capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def parent_of(settings, experiment: str = "test"):
    (parent,) = [run for run in runs_of(settings, experiment) if "mlflow.parentRunId" not in run.data.tags]
    return parent


def cells(settings, experiment: str = "test") -> list:
    return [run for run in runs_of(settings, experiment) if run.data.tags.get("kind") == "cell"]


def numbers(settings, experiment: str = "test") -> dict[tuple[str, ...], list[dict[str, float]]]:
    """(job tag, v_f, T) -> the metrics of each finished cell run of it (one for a sweep that computed each
    cell once)."""
    return numbers_by(cells(settings, experiment), ("cell.v_f", "cell.T"))


def numbers_by(runs: list, keys: tuple[str, ...]) -> dict[tuple[str, ...], list[dict[str, float]]]:
    """(job tag, the tags keys) -> the metrics of each of the cell runs runs (all FINISHED) with them."""
    found: dict[tuple[str, ...], list[dict[str, float]]] = {}
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        found.setdefault((tags[JOB_TAG], *(tags[key] for key in keys)), []).append(run.data.metrics)
    return found


def test_a_stopped_study_sweep_continues_to_the_uninterrupted_numbers(tmp_path: Path,
                                                                      tracking_settings) -> None:
    sweep(tmp_path, tracking_settings, experiment="uninterrupted")
    reference = numbers(tracking_settings, "uninterrupted")
    sweep(tmp_path, tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    parent = parent_of(tracking_settings)
    jobs = sorted({run.data.tags[JOB_TAG] for run in cells(tracking_settings)})
    # job `stopped` lost two cells, one of them half-written (its run left KILLED); the other job finished
    stopped, finished = jobs
    kept = {run.info.run_id for run in cells(tracking_settings) if run.data.tags[JOB_TAG] == finished}
    for run in runs_of(tracking_settings):
        if run.data.tags.get("kind") == "summary" or (run.data.tags.get(JOB_TAG) == stopped
                                                      and run.data.tags["cell.T"] == "8"):
            client.delete_run(run.info.run_id)
    half = client.create_run(parent.info.experiment_id, run_name="closed_form-vf1.5-T8", tags={
        "mlflow.parentRunId": parent.info.run_id, "study": "closed_form", "kind": "cell", JOB_TAG: stopped,
        "cell.v_f": "1.5", "cell.T": "8"})
    client.set_terminated(half.info.run_id, "KILLED")
    client.set_terminated(parent.info.run_id, "KILLED")

    done = sweep(tmp_path, tracking_settings, f"resume_sweep={parent.info.run_id}")

    assert numbers(tracking_settings) == reference
    assert kept <= {run.info.run_id for run in cells(tracking_settings)}  # not computed again
    lines = done.stdout.splitlines()
    of = f"under sweep {parent.info.run_id}"
    said = dict(line.split(": ", 1) for line in lines if of in line)
    assert sorted(said) == ["job 0", "job 1"] and sorted(said.values()) == [
        f"2 of 4 cells finished before, {of}; computing the rest",
        f"4 of 4 cells finished before, {of}; not computed again"]
    # 8 cells and the summary run the sweep's end writes from the store
    report = f"sweep {parent.info.run_id}: 2 jobs (1 already finished, 1 continued), 9 runs (9 finished)"
    assert report in lines and "sweep summary:" not in done.stderr
    again = client.get_run(parent.info.run_id)
    assert again.info.status == "FINISHED" and again.data.tags["harness.continued"] == "1"
    assert (again.data.metrics["jobs_already_finished"], again.data.metrics["jobs_continued"]) == (1.0, 1.0)


def test_a_stopped_study_sweep_names_its_resume_sweep_command(tmp_path: Path, tracking_settings) -> None:
    """Ctrl-C on a study sweep: its parent's error tag and the printed account give resume_sweep=<its id>."""
    slow = ("-m", "study=remedies", "remedies.method=[sgd_clip]", "remedies.T=[5,10]",
            "remedies.steps=100000", "remedies.hidden_size=4", "remedies.seed=[0],[1]",
            *store_overrides(tracking_settings)[:2], "tracking.experiment=test")
    process = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "gradient_flow.py"), *slow],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=app_env(tmp_path), cwd=tmp_path)
    try:
        wait_for_parent(tracking_settings)
        process.send_signal(signal.SIGINT)
        out = process.communicate(timeout=60)[0]
    finally:
        process.kill()
    parent = parent_of(tracking_settings)
    why = (f"stopped by SIGINT; the sweep's command with resume_sweep={parent.info.run_id} completes it")
    assert parent.info.status == "KILLED"
    assert parent.data.tags["error"] == f"the sweep stopped before its end ({why})"
    assert f"  the sweep stopped before its end ({why})\n" in out
    # and the command to copy: this one, resume_sweep added
    command = shlex.join(["python", str(ROOT / "experiments" / "gradient_flow.py"), *slow,
                          f"resume_sweep={parent.info.run_id}"])
    assert f"  to complete it: {command}\n" in out
    assert f"\n\nTo complete it: `{command}`\n\n" in parent.data.tags["mlflow.note.content"]


def wait_for_parent(settings) -> None:
    """Until the sweep's parent run exists (its jobs start right after)."""
    deadline = time.monotonic() + 60
    while not [run for run in runs_of(settings) if "mlflow.parentRunId" not in run.data.tags]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_bad_study_sweep_continuations_are_refused_in_one_line(tmp_path: Path, tracking_settings) -> None:
    sweep(tmp_path, tracking_settings)
    parent, cell = parent_of(tracking_settings), cells(tracking_settings)[0]
    key = "config error: resume_sweep"
    script = {"script": "gradient_flow.py"}
    test = "tracking.experiment=test"
    assert refused(tmp_path, tracking_settings, *SWEEP, test, f"resume_sweep={cell.info.run_id}",
                   **script) == (
        f"{key}: run {cell.info.run_id} ({cell.info.run_name}) is not the parent run of a gradient_flow.py "
        f"sweep; allowed: a sweep parent's run id (<sweep dir>/parent_run_id)")
    assert refused(tmp_path, tracking_settings, "study=closed_form", test,
                   f"resume_sweep={parent.info.run_id}", **script) == (
        f"{key} continues a sweep: run the sweep's command again with -m and resume_sweep=<its parent run "
        f"id>")
    client, experiment_id = ensure_store(tracking_settings)
    running = client.create_run(experiment_id, run_name="00:00:00 gradient_flow-sweep v_x",
                                tags={**process_tags(), "harness.swept_keys": "closed_form.v_x"}).info.run_id
    assert refused(tmp_path, tracking_settings, *SWEEP, test, f"resume_sweep={running}", **script).startswith(
        f"{key}: sweep {running} is still running (process {os.getpid()} on ")
    client.set_terminated(running, "KILLED")
