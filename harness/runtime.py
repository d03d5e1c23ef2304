"""Process-wide settings the entry points apply before any computation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_to_one_thread() -> None:
    """Limit every BLAS of the process to one thread, the ones loaded already and the ones loaded later.

    The recurrent loop multiplies small matrices, where BLAS threads cost more in synchronisation than they
    give; on a shared 2-core machine a threaded small matmul or SVD was measured 20-1000x slower than a
    single-threaded one. Parallelism comes from running jobs side by side instead (joblib launcher).
    NumPy and SciPy ship separate OpenBLAS libraries, and SciPy's loads only when statsmodels or scipy.linalg
    is first imported: threadpoolctl limits the libraries loaded now, and the thread variables (set to 1)
    make every library loaded later, in this process and in its child processes, start with one thread.
    """
    import os

    from threadpoolctl import threadpool_limits

    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"
    threadpool_limits(limits=1, user_api="blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """``with one_blas_thread():`` limits every BLAS loaded so far to one thread for the block, as
    pin_blas_to_one_thread does for a whole process: for library calls from a script or notebook that did not
    pin. A library loaded inside the block keeps its own thread count, so callers load theirs (SciPy's, with
    statsmodels) first. Costs about 4 ms; the previous limits come back at the end of the block.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def export_project_root() -> None:
    """Expose the project root to the Hydra configs (``${oc.env:HARNESS_PROJECT_ROOT}``), so Hydra's own
    output folders land under <project>/mlruns/hydra whatever the working directory; that folder (and
    mlruns/, when missing or as a clone brings it) is made private to the user first, as the store's are
    (Hydra would make them with the umask's mode, and a job's folder holds its full config)."""
    import os
    from pathlib import Path

    from harness.tracking import project_root
    from harness.tracking.store import claim_cloned_store_dir, create_private_dir

    root = os.environ.setdefault("HARNESS_PROJECT_ROOT", str(project_root()))
    claim_cloned_store_dir(Path(root) / "mlruns")
    create_private_dir(Path(root) / "mlruns" / "hydra")


def silence_artifact_progress_bars() -> None:
    """Turn off MLflow's "Downloading artifacts" progress bars (unless the user's environment sets
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR): the harness downloads only its own checkpoints, in a fraction of a
    second, and each bar drew three lines of noise in stderr; the variable reaches the joblib workers too."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet_library_logs() -> None:
    """Keep MLflow's INFO messages ("Creating initial MLflow database tables...", on a fresh store) out of
    the terminal, in this process and in those it starts: MLflow reads MLFLOW_LOGGING_LEVEL when it is
    imported. Its warnings and errors still show, and a user's own MLFLOW_LOGGING_LEVEL wins; the harness
    prints its own account of what it did. (Optuna has no such variable: harness.search.study sets its
    level.)

    Also MLflow's two lines per run ended on a tracking server ("🏃 View run ... at: ..." and "🧪 View
    experiment at: ...", 14 in a 6-job sweep): its client writes them to stdout, not through a logger,
    unless MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT is true (read at each run's end; a user's own value wins).
    The harness prints each run's link itself; suppressed, MLflow also skips the get_run it made for them.
    """
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


_frozen = False


def freeze_long_lived_objects() -> None:
    """Once per process: collect garbage, then exclude every object alive now from later collections.

    A sweep's worker holds a few hundred thousand objects of Hydra, MLflow, SQLAlchemy and matplotlib that
    live as long as it does; every full collection walked all of them again, about 0.2 s, and a joblib worker
    triggered one every second or third job. Frozen (gc.freeze), they are left out: collections then walk
    only what the later runs created. Called after a process's first run, when those modules are loaded.
    Frozen objects are still freed when their last reference goes; only a reference cycle among them that
    became garbage later would stay (gc.unfreeze() hands them back to the collector).
    """
    global _frozen
    if _frozen:
        return
    import gc

    gc.collect()
    gc.freeze()
    _frozen = True
