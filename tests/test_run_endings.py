"""What the terminal says when a run or a sweep ends: a run stopped after its last step prints the command
that continues it, the headline shows the value of the metric the solved rule tests, a sweep whose job raised
names the job. Real runs, real signals, real Hydra and real MLflow on a temporary SQLite store."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_configs import composed
from test_resume import store_overrides
from test_train_app import TINY, app_env, runs_of

import harness.run
from harness.run import run
from harness.run_report import Outcome
from harness.tasks import make_task
from harness.tracking import RunInterrupted
from harness.tracking.callback import CHILD_STATUSES, RERUN, format_sweep_report
from harness.tracking.orphans import STOPPED_AT_TAG
from harness.training import FitResult

TASKS = ("binary_addition", "xor", "bit_sum", "adding", "copy", "temporal_order", "latch", "reversal")


class _SignalInFinalizer:
    """An object whose finaliser receives the signal: Python drops the exception its handler raises."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def _raised() -> None:
    signal.raise_signal(signal.SIGINT)


def _dropped() -> None:
    _SignalInFinalizer()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("arrives", [_raised, _dropped], ids=["raised", "dropped"])
def test_a_signal_after_the_last_step_stops_the_run_with_its_continue_command(tracking_settings, monkeypatch,
                                                                              arrives) -> None:
    """SIGINT once training is done, while the run logs its figures and weights (the moment a Ctrl-C of a
    basic-launcher sweep hit at the end of job 0): the run ended KILLED at step 8 of 8, described as
    solved or not, and printed no continue command. A signal whose exception Python drops stops it too."""
    overrides = (*TINY, *store_overrides(tracking_settings), "trainer.progress=false")
    log_outputs = harness.run._log_outputs

    def signalled(*args, **kwargs) -> None:
        arrives()
        log_outputs(*args, **kwargs)

    monkeypatch.setattr(harness.run, "_log_outputs", signalled)
    echoed: list[str] = []
    with pytest.raises(RunInterrupted):
        run(composed(*overrides), overrides=TINY, echo=echoed.append)
    (stopped,) = runs_of(tracking_settings)
    run_id, name = stopped.info.run_id, stopped.info.run_name
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags[STOPPED_AT_TAG] == "8"
    assert stopped.data.tags["mlflow.note.content"].startswith(
        "**Stopped at step 8 of 8** (interrupted by SIGINT).")
    assert echoed[-2] == f"run {name} ({run_id}) stopped at step 8 of 8 (interrupted by SIGINT)"
    assert echoed[-1].startswith("continue it with: python ")
    assert echoed[-1].endswith(f"{' '.join(TINY)} trainer.resume={run_id}")

    monkeypatch.setattr(harness.run, "_log_outputs", log_outputs)
    # the printed command continues it: no step is trained again, the run ends with its result
    echoed.clear()
    run(composed(*overrides, f"trainer.resume={run_id}"), overrides=(*TINY, f"trainer.resume={run_id}"),
        echo=echoed.append)
    (finished,) = runs_of(tracking_settings)
    assert finished.info.status == "FINISHED" and finished.data.metrics["steps_done"] == 8
    assert STOPPED_AT_TAG not in finished.data.tags and "error" not in finished.data.tags
    # it says at its start where it picks up, then ends as any run
    assert echoed[0] == f"run {name} ({run_id}) resumed from step 8 of 8"
    assert echoed[1] == f"run {name} ({run_id})"


@pytest.mark.parametrize("name", TASKS)
def test_the_headline_shows_the_value_of_the_metric_the_solved_rule_tests(name: str) -> None:
    task = make_task(name)
    final = {f"val/{metric}": 0.125 for metric in task.chance()}
    final["val/solved"] = 0.0
    outcome = Outcome.of("r", "lstm", task, FitResult(steps_done=3, final=final), 0.5)
    rule = f"({task.solved_metric} 0.125; rule: {task.solved_rule})"
    assert outcome.metric_line.endswith(f": not solved {rule}")
    assert task.solved_rule.startswith(task.solved_metric)


def test_a_copy_run_shows_its_recall_accuracy_beside_its_cross_entropy(tracking_settings) -> None:
    overrides = ("task=copy", "task.copy_length=3", "task.delay=2", "model.hidden_size=4", "trainer.steps=4",
                 "trainer.batch_size=4", "trainer.eval_interval=2", "trainer.eval_batch_size=8",
                 "trainer.diagnostics_interval=0", "trainer.progress=false",
                 *store_overrides(tracking_settings))
    echoed: list[str] = []
    run(composed(*overrides), echo=echoed.append)
    (done,) = runs_of(tracking_settings)
    metrics = done.data.metrics
    recall = metrics["val/recall_accuracy"]
    assert not math.isnan(recall)
    assert echoed[1].startswith(f"validation cross_entropy {metrics['val/cross_entropy']:.4g} (chance level ")
    assert echoed[1].endswith(f"(recall_accuracy {recall:.4g}; rule: recall_accuracy >= 0.99)")


def test_a_sweep_report_counts_one_run_as_one_run() -> None:
    counts = {status: [] for status in (*CHILD_STATUSES, RERUN)}  # count_children's
    counts["KILLED"] = [("r", "RunInterrupted: interrupted by SIGINT")]
    assert format_sweep_report("p", counts, 1).splitlines()[0] == "sweep p: 1 job, 1 run (1 killed)"


_FAILING_APP = textwrap.dedent('''
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from harness.tracking import TrackingSettings, open_run

    @hydra.main(config_path=".", config_name="config", version_base="1.3")
    def main(cfg):
        settings = TrackingSettings(**cfg.tracking)
        with open_run(settings, run_name=f"x{cfg.x}", tags={"job_num": HydraConfig.get().job.num},
                      parent_run_id="auto"):
            if cfg.x == 1:
                raise ValueError("x=1 is refused\\nand a second line")

    main()
''')


def test_a_sweep_whose_job_raised_names_the_job_and_its_error(tmp_path: Path, tracking_settings) -> None:
    """A study app's job that raises stops the basic sweeper after its batch: the sweep's account said
    'rejected overrides or a crash in the launcher'."""
    (tmp_path / "app.py").write_text(_FAILING_APP)
    (tmp_path / "config.yaml").write_text(textwrap.dedent(f"""
        x: 0
        tracking: {{mode: local, uri: "{tracking_settings.tracking_uri}", experiment: test,
                   artifact_root: "{tracking_settings.artifact_root}"}}
        hydra:
          job: {{name: probe}}
          sweep: {{dir: "{tmp_path}/sweep"}}
          callbacks:
            sweep: {{_target_: harness.tracking.SweepCallback}}
    """))
    done = subprocess.run([sys.executable, str(tmp_path / "app.py"), "-m", "x=0,1,2"], capture_output=True,
                          text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    runs = {run.info.run_name: run for run in runs_of(tracking_settings)}
    parent = next(run for name, run in runs.items() if re.fullmatch(r"\d\d:\d\d:\d\d probe-sweep x", name))
    why = "a failed job: job 1 (x=1): ValueError: x=1 is refused"
    assert parent.info.status == "FAILED"
    assert parent.data.tags["error"] == f"the sweep stopped before its end ({why})"
    assert (f"sweep {parent.info.run_id}: 3 jobs (2 finished, 1 failed), 3 runs (2 finished, 1 failed)"
            in done.stdout), done.stdout
    assert f"  the sweep stopped before its end ({why})" in done.stdout
