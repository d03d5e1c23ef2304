"""Hyperparameter search with Optuna behind Hydra's ``-m hydra/sweeper=optuna``
(conf/hydra/sweeper/optuna.yaml, presets in conf/hparams_search/).

``register_optuna_sweeper()``, called by the apps before Hydra starts, registers
harness.search.optuna_sweeper.OptunaSweeper as ``hydra_plugins.harness_optuna_sweeper.OptunaSweeper``, which
Hydra accepts as a sweeper (harness.plugin_registry). It imports neither Optuna nor MLflow.
"""

from __future__ import annotations

from harness.plugin_registry import register_plugin

PLUGIN_MODULE = "hydra_plugins.harness_optuna_sweeper"
SWEEPER_TARGET = f"{PLUGIN_MODULE}.OptunaSweeper"  # hydra.sweeper._target_ of conf/hydra/sweeper/optuna.yaml


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` instantiable in this process (idempotent)."""
    from harness.search.optuna_sweeper import OptunaSweeper

    register_plugin(PLUGIN_MODULE, OptunaSweeper, "harness.search's sweeper")


__all__ = ["PLUGIN_MODULE", "SWEEPER_TARGET", "register_optuna_sweeper"]
