"""A joblib sweep whose worker process dies (SIGKILL, what the out-of-memory killer sends) fails that job
alone: the jobs loky tears down with the pool, and those not started, run in a fresh pool. Real processes, a
real SIGKILL, real Hydra multirun with harness.joblib_launcher and real MLflow on a temporary SQLite store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from omegaconf import OmegaConf
from test_sweep_signals import child_processes, children_of, ended_at_exit, gone, started_sweep, wait_for
from test_train_app import ROOT, TINY, app, app_command, app_env, history, runs_of

from harness.joblib_launcher import TornDown, WorkerDied, exit_description, reported_exit_codes
from harness.tracking import ensure_store
from harness.tracking.orphans import REAPED_TAG, end_lost, ending_lock, reaped

# Job 0 trains until it is killed; job 1 (3000 steps, a few seconds) has just started when job 0's worker
# dies, so loky tears it down; jobs 2 and 3 have not started. No periodic checkpoint: the torn-down job runs
# again from its start (with one, it continues its own run: the slow test below).
STEPS = "trainer.steps=1000000,3000,20,21"
QUIET = ["trainer.eval_interval=1000", "trainer.diagnostics_interval=0"]


def sweep_with_a_dead_worker(tmp_path: Path, settings, *extra: str, job1_steps: int = 0
                             ) -> tuple[int, str, int]:
    """Run the 4-job joblib sweep (2 workers); SIGKILL job 0's worker once jobs 0 and 1 have opened their
    runs and job 1 has at least job1_steps train losses in the store. Returns (exit status, its output
    (stdout, where Hydra logs, then stderr), the killed pid)."""
    command = app_command(settings, "-m", *TINY, *QUIET, STEPS, "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep", *extra)
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(command, env=app_env(tmp_path), cwd=tmp_path, stdout=out, stderr=err,
                                   start_new_session=True)  # its own group, for killpg
    client = MlflowClient(settings.tracking_uri)
    killed = None
    try:
        deadline = time.monotonic() + 240
        while killed is None:
            assert process.poll() is None, stderr.read_text()[-3000:]
            assert time.monotonic() < deadline, "timed out"
            jobs = {run.data.tags.get("job_num"): run for run in children_of(settings)[1]}
            # job 0 starts first (the first free worker takes it), so job 1 has just started here
            if "0" in jobs and "1" in jobs and jobs["1"].info.status == "RUNNING" and (
                    not job1_steps
                    or len(client.get_metric_history(jobs["1"].info.run_id, "train/loss")) >= job1_steps):
                killed = int(jobs["0"].data.tags["harness.pid"])
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        process.wait(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stdout.read_text() + stderr.read_text(), killed


# a 3000-step job twice (78 s at load 7-11); the WorkerDied and TornDown cases stay in the default run
@pytest.mark.slow
def test_a_dead_worker_fails_its_job_and_the_sweep_goes_on(tmp_path: Path, tracking_settings) -> None:
    code, output, killed = sweep_with_a_dead_worker(tmp_path, tracking_settings, "trainer.checkpoint_every=0")
    assert code == 0, output[-3000:]  # as a sweep with a failed job: it goes on to its end
    (parent,), children = children_of(tracking_settings)
    jobs: dict[str, list] = {}
    for run in children:
        jobs.setdefault(run.data.tags["job_num"], []).append(run)
    assert sorted(jobs) == ["0", "1", "2", "3"]
    assert "RUNNING" not in {run.info.status for run in children}
    (dead,) = jobs["0"]
    cause = ("WorkerDied: job 0's worker process died of SIGKILL (killed, or out of memory) "
             f"(process {killed} on")
    assert dead.info.status == "FAILED" and dead.data.tags["error"].startswith(cause)
    assert REAPED_TAG not in dead.data.tags  # its metric writer's end, if it came first, is replaced
    assert len(jobs["1"]) == 2, [run.data.tags for run in jobs["1"]]  # its torn-down run, then its re-run
    partial, rerun = sorted(jobs["1"], key=lambda run: run.info.start_time)
    assert partial.info.status == "KILLED"
    assert partial.data.tags["harness.pid"] != rerun.data.tags["harness.pid"]  # a fresh worker
    torn_down = "torn down with the joblib pool when job 0 died; the job ran again in a fresh pool"
    assert partial.data.tags["harness.rerun"] == torn_down and "error" not in partial.data.tags
    assert partial.data.tags["mlflow.note.content"] == (
        f"**Torn down, run again.** Job 1 was {torn_down}: the runs of its next attempt supersede this one.")
    assert [run.info.status for run in (rerun, *jobs["2"], *jobs["3"])] == ["FINISHED"] * 3
    # the parent ends as after a failed job, and says which job died and which ran again
    assert parent.info.status == "FINISHED"
    metrics = parent.data.metrics
    assert (metrics["jobs"], metrics["runs"], metrics["finished"], metrics["failed"], metrics["killed"],
            metrics["rerun"]) == (4, 5, 3, 1, 0, 1)
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Sweep: 4 jobs, 5 runs (3 finished, 1 failed, 1 re-run).**"), note
    assert f"- failed: {dead.info.run_name}  {cause}" in note
    assert f"- re-run: {partial.info.run_name}  {torn_down}" in note
    assert "job 0 failed: WorkerDied: job 0's worker process died of SIGKILL" in output
    assert "a fresh pool runs job 1 (torn down), job 2, job 3" in output
    assert f"  re-run: {partial.info.run_name}  {torn_down}" in output  # the sweep's closing report
    # the jobs that ran again, or later, have the numbers of the basic launcher
    basic = app(tmp_path, tracking_settings, "-m", *TINY, *QUIET, "trainer.steps=3000,20,21",
                "trainer.checkpoint_every=0",
                f"hydra.sweep.dir={tmp_path}/basic", experiment="basic")
    assert basic.returncode == 0, basic.stderr[-3000:]
    client = MlflowClient(tracking_settings.tracking_uri)
    reference = {run.info.run_name: run for run in runs_of(tracking_settings, "basic")
                 if "mlflow.parentRunId" in run.data.tags}
    for run in (rerun, *jobs["2"], *jobs["3"]):
        for key in ("train/loss", "train/grad_norm", "val/accuracy"):
            assert history(client, run.info.run_id, key) == history(
                client, reference[run.info.run_name].info.run_id, key), (run.info.run_name, key)


def test_exit_codes_read_from_lokys_error() -> None:
    message = "A worker process was terminated.\nThe exit codes of the workers are {SIGKILL(-9), EXIT(1)}"
    assert reported_exit_codes(RuntimeError(message)) == [-9, 1]
    assert reported_exit_codes(RuntimeError("no codes")) == []
    assert exit_description(-9) == "died of SIGKILL (killed, or out of memory)"
    assert exit_description(-11) == "died of SIGSEGV"
    assert exit_description(3) == "exited with status 3"


def test_hydra_launcher_joblib_is_the_harness_launcher_with_every_plugin_option(tmp_path: Path,
                                                                                tracking_settings) -> None:
    shown = app(tmp_path, tracking_settings, "--cfg", "hydra", "-p", "hydra.launcher",
                "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "hydra.launcher.prefer=threads")
    assert shown.returncode == 0, shown.stderr
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

    launcher = OmegaConf.create(shown.stdout.split("\n", 1)[1])
    expected = {**OmegaConf.to_container(OmegaConf.structured(JobLibLauncherConf)), "n_jobs": 3,
                "prefer": "threads", "_target_": "hydra_plugins.harness_joblib_launcher.JoblibLauncher"}
    assert OmegaConf.to_container(launcher) == expected
    wrong = app(tmp_path, tracking_settings, "-m", *TINY, "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=two")  # typed as the plugin types it
    assert wrong.returncode == 1, wrong.stderr
    assert wrong.stderr.startswith("config error: Error merging override hydra.launcher.n_jobs=two")


@pytest.mark.slow  # ~1.5 min: a torn-down job that had checkpointed continues its own run
def test_a_torn_down_job_with_a_checkpoint_continues_its_run(tmp_path: Path, tracking_settings) -> None:
    code, output, _ = sweep_with_a_dead_worker(tmp_path, tracking_settings, "trainer.checkpoint_every=100",
                                               job1_steps=150)  # its checkpoint at step 100 is written
    assert code == 0, output[-3000:]
    _, children = children_of(tracking_settings)
    (job1,) = [run for run in children if run.data.tags["job_num"] == "1"]
    assert job1.info.status == "FINISHED" and int(job1.data.tags["resumed_from_step"]) >= 100
    assert job1.data.tags["harness.rerun"].startswith("torn down with the joblib pool when job 0 died")
    basic = app(tmp_path, tracking_settings, "-m", *TINY, *QUIET, "trainer.steps=3000",
                "trainer.checkpoint_every=100", f"hydra.sweep.dir={tmp_path}/basic", experiment="basic")
    assert basic.returncode == 0, basic.stderr[-3000:]
    client = MlflowClient(tracking_settings.tracking_uri)
    (reference,) = [run for run in runs_of(tracking_settings, "basic")
                    if "mlflow.parentRunId" in run.data.tags]
    for key in ("train/loss", "train/grad_norm", "val/accuracy"):
        assert history(client, job1.info.run_id, key) == history(client, reference.info.run_id, key)


def test_lost_job_attempts_end_their_own_runs(tracking_settings, tmp_path: Path, monkeypatch) -> None:
    """SweepCallback.on_job_end with a lost attempt (what the launcher reports): the runs its worker opened
    since the attempt started end, FAILED for a dead job, KILLED and marked re-run (a finished cell too) for
    a torn-down one; a sweep that then stops at the failed job names it on its parent."""
    callback, config = started_sweep(tracking_settings, tmp_path, monkeypatch)
    client, experiment_id = ensure_store(tracking_settings)
    gone = [subprocess.Popen(["true"]) for _ in range(2)]
    for process in gone:
        process.wait()
    torn_pid, dead_pid = (process.pid for process in gone)

    def child(name: str, status: str, start: int, pid: int) -> str:
        run = client.create_run(experiment_id, start_time=start, run_name=name, tags={
            "mlflow.parentRunId": callback.parent_run_id, "harness.pid": str(pid),
            "harness.host": socket.gethostname()})
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    runs = {"earlier": child("earlier", "FINISHED", 1000, torn_pid),  # the worker's job before this one
            "cell": child("cell", "FINISHED", 3000, torn_pid),
            "partial": child("partial", "RUNNING", 3500, torn_pid),
            "dead": child("dead", "RUNNING", 3000, dead_pid)}
    record = {"harness.host": socket.gethostname(), "started_ms": 2000}
    died = WorkerDied("job 1's worker process died of SIGKILL (killed, or out of memory)", 1,
                      {**record, "harness.pid": str(dead_pid)})
    torn = TornDown("torn down with the joblib pool when job 1 died; the job ran again in a fresh pool", 0,
                    {**record, "harness.pid": str(torn_pid)})
    with ended_at_exit(callback) as parent:  # the basic sweeper raised the failed job's exception
        for lost in (died, torn):
            callback.on_job_end(config, job_return=JobReturn(status=JobStatus.FAILED, _return_value=lost))
        ended = {name: client.get_run(run_id) for name, run_id in runs.items()}
        assert {name: run.info.status for name, run in ended.items()} == {
            "earlier": "FINISHED", "cell": "KILLED", "partial": "KILLED", "dead": "FAILED"}
        host = socket.gethostname()
        assert ended["dead"].data.tags["error"] == f"WorkerDied: {died} (process {dead_pid} on {host})"
        for name in ("cell", "partial"):
            assert ended[name].data.tags["harness.rerun"] == str(torn)
        assert "harness.rerun" not in ended["earlier"].data.tags
    run = client.get_run(parent)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith(
        f"the sweep stopped before its end (a failed job: WorkerDied: {died})")


_IDLE_JOB = textwrap.dedent("""
    import sys, time
    from harness.tracking import TrackingSettings, open_run
    settings = TrackingSettings(uri=sys.argv[1], experiment="test", artifact_root=sys.argv[2])
    with open_run(settings, run_name="job", parent_run_id="auto") as log:
        for step in range(100):
            log.log_metrics({"loss": 1.0 / (step + 1)}, step)
        log.flush()  # everything stored: the writer waits, idle, for its next message
        print(log.run_id, flush=True)
        time.sleep(600)
""")


@pytest.mark.parametrize(("first", "lost"), [("writer", WorkerDied), ("launcher", WorkerDied),
                                             ("writer", TornDown), ("launcher", TornDown)])
def test_a_dead_workers_run_ends_as_the_launcher_says_whoever_ends_it_first(
        tracking_settings, tmp_path: Path, monkeypatch, first: str, lost: type) -> None:
    """A sweep job's process (a real open_run and its real metric writer) is SIGKILLed. Its writer ends the
    run as reap would and the launcher reports the attempt lost (SweepCallback.on_job_end): the run ends
    FAILED with WorkerDied, or KILLED and re-run for a torn-down attempt, with no trace of the writer's
    account, whether the writer acted first or the launcher did (the writer held stopped until then); one
    waits for the other (orphans.ending_lock), so that they never interleave."""
    callback, config = started_sweep(tracking_settings, tmp_path, monkeypatch)
    client = MlflowClient(tracking_settings.tracking_uri)
    since = int(time.time() * 1000)
    with ended_at_exit(callback):
        job = subprocess.Popen([sys.executable, "-c", _IDLE_JOB, tracking_settings.tracking_uri,
                                tracking_settings.artifact_root], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            run_id = job.stdout.readline().strip()
            (writer,) = child_processes(job.pid)
            if first == "launcher":
                os.kill(writer, signal.SIGSTOP)  # idle in its read of the pipe: it holds no lock of the store
            with ending_lock(tracking_settings.tracking_uri):  # as while another process ends its runs
                job.kill()
                job.wait(timeout=60)
                if first == "writer":
                    time.sleep(1.0)
                    assert client.get_run(run_id).info.status == "RUNNING"  # the writer waits its turn
            if first == "writer":
                wait_for(lambda: reaped(client.get_run(run_id)), 10.0, "the writer's end of the run")
            host = socket.gethostname()
            record = {"harness.host": host, "harness.pid": str(job.pid), "started_ms": since}
            why = ("job 0's worker process died of SIGKILL (killed, or out of memory)" if lost is WorkerDied
                   else "torn down with the joblib pool when job 1 died; the job ran again in a fresh pool")
            report = lost(why, 0, record)
            callback.on_job_end(config, job_return=JobReturn(status=JobStatus.FAILED, _return_value=report))
            if first == "launcher":
                os.kill(writer, signal.SIGCONT)
            wait_for(lambda: gone(writer), 10.0, "the writer's exit")
        finally:
            if job.poll() is None:
                job.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGCONT)
    run = client.get_run(run_id)
    assert REAPED_TAG not in run.data.tags
    if lost is WorkerDied:
        assert run.info.status == "FAILED"
        assert run.data.tags["error"] == f"WorkerDied: {report} (process {job.pid} on {host})"
    else:
        assert run.info.status == "KILLED" and "error" not in run.data.tags
        assert run.data.tags["harness.rerun"] == str(report)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(100))


def test_a_sweep_that_stops_takes_over_the_run_a_metric_writer_ended(tracking_settings, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """A sweep stopped with no signal (a crash, a dead worker its launcher could not name) ends its parent
    FAILED, not KILLED, though a child was ended KILLED by its metric writer (end_lost) when its process
    died; that child's end is the sweep's account, as when the sweep had found it RUNNING."""
    callback, _ = started_sweep(tracking_settings, tmp_path, monkeypatch)
    client, experiment_id = ensure_store(tracking_settings)
    dead = subprocess.Popen(["true"])
    dead.wait()
    tags = {"mlflow.parentRunId": callback.parent_run_id, "harness.pid": str(dead.pid),
            "harness.host": socket.gethostname()}
    run_id = client.create_run(experiment_id, run_name="job", tags=tags).info.run_id
    assert len(end_lost(client, [client.get_run(run_id)], "its metric writer process")) == 1
    assert reaped(client.get_run(run_id))
    with ended_at_exit(callback) as parent:
        pass
    assert client.get_run(parent).info.status == "FAILED"
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and REAPED_TAG not in run.data.tags
    assert run.data.tags["error"] == ("the job's worker process died before it could end its run (killed, or "
                                      f"out of memory) (process {dead.pid} on {socket.gethostname()})")


_RESUMED_JOB = textwrap.dedent("""
    import sys, time
    from harness.tracking import TrackingSettings, open_run
    settings = TrackingSettings(uri=sys.argv[1], experiment="test", artifact_root=sys.argv[2])
    with open_run(settings, resume_run_id=sys.argv[3]) as log:
        print(log.run_id, flush=True)  # nothing logged yet: no metric has gone to the writer
        time.sleep(600)
""")


def test_a_resumed_run_killed_before_its_first_metric_is_ended_by_its_writer(tracking_settings) -> None:
    """A resumed run is reopened by its process itself, not by the metric writer; SIGKILLed before it sent
    a metric, the writer (started and told of the run when it was reopened) still ends it as reap would."""
    client, experiment_id = ensure_store(tracking_settings)
    run_id = client.create_run(experiment_id, run_name="earlier").info.run_id
    client.set_terminated(run_id, "KILLED")
    job = subprocess.Popen([sys.executable, "-c", _RESUMED_JOB, tracking_settings.tracking_uri,
                            tracking_settings.artifact_root, run_id], stdout=subprocess.PIPE, text=True,
                           cwd=ROOT)
    try:
        assert job.stdout.readline().strip() == run_id
        assert client.get_run(run_id).info.status == "RUNNING"
        job.kill()
        job.wait(timeout=60)
        wait_for(lambda: reaped(client.get_run(run_id)), 10.0, "the writer's end of the resumed run")
    finally:
        if job.poll() is None:
            job.kill()
    run = client.get_run(run_id)
    assert run.data.tags["harness.pid"] == str(job.pid)
    assert run.data.tags["error"].startswith("the run's process ended without closing it")
