"""What full MLflow tracking costs a training run: tracking=off (MemoryLogger) vs a local SQLite store.

    python -m harness.benchmarks.tracking_overhead [--steps 2000] [--repeats 3] [--starts 5]

Three measurements, medians over repeats, each tracked repeat of 1-2 on a fresh copy of a migrated temp store
(the one-time schema migration is not a per-run cost):
1. pure logging: a loop that only logs 10 metrics per step (like per-parameter gradient norms every step);
   prints the overhead per step in ms and per logged value in µs;
2. a real training run through harness.training.fit with the default config (adding task, length 100,
   Elman H=32, Adam, 2,000 steps, training metrics every step, validation every 100): wall time ratio
   tracked / off (target: <= 1.05), and the CPU ratio, the tracked side's CPU including its metric writer
   process (less sensitive to other processes than the wall time);
3. time to the first training step of the real command, ``python experiments/train.py`` (its default run),
   launched as a user launches it: seconds from starting the process until its progress bar shows step 1
   (the bar draws on a terminal: the command's stderr is a pseudo-terminal here), wall and CPU seconds of
   the process, tracking=off against tracking on a warm store (migrated, its experiment made by an earlier
   run), launched in turn, each launch with an output folder of its own; the CPU its metric writer process
   used by then (it imports MLflow, opens the store and creates the run while the first steps run), and the
   CPU seconds of importing MLflow with its SQL store in a fresh interpreter. Target: tracked within 1.5 s
   of off.
The load average is printed at the start and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pty
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.runtime import pin_blas_to_one_thread
from harness.tracking import MemoryLogger, TrackingSettings, ensure_store, open_run, project_root
from harness.tracking.writer import BackgroundMetricWriter

METRICS_PER_STEP = 10


def _fresh_settings(template: Path, workdir: Path) -> TrackingSettings:
    root = Path(tempfile.mkdtemp(dir=workdir))
    shutil.copyfile(template, root / "mlflow.db")
    return TrackingSettings(uri=f"sqlite:///{root / 'mlflow.db'}", experiment="benchmark",
                            artifact_root=str(root / "artifacts"))


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seconds(action: Callable[[], None]) -> tuple[float, float]:
    """(wall, CPU) seconds of action(): the CPU of this process and of the children it reaped meanwhile."""
    start, cpu = time.perf_counter(), time.process_time() + _cpu_of_children()
    action()
    return time.perf_counter() - start, time.process_time() + _cpu_of_children() - cpu


def _logging_loop(logger, steps: int) -> None:
    for step in range(steps):
        logger.log_metrics({f"grad_norm/p{i}": 1.0 / (step + i + 1) for i in range(METRICS_PER_STEP)}, step)


def _training_run(steps: int):
    """A closure that trains a fresh default-config Elman on the adding task with a given logger."""
    from harness.config import TrainerConfig
    from harness.nn import Elman
    from harness.optim import make_optimizer
    from harness.tasks import make_task
    from harness.training import fit

    task = make_task("adding", length=100)
    trainer = TrainerConfig(steps=steps, progress=False)

    def train(logger) -> None:
        streams = task.streams(0)
        val_batch = task.validation_set(trainer.eval_batch_size, streams["val"])
        diagnostics_batch = task.validation_set(trainer.diagnostics_batch_size, streams["val"])
        model = Elman(task.input_size, 32, task.output_size, head=task.head, mode=task.mode, seed=0)
        optimizer = make_optimizer("adam", lr=0.003, clip_norm=1.0)
        fit(model, task, optimizer, trainer, train_rng=streams["train"], val_batch=val_batch,
            diagnostics_batch=diagnostics_batch, logger=logger)

    return train


def compare(work: Callable, steps: int, repeats: int, template: Path, workdir: Path
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall, CPU) seconds with MemoryLogger, and with open_run on a fresh SQLite store (its CPU
    includes the store's metric writer process, ended after the run so that its CPU is counted)."""
    def fresh_store() -> TrackingSettings:
        settings = _fresh_settings(template, workdir)
        ensure_store(settings)  # opening the store: once per process (launcher set-up), not part of a run
        return settings

    def tracked(settings: TrackingSettings) -> None:
        with open_run(settings, run_name="benchmark") as logger:
            work(logger, steps)
        # it has written everything (the run's end synced it); reaped, its CPU counts
        BackgroundMetricWriter.close_shared(settings.tracking_uri)

    # The first store opening in a process builds SQLAlchemy machinery once; keep it out of the medians.
    tracked(fresh_store())
    # Interleaved, so a change of machine load hits both sides alike; each tracked run on a store of its own.
    pairs = []
    for _ in range(repeats):
        settings = fresh_store()
        pairs.append((_seconds(lambda: work(MemoryLogger(), steps)), _seconds(lambda s=settings: tracked(s))))
    return tuple((statistics.median(p[side][0] for p in pairs), statistics.median(p[side][1] for p in pairs))
                 for side in (0, 1))


# harness.progress.ProgressBar's first drawing, which follows the first optimizer step
FIRST_STEP = re.compile(rb"\] 1/\d+ ")
START_TIMEOUT_S = 300


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process pid so far (its own, not its children's), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of_running_children(pid: int) -> float:
    """CPU seconds so far of the processes pid has started that still run (a tracked run's metric writer,
    which opens the store and imports MLflow while the run trains), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0.0
    for child in children:
        with contextlib.suppress(OSError):  # it ended meanwhile
            total += _cpu_seconds(int(child))
    return total


def first_step_seconds(overrides: list[str], output_dir: Path) -> tuple[float, float, float]:
    """(wall, CPU, CPU of its child processes) seconds from launching ``python experiments/train.py
    <overrides>`` until its progress bar shows step 1; the run then finishes (its Hydra folder goes to
    output_dir)."""
    terminal, child_end = pty.openpty()
    command = [sys.executable, str(project_root() / "experiments" / "train.py"), "trainer.steps=20",
               f"hydra.run.dir={output_dir}", *overrides]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child_end)
    os.close(child_end)
    seen, result = b"", None
    try:
        while True:
            ready, _, _ = select.select([terminal], [], [], START_TIMEOUT_S)
            try:
                chunk = os.read(terminal, 65536) if ready else b""
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk
            if result is None and FIRST_STEP.search(seen):
                result = (time.perf_counter() - start, _cpu_seconds(process.pid),
                          _cpu_of_running_children(process.pid))
    finally:
        os.close(terminal)
        process.wait()
    if result is None or process.returncode != 0:
        text = seen.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(command)} ended with status {process.returncode} "
                           f"before its first step: {text[-1] if text else ''}")
    return result


def compare_first_step(repeats: int, workdir: Path) -> dict[str, tuple[float, float, float]]:
    """Median (wall, CPU, children's CPU) seconds to the first step per tracking mode, launched in turn (off,
    tracked, ...); the tracked runs go to a store of workdir that an earlier run has migrated and made the
    experiment in."""
    store = f"tracking.uri=sqlite:///{workdir / 'first_step' / 'mlflow.db'}"
    modes = {"off": ["tracking=off"], "tracked": [store]}
    launches = itertools.count()

    def output_dir() -> Path:
        # A folder of its own, as each launch of the command has (Hydra's dated run folder): a checkpoint
        # left in the folder would make the next launch look for its run in the store (resume).
        return workdir / "hydra" / str(next(launches))

    for overrides in modes.values():  # warm: the store exists, files are in the page cache
        first_step_seconds(overrides, output_dir())
    times: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, overrides in modes.items():
            times[mode].append(first_step_seconds(overrides, output_dir()))
    return {mode: tuple(statistics.median(t[k] for t in triples) for k in range(3))
            for mode, triples in times.items()}


def import_seconds(module: str, repeats: int) -> float:
    """Median CPU seconds a fresh interpreter spends importing module (what a tracked run must import on
    its way to the first step and one with tracking=off does not)."""
    script = f"import time; start = time.process_time(); import {module}; print(time.process_time() - start)"
    return statistics.median(float(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                                  text=True, check=True).stdout) for _ in range(repeats))


def load_average() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--starts", type=int, default=5, help="launches per mode for the time to the first "
                                                               "step (default 5)")
    args = parser.parse_args(argv)
    print(load_average())
    pin_blas_to_one_thread()  # as the entry points do: the metric writer gets the second core
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        ensure_store(TrackingSettings(uri=f"sqlite:///{template}", experiment="template"))

        off, on = compare(lambda logger, steps: _logging_loop(logger, steps), args.steps, args.repeats,
                          template, workdir)
        per_step_ms = (on[0] - off[0]) / args.steps * 1e3
        print(f"pure logging, {args.steps} steps x {METRICS_PER_STEP} metrics: off {off[0]:.3f} s, "
              f"sqlite {on[0]:.3f} s; overhead {per_step_ms:.3f} ms/step "
              f"({per_step_ms / METRICS_PER_STEP * 1e3:.1f} µs/value); CPU {on[1] - off[1]:.3f} s")

        train = _training_run(args.steps)
        off, on = compare(lambda logger, steps: train(logger), args.steps, args.repeats, template, workdir)
        print(f"training run (adding/100, Elman H=32, Adam, {args.steps} steps, metrics every step): "
              f"off {off[0]:.2f} s, sqlite {on[0]:.2f} s, ratio {on[0] / off[0]:.3f} (target <= 1.05); "
              f"CPU off {off[1]:.2f} s, sqlite {on[1]:.2f} s with its writer, ratio {on[1] / off[1]:.3f}")

        first = compare_first_step(args.starts, workdir)
        (off_wall, off_cpu, _), (on_wall, on_cpu, on_children) = first["off"], first["tracked"]
        print(f"time to the first training step of python experiments/train.py, median of {args.starts}: "
              f"tracking=off {off_wall:.2f} s ({off_cpu:.2f} s CPU), tracked on a warm store {on_wall:.2f} s "
              f"({on_cpu:.2f} s CPU); difference {on_wall - off_wall:.2f} s ({on_cpu - off_cpu:.2f} s CPU) "
              f"(target <= 1.5 s); meanwhile the tracked run's metric writer process, which opens the store "
              f"and creates the run, used {on_children:.2f} s CPU")
        store_import = import_seconds("mlflow.store.tracking.sqlalchemy_store", args.starts)
        print(f"importing MLflow and its SQL store (a fresh interpreter; the writer process's share of the "
              f"above): {store_import:.2f} s CPU")
    print(load_average())


if __name__ == "__main__":
    main()
