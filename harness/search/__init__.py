"""Hyperparameter search with Optuna behind Hydra's ``-m hydra/sweeper=optuna``
(conf/hydra/sweeper/optuna.yaml, presets in conf/hparams_search/).

Hydra 1.3 instantiates a sweeper only from a class registered under the ``hydra_plugins`` package
(hydra/core/plugins.py, ``is_in_toplevel_plugins_module``): a ``_target_`` anywhere else is refused with
"Invalid plugin ... not the hydra_plugins package". ``register_optuna_sweeper()``, called by the apps before
Hydra starts, registers harness.search.optuna_sweeper.OptunaSweeper under the name
``hydra_plugins.harness_optuna_sweeper.OptunaSweeper`` (a module made at run time; nothing is installed
into site-packages). It imports neither Optuna nor MLflow.
"""

from __future__ import annotations

import sys
import types

PLUGIN_MODULE = "hydra_plugins.harness_optuna_sweeper"
SWEEPER_TARGET = f"{PLUGIN_MODULE}.OptunaSweeper"  # hydra.sweeper._target_ of conf/hydra/sweeper/optuna.yaml


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` instantiable in this process (idempotent)."""
    from hydra.core.plugins import Plugins

    from harness.search.optuna_sweeper import OptunaSweeper

    module = sys.modules.get(PLUGIN_MODULE)
    if module is None:
        module = types.ModuleType(PLUGIN_MODULE, "harness.search's sweeper under Hydra's plugin package")
        # The subclass only carries the name Hydra accepts; the behaviour is OptunaSweeper's.
        module.OptunaSweeper = type("OptunaSweeper", (OptunaSweeper,), {"__module__": PLUGIN_MODULE})
        sys.modules[PLUGIN_MODULE] = module
    Plugins.instance().register(module.OptunaSweeper)


__all__ = ["PLUGIN_MODULE", "SWEEPER_TARGET", "register_optuna_sweeper"]
