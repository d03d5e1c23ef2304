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


UNPINNED_LIBRARY_CALLS = """
import json
import numpy as np
import harness.forecast.arma as arma
from threadpoolctl import threadpool_info

def blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

seen = []
estimate = arma._estimate
def recording_estimate(*args):
    seen.append(blas_threads())
    return estimate(*args)
arma._estimate = recording_estimate
train = np.random.default_rng(0).standard_normal(120)
arma.select_arma(train, max_p=1, max_q=0)
arma.fit_arma(train, (1, 0))
print(json.dumps({"inside": seen, "after": blas_threads()}))
"""


def test_arma_fits_run_one_blas_thread_in_a_process_that_did_not_pin() -> None:
    # a notebook's process: two BLAS threads each, SciPy's loaded only by the first fit
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", UNPINNED_LIBRARY_CALLS], capture_output=True, text=True,
                         check=True, env=env).stdout
    threads = json.loads(out.strip().splitlines()[-1])
    assert threads["inside"] == [[1]] * 3, threads  # select_arma's two grid points, then fit_arma
    assert threads["after"] == [2], threads  # the caller's own setting comes back
