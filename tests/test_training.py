"""The training loop on real tasks, models and optimizers, reporting to a MemoryLogger; the run story with
tracking off; the progress bar; the once-per-process freeze of long-lived objects."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.config import TrainerConfig, validate
from harness.nn import LSTM, Elman
from harness.optim import make_optimizer
from harness.progress import ProgressBar
from harness.run import run
from harness.tasks import make_task
from harness.tracking import MemoryLogger
from harness.training import fit


def train(seed: int = 0, *, model_class=Elman, lr: float = 0.05, optimizer: str = "adam",
          clip_norm: float | None = 1.0, activation: str = "tanh", **trainer: int
          ) -> tuple[MemoryLogger, object]:
    task = make_task("adding", length=12)
    model = model_class(task.input_size, 6, task.output_size, head=task.head, mode=task.mode, seed=seed,
                        activation=activation)
    settings = TrainerConfig(**{"steps": 20, "batch_size": 8, "eval_interval": 5, "eval_batch_size": 16,
                                "diagnostics_interval": 10, "diagnostics_batch_size": 4, "progress": False,
                                **trainer})
    streams = task.streams(seed)
    logger = MemoryLogger()
    result = fit(model, task, make_optimizer(optimizer, lr=lr, clip_norm=clip_norm), settings,
                 train_rng=streams["train"], val_batch=task.sample(16, streams["val"]),
                 diagnostics_batch=task.sample(4, streams["val"]), logger=logger)
    return logger, result


def test_every_step_logs_the_training_metrics() -> None:
    logger, result = train()
    for key in ("train/loss", "train/grad_norm", "train/clipped", "train/step_size", "grad_norm/W_hh",
                "grad_norm/W_xh", "grad_norm/W_hy"):
        assert logger.history(key)[0].tolist() == list(range(1, 21)), key
    assert result.steps_done == 20 and not result.diverged
    assert np.all(np.isfinite(logger.history("train/loss")[1]))


def test_validation_and_diagnostics_at_their_intervals() -> None:
    logger, result = train()
    assert logger.history("val/loss")[0].tolist() == [0, 5, 10, 15, 20]
    assert logger.history("val/mse")[0].tolist() == [0, 5, 10, 15, 20]
    assert set(logger.history("val/solved")[1]) <= {0.0, 1.0}
    assert logger.history("grad_flow/decay_rate")[0].tolist() == [0, 10, 20]
    assert logger.history("grad_flow/bound_rate")[0].tolist() == [0, 10, 20]
    # the last check's curves: one value per time step / per lag, the metric step being the index
    assert logger.history("grad_flow/step_norm")[0].tolist() == list(range(12))
    assert logger.history("grad_flow/lag_norm")[0].tolist() == list(range(1, 13))
    assert [step for step, _ in result.grad_flow] == [0, 10, 20]
    assert logger.history("diverged")[1].tolist() == [0.0]


def test_every_diagnostics_report_has_its_own_curves_and_their_log10() -> None:
    logger, result = train()
    for (step, step_norms), lag_norms in zip(result.grad_flow, result.lag_norms, strict=True):
        report = f"step_{step:02d}"  # 20 steps: two digits, so the UI lists the reports in order
        lags, norms = logger.history(f"grad_flow/lag_norm/{report}")
        assert lags.tolist() == list(range(1, 13)) and norms.tolist() == lag_norms.tolist()
        times, values = logger.history(f"grad_flow/step_norm/{report}")
        assert times.tolist() == list(range(12)) and values.tolist() == step_norms.tolist()
        positive = lag_norms > 0
        log_lags, logs = logger.history(f"grad_flow/lag_norm_log10/{report}")
        assert log_lags.tolist() == lags[positive].tolist()
        np.testing.assert_array_equal(logs, np.log10(lag_norms[positive]))
    # the last report's curves also under the short keys
    np.testing.assert_array_equal(logger.history("grad_flow/lag_norm_log10")[1],
                                  np.log10(result.lag_norms[-1][result.lag_norms[-1] > 0]))


def test_log_every_thins_the_training_curve_but_keeps_the_last_step() -> None:
    logger, _ = train(log_every=6)
    assert logger.history("train/loss")[0].tolist() == [6, 12, 18, 20]


def test_gated_models_get_per_step_gradient_norms_only() -> None:
    logger, result = train(model_class=LSTM)
    assert logger.history("grad_flow/grad_norm_last_step")[0].tolist() == [0, 10, 20]
    assert "grad_flow/decay_rate" not in logger.metrics and not result.lag_norms
    assert logger.history("grad_norm/W_h")[0].size == 20


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    first, _ = train(seed=3)
    again, _ = train(seed=3)
    other, _ = train(seed=4)
    assert first.metrics == again.metrics
    assert first.metrics["train/loss"] != other.metrics["train/loss"]


def test_divergence_stops_the_loop_and_is_recorded() -> None:
    logger, result = train(optimizer="sgd", lr=1e6, steps=50, clip_norm=None, activation="identity")
    assert result.diverged and result.steps_done < 50
    assert logger.history("diverged_step")[1].tolist() == [float(result.diverged_step)]
    assert logger.history("diverged")[1].tolist() == [1.0]
    assert logger.history("train/loss")[0].max() == result.steps_done


def tiny_config(**trainer: object) -> dict:
    return {"task": {"name": "xor", "triples": 3}, "model": {"name": "elman", "hidden_size": 4},
            "optimizer": {"name": "adam", "lr": 0.01},
            "trainer": {"steps": 6, "batch_size": 4, "eval_interval": 3, "eval_batch_size": 8,
                        "diagnostics_interval": 3, "diagnostics_batch_size": 2, "progress": False, **trainer},
            "tracking": {"mode": "off"}, "seed": 0}


def test_run_with_tracking_off_returns_the_validation_metric() -> None:
    value = run(tiny_config())
    assert 0.0 <= value <= 1.0
    assert value == run(tiny_config())


def test_run_returns_nan_when_the_run_diverges() -> None:
    cfg = tiny_config()
    cfg["optimizer"] = {"name": "sgd", "lr": 1e8}
    cfg["task"] = {"name": "bit_sum", "length": 30}
    cfg["model"] = {"name": "linear", "hidden_size": 4}
    assert math.isnan(run(cfg))


def test_trainer_defaults_match_the_schema() -> None:
    assert validate(tiny_config()).trainer.log_every == 1


def test_progress_bar_draws_only_when_enabled() -> None:
    stream = io.StringIO()
    with ProgressBar(10, "job", stream=stream, enabled=True, min_interval=0.0) as bar:
        bar.update(10, loss=0.5)
    assert "job [" in stream.getvalue() and "10/10" in stream.getvalue() and "loss=0.5" in stream.getvalue()
    silent = io.StringIO()  # not a TTY: nothing is drawn
    with ProgressBar(10, "job", stream=silent) as bar:
        bar.update(10)
    assert silent.getvalue() == ""
    with pytest.raises(ValueError, match="total must be an integer >= 1"):
        ProgressBar(0)


def test_progress_bar_draws_on_a_terminal_unless_other_processes_draw_there_too(monkeypatch) -> None:
    """A joblib sweep's workers share the launcher's terminal (SHARED_TERMINAL, which the launcher's worker
    initializer sets): two bars redrawing one line glued the probe's result lines onto each other's bars."""
    import os

    from harness.progress import SHARED_TERMINAL

    master, slave = os.openpty()
    with os.fdopen(slave, "w") as terminal:
        monkeypatch.delenv(SHARED_TERMINAL, raising=False)
        with ProgressBar(10, "alone", stream=terminal, min_interval=0.0) as bar:
            bar.update(10)
        monkeypatch.setenv(SHARED_TERMINAL, "1")
        with ProgressBar(10, "shared", stream=terminal, min_interval=0.0) as bar:
            bar.update(10)
    drawn = os.read(master, 4096).decode()
    os.close(master)
    assert "alone [" in drawn and "shared" not in drawn
    initialized = "from harness.joblib_launcher import quiet_when_idle; quiet_when_idle(); import os; "
    worker = subprocess.run([sys.executable, "-c", f"{initialized}print(os.environ['{SHARED_TERMINAL}'])"],
                            capture_output=True, text=True, env={**os.environ, SHARED_TERMINAL: ""},
                            timeout=60)
    assert worker.stdout == "1\n", worker.stderr


def test_a_process_freezes_its_long_lived_objects_once_after_its_first_run() -> None:
    # in a fresh interpreter: this test process may have frozen its objects in an earlier test already
    code = textwrap.dedent("""
        import gc
        from harness.run import run
        from test_training import tiny_config
        counts = [gc.get_freeze_count()]
        run(tiny_config())
        counts.append(gc.get_freeze_count())
        kept = [[] for _ in range(50_000)]  # alive during the second run: a second freeze would take them
        run(tiny_config())
        counts.append(gc.get_freeze_count())
        print(*counts)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-3000:]
    before, first, second = map(int, done.stdout.split())
    # frozen once: later runs add nothing (frozen objects still go when their last reference does)
    assert before == 0 and first > 10_000 and second <= first
