"""How fast sweeps go: `python -m harness.benchmarks.sweep_throughput [--jobs 16] [--steps 300]`.

1. A sweep of `--jobs` short runs of experiments/train.py (adding task, length 50, Elman H=16, `--steps`
   Adam steps, seeds 0..jobs-1), each launcher on a fresh empty SQLite store in a temp dir: the basic
   launcher (one process, jobs in turn) and the joblib launcher with 2 workers. Prints per launcher the wall
   time of the whole command, the CPU time of all its processes (and CPU / wall, the cores kept busy: the
   basic launcher keeps a little more than one busy, since each process's metric writer runs beside its
   training), the warm per-job time (the median gap between the run starts of consecutive jobs of one
   worker, read from the MLflow runs), the training time (median over runs of the time from the step-0
   validation metric to the final ``diverged`` metric, from the metrics' timestamps) and the per-job
   overhead = per-job time - training time (Hydra's job set-up, config validation, MLflow logging of params,
   dataset, figures, weights). Then the ratio joblib / (basic / 2), 1.0 being the ideal halving, three
   times: on the warm per-job time (one joblib worker's per-job time against the basic launcher's: the
   steady throughput of the sweep), on the span of the jobs (first run start to last run end: adds each
   worker's first-run costs) and on the command's wall time (adds the one-off start-up, printed too:
   interpreter, Hydra, the new store's schema migration, loky workers' imports).
   Targets: per-job overhead < 0.5 s with warm workers; ratio <= 1.25. Every job process gets one BLAS
   thread (OPENBLAS/OMP/MKL_NUM_THREADS=1), as joblib's loky workers do by themselves (cpus // workers): at
   these sizes BLAS threads only fight over the cores.
2. How one run's cost grows with the sequence length: harness.training.fit with a MemoryLogger (adding task,
   Elman H=32, batch 32, 50 steps, BLAS pinned to one thread) at
   T = 50, 100, 200, 400, 800, median of 3; prints the time per step, time per step per time step, and the
   least-squares line time/step = a + b T with its R^2 (linear in T: R^2 near 1).

Numbers are single measurements of whole sweeps; other load on the machine shifts them (the load average is
printed with them).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.runtime import pin_blas_to_one_thread
from harness.tracking import MemoryLogger, project_root

TRAIN = ["task=adding", "task.length=50", "model=elman", "model.hidden_size=16", "trainer.batch_size=16",
         "trainer.eval_interval=100", "trainer.eval_batch_size=64", "trainer.diagnostics_interval=150",
         "trainer.diagnostics_batch_size=16"]
LAUNCHERS = {"basic": ([], 1), "joblib": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2)}
LENGTHS = (50, 100, 200, 400, 800)
ONE_BLAS_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def run_sweep(name: str, jobs: int, steps: int, workdir: Path,
              overrides: Sequence[str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all its processes) of one sweep of `jobs` runs with launcher `name`, on a
    fresh store in workdir/name; overrides replace the launcher's (LAUNCHERS[name])."""
    overrides = LAUNCHERS[name][0] if overrides is None else overrides
    store = workdir / name
    command = [sys.executable, str(project_root() / "experiments" / "train.py"), "-m", *TRAIN,
               f"trainer.steps={steps}", f"seed=range(0,{jobs})", *overrides,
               f"tracking.uri=sqlite:///{store / 'mlflow.db'}",
               f"tracking.artifact_root={store / 'artifacts'}", f"tracking.experiment={name}",
               f"hydra.sweep.dir={store / 'sweep'}"]
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID", "HYDRA_FULL_ERROR")}
    env.update(ONE_BLAS_THREAD, HARNESS_PROJECT_ROOT=str(workdir))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{name} sweep failed:\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def job_times(name: str, workdir: Path, workers: int | None = None) -> tuple[float, float, float]:
    """(median warm per-job seconds, median training seconds, span seconds) of the child runs of sweep `name`
    (run by `workers` processes, default the launcher's); span: from the first run's start to the last run's
    end.

    Per-job time: the gap start[i + w] - start[i] between sorted run starts, w = the launcher's workers; with
    w workers taking jobs in turn and jobs of equal length, runs i and i + w are consecutive jobs of one
    worker, and the first job of each worker (its imports) is never the later run of a pair.
    """
    from mlflow import MlflowClient

    workers = LAUNCHERS[name][1] if workers is None else workers
    client = MlflowClient(f"sqlite:///{workdir / name / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = [run for run in client.search_runs([experiment.experiment_id])
            if "mlflow.parentRunId" in run.data.tags]
    starts = sorted(run.info.start_time for run in runs)
    per_job = statistics.median((b - a) / 1e3 for a, b in zip(starts, starts[workers:], strict=False))
    training = []
    for run in runs:
        history = client.get_metric_history
        first = min(m.timestamp for m in history(run.info.run_id, "val/loss") if m.step == 0)
        (last,) = (m.timestamp for m in history(run.info.run_id, "diverged"))
        training.append((last - first) / 1e3)
    span = (max(run.info.end_time for run in runs) - starts[0]) / 1e3
    return per_job, statistics.median(training), span


def step_seconds(length: int, steps: int = 50) -> float:
    """Seconds per training step of harness.training.fit (adding task of length `length`, Elman H=32)."""
    from harness.config import TrainerConfig
    from harness.nn import Elman
    from harness.optim import make_optimizer
    from harness.tasks import make_task
    from harness.training import fit

    task = make_task("adding", length=length)
    trainer = TrainerConfig(steps=steps, batch_size=32, eval_interval=steps, eval_batch_size=32,
                            diagnostics_interval=0, progress=False)
    streams = task.streams(0)
    val_batch = task.validation_set(trainer.eval_batch_size, streams["val"])
    model = Elman(task.input_size, 32, task.output_size, head=task.head, mode=task.mode, seed=0)
    start = time.perf_counter()
    optimizer = make_optimizer("adam", lr=1e-3)
    fit(model, task, optimizer, trainer, train_rng=streams["train"], val_batch=val_batch,
        diagnostics_batch=val_batch, logger=MemoryLogger())
    return (time.perf_counter() - start) / steps


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(intercept a, slope b, R^2) of the least-squares line y = a + b x; x, y (n,)."""
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    return float(a), float(b), float(1.0 - residual @ residual / np.sum((y - y.mean()) ** 2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    print(f"1. sweep of {args.jobs} runs (adding/50, Elman H=16, {args.steps} steps), fresh SQLite store "
          f"each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    walls: dict[str, float] = {}
    spans: dict[str, float] = {}
    per_job: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LAUNCHERS:
            walls[name], cpu = run_sweep(name, args.jobs, args.steps, Path(tmp))
            per_job[name], training, spans[name] = job_times(name, Path(tmp))
            print(f"   {name:6s}: wall {walls[name]:5.1f} s, jobs' span {spans[name]:5.1f} s, "
                  f"CPU {cpu:5.1f} s ({cpu / walls[name]:.2f} cores busy); per job {per_job[name]:.2f} s = "
                  f"training {training:.2f} s + overhead {per_job[name] - training:.2f} s (target < 0.5 s)")
    ratios = {"warm per-job time": per_job["joblib"] / per_job["basic"],
              "jobs' span": spans["joblib"] / (spans["basic"] / 2),
              "wall": walls["joblib"] / (walls["basic"] / 2)}
    print("   joblib (2 workers) / (basic / 2) (target <= 1.25): "
          + ", ".join(f"{what} {ratio:.2f}" for what, ratio in ratios.items()))
    print("   one-off start-up and end, wall - jobs' span (interpreter, Hydra, the new store's schema, "
          f"the joblib workers' imports): basic {walls['basic'] - spans['basic']:.1f} s, "
          f"joblib {walls['joblib'] - spans['joblib']:.1f} s")

    print("2. time per training step against sequence length (fit, Elman H=32, batch 32, MemoryLogger)")
    pin_blas_to_one_thread()
    seconds = np.array([statistics.median(step_seconds(length) for _ in range(3)) for length in LENGTHS])
    for length, value in zip(LENGTHS, seconds, strict=True):
        print(f"   T={length:4d}: {value * 1e3:7.2f} ms/step, {value / length * 1e6:6.1f} µs per time step")
    a, b, r2 = linear_fit(np.array(LENGTHS, dtype=float), seconds)
    print(f"   fit: time/step = {a * 1e3:.2f} ms + {b * 1e6:.1f} µs x T, R^2 = {r2:.4f}")


if __name__ == "__main__":
    main()
