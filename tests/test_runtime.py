"""harness.runtime: BLAS pinning reaches every BLAS the process loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from harness.runtime import pin_blas_to_one_thread
pin_blas_to_one_thread()
import statsmodels.tsa.arima.model  # loads SciPy's own OpenBLAS after the pinning
from threadpoolctl import threadpool_info
print(json.dumps([(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]))
"""


def test_blas_loaded_after_pinning_runs_one_thread_too() -> None:
    # without the thread variables conftest exports for every test subprocess, as a user's shell has them
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                         env=env).stdout
    libraries = json.loads(out.strip().splitlines()[-1])
    assert any("scipy" in path for path, _ in libraries), libraries  # SciPy has an OpenBLAS of its own
    assert all(threads == 1 for _, threads in libraries), libraries
