"""Signals and dead processes: every run ends, whatever stops it. Real processes, real signals, real Hydra
(basic and joblib launchers) and real MLflow on a temporary SQLite store."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from omegaconf import OmegaConf
from test_train_app import ROOT, TINY, app_command, app_env, history, runs_of

from harness.tracking import RunInterrupted, SweepCallback, ensure_store, open_run
from harness.tracking.loggers import MlflowLogger
from harness.tracking.orphans import HOST_TAG, PID_TAG, REAPED_TAG, process_gone, process_tags, reaped
from harness.tracking.runs import Interrupts, note_stop, stop_requested
from harness.tracking.writer import TRAINER_EXIT_WAIT_S

LONG = ["trainer.steps=1000000", "trainer.eval_interval=1000", "trainer.diagnostics_interval=0"]
# the error tag of a run ended because its process was gone, up to who ended it
LOST = ("the run's process ended without closing it (SIGKILL, out of memory or a power cut), so the last "
        "seconds of its metrics may be missing; ended KILLED by ")


def children_of(settings) -> tuple[list, list]:
    """(parents, children) among the runs of the store."""
    runs = runs_of(settings)
    return ([run for run in runs if "mlflow.parentRunId" not in run.data.tags],
            [run for run in runs if "mlflow.parentRunId" in run.data.tags])


def wait_until(predicate, process: subprocess.Popen, stderr: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, stderr.read_text()[-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(1.0)


def start(command: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """The app's process (stdout in tmp_path/stdout.txt) and the file of its stderr."""
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink, (tmp_path / "stdout.txt").open("w") as out:
        process = subprocess.Popen(command, env=app_env(tmp_path), cwd=tmp_path, stdout=out,
                                   stderr=sink, start_new_session=True)  # its own group, for killpg
    return process, stderr


@pytest.mark.parametrize(("signum", "target"), [
    (signal.SIGTERM, "parent"),
    pytest.param(signal.SIGINT, "group", marks=pytest.mark.slow),  # a second joblib sweep: ~40 s
])
def test_a_signalled_joblib_sweep_ends_every_run_killed(tmp_path: Path, tracking_settings, signum: int,
                                                        target: str) -> None:
    # four jobs on two workers: jobs 2 and 3 wait for a worker, and never start once the sweep is stopped
    command = app_command(tracking_settings, "-m", *TINY, *LONG, "seed=0,1,2,3", "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep")
    process, stderr = start(command, tmp_path)
    client = MlflowClient(tracking_settings.tracking_uri)
    try:
        def both_training() -> bool:
            _, children = children_of(tracking_settings)
            return len(children) == 2 and all(client.get_metric_history(run.info.run_id, "train/loss")
                                              for run in children)
        wait_until(both_training, process, stderr)
        if target == "parent":
            process.send_signal(signum)
        else:
            os.killpg(process.pid, signum)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, stderr.read_text()[-3000:]
    (parent,), children = children_of(tracking_settings)
    assert parent.info.status == "KILLED"
    errors = [run.data.tags.get("error") for run in children]
    assert [run.info.status for run in children] == ["KILLED", "KILLED"], errors
    name = signal.Signals(signum).name
    for run in children:  # each job closed its own run: its metrics were flushed, its error is the signal
        assert run.data.tags["error"] == f"RunInterrupted: interrupted by {name}"
        assert client.get_metric_history(run.info.run_id, "train/loss")
        assert run.data.tags["mlflow.note.content"].startswith("**Stopped at step ")
    # the parent says why it stopped and where to look, and shows its runs
    parent_id = parent.info.run_id
    why = f"stopped by {name}; the sweep's command with trainer.resume_sweep={parent_id} completes it"
    assert parent.data.tags["error"] == f"the sweep stopped before its end ({why})"
    note = parent.data.tags["mlflow.note.content"]
    jobs = "4 jobs (2 stopped, 2 not started), 2 runs (2 killed)"
    again = shlex.join(["python", *command[1:], f"trainer.resume_sweep={parent_id}"])
    assert note.startswith(f"**Stopped before its end** ({why}).\n\nTo complete it: `{again}`\n\n"
                           f"**Sweep: {jobs}.**")
    assert "- not started: job 2 (seed=2), job 3 (seed=3)" in note, note
    assert "| job | run | seed | status | steps | val accuracy | solved |" in note, note
    # the terminal: the launcher's lines as the basic launcher's (not joblib's options), the same account,
    # and each killed run's steps in the table as its stop line gave them
    out = (tmp_path / "stdout.txt").read_text()
    assert "Joblib.Parallel" not in stderr.read_text() + out
    assert "\t#3 : " in out
    assert f"sweep {parent_id}: {jobs}\n" in out and "  not started: job 2 (seed=2), job 3 (seed=3)\n" in out
    for run in children:
        name, run_id = run.info.run_name, run.info.run_id
        stopped_at = re.search(rf"run {name} \({run_id}\) stopped at step (\d+) of ", out)
        assert stopped_at, out
        assert f"| {name} | {run.data.tags['seed']} | killed | {stopped_at[1]} | " in out, out
    # after its table, as every app ends: the parent's page in the UI
    assert out.splitlines()[-1].startswith("in the MLflow UI: ") and parent_id in out.splitlines()[-1], out


def test_a_signalled_basic_sweep_stops_and_ends_its_runs(tmp_path: Path, tracking_settings) -> None:
    command = app_command(tracking_settings, "-m", *TINY, "seed=range(0,40)", f"hydra.sweep.dir={tmp_path}/s")
    process, stderr = start(command, tmp_path)
    try:
        wait_until(lambda: len(children_of(tracking_settings)[1]) >= 2, process, stderr)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, stderr.read_text()[-3000:]
    (parent,), children = children_of(tracking_settings)
    assert parent.info.status == "KILLED" and len(children) < 40
    assert {run.info.status for run in children} <= {"FINISHED", "KILLED"}
    # the account counts the jobs that never started, and names the signal as the joblib sweep's does
    out = (tmp_path / "stdout.txt").read_text()
    finished = sum(run.info.status == "FINISHED" for run in children)
    # a job whose folder Hydra had made when the signal came, but which opened no run yet, is "started"
    started = len(list((tmp_path / "s").glob("*/.hydra/hydra.yaml")))
    counts = [(finished, "finished"), (len(children) - finished, "stopped"),
              (started - len(children), "started"), (40 - started, "not started")]
    jobs = ", ".join(f"{count} {state}" for count, state in counts if count)
    assert f"40 jobs ({jobs}), " in out, out
    assert "the sweep stopped before its end (stopped by SIGTERM; " in out, out


def sweep_runs(settings) -> tuple[object, list]:
    (parent,), children = children_of(settings)
    return parent, children


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_sweep_ends_its_parent_ends_it_killed(tmp_path: Path, tracking_settings,
                                                                 signum: int) -> None:
    """The signal lands between the sweep's report line and the parent's end: every job is done, the parent
    ends KILLED (it once found the default handlers back: SIGTERM killed the process, SIGINT escaped as
    KeyboardInterrupt, and the parent stayed RUNNING). The report is printed a few milliseconds before the
    parent's end is written; a try whose signal arrives after it (a loaded machine) is repeated, at most
    three times."""
    command = app_command(tracking_settings, "-m", *TINY, "seed=0", f"hydra.sweep.dir={tmp_path}/s")
    for _ in range(3):
        env = {**app_env(tmp_path), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for line in process.stdout:
                if line.startswith("sweep "):
                    sent_at_ms = time.time() * 1000
                    process.send_signal(signum)
                    break
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        parent, children = sweep_runs(tracking_settings)
        assert [run.info.status for run in children] == ["FINISHED"]
        assert parent.info.status in ("KILLED", "FINISHED"), stderr[-3000:]
        if parent.info.status == "KILLED":
            assert process.returncode == 128 + signum, stderr[-3000:]
            assert parent.data.tags["error"] == (f"every job ended, then the sweep was stopped by "
                                                 f"{signal.Signals(signum).name}")
            assert parent.data.metrics["finished"] == 1.0  # the report was logged before the end
            return
        assert parent.info.end_time <= sent_at_ms  # ended before the signal: try again
        client = MlflowClient(tracking_settings.tracking_uri)
        for run in (parent, *children):
            client.delete_run(run.info.run_id)
    pytest.fail("three signals in a row arrived after the parent's end")


def test_a_second_signal_while_the_stopped_sweep_closes_its_runs_is_not_lost(tmp_path: Path,
                                                                             tracking_settings) -> None:
    """Ctrl-C twice: the second one arrives while the stopped sweep waits, at exit, for a job run whose
    process still runs (here a run of this test process). Python drops an exception raised in an atexit
    callback: it must not cut the parent's end short (it stayed RUNNING)."""
    command = app_command(tracking_settings, "-m", *TINY, *LONG, "seed=0,1", f"hydra.sweep.dir={tmp_path}/s")
    process, stderr = start(command, tmp_path)
    client, experiment_id = ensure_store(tracking_settings)
    try:
        wait_until(lambda: len(children_of(tracking_settings)[1]) == 1, process, stderr)
        (parent,), _ = children_of(tracking_settings)
        # a job run held by a live process of this host: the sweep's exit waits for it to end
        held = client.create_run(experiment_id, tags={**process_tags(),
                                                      "mlflow.parentRunId": parent.info.run_id})
        process.send_signal(signal.SIGINT)
        wait_until(lambda: [run.info.status for run in children_of(tracking_settings)[1]
                            if run.info.run_id != held.info.run_id] == ["KILLED"], process, stderr)
        time.sleep(2.0)  # now in the exit's wait for the held run
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        client.set_terminated(held.info.run_id, "KILLED")
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT, stderr.read_text()[-3000:]
    assert "Exception ignored" not in stderr.read_text()
    (parent,), children = children_of(tracking_settings)
    assert parent.info.status == "KILLED"
    assert {run.info.status for run in children} == {"KILLED"}


class _SignalInFinalizer:
    """An object whose finaliser receives the signal: Python drops an exception raised there."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_exception_python_drops_still_ends_the_run_killed(tracking_settings) -> None:
    went_on = []
    with pytest.raises(RunInterrupted), open_run(tracking_settings, run_name="r") as log:
        log.log_metrics({"loss": 1.0}, 0)
        _SignalInFinalizer(signal.SIGTERM)  # dropped at once: "Exception ignored in ... __del__"
        went_on.append(True)
    assert went_on  # the handler's exception never reached the run's code
    run = MlflowClient(tracking_settings.tracking_uri).get_run(log.run_id)
    assert run.info.status == "KILLED" and run.data.tags["error"] == "RunInterrupted: interrupted by SIGTERM"
    assert stop_requested() is None
    with open_run(tracking_settings, run_name="next") as log:  # this process may go on with other runs
        pass
    assert MlflowClient(tracking_settings.tracking_uri).get_run(log.run_id).info.status == "FINISHED"


def started_sweep(settings, tmp_path: Path, monkeypatch, launcher: str | None = None
                  ) -> tuple[SweepCallback, object]:
    """A SweepCallback whose sweep (of this process, on the store of settings) has started, and its config
    (hydra.launcher._target_ launcher, when given)."""
    monkeypatch.delenv("HARNESS_PARENT_RUN_ID", raising=False)
    tracking = {"mode": "local", "uri": settings.tracking_uri, "experiment": "test",
                "artifact_root": settings.artifact_root}
    hydra: dict = {"sweep": {"dir": str(tmp_path / "sweep")}}
    if launcher:
        hydra["launcher"] = {"_target_": launcher}
    config = OmegaConf.create({"tracking": tracking, "hydra": hydra})
    callback = SweepCallback()
    callback.on_multirun_start(config)
    return callback, config


@contextlib.contextmanager
def ended_at_exit(callback: SweepCallback) -> Iterator[str]:
    """Yields the started sweep's parent run id; afterwards ends the sweep as this process's exit would
    (its parent run) and gives the process back its signal handlers and environment."""
    parent = callback.parent_run_id
    try:
        yield parent
    finally:
        callback._end_abandoned_parent()
        callback._restore_process_state()


def test_a_signal_between_basic_sweep_jobs_waits_for_the_next_jobs_start(tracking_settings, tmp_path,
                                                                           monkeypatch):
    """The basic launcher's jobs run in the sweep's process: between two of them (Hydra composing the next
    job's config, where an exception would leave OmegaConf half-done) SIGTERM is recorded and raised when
    the next job starts; during a job it is raised at once."""
    callback, config = started_sweep(tracking_settings, tmp_path, monkeypatch,
                                     launcher="hydra._internal.core_plugins.basic_launcher.BasicLauncher")
    with ended_at_exit(callback) as parent:
        callback.on_job_start(config)
        with pytest.raises(RunInterrupted):  # in a job's own code: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        callback.on_job_end(config)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run: it only recorded the signal
        with pytest.raises(RunInterrupted):
            callback.on_job_start(config)
    assert MlflowClient(tracking_settings.tracking_uri).get_run(parent).info.status == "KILLED"


def test_a_stopped_sweep_of_an_app_without_resume_sweep_says_that_it_runs_again_whole(
        tracking_settings, tmp_path, monkeypatch, capsys) -> None:
    """A sweep of an app whose config has no resume_sweep key (rnn_vs_arma.py) stopped by a signal says what
    is true for it: its command runs every job again. (gradient_flow.py's gives its resume_sweep= command:
    tests/test_study_sweep_continue.py.)"""
    callback, _ = started_sweep(tracking_settings, tmp_path, monkeypatch)
    with ended_at_exit(callback) as parent, pytest.raises(RunInterrupted):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    note_stop(None)  # the sweep's process would exit now; this one runs other tests, which open runs
    stopped = MlflowClient(tracking_settings.tracking_uri).get_run(parent)
    why = "stopped by SIGTERM; its command run again computes every job again (nothing is reused)"
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["error"] == f"the sweep stopped before its end ({why})"
    assert stopped.data.tags["mlflow.note.content"].startswith(f"**Stopped before its end** ({why}).")
    assert f"  the sweep stopped before its end ({why})\n" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_dropped_signal_between_sweep_jobs_stops_the_next_job(tracking_settings, tmp_path, monkeypatch):
    callback, config = started_sweep(tracking_settings, tmp_path, monkeypatch)
    client, experiment_id = ensure_store(tracking_settings)
    # a job run the signal cut off between its creation and open_run's guard (the basic launcher's process)
    cut_off = client.create_run(experiment_id, tags={**process_tags(),
                                                     "mlflow.parentRunId": callback.parent_run_id})
    with ended_at_exit(callback) as callback_parent:
        _SignalInFinalizer(signal.SIGINT)
        with pytest.raises(RunInterrupted):
            callback.on_job_start(config)
    statuses = {run.info.run_id: run.info.status for run in runs_of(tracking_settings)}
    assert statuses == {callback_parent: "KILLED", cut_off.info.run_id: "KILLED"}


class _SignalDuringWrite(MlflowClient):
    """A client whose store writes receive SIGTERM on their way (as a signal lands inside SQLite's insert)."""

    def log_batch(self, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return super().log_batch(*args, **kwargs)


def test_a_signal_during_a_store_write_stops_the_run_once_the_write_is_done(tracking_settings) -> None:
    """Raised inside the write, the signal's exception kept the database transaction (and the SQLite lock)
    alive until it was gone: ending the run KILLED then failed with "database is locked", and that error
    replaced the signal (a sweep went on, its run RUNNING)."""
    client, experiment_id = ensure_store(tracking_settings)
    run_id = client.create_run(experiment_id).info.run_id
    logger = MlflowLogger(_SignalDuringWrite(tracking_settings.tracking_uri), run_id)
    guard = logger.interrupts = Interrupts()
    try:
        with pytest.raises(RunInterrupted):
            logger.set_tags({"written": "whole"})
    finally:
        guard.restore()
        note_stop(None)
    assert client.get_run(run_id).data.tags["written"] == "whole"


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is pid (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if stat.read_text().rpartition(")")[2].split()[1] == str(pid):
                found.append(int(stat.parent.name))
    return found


def is_loky_worker(pid: int) -> bool:
    """Whether process pid is a loky worker (its command line starts loky's worker module)."""
    with contextlib.suppress(OSError):
        return b"popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def gone(pid: int) -> bool:
    """Whether process pid of this host has ended (a zombie nobody reaps counts as ended)."""
    return process_gone({HOST_TAG: socket.gethostname(), PID_TAG: str(pid)})


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll predicate() every 20 ms until it holds; returns the seconds it took (fails after timeout)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_sigkilled_training_run_is_ended_killed_by_its_metric_writer(tmp_path: Path,
                                                                        tracking_settings) -> None:
    """SIGKILL (what the out-of-memory killer sends) to a real experiments/train.py: its metric writer
    process, which outlives it, ends the run within about a second, as harness.tracking.reap would, with
    every metric value stored before the kill, and exits. No reap call."""
    process, stderr = start(app_command(tracking_settings, *TINY, *LONG, "trainer.checkpoint_every=0"),
                            tmp_path)
    client = MlflowClient(tracking_settings.tracking_uri)
    try:
        wait_until(lambda: runs_of(tracking_settings) and client.get_metric_history(
            runs_of(tracking_settings)[0].info.run_id, "train/loss"), process, stderr)
        (run,) = runs_of(tracking_settings)
        trainer = int(run.data.tags[PID_TAG])
        (writer,) = child_processes(trainer)
        assert trainer == process.pid and writer != trainer  # the training process is the run's
        time.sleep(1.0)
        stored = history(client, run.info.run_id, "train/loss")
        os.kill(trainer, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    took = wait_for(lambda: client.get_run(run.info.run_id).info.status != "RUNNING", 5.0, "the run's end")
    wait_for(lambda: gone(writer), 5.0, "the writer's exit")
    ended = client.get_run(run.info.run_id)
    host = socket.gethostname()
    assert ended.info.status == "KILLED", took
    assert ended.data.tags["error"] == f"{LOST}its metric writer process (process {trainer} on {host})"
    assert ended.data.tags[REAPED_TAG].startswith(f"process {trainer} on {host}, started ") and reaped(ended)
    after = history(client, run.info.run_id, "train/loss")
    assert after[:len(stored)] == stored and [step for step, _ in after] == list(range(1, len(after) + 1))


_EXECS_IN_ITS_RUN = textwrap.dedent("""
    import os, sys
    from harness.tracking import TrackingSettings, open_run
    settings = TrackingSettings(uri=sys.argv[1], experiment="test", artifact_root=sys.argv[2])
    with open_run(settings, run_name="victim") as log:
        log.log_metrics({"loss": 1.0}, 0)
        log.flush()
        print(log.run_id, flush=True)
        # the same process (pid, start time) runs on as another program: the writer's pipe closes
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)"])
""")


def test_a_writer_leaves_the_run_of_a_live_process_alone_and_reap_ends_it_once_gone(tracking_settings
                                                                                     ) -> None:
    """The writer's pipe closes while the run's process still runs (it exec'd another program): the writer
    exits, the run stays RUNNING. Once that process is killed too, nothing can end the run but
    harness.tracking.reap, which ends it KILLED and leaves the run of a live process alone."""
    process = subprocess.Popen([sys.executable, "-c", _EXECS_IN_ITS_RUN, tracking_settings.tracking_uri,
                                tracking_settings.artifact_root], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        run_id = process.stdout.readline().strip()
        (writer,) = child_processes(process.pid)
        wait_for(lambda: gone(writer), 3 * TRAINER_EXIT_WAIT_S + 5.0, "the writer's exit")
        client, experiment_id = ensure_store(tracking_settings)
        assert process.poll() is None and client.get_run(run_id).info.status == "RUNNING"
        process.kill()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    alive = client.create_run(experiment_id, tags=process_tags()).info.run_id  # this process: not orphaned
    out = reap_store(tracking_settings)
    assert f"ended KILLED: {run_id} victim" in out
    assert out.strip().splitlines()[-1] == "1 of 2 RUNNING runs had lost their process on this host"
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and reaped(run)
    assert run.data.tags["error"] == (f"{LOST}harness.tracking.reap (process {process.pid} on "
                                      f"{socket.gethostname()})")
    assert client.get_run(alive).info.status == "RUNNING"


def test_reap_deletes_the_model_upload_a_killed_process_left_pending_and_no_other_model(tracking_settings
                                                                                        ) -> None:
    """A process SIGKILLed mid-upload (a metric writer's model) leaves its run RUNNING and the LoggedModel
    PENDING, no files: harness.tracking.reap ends the run KILLED and deletes that model, so that
    runs:/<run id>/model finds the run's older READY model again. That one, and the models of a live
    process's run (READY, and PENDING: an upload under way), are left as they are."""
    client, experiment_id = ensure_store(tracking_settings)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lost = client.create_run(experiment_id, run_name="victim",
                             tags={HOST_TAG: socket.gethostname(), PID_TAG: str(dead.pid)}).info.run_id
    alive = client.create_run(experiment_id, run_name="alive", tags=process_tags()).info.run_id

    def model(run_id: str, status: str | None) -> str:
        created = client.create_logged_model(experiment_id, name="model", source_run_id=run_id).model_id
        if status is not None:
            client.finalize_logged_model(created, status)
        return created

    older, cut_off = model(lost, "READY"), model(lost, None)
    alive_ready, alive_pending = model(alive, "READY"), model(alive, None)
    out = reap_store(tracking_settings)
    assert f"ended KILLED: {lost} victim" in out and alive not in out
    assert client.get_run(lost).info.status == "KILLED" and client.get_run(alive).info.status == "RUNNING"
    statuses = {model.model_id: model.status for model in client.search_logged_models([experiment_id])}
    assert statuses == {older: LoggedModelStatus.READY, alive_ready: LoggedModelStatus.READY,
                        alive_pending: LoggedModelStatus.PENDING}
    assert cut_off not in statuses


def reap_store(settings) -> str:
    """The output of ``python -m harness.tracking.reap`` on the store of settings (which must succeed)."""
    reap = [sys.executable, "-m", "harness.tracking.reap", "--uri", settings.tracking_uri]
    done = subprocess.run(reap, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# the joblib case (44 s at load 7-11) with -m slow; the basic case and the joblib SIGTERM tests stay
@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=pytest.mark.slow)])
def test_a_sigkilled_sweep_leaves_no_run_running(tmp_path: Path, tracking_settings, launcher: str) -> None:
    """SIGKILL (the out-of-memory killer's signal) to the launching process of a real sweep while its jobs
    train: no exit runs there, yet within seconds and with no reap call the parent ends KILLED by that
    process's metric writer, as reap would; the basic launcher's job run (in the same process) with it. The
    joblib workers, whose launcher is gone, stop their jobs as a SIGTERM would (KILLED, metrics stored) and
    exit. Reap then finds nothing left."""
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    command = app_command(tracking_settings, "-m", *TINY, *LONG, "seed=0,1", *joblib,
                          f"hydra.sweep.dir={tmp_path}/sweep")
    process, stderr = start(command, tmp_path)
    try:
        _check_a_sigkilled_sweep(tracking_settings, process, stderr, 2 if joblib else 1)
    finally:  # workers that outlived the launcher (they trained on before) are still in its group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _check_a_sigkilled_sweep(settings, process: subprocess.Popen, stderr: Path, training: int) -> None:
    client = MlflowClient(settings.tracking_uri)

    def jobs_training() -> bool:
        _, children = children_of(settings)
        return len(children) == training and all(client.get_metric_history(run.info.run_id, "train/loss")
                                                 for run in children)
    wait_until(jobs_training, process, stderr)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    (parent,), children = children_of(settings)
    everyone = [parent.info.run_id] + [run.info.run_id for run in children]
    took = wait_for(lambda: all(client.get_run(run_id).info.status != "RUNNING" for run_id in everyone), 10.0,
                    "the runs' end")
    host = socket.gethostname()
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "KILLED", took
    assert parent.data.tags[PID_TAG] == str(process.pid) and parent.data.tags[HOST_TAG] == host
    assert parent.data.tags["error"] == f"{LOST}its metric writer process (process {process.pid} on {host})"
    assert reaped(parent)
    workers = {int(run.data.tags[PID_TAG]) for run in children}
    joblib = training == 2
    for run in map(client.get_run, everyone[1:]):
        assert run.info.status == "KILLED"
        assert client.get_metric_history(run.info.run_id, "train/loss")
        if joblib:  # each worker ended its own run, as a SIGTERM'd sweep's: checkpointed, resumable
            assert run.data.tags["error"] == (
                "RunInterrupted: interrupted by SIGTERM: the sweep's launching process "
                f"(process {process.pid} on {host}) is gone (SIGKILL, or out of memory)")
            assert "checkpoint.local" in run.data.tags, sorted(run.data.tags)
        else:
            assert run.data.tags["error"] == parent.data.tags["error"] and reaped(run)
    assert (process.pid in workers) != joblib and len(children) == training
    wait_for(lambda: all(gone(worker) for worker in workers), 10.0, "the workers' exit")
    assert reap_store(settings).strip().splitlines()[-1] == (
        "0 of 0 RUNNING runs had lost their process on this host")


def test_reap_ends_the_parent_of_a_sweep_killed_with_its_writer(tmp_path: Path, tracking_settings) -> None:
    """SIGKILL to the whole process group of a sweep takes its metric writer too: nothing ends its runs but
    harness.tracking.reap, which finds the parent by the launching process it records, and its job run."""
    command = app_command(tracking_settings, "-m", *TINY, *LONG, "seed=0,1", f"hydra.sweep.dir={tmp_path}/s")
    process, stderr = start(command, tmp_path)
    client = MlflowClient(tracking_settings.tracking_uri)
    try:
        wait_until(lambda: any(client.get_metric_history(run.info.run_id, "train/loss")
                               for run in children_of(tracking_settings)[1]), process, stderr)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(1.0)
    (parent,), (child,) = children_of(tracking_settings)
    assert parent.info.status == child.info.status == "RUNNING"  # the writer died with its process
    out = reap_store(tracking_settings)
    assert f"ended KILLED: {parent.info.run_id} {parent.info.run_name}" in out
    assert out.strip().splitlines()[-1] == "2 of 2 RUNNING runs had lost their process on this host"
    for run in (parent, child):
        ended = client.get_run(run.info.run_id)
        assert ended.info.status == "KILLED" and reaped(ended)
        assert ended.data.tags["error"] == (f"{LOST}harness.tracking.reap (process {process.pid} on "
                                            f"{socket.gethostname()})")


@pytest.mark.slow  # a joblib sweep started and stopped: 70-90 s on a loaded 2-core machine
def test_an_idle_joblib_worker_ends_quietly_on_ctrl_c(tmp_path: Path, tracking_settings) -> None:
    """Ctrl-C reaches the idle worker twice: from the terminal's process group and passed on by the
    launcher. It ends without a traceback, while the busy worker's job stops as a signalled job does."""
    # three jobs on two workers, one long: the short ones end on one worker, which then waits for work
    long_steps = "1000000"
    command = app_command(tracking_settings, "-m", *TINY, "trainer.eval_interval=1000",
                          "trainer.diagnostics_interval=0", f"trainer.steps={long_steps},8,9",
                          "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/s")
    process, stderr = start(command, tmp_path)
    client = MlflowClient(tracking_settings.tracking_uri)
    try:
        def only_the_long_one_runs() -> bool:
            _, children = children_of(tracking_settings)
            statuses = sorted(run.info.status for run in children)
            running = [run for run in children if run.info.status == "RUNNING"]
            return statuses == ["FINISHED", "FINISHED", "RUNNING"] and bool(
                client.get_metric_history(running[0].info.run_id, "train/loss"))
        wait_until(only_the_long_one_runs, process, stderr)
        busy = int(next(run for run in children_of(tracking_settings)[1]
                        if run.info.status == "RUNNING").data.tags[PID_TAG])
        idle = [pid for pid in child_processes(process.pid) if pid != busy and is_loky_worker(pid)]
        assert len(idle) == 1, child_processes(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        # the launcher's pass-on reaches the idle worker a moment later, maybe while the first still unwinds
        for _ in range(20):
            with contextlib.suppress(ProcessLookupError):
                os.kill(idle[0], signal.SIGINT)
            time.sleep(0.002)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    err = stderr.read_text()
    assert process.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    (parent,), children = children_of(tracking_settings)
    assert parent.info.status == "KILLED"
    assert sorted(run.info.status for run in children) == ["FINISHED", "FINISHED", "KILLED"]
    stopped = next(run for run in children if run.info.status == "KILLED")
    assert stopped.data.tags["error"] == "RunInterrupted: interrupted by SIGINT"
    assert stopped.data.tags["mlflow.note.content"].startswith("**Stopped at step ")
