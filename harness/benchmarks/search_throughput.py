"""What an Optuna search costs over a plain sweep: `python -m harness.benchmarks.search_throughput
[--trials 16] [--steps 300]`.

The same `--trials` short runs of experiments/train.py (harness.benchmarks.sweep_throughput's adding/50
Elman H=16 runs, `--steps` Adam steps) on 2 joblib workers, each on a fresh SQLite store: once as a grid
sweep over seeds 0..trials-1 (the reference), once as `hydra/sweeper=optuna` searching the seed in the same
range (TPE, batches of 2 trials, SQLite study beside the store). Training costs the same in both, so the
difference is the search: asking and telling the study, tagging each trial's runs, and the wait at the end of
each batch for its slower trial. Prints trials per minute of each (whole command, and steady: 2 workers /
warm per-job time), the per-trial overhead ((search wall - grid wall) / trials, the difference of the warm
per-job times, and the difference of the CPU time of all processes per trial, the least sensitive to other
load), the start-up and end of each command (the search's end adds the parent's description and Optuna's
figures) and the load average. Single measurements of whole sweeps: other load on the machine shifts them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from harness.benchmarks.sweep_throughput import LAUNCHERS, job_times, run_sweep

WORKERS = 2


def search_overrides(trials: int) -> list[str]:
    """The joblib launcher's overrides plus the Optuna sweeper asking batches of WORKERS trials."""
    launcher, _ = LAUNCHERS["joblib"]
    return [*launcher, "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.n_jobs={WORKERS}", "hydra.sweeper.study_name=benchmark"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"{args.trials} runs (adding/50, Elman H=16, {args.steps} steps) on {WORKERS} joblib workers, "
          f"fresh SQLite store each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    walls, cpus, per_job, spans = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in (("grid", LAUNCHERS["joblib"][0]), ("search", search_overrides(args.trials))):
            walls[name], cpus[name] = run_sweep(name, args.trials, args.steps, Path(tmp), overrides)
            cpu = cpus[name]
            per_job[name], training, spans[name] = job_times(name, Path(tmp), WORKERS)
            print(f"   {name:6s}: wall {walls[name]:5.1f} s ({60 * args.trials / walls[name]:5.1f} "
                  f"trials/min), steady {60 * WORKERS / per_job[name]:5.1f} trials/min (per job "
                  f"{per_job[name]:.2f} s, training {training:.2f} s), jobs' span {spans[name]:5.1f} s, "
                  f"CPU {cpu:5.1f} s")
    overhead = (walls["search"] - walls["grid"]) / args.trials
    cpu_overhead = (cpus["search"] - cpus["grid"]) / args.trials
    print(f"   per-trial overhead of the search: {overhead:+.2f} s of wall per trial ((search - grid) / "
          f"trials), {per_job['search'] - per_job['grid']:+.2f} s per warm job, {cpu_overhead:+.3f} s of CPU "
          f"per trial; ratio search / grid: wall {walls['search'] / walls['grid']:.2f}, span "
          f"{spans['search'] / spans['grid']:.2f}, CPU {cpus['search'] / cpus['grid']:.2f}")
    print("   start-up and end, wall - jobs' span (the search's end adds the parent's description and "
          f"Optuna's figures): grid {walls['grid'] - spans['grid']:.1f} s, "
          f"search {walls['search'] - spans['search']:.1f} s")


if __name__ == "__main__":
    main()
