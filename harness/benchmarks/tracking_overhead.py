"""What full MLflow tracking costs a training run: tracking=off (MemoryLogger) vs a fresh local SQLite store.

    python -m harness.benchmarks.tracking_overhead [--steps 2000] [--repeats 3]

Two measurements, medians over repeats, each tracked repeat on a fresh copy of a migrated temp store (the
one-time schema migration is not a per-run cost):
1. pure logging: a loop that only logs 10 metrics per step (like per-parameter gradient norms every step);
   prints the overhead per step in ms and per logged value in µs;
2. a real training run through harness.training.fit with the default config (adding task, length 100,
   Elman H=32, Adam, 2,000 steps, training metrics every step, validation every 100): wall time ratio
   tracked / off. Target: <= 1.10.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.runtime import pin_blas_to_one_thread
from harness.tracking import MemoryLogger, TrackingSettings, ensure_store, open_run

METRICS_PER_STEP = 10


def _fresh_settings(template: Path, workdir: Path) -> TrackingSettings:
    root = Path(tempfile.mkdtemp(dir=workdir))
    shutil.copyfile(template, root / "mlflow.db")
    return TrackingSettings(uri=f"sqlite:///{root / 'mlflow.db'}", experiment="benchmark",
                            artifact_root=str(root / "artifacts"))


def _seconds(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


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


def compare(work: Callable, steps: int, repeats: int, template: Path, workdir: Path) -> tuple[float, float]:
    """(median seconds with MemoryLogger, median seconds with open_run on a fresh SQLite store)."""
    def fresh_store() -> TrackingSettings:
        settings = _fresh_settings(template, workdir)
        ensure_store(settings)  # opening the store: once per process (launcher set-up), not part of a run
        return settings

    def tracked(settings: TrackingSettings) -> None:
        with open_run(settings, run_name="benchmark") as logger:
            work(logger, steps)

    # The first store opening in a process builds SQLAlchemy machinery once; keep it out of the medians.
    tracked(fresh_store())
    # Interleaved, so a change of machine load hits both sides alike; each tracked run on a store of its own.
    pairs = []
    for _ in range(repeats):
        settings = fresh_store()
        pairs.append((_seconds(lambda: work(MemoryLogger(), steps)), _seconds(lambda s=settings: tracked(s))))
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    pin_blas_to_one_thread()  # as the entry points do: the metric writer gets the second core
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        ensure_store(TrackingSettings(uri=f"sqlite:///{template}", experiment="template"))

        off, on = compare(lambda logger, steps: _logging_loop(logger, steps), args.steps, args.repeats,
                          template, workdir)
        per_step_ms = (on - off) / args.steps * 1e3
        print(f"pure logging, {args.steps} steps x {METRICS_PER_STEP} metrics: off {off:.3f} s, "
              f"sqlite {on:.3f} s; overhead {per_step_ms:.3f} ms/step "
              f"({per_step_ms / METRICS_PER_STEP * 1e3:.1f} µs/value)")

        train = _training_run(args.steps)
        off, on = compare(lambda logger, steps: train(logger), args.steps, args.repeats, template, workdir)
        print(f"training run (adding/100, Elman H=32, Adam, {args.steps} steps, metrics every step): "
              f"off {off:.2f} s, sqlite {on:.2f} s, ratio {on / off:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
