"""The `python -m harness...` commands the README lists run without runpy's warning: no package on the way
to a command's module imports that module (runpy then warns that it is 'found in sys.modules ... prior to
execution', and the command runs as a second copy of it)."""

from __future__ import annotations

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
