"""Vanishing/exploding-gradient studies (config: conf/gradient_flow.yaml).

python experiments/gradient_flow.py study=closed_form        # note 001's closed forms vs the backward pass
python experiments/gradient_flow.py study=spectral           # decay rate vs the (γ σ_max)^lag bound
python experiments/gradient_flow.py study=remedies           # success rate vs T per remedy
python experiments/gradient_flow.py -m study=remedies remedies.method=sgd,lstm hydra/launcher=joblib
python experiments/gradient_flow.py study=remedies rebuild=<parent run id>   # table + figures from the store
python experiments/gradient_flow.py study=remedies resume=<parent run id>    # finish a stopped study
python experiments/gradient_flow.py -m study=remedies remedies.method=sgd,lstm resume_sweep=<sweep parent id>
                                                   # finish a stopped sweep: only the cells it lacks
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.app import config_errors_exit, run_app
from harness.studies.gradient_flow import allowed_keys


@hydra.main(version_base=None, config_path="../conf", config_name="gradient_flow")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.studies.gradient_flow import run

    with config_errors_exit():
        sweep = HydraConfig.get().mode == RunMode.MULTIRUN
        run(OmegaConf.to_container(cfg, resolve=True), sweep=sweep,
            job_num=HydraConfig.get().job.num if sweep else None)


if __name__ == "__main__":
    run_app(main, allowed_keys)
