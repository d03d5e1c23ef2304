"""OptunaSweeper: a Hydra sweeper that drives an Optuna study through ask and tell.

Each batch of ``n_jobs`` trials is asked from the study, turned into Hydra overrides and run by the
configured launcher (basic, joblib, submitit); every returned value is told back. A job that raises, or
returns NaN, infinity or no number (a diverged run), is told as a FAILED trial and the search goes on; a
study whose every trial failed ends the command with one line. The study stops asking once it holds
``n_trials`` trials, whichever processes ran them, so a second process (or a SLURM job) shares the work and an
interrupted search resumes with what is left. A trial cut short when the sweep stops (a signal, a crash of
the launcher) is told FAILED with the user attribute ``interrupted``, does not count towards n_trials, and
its parameters are queued, so the resumed search runs it first; the runs it had started are tagged with it.

Every job finds its study and trial number in the sweep dir (harness.search.write_trials), so its run is
named after the trial from the start: ``<task>-<model>-s<seed>-t<trial>``, the sampled values being its
params and its ``optuna.params`` tag. The sampler draws each trial from its own seed
(harness.search.sampler), and the study records its trials' fixed config (harness.search.fixed): a study
named by hydra.sweeper.study_name refuses an invocation with another one before the sweep's parent run
exists (check_search); without a name, each fixed config has a study of its own
(harness.search.study.default_study_name).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.search import write_trials
from harness.search.fixed import fixed_config
from harness.search.space import SearchSpace, parse_search_space
from harness.search.study import (
    INTERRUPTED,
    check_study,
    default_study_name,
    objective_direction,
    open_study,
    remaining_trials,
    resolve_storage,
    storage_label,
    storage_lock,
    stored_study,
)

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"


def trial_value(job_return: Any) -> tuple[float | None, str]:
    """(value, "") of a finished job, or (None, why it failed) for an exception, no number, NaN or inf."""
    try:
        value = job_return.return_value
    except Exception as exc:  # the job's own exception, re-raised by JobReturn
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number"
    if not math.isfinite(number):
        return None, f"the job returned {number} (diverged)"
    return number, ""


def abandon(study: Any, trial: Any) -> None:
    """End a trial its sweep could not finish: FAILED and marked interrupted, its parameters queued again."""
    from optuna.trial import TrialState

    trial.set_user_attr(INTERRUPTED, True)
    study.tell(trial, state=TrialState.FAIL)
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def study_state(before: int, requeued: int) -> str:
    """The start line's word on its study: new, or continued with the trials it held before this invocation
    (before: what the parent's tag optuna.trials_before counts) and how many of them were interrupted and
    are queued again (requeued), which this invocation runs first."""
    if not before + requeued:
        return "new"
    earlier = f"continued: {before} earlier trial{'' if before == 1 else 's'}"
    return f"{earlier}, {requeued} of them interrupted and queued again to run first" if requeued else earlier


class SearchDone(Exception):
    """A search whose study already holds the trials it wants: nothing to run, so no sweep parent run either;
    its message is the one line that says so (finished_study_line)."""


def finished_study_line(study: Any, n_trials: int, settings: Any) -> str:
    """What a search whose study already holds its n_trials trials says instead of running: that, how to grow
    the study, and its best trial with its run and that run's sweep parent (the parent's page in the UI)."""
    from optuna.trial import TrialState

    from harness.search.record import trial_place

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    line = (f"study {study.study_name} already holds the {n_trials} trials wanted ({len(complete)} "
            f"complete): nothing to run, no run created; raise hydra.sweeper.n_trials above {n_trials} to "
            "grow it")
    if not complete:
        return f"{line}; no trial completed"
    best = study.best_trial
    return f"{line}; best trial {best.number} (value {best.value:.6g}){trial_place(best, settings)}"


def check_search(config: DictConfig) -> None:
    """Raise ValueError for what the search of config (a composed multirun config with hydra/sweeper=optuna)
    would refuse: its settings, its search space, and a stored study of its name that optimises the other
    way or ran with another fixed config; SearchDone when that study already holds the trials wanted. Called
    by harness.app.SweepCheck before the sweep's parent run exists; creates no study."""
    from hydra.core.global_hydra import GlobalHydra

    settings = {key: value for key, value in config.hydra.sweeper.items() if key != "_target_"}
    try:
        sweeper = OptunaSweeper(**settings)
    except TypeError as exc:  # an argument the sweeper does not take
        raise ValueError(f"hydra.sweeper: {exc}".replace("OptunaSweeper.__init__() ", "")) from None
    plan = sweeper.plan(config, OmegaConf.to_container(config.hydra.overrides.task, resolve=False),
                        GlobalHydra.instance().config_loader())
    stored = stored_study(plan.study_name, plan.storage)
    if stored is not None:
        check_study(stored, plan.storage, plan.direction, plan.fixed)
        if not remaining_trials(stored, sweeper.n_trials):
            from harness.tracking.callback import sweep_settings

            raise SearchDone(finished_study_line(stored, sweeper.n_trials, sweep_settings(config)))


@dataclass(frozen=True)
class Plan:
    """What a search needs before it opens its study: its name (hydra.sweeper.study_name, else
    default_study_name), direction (minimize | maximize), storage (an Optuna storage URL, None in memory),
    the search space, the sampler and the trials' fixed config (harness.search.fixed)."""

    study_name: str
    direction: str
    storage: str | None
    space: SearchSpace
    sampler: Any
    fixed: dict[str, Any]


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna`` (conf/hydra/sweeper/optuna.yaml documents every argument)."""

    def __init__(self, study_name: str | None = None, storage: str | None = None, direction: str = "auto",
                 n_trials: int = 20, n_jobs: int = 1, sampler: str = "tpe", seed: int | None = 0,
                 sampler_options: Any = None, params: Any = None, top_trials: int = 10,
                 ignored_keys: Any = ()) -> None:
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("top_trials", top_trials)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"hydra.sweeper.{key} must be an integer >= 1, got {value!r}")
        if study_name is not None and (not isinstance(study_name, str) or not study_name):
            raise ValueError(f"hydra.sweeper.study_name must be null or a non-empty string, "
                             f"got {study_name!r}")
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.top_trials = n_trials, n_jobs, top_trials
        self.sampler, self.seed = sampler, seed
        self.sampler_options = OmegaConf.to_container(sampler_options) if sampler_options else {}
        self.params = OmegaConf.to_container(params) if params else {}
        ignored = OmegaConf.to_container(ignored_keys) if isinstance(ignored_keys, ListConfig) \
            else ignored_keys
        if not isinstance(ignored, list | tuple) or not all(isinstance(key, str) and key for key in ignored):
            raise ValueError(f"hydra.sweeper.ignored_keys must be a list of config keys, got {ignored!r}")
        self.ignored_keys = list(ignored)
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0
        self._trials: dict[int, int] = {}  # Hydra job number -> the trial it runs (write_trials)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        try:
            search = self._prepare(arguments)
        except ValueError as exc:
            # Hydra prints an exception from a sweeper with a traceback; SystemExit leaves with the one line
            sys.exit(f"config error: {exc}")
        study, space, recorder = search
        trials = study.get_trials(deepcopy=False)
        # the trials queued again (WAITING: an interrupted search's) are this invocation's to run, not earlier
        requeued = sum(t.state.name == "WAITING" for t in trials)
        before = len(trials) - requeued
        log.info("study %s (%s): %s, %s, sampler %s seed %s; %d trials wanted, %d to run", study.study_name,
                 study_state(before, requeued), storage_label(self._storage), study.direction.name.lower(),
                 self.sampler, self.seed, self.n_trials, remaining_trials(study, self.n_trials))
        recorder.start(before)
        while trials := self._ask(study, space):
            self._run_batch(study, space, recorder, trials)
        self._finish(study, recorder)

    def _ask(self, study: Any, space: SearchSpace) -> list[Any]:
        """The next batch: up to n_jobs trials, fewer when the study is nearly full, none when it is."""
        # Counting and asking under one lock: processes sharing an SQLite study never overshoot n_trials
        # (other storages have no such lock; each process may then add up to n_jobs - 1 trials too many).
        with storage_lock(self._storage):
            todo = min(remaining_trials(study, self.n_trials), self.n_jobs)
            return [study.ask(space.distributions) for _ in range(todo)]

    def plan(self, config: DictConfig, arguments: list[str], loader: Any) -> Plan:
        """The Plan of this search of config with the command line's arguments (loader: Hydra's config
        loader, which composes a trial's job config); ValueError names the first bad setting. Opens no
        study and no run."""
        from harness.search.sampler import make_sampler
        from harness.tracking.callback import sweep_app, sweep_settings

        app_config = OmegaConf.to_container(config, resolve=False)
        app_config.pop("hydra", None)
        direction = objective_direction(self.direction, app_config)
        storage = resolve_storage(self.storage, sweep_settings(config))
        space = parse_search_space(self.params, arguments)
        if not space.distributions:
            raise ValueError("hydra.sweeper.params: nothing to search; give at least one choice(), range() "
                             "or interval() (a preset of conf/hparams_search, or key=choice(...) on the "
                             "command line)")
        sampler = make_sampler(self.sampler, self.seed, self.sampler_options)
        # what every trial's job gets: the config with the fixed overrides, the searched keys left out
        from harness.app import job_config

        fixed = fixed_config(job_config(loader, config, space.fixed),
                             [*space.distributions, *self.ignored_keys])
        name = self.study_name or default_study_name(sweep_app(config), fixed)
        return Plan(name, direction, storage, space, sampler, fixed)

    def _prepare(self, arguments: list[str]) -> tuple[Any, SearchSpace, Any]:
        from harness.search.record import TrialRecorder
        from harness.tracking.callback import sweep_settings

        assert self.config is not None
        plan = self.plan(self.config, arguments, self.hydra_context.config_loader)
        self._storage = plan.storage
        study = open_study(plan.study_name, plan.storage, plan.direction, plan.sampler, plan.fixed)
        return study, plan.space, TrialRecorder(sweep_settings(self.config), study, self.top_trials,
                                                plan.storage)

    def _run_batch(self, study: Any, space: SearchSpace, recorder: Any, trials: list[Any]) -> None:
        from optuna.trial import TrialState

        assert self.config is not None
        told: set[int] = set()
        self._trials.update((job, t.number) for job, t in enumerate(trials, start=self.job_idx))
        write_trials(Path(self.config.hydra.sweep.dir), study.study_name, self._trials,
                     stored=self._storage is not None)
        jobs = [space.overrides(t.params) for t in trials]
        try:
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            for job, (trial, job_return) in enumerate(zip(trials, returns, strict=True), start=self.job_idx):
                value, error = trial_value(job_return)
                recorder.link(trial, job, value, error)
                if value is None:
                    log.warning("trial %d failed: %s", trial.number, error)
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
                told.add(trial.number)
            self.job_idx += len(returns)
        finally:
            cut = [(job, trial) for job, trial in enumerate(trials, start=self.job_idx)
                   if trial.number not in told]
            for _, trial in cut:
                abandon(study, trial)
            # the study first (a trial left RUNNING would count as running elsewhere), then the runs the cut
            # trials had started (the basic launcher runs a batch one job after another: some may have none)
            for job, trial in cut:
                recorder.tag_interrupted(trial, job)

    def _finish(self, study: Any, recorder: Any) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        recorder.describe_parent()
        if not complete:
            sys.exit(f"search error: all {len(trials)} trials of study {study.study_name!r} failed (diverged "
                     "or raised); see the failed child runs or the log above")
        best = study.best_trial
        assert self.config is not None
        results = {"study": study.study_name, "storage": storage_label(self._storage),
                   "direction": study.direction.name.lower(), "trials": len(trials),
                   "complete": len(complete), "best_trial": best.number, "best_value": best.value,
                   "best_params": dict(best.params)}
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        log.info("best trial %d of %d (%d complete): value %.6g, %s", best.number, len(trials), len(complete),
                 best.value, " ".join(f"{k}={v}" for k, v in best.params.items()))
