"""Train one recurrent network on one sequence task, tracked in MLflow (configuration: conf/config.yaml).

    python experiments/train.py task=adding model=lstm trainer.steps=500
    python experiments/train.py experiment=binary_addition_note000
    python experiments/train.py -m model=elman,lstm task=adding task.length=25,50 [hydra/launcher=joblib]

Returns the final validation task metric so Hydra sweepers can optimise it. Configuration errors (Hydra's and
the schema's) end the program with one line on stderr and exit code 1 before any MLflow run exists; set
HYDRA_FULL_ERROR=1 for Hydra's full report. In a multirun a failing job is recorded (FAILED run), reported by
the sweep callback at the end, and the other jobs go on.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import ConfigError, allowed_keys
from harness.runtime import export_project_root
from harness.search import register_optuna_sweeper

log = logging.getLogger(__name__)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def train(cfg: DictConfig) -> float:
    from harness.run import run

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        objective = run(OmegaConf.to_container(cfg, resolve=True), overrides=list(hydra_cfg.overrides.task),
                        job_num=hydra_cfg.job.num if multirun else None,
                        output_dir=hydra_cfg.runtime.output_dir)
    except ConfigError as exc:
        if not multirun:
            # SystemExit passes through Hydra's job runner without its "Error executing job" report.
            sys.exit(f"config error: {exc}")
        log.error("job %s: config error: %s", hydra_cfg.job.num, exc)
        return math.nan
    except Exception as exc:
        if not multirun:
            raise
        # The run (if it was opened) is already FAILED with its error tag; keep the sweep going.
        log.error("job %s failed: %s: %s", hydra_cfg.job.num, type(exc).__name__, one_line(exc))
        return math.nan
    log.info("final validation task metric: %.6g", objective)
    return objective


def one_line(exc: BaseException) -> str:
    """An exception's message (and its cause's) folded into one line; listed options joined by commas."""
    text = "\n".join(str(part) for part in (exc, exc.__cause__) if part is not None)
    text = text.split("Config search path")[0]
    misspelt = re.search(r"Could not override '([^']+)'", text)
    if misspelt and "not in struct" in text:
        key = misspelt.group(1)
        allowed = allowed_keys(key)
        what = f"allowed: {allowed}" if allowed else "see the keys of its conf/ YAML"
        return f"unknown key {key!r}; {what} (or +{key}=... to add a key on purpose)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type="))]
    folded: list[str] = []
    listing = False
    for line in lines:
        # Hydra lists choices one per line under a heading ending in ':'; keep them on the heading's line.
        if listing and " " not in line:
            folded[-1] += (" " if folded[-1].endswith(":") else ", ") + line
        else:
            folded.append(line)
            listing = line.endswith(":")
    return "; ".join(folded)


def main() -> None:
    """Run the app with Hydra's output folders under <project>/mlruns/hydra and one-line config errors."""
    export_project_root()
    register_optuna_sweeper()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        train()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors here instead of printing a report
    try:
        train()
    except (HydraException, OmegaConfBaseException) as exc:
        sys.exit(f"config error: {one_line(exc)}")


if __name__ == "__main__":
    main()
