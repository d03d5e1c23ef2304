"""Vanishing/exploding-gradient studies (config: conf/gradient_flow.yaml).

python experiments/gradient_flow.py study=closed_form        # note 001's closed forms vs the backward pass
python experiments/gradient_flow.py study=spectral           # decay rate vs the (γ σ_max)^lag bound
python experiments/gradient_flow.py study=remedies           # success rate vs T per remedy
python experiments/gradient_flow.py -m study=remedies remedies.method=sgd,lstm hydra/launcher=joblib
python experiments/gradient_flow.py study=remedies rebuild=<parent run id>   # table + figures from the store
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.runtime import export_project_root


@hydra.main(version_base=None, config_path="../conf", config_name="gradient_flow")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.studies.gradient_flow import StudyInputError, run

    try:
        run(OmegaConf.to_container(cfg, resolve=True), sweep=HydraConfig.get().mode == RunMode.MULTIRUN)
    except StudyInputError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    export_project_root()
    main()
