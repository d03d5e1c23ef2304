"""The `python -m harness...` commands the README lists run without runpy's warning: no package on the way
to a command's module imports that module (runpy then warns that it is 'found in sys.modules ... prior to
execution', and the command runs as a second copy of it). And they print no library INFO chatter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(set(re.findall(r"python -m (harness[\w.]*)", (ROOT / "README.md").read_text())))


def test_the_readme_lists_commands():
    assert {"harness.tracking.reap", "harness.tracking.replay", "harness.ui", "harness.report",
            "harness.benchmarks.train_step"} <= set(COMMANDS)


@pytest.mark.parametrize("module", COMMANDS)
def test_no_package_imports_the_command_it_runs(module: str):
    parents = [module.rsplit(".", k)[0] for k in range(module.count("."), 0, -1)]
    code = (f"import importlib, sys; [importlib.import_module(p) for p in {parents!r}]; "
            f"print({module!r} in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_command_on_a_fresh_store_prints_no_mlflow_info(tmp_path: Path):
    # MLflow's "INFO mlflow.store.db.utils: Creating initial MLflow database tables..." without the quieting
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_LOGGING_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "harness.tracking.reap", "--dry-run", "--uri",
                           f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=True)
    assert done.stderr == ""
    assert done.stdout == "0 of 0 RUNNING runs had lost their process on this host\n"
