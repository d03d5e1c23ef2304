"""Train one recurrent network on one sequence task, tracked in MLflow (configuration: conf/config.yaml).

    python experiments/train.py task=adding model=lstm trainer.steps=500
    python experiments/train.py experiment=binary_addition_note000
    python experiments/train.py -m model=elman,lstm task=adding task.length=25,50 [hydra/launcher=joblib]

Ends with the run's name and id, the task metric next to its chance level, whether the task is solved and
the run's URL in the MLflow UI; returns the final validation task metric so Hydra sweepers can optimise it.
Configuration errors (Hydra's and the schema's, the memory estimate's) end the program with one line on
stderr and exit code 1 before any MLflow run exists; set HYDRA_FULL_ERROR=1 for Hydra's full report. A
multirun checks every job's config before it starts (harness.app.SweepCheck): one bad job refuses the whole
sweep and nothing is created. A job that fails while running is recorded (FAILED run), reported by the sweep
callback at the end, and the other jobs go on.
"""

from __future__ import annotations

import logging
import math

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.app import one_line, refuse, run_app
from harness.config import ConfigError, allowed_keys
from harness.joblib_launcher import failed_jobs_return
from harness.search import register_optuna_sweeper
from harness.tracking.redact import redact
from harness.tracking.server import ServerLost

log = logging.getLogger(__name__)
FAILED = math.nan  # a failed sweep job returns it: the sweep goes on; the Optuna sweeper tells a FAILED trial


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@failed_jobs_return(FAILED)  # also a job whose joblib worker died
def train(cfg: DictConfig) -> float:
    from harness.run import run

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        objective = run(OmegaConf.to_container(cfg, resolve=True), overrides=list(hydra_cfg.overrides.task),
                        job_num=hydra_cfg.job.num if multirun else None,
                        output_dir=hydra_cfg.runtime.output_dir, echo=print)
    except ConfigError as exc:
        if not multirun:
            refuse(str(exc))
        log.error("job %s: config error: %s", hydra_cfg.job.num, redact(str(exc)))
        return FAILED
    except ServerLost as lost:
        if not multirun:
            raise
        # The run finished offline (its record is in the job folder); the sweep goes on.
        log.error("job %s went offline: %s", hydra_cfg.job.num, lost)
        return FAILED
    except Exception as exc:
        if not multirun:
            raise
        # The run (if it was opened) is already FAILED with its error tag; keep the sweep going.
        log.error("job %s failed: %s: %s", hydra_cfg.job.num, type(exc).__name__, one_line(exc, allowed_keys))
        return FAILED
    return objective


def main() -> None:
    """Run the app with Hydra's output folders under <project>/mlruns/hydra and one-line config errors."""
    register_optuna_sweeper()
    run_app(train, allowed_keys)


if __name__ == "__main__":
    main()
