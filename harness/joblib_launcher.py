"""``hydra/launcher=joblib``: hydra-joblib-launcher's launcher, with a sweep that outlives a dead worker.

With the plugin alone, one loky worker that dies (SIGKILL, the out-of-memory killer, a crash in native code)
breaks the pool: loky kills every other worker, joblib raises TerminatedWorkerError and the sweep stops. This
launcher takes the plugin's options with their defaults and types (JoblibLauncherConf; every one honoured
as the plugin does, ``backend`` stays loky as there), runs the jobs with the plugin's own job function and,
when the pool breaks:

- the job whose worker died ends there: a FAILED job (``WorkerDied``: the worker's process id and its
  signal or exit status), reported to the sweeper as the task function reports a failed job (see
  ``failed_jobs_return``), never run again;
- jobs whose workers loky tore down with the pool, and jobs not started yet, run again in a fresh pool;
  jobs that had ended keep their results;
- every job attempt that ended this way goes to Hydra's callbacks (``on_job_end``, with a FAILED JobReturn
  whose exception, a ``LostJob``, says what happened): harness.tracking.SweepCallback ends the dead job's
  run FAILED with the cause and the runs of a torn-down attempt KILLED, marked as re-run. The dead worker's
  metric writer process (harness.tracking.writer) outlives it and ends its run KILLED as reap does; the
  callback's account replaces that one whether it comes before or after (orphans.ending_lock).

Which worker died: each job records its process (harness.tracking.orphans.process_tags) in a ledger folder of
the sweep before it starts and its JobReturn when it ends. loky marks every pending job failed before it
kills the other workers; the launcher's backend watches for that moment and takes the roll call then: a job
whose process is gone died, a job whose process still runs was torn down. A break that no job's death
explains (a worker that died between jobs, or could not start) makes the pool start again at most
MAX_UNEXPLAINED_BREAKS times in a row; then the TerminatedWorkerError ends the sweep, as with the plugin.
A sweep stopped by a signal (harness.tracking.runs.stop_requested) never starts a new pool. One gap remains:
a worker killed after its job's run ended but before the job's JobReturn was recorded (microseconds) has
the job reported as died although its run is FINISHED.

Hydra 1.3 instantiates a launcher only from a class under the ``hydra_plugins`` package (as for the
sweeper, harness.search): ``register_joblib_launcher()``, called by harness.app.run_app before Hydra starts,
registers JoblibLauncher as ``hydra_plugins.harness_joblib_launcher.JoblibLauncher`` and stores
JoblibLauncherConf as ``hydra/launcher/joblib``, over the plugin's own entry (a YAML file of that name in the
config folder would be merged with the plugin's schema of the same name, with a deprecation warning at
every start). joblib is imported when a sweep launches.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as PluginJoblibLauncher
from omegaconf import OmegaConf, open_dict, read_write

from harness.plugin_registry import register_plugin

log = logging.getLogger(__name__)

PLUGIN_MODULE = "hydra_plugins.harness_joblib_launcher"
LAUNCHER_TARGET = f"{PLUGIN_MODULE}.JoblibLauncher"  # hydra.launcher._target_ of hydra/launcher=joblib
FAILED_JOB_VALUE = "failed_job_value"
MAX_UNEXPLAINED_BREAKS = 2
STARTED = "started_ms"  # in a job's ledger record, beside its process tags
LAUNCHER_POLL_S = 0.2
# what a worker whose launcher died gives its job to end its runs after SIGTERM, as a stopped sweep does
LAUNCHER_GONE_GRACE_S = 20.0


@dataclass
class JoblibLauncherConf(JobLibLauncherConf):
    """hydra/launcher=joblib: the plugin's options, defaults and types; this module's launcher."""

    _target_: str = LAUNCHER_TARGET


class LostJob(Exception):
    """A job attempt that ended with its worker process rather than by itself; job_num is Hydra's job
    number, pid and host name the worker that ran it, since_ms when the attempt started (ms since the epoch:
    the runs that worker opened since are the attempt's)."""

    def __init__(self, message: str, job_num: int, process: dict[str, Any]) -> None:
        from harness.tracking.orphans import HOST_TAG, PID_TAG

        super().__init__(message)
        self.job_num, self.pid, self.host = job_num, int(process[PID_TAG]), str(process[HOST_TAG])
        self.since_ms = int(process[STARTED])


class WorkerDied(LostJob):
    """The job's worker process died under it (killed, out of memory, crashed): the job failed."""


class TornDown(LostJob):
    """The job's worker was killed by loky because another worker died; the job runs again."""


def failed_jobs_return(value: Any) -> Callable[[Any], Any]:
    """Decorator (under ``@hydra.main``) declaring that the task function reports a failed sweep job by
    returning value (train.py: NaN, which the Optuna sweeper tells as a FAILED trial) so the sweep goes on;
    a job whose worker died is then reported with the same value. Without it a dead worker's job is a FAILED
    JobReturn, what Hydra makes of a task function that raised."""

    def mark(task_function: Any) -> Any:
        setattr(task_function, FAILED_JOB_VALUE, value)
        return task_function

    return mark


def exit_description(code: int | None) -> str:
    """What a worker's exit code says: ``died of SIGKILL (killed, or out of memory)``, ``died of SIGSEGV``,
    ``exited with status 3``; None: the pool did not report it."""
    if code is None:
        return "died (the pool reported no exit status)"
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"died of {name}" + (" (killed, or out of memory)" if -code == signal.SIGKILL else "")


def reported_exit_codes(error: BaseException) -> list[int]:
    """The exit codes loky's TerminatedWorkerError lists (``{SIGKILL(-9), EXIT(1)}`` -> [-9, 1])."""
    listed = re.search(r"exit codes of the workers are \{([^}]*)\}", str(error))
    return [int(code) for code in re.findall(r"\((-?\d+)\)", listed.group(1))] if listed else []


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


_idle = threading.Event()  # in a worker: no job runs
_idle.set()
_watcher: threading.Thread | None = None
# (ledger, signum) once a stop signal ended a job of that pool in this worker, (None, signum) once one reached
# it idle (quiet_when_idle): the sweep is stopping, and a job loky queued here meanwhile must not start (its
# run would only be torn down with the pool)
_stopped_in: tuple[str | None, int] | None = None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_busy_handlers: dict[int, Any] = {}  # in a worker: what SIGINT/SIGTERM did before quiet_when_idle


def quiet_when_idle() -> None:
    """loky's initializer of the launcher's workers: SIGINT/SIGTERM reaching a worker that runs no job are
    recorded, nothing more: the worker starts no other job (execute_recorded_job) and ends, silently, when
    the launcher tears the pool down; a running job's own handling (open_run's guard, or what the signal did
    before) is unchanged. Ctrl-C reaches an idle worker twice, from the terminal's process group and passed
    on by the launcher (SweepCallback); loky's KeyboardInterrupt of the first, interrupted by the second,
    printed a traceback, and an idle worker that ended by itself broke the pool, whose teardown (SIGKILL)
    could cut a busy worker's job short before it had ended its run. The workers share the launcher's
    terminal, so their jobs draw no progress bar (progress.SHARED_TERMINAL)."""
    from harness.progress import SHARED_TERMINAL

    os.environ[SHARED_TERMINAL] = "1"
    for signum in _STOP_SIGNALS:
        _busy_handlers[signum] = signal.signal(signum, _on_stop_signal)


def _on_stop_signal(signum: int, frame: Any) -> None:
    """quiet_when_idle's handler (see there)."""
    global _stopped_in
    if _idle.is_set():
        _stopped_in = _stopped_in or (None, signum)
        return
    previous = _busy_handlers[signum]
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _end_with_launcher(launcher: dict[str, str]) -> None:
    """Worker thread: once the launching process (its process tags) is gone (SIGKILL, the out-of-memory
    killer), stop this worker, whose results nobody would receive: a running job gets SIGTERM, which ends its
    runs KILLED with their metrics and checkpoint as in a sweep stopped by a signal, and
    LAUNCHER_GONE_GRACE_S to do it (a run still open then is its metric writer's, harness.tracking.writer)."""
    from harness.tracking.orphans import process_gone, process_name
    from harness.tracking.runs import signal_self

    while not process_gone(launcher):
        time.sleep(LAUNCHER_POLL_S)
    if not _idle.is_set():
        signal_self(signal.SIGTERM, f"the sweep's launching process ({process_name(launcher)}) is gone "
                                    "(SIGKILL, or out of memory)")
        _idle.wait(LAUNCHER_GONE_GRACE_S)
    os._exit(128 + signal.SIGTERM)


def execute_recorded_job(ledger: str, launcher: dict[str, str], idx: int, *job: Any) -> JobReturn:
    """The plugin's job function (run in a loky worker), with the job's process recorded in ledger before
    it starts (``<idx>.pid``) and its JobReturn after it ends (``<idx>.done``); the worker ends itself when
    the launching process (launcher: its process tags) is gone (_end_with_launcher). Once a signal has
    stopped one of the pool's jobs here, or reached the worker idle, it starts no other (RunInterrupted at
    once)."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job
    from joblib.externals.loky.backend.reduction import dumps

    from harness.tracking.orphans import PID_TAG, process_tags
    from harness.tracking.runs import RunInterrupted

    global _watcher, _stopped_in
    folder = Path(ledger)
    # busy from before the check on: a signal that came while idle is seen by the check, a later one
    # takes the job's way (quiet_when_idle), none is swallowed
    _idle.clear()
    try:
        if _stopped_in is not None and _stopped_in[0] in (ledger, None):
            raise RunInterrupted(_stopped_in[1])
        # a worker runs many jobs, of one launcher; joblib runs a one-worker pool's jobs in the launcher
        if _watcher is None and launcher[PID_TAG] != str(os.getpid()):
            _watcher = threading.Thread(target=_end_with_launcher, args=(launcher,), daemon=True)
            _watcher.start()
        record = {**process_tags(), STARTED: int(time.time() * 1000)}
        _write_atomically(folder / f"{idx}.pid", json.dumps(record).encode())
        job_return = execute_job(idx, *job)
    except RunInterrupted as stop:
        _stopped_in = (ledger, stop.signum)
        raise
    finally:
        _idle.set()  # before the .done record: a signal while it is written only stops the next job
    _write_atomically(folder / f"{idx}.done", dumps(job_return))  # pickled as loky sends it back
    return job_return


class Ledger:
    """The records the jobs of one pool leave in folder, and the roll call taken when the pool breaks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.gone_at_break: set[int] | None = None

    def process(self, idx: int) -> dict[str, Any] | None:
        """The record of job idx's process (its process tags and STARTED), None before it started."""
        path = self.folder / f"{idx}.pid"
        return json.loads(path.read_text()) if path.is_file() else None

    def result(self, idx: int) -> JobReturn | None:
        """Job idx's JobReturn, None until it ended."""
        path = self.folder / f"{idx}.done"
        return pickle.loads(path.read_bytes()) if path.is_file() else None

    def take_roll_call(self) -> None:
        """Record which started, unfinished jobs have lost their process; called when the pool breaks,
        before loky kills the workers that still run (the first call counts)."""
        if self.gone_at_break is not None:
            return
        from harness.tracking.orphans import process_gone

        unfinished = [int(path.stem) for path in self.folder.glob("*.pid")
                      if not path.with_suffix(".done").is_file()]
        self.gone_at_break = {idx for idx in unfinished if process_gone(self.process(idx))}


def watched_loky_backend(on_break: Callable[[], None]) -> Any:
    """joblib's loky backend, calling on_break() in loky's manager thread as soon as the pool breaks: loky
    fails every pending job (running its callbacks, this one first) before it kills the other workers.
    Its workers start with quiet_when_idle."""
    from joblib._parallel_backends import LokyBackend
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    class WatchedLokyBackend(LokyBackend):
        def submit(self, func: Any, callback: Any = None) -> Any:
            future = self._workers.submit(func)
            future.add_done_callback(self._watch)
            if callback is not None:
                future.add_done_callback(callback)
            return future

        @staticmethod
        def _watch(future: Any) -> None:
            if not future.cancelled() and isinstance(future.exception(), TerminatedWorkerError):
                on_break()

    return WatchedLokyBackend(initializer=quiet_when_idle)


class JoblibLauncher(PluginJoblibLauncher):
    """``hydra/launcher=joblib`` (see the module docstring); the options are hydra-joblib-launcher's."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra.core.utils import configure_log, filter_overrides, setup_globals
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        from harness.tracking.runs import raise_if_stop_requested

        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        joblib_cfg = dict(self.joblib)
        joblib_cfg["backend"] = "loky"  # the plugin's rule: the threading backend is incompatible with Hydra
        process_joblib_cfg(joblib_cfg)
        # the plugin's log line, which every sweep printed; the per-job lines below are the basic launcher's
        log.debug("Joblib.Parallel(%s) is launching %d jobs",
                 ",".join(f"{k}={v}" for k, v in joblib_cfg.items()), len(job_overrides))
        log.info("Launching jobs, sweep output dir : %s", sweep_dir)
        jobs = {initial_job_idx + k: list(overrides) for k, overrides in enumerate(job_overrides)}
        for idx, overrides in jobs.items():
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))

        results: dict[int, JobReturn] = {}
        unexplained = 0
        while pending := [idx for idx in jobs if idx not in results]:
            with tempfile.TemporaryDirectory(prefix=".joblib-ledger-", dir=sweep_dir) as folder:
                ledger = Ledger(Path(folder))
                try:
                    returns = self._run_pool(ledger, {idx: jobs[idx] for idx in pending}, joblib_cfg)
                except TerminatedWorkerError as error:
                    raise_if_stop_requested()  # a signalled sweep stops; its runs are ended as it exits
                    died = self._settle_break(ledger, pending, jobs, results, error)
                    unexplained = 0 if died else unexplained + 1
                    if unexplained > MAX_UNEXPLAINED_BREAKS:
                        raise
                    continue
            results.update(zip(pending, returns, strict=True))
        return [results[idx] for idx in jobs]

    def _run_pool(self, ledger: Ledger, jobs: dict[int, list[str]], joblib_cfg: dict[str, Any]
                  ) -> list[JobReturn]:
        """Run jobs (number -> overrides) in one joblib.Parallel call on the watched loky backend."""
        from hydra.core.singleton import Singleton
        from joblib import Parallel, delayed

        from harness.tracking.orphans import process_tags

        launcher = process_tags()
        options = {key: value for key, value in joblib_cfg.items() if key != "backend"}
        parallel = Parallel(backend=watched_loky_backend(ledger.take_roll_call), **options)
        singleton_state = Singleton.get_state()
        return parallel(delayed(execute_recorded_job)(str(ledger.folder), launcher, idx, overrides,
                                                      self.hydra_context, self.config, self.task_function,
                                                      singleton_state)
                        for idx, overrides in jobs.items())

    def _settle_break(self, ledger: Ledger, pending: list[int], jobs: dict[int, list[str]],
                      results: dict[int, JobReturn], error: BaseException) -> list[int]:
        """Sort the jobs of a broken pool: ended (results kept), died (FAILED, reported), torn down
        (reported, run again) or not started (run again); returns the jobs that died."""
        gone = ledger.gone_at_break or set()
        died = [idx for idx in pending if idx in gone and ledger.result(idx) is None]
        codes = reported_exit_codes(error)
        cause = exit_description(codes[0] if len(died) == 1 and len(codes) == 1 else None)
        if len(died) != 1 and codes:
            cause = "died (the pool reported " + ", ".join(exit_description(c) for c in codes) + ")"
        label = " and ".join(f"job {idx}" for idx in died) or "a worker between jobs"
        torn_down, not_started = [], []
        for idx in pending:
            done, process = ledger.result(idx), ledger.process(idx)
            if done is not None:
                results[idx] = done
            elif process is None:
                not_started.append(idx)
            elif idx in died:
                lost: LostJob = WorkerDied(f"job {idx}'s worker process {cause}", idx, process)
                log.error("job %d failed: %s: %s", idx, type(lost).__name__, lost)
                results[idx] = self._report(jobs[idx], idx, lost, final=True)
            else:
                torn_down.append(idx)
                lost = TornDown(f"torn down with the joblib pool when {label} died; the job ran again in a "
                                f"fresh pool", idx, process)
                self._report(jobs[idx], idx, lost, final=False)
        if torn_down or not_started:
            again = [f"job {idx} (torn down)" for idx in torn_down] + [f"job {idx}" for idx in not_started]
            log.warning("the joblib pool broke (%s died); a fresh pool runs %s", label, ", ".join(again))
        return died

    def _report(self, overrides: list[str], idx: int, lost: LostJob, *, final: bool) -> JobReturn:
        """Tell Hydra's callbacks (on_job_end) that this attempt of job idx ended with lost; a final one
        (the job will not run again) returns what the sweeper receives for the job."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
            config.hydra.job.num = idx
        output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(output_dir.resolve())
        task_cfg = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        hydra_cfg = OmegaConf.create({"hydra": config.hydra})
        failed = JobReturn(overrides=overrides, cfg=task_cfg, hydra_cfg=hydra_cfg, working_dir=os.getcwd(),
                           task_name=str(config.hydra.job.name), status=JobStatus.FAILED, _return_value=lost)
        self.hydra_context.callbacks.on_job_end(config=config, job_return=failed)
        if final and hasattr(self.task_function, FAILED_JOB_VALUE):
            return replace(failed, status=JobStatus.COMPLETED,
                           _return_value=getattr(self.task_function, FAILED_JOB_VALUE))
        return failed


def register_joblib_launcher() -> None:
    """Make ``hydra/launcher=joblib`` launch with JoblibLauncher in this process (idempotent): the plugin's
    options schema (its dataclass, so every option keeps its default and type) with this ``_target_``,
    stored over the plugin's own entry after Hydra's plugin scan has made it."""
    from hydra.core.config_store import ConfigStore

    register_plugin(PLUGIN_MODULE, JoblibLauncher, "harness.joblib_launcher")
    ConfigStore.instance().store(group="hydra/launcher", name="joblib", node=JoblibLauncherConf,
                                 provider="harness")


__all__ = ["LAUNCHER_TARGET", "JoblibLauncher", "LostJob", "TornDown", "WorkerDied", "failed_jobs_return",
           "register_joblib_launcher"]
