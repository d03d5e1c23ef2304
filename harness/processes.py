"""Pure calls spread over worker processes (the studies' cells, the ARMA order search's fits).

joblib is imported only when more than one process is asked for (its loky workers are reused between calls,
so only a process's first parallel call pays their start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any


@contextmanager
def results_in_processes(calls: Sequence[tuple[Callable[..., Any], tuple]], n_jobs: int = 1
                         ) -> Iterator[Iterator[Any]]:
    """``with results_in_processes(calls, n_jobs) as results:`` function(*args) for function, args in calls,
    in that order, each as soon as it and the calls before it are done; n_jobs > 1 runs them in joblib
    processes, which go on computing the rest while the caller handles (logs) the results it has. Leaving
    the block early (an error, a signal) stops the processes.

    Each call must be a pure function of its arguments, so the number of processes changes no number.
    """
    if n_jobs <= 1 or len(calls) <= 1:
        results: Iterator[Any] = (function(*args) for function, args in calls)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=min(n_jobs, len(calls)), return_as="generator")(
            delayed(function)(*args) for function, args in calls)
    with closing(results):
        yield results
