"""Pure calls spread over worker processes (the studies' cells, the ARMA order search's fits).

joblib is imported only when more than one process is asked for (its loky workers are reused between calls,
so only a process's first parallel call pays their start).
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


@contextmanager
def results_in_processes(calls: Sequence[tuple[Callable[..., Any], tuple]], n_jobs: int = 1
                         ) -> Iterator[Iterator[Any]]:
    """``with results_in_processes(calls, n_jobs) as results:`` function(*args) for function, args in calls,
    in that order, each as soon as it and the calls before it are done; n_jobs > 1 runs them in joblib
    processes, which go on computing the rest while the caller handles (logs) the results it has. Leaving
    the block early (an error, a signal) stops the processes; they ignore Ctrl-C, which the caller's process
    gets too, and run every BLAS on one thread (joblib's default is cores // n_jobs).

    Each call must be a pure function of its arguments, so the number of processes changes no number.
    """
    if n_jobs <= 1 or len(calls) <= 1:
        results: Any = (function(*args) for function, args in calls)
    else:
        from joblib import Parallel, delayed
        from joblib._parallel_backends import LokyBackend

        results = Parallel(n_jobs=min(n_jobs, len(calls)), return_as="generator",
                           backend=LokyBackend(inner_max_num_threads=1, initializer=_ignore_ctrl_c))(
            delayed(function)(*args) for function, args in calls)
    try:
        yield results
    finally:
        with warnings.catch_warnings():
            # joblib's note, when the block is left early, that some calls were cancelled or not used
            warnings.filterwarnings("ignore", ".*You could benefit from adjusting the input task iterator",
                                    UserWarning)
            results.close()


def _ignore_ctrl_c() -> None:
    """loky's initializer of the workers: Ctrl-C reaches every process of the terminal's group, and a
    worker's KeyboardInterrupt printed a traceback; the caller's own stops the workers (leaving the block)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
