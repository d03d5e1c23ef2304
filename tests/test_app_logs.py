"""What the three apps log to the terminal: the harness's own lines and Hydra's, and every library's warnings,
never a library's INFO records (matplotlib's "generated new fontManager" on a fresh font cache, alembic's,
joblib's, ...): conf/hydra/job_logging/harness.yaml and hydra_logging/harness.yaml, which every app selects.
Real Hydra composition and real app subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_train_app import TINY, app_env

ROOT = Path(__file__).resolve().parents[1]
APPS = {  # app: (its search root, its config)
    "train.py": (ROOT / "conf", "config"),
    "gradient_flow.py": (ROOT / "conf", "gradient_flow"),
    "rnn_vs_arma.py": (ROOT / "conf" / "comparison", "rnn_vs_arma"),
}
LIBRARIES = ("matplotlib.font_manager", "alembic.runtime.migration", "joblib", "numexpr.utils", "PIL")

# Configures logging as Hydra does for the section of the app's composed config, then logs from each.
LOG_FROM_EACH = """
import logging, sys
from hydra import compose, initialize_config_dir
from hydra.core.utils import configure_log
from omegaconf import OmegaConf

config_dir, config_name, section, output_dir, libraries = sys.argv[1:6]
with initialize_config_dir(config_dir=config_dir, version_base=None):
    cfg = compose(config_name=config_name, return_hydra_config=True)
OmegaConf.set_readonly(cfg, False)
cfg.hydra.runtime.output_dir, cfg.hydra.job.name = output_dir, "job"
configure_log(cfg.hydra[section])
for name in libraries.split(","):
    logging.getLogger(name).info("INFO of %s", name)
    logging.getLogger(name).warning("WARNING of %s", name)
logging.getLogger("harness.search.optuna_sweeper").info("the harness's own line")
logging.getLogger("hydra._internal.core_plugins.basic_launcher").info("Hydra's job line")
"""


@pytest.mark.parametrize("section", ["job_logging", "hydra_logging"])
@pytest.mark.parametrize("app", sorted(APPS))
def test_library_info_stays_out_and_warnings_and_own_lines_show(tmp_path: Path, app: str,
                                                                section: str) -> None:
    config_dir, config_name = APPS[app]
    done = subprocess.run([sys.executable, "-c", LOG_FROM_EACH, str(config_dir), config_name, section,
                           str(tmp_path), ",".join(LIBRARIES)], capture_output=True, text=True, check=True)
    shown = [line.split("] ")[-1].removeprefix("- ") for line in done.stdout.splitlines()]
    assert shown == [*(f"WARNING of {name}" for name in LIBRARIES), "the harness's own line",
                     "Hydra's job line"], done.stdout


COMMANDS = {  # small runs of each app that draw a figure (matplotlib loads) with tracking off
    "train.py": [*TINY, "trainer.steps=4", "tracking=off"],
    "gradient_flow.py": ["study=closed_form", "closed_form.v_f=[0.5]", "closed_form.T=[8]", "n_jobs=1",
                         "tracking=off"],
    "rnn_vs_arma.py": ["series=[ar2]", "seed=[0]", "model=[arma]", "length=300", "models.arma.max_p=1",
                       "models.arma.max_q=1", "link.enabled=false", "n_jobs=1", "progress=false",
                       "tracking=off"],
}


@pytest.mark.parametrize("app", sorted(COMMANDS))
def test_an_app_on_an_empty_font_cache_prints_no_matplotlib_info(tmp_path: Path, app: str) -> None:
    env = {**app_env(tmp_path), "MPLCONFIGDIR": str(tmp_path / "matplotlib")}  # an empty font cache
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / app), *COMMANDS[app]], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "matplotlib").glob("fontlist-*.json"))  # matplotlib built its font cache
    # before: "[<time>][matplotlib.font_manager][INFO] - generated new fontManager" among the app's lines
    assert "[INFO]" not in done.stdout + done.stderr, done.stdout
