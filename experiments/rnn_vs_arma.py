"""The RNN-vs-ARMA comparison, the project's main job (config: conf/comparison/rnn_vs_arma.yaml).

    python experiments/rnn_vs_arma.py                              # whole grid under one parent run
    python experiments/rnn_vs_arma.py series=[ar2,setar] model=[arma,lstm] seed=[0] length=600 tracking=off
    python experiments/rnn_vs_arma.py -m series=ar2,setar model=arma,lstm hydra/launcher=joblib
    python experiments/rnn_vs_arma.py rebuild=<parent run id>       # the table again, from the store alone
    python experiments/rnn_vs_arma.py -m series=ar2,setar model=arma,lstm resume_sweep=<sweep parent id>
                                                                   # finish a stopped sweep: its missing cells

The config lives in its own search root (conf/comparison, with conf/tracking and conf/hydra linked in) because
conf/ has a `model` config group: there, `model=arma` would select a group option instead of setting the list.
Bad input (Hydra's errors and the study's checks) exits with status 1 and one line `config error: ...`
before any run is created; a -m sweep is checked job by job before it starts (harness.app).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.app import config_errors_exit, run_app
from harness.search import register_optuna_sweeper
from harness.studies.rnn_vs_arma import allowed_keys


@hydra.main(version_base=None, config_path="../conf/comparison", config_name="rnn_vs_arma")
def main(cfg: DictConfig) -> float | None:
    """In a -m sweep, returns the job's validation objective (mean best validation MSE of its RNN cells),
    what hydra/sweeper=optuna minimises."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.studies import rnn_vs_arma

    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    with config_errors_exit():
        result = rnn_vs_arma.main(OmegaConf.to_container(cfg, resolve=True), sweep=sweep,
                                  overrides=list(hydra_cfg.overrides.task),
                                  job_num=hydra_cfg.job.num if sweep else None)
    return result.attrs.get("objective") if sweep else None


if __name__ == "__main__":
    register_optuna_sweeper()
    run_app(main, allowed_keys)
