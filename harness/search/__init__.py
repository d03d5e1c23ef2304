"""Hyperparameter search with Optuna behind Hydra's ``-m hydra/sweeper=optuna``
(conf/hydra/sweeper/optuna.yaml, presets in conf/hparams_search/).

``register_optuna_sweeper()``, called by the apps before Hydra starts, registers
harness.search.optuna_sweeper.OptunaSweeper as ``hydra_plugins.harness_optuna_sweeper.OptunaSweeper``, which
Hydra accepts as a sweeper (harness.plugin_registry). It imports neither Optuna nor MLflow.

A trial's job finds its study and trial number in the search's sweep dir (TRIALS_FILE, which the sweeper
writes before it launches a batch, by Hydra job number), so that the job names its run after the trial from
the start (``trial_run_name``) and tells what a stop means for it: the terminal and MLflow show one name,
also for a run cut short. A file, not an override: the jobs' overrides are what the user reads (the
launcher's job lines, the runs' ``overrides`` tag, continue commands), and it reaches every launcher's
jobs (basic, joblib's workers, submitit's nodes) as the sweep's other files do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from harness.plugin_registry import register_plugin

PLUGIN_MODULE = "hydra_plugins.harness_optuna_sweeper"
SWEEPER_TARGET = f"{PLUGIN_MODULE}.OptunaSweeper"  # hydra.sweeper._target_ of conf/hydra/sweeper/optuna.yaml
TRIALS_FILE = "optuna_trials.json"  # in a search's sweep dir: {"study": name, "trials": {job: trial}}


def write_trials(sweep_dir: Path, study: str, trials: Mapping[int, int], stored: bool) -> None:
    """Record which trial of study each Hydra job number runs (trials: job -> trial number), and whether
    the study outlives the search (stored: in a storage, not in memory), for the jobs (current_search) to
    read; replaces the file atomically (a job may be reading it)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    partial = sweep_dir / f".{TRIALS_FILE}.partial"
    partial.write_text(json.dumps({"study": study, "stored": stored,
                                   "trials": {str(job): n for job, n in trials.items()}}))
    partial.replace(sweep_dir / TRIALS_FILE)


def current_search() -> tuple[str, str, bool] | None:
    """(study name, trial number as a string, whether the study is stored) of the search trial the running
    Hydra job runs, or None outside one (no multirun, another sweeper, a job the sweeper did not list; a
    grid sweep in an earlier search's sweep dir is none)."""
    from harness.tracking.runs import hydra_sweep_dir

    sweep_dir = hydra_sweep_dir()
    path = None if sweep_dir is None else sweep_dir / TRIALS_FILE
    if path is None or not path.is_file():
        return None
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    if hydra.sweeper.get("_target_") != SWEEPER_TARGET:
        return None
    recorded = json.loads(path.read_text())
    trial = recorded["trials"].get(str(hydra.job.num))
    return None if trial is None else (recorded["study"], str(trial), bool(recorded["stored"]))


def current_trial() -> str | None:
    """The Optuna trial number this job runs (a string), or None outside a search's trial."""
    search = current_search()
    return None if search is None else search[1]


def trial_run_name(name: str, trial: int | str | None) -> str:
    """The run name of Optuna trial number trial: name + '-t<trial>' ('adding-elman-s0-t3'); name itself
    when trial is None or name ends so already."""
    if trial is None:
        return name
    suffix = f"-t{trial}"
    return name if name.endswith(suffix) else name + suffix


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` instantiable in this process (idempotent)."""
    from harness.search.optuna_sweeper import OptunaSweeper

    register_plugin(PLUGIN_MODULE, OptunaSweeper, "harness.search's sweeper")


__all__ = ["PLUGIN_MODULE", "SWEEPER_TARGET", "TRIALS_FILE", "current_search", "current_trial",
           "register_optuna_sweeper", "trial_run_name", "write_trials"]
