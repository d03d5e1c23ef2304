"""Hyperparameter search with Optuna behind Hydra's ``-m hydra/sweeper=optuna``
(conf/hydra/sweeper/optuna.yaml, presets in conf/hparams_search/).

``register_optuna_sweeper()``, called by the apps before Hydra starts, registers
harness.search.optuna_sweeper.OptunaSweeper as ``hydra_plugins.harness_optuna_sweeper.OptunaSweeper``, which
Hydra accepts as a sweeper (harness.plugin_registry). It imports neither Optuna nor MLflow.

A trial's job runs with ``$HARNESS_OPTUNA_TRIAL`` set to its trial number (the sweeper's
``hydra.job.env_set`` override), so that the job names its run after the trial from the start
(``trial_run_name``): the terminal and MLflow show one name, also for a run cut short.
"""

from __future__ import annotations

import os

from harness.plugin_registry import register_plugin

PLUGIN_MODULE = "hydra_plugins.harness_optuna_sweeper"
SWEEPER_TARGET = f"{PLUGIN_MODULE}.OptunaSweeper"  # hydra.sweeper._target_ of conf/hydra/sweeper/optuna.yaml
TRIAL_ENV = "HARNESS_OPTUNA_TRIAL"  # the trial number of the job running in this process


def current_trial() -> str | None:
    """The Optuna trial number this job runs (a string), or None outside a search's trial."""
    return os.environ.get(TRIAL_ENV) or None


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


__all__ = ["PLUGIN_MODULE", "SWEEPER_TARGET", "TRIAL_ENV", "current_trial", "register_optuna_sweeper",
           "trial_run_name"]
