"""What a finished training run tells its reader: its description (Markdown, rendered on the run's MLflow
page) and the lines train.py prints at the end (run name and id, the task metric next to its chance level,
the solved flag, the run's URL in the UI), or at the start of a resumed run (where it picks up)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config import RunConfig
from harness.tasks import SequenceTask
from harness.tracking.store import entry_point
from harness.training import FitResult


@dataclass(frozen=True)
class Outcome:
    """The result of one run in the task's terms.

    metric: the task's metric name; value: its final validation value (nan if the run diverged); chance: what
    a predictor that ignores the inputs scores; rule: what solved means; rule_metric, rule_value: the metric
    the rule tests (task.solved_metric) and its final validation value (nan if the run diverged);
    diverged_step: None or the step whose loss was not finite.
    """

    name: str
    model: str
    metric: str
    value: float
    chance: float
    higher_is_better: bool
    solved: bool
    rule: str
    rule_metric: str
    rule_value: float
    steps_done: int
    diverged_step: int | None

    @classmethod
    def of(cls, name: str, model: str, task: SequenceTask, result: FitResult, value: float) -> Outcome:
        """value: the run's reported task metric (the final one, or the best one with early stopping)."""
        return cls(name=name, model=model, metric=task.metric_name, value=value,
                   chance=task.chance()[task.metric_name], higher_is_better=task.higher_is_better,
                   solved=not result.diverged and bool(result.final.get("val/solved")),
                   rule=task.solved_rule, rule_metric=task.solved_metric,
                   rule_value=math.nan if result.diverged else result.final[f"val/{task.solved_metric}"],
                   steps_done=result.steps_done, diverged_step=result.diverged_step)

    @property
    def verdict(self) -> str:
        """'solved', 'not solved' or 'diverged at step k'."""
        if self.diverged_step is not None:
            return f"diverged at step {self.diverged_step}"
        return "solved" if self.solved else "not solved"

    @property
    def metric_line(self) -> str:
        """'validation cross_entropy 0.4428 (chance level 0.5199; lower is better): not solved
        (recall_accuracy 0.1203; rule: recall_accuracy >= 0.99)': the rule's own metric is shown, also
        where it is the task metric (with early stopping that one is the best value, the rule's the final)."""
        better = "higher" if self.higher_is_better else "lower"
        return (f"validation {self.metric} {self.value:.4g} (chance level {self.chance:.4g}; {better} is "
                f"better): {self.verdict} ({self.rule_metric} {self.rule_value:.4g}; rule: {self.rule})")


def describe_run(config: RunConfig, outcome: Outcome) -> str:
    """The run's Markdown description: task, model, optimizer and budget, then the result in the task's
    terms (metric, chance level, what solved means)."""
    task = ", ".join(f"{key}={value}" for key, value in config.task.params.items())
    model, optimizer = config.model, config.optimizer
    return "\n".join([
        f"**{config.task.name}**{f' ({task})' if task else ''} learned by **{outcome.model}** "
        f"(hidden size {model.hidden_size}) with {optimizer.name} (lr {optimizer.lr:g}), seed {config.seed}, "
        f"{outcome.steps_done} of {config.trainer.steps} steps of batch {config.trainer.batch_size}.",
        "",
        f"**Result: {outcome.verdict}.** Final validation `{outcome.metric}` = {outcome.value:.4g}; chance "
        f"level (a predictor that ignores the inputs) {outcome.chance:.4g}. Solved means `{outcome.rule}` on "
        f"the fixed validation set of {config.trainer.eval_batch_size} sequences (metric `solved`).",
    ])


def continue_command(run_id: str, overrides: Sequence[str]) -> str:
    """The shell command that continues run run_id: this command's overrides, trainer.resume replaced."""
    kept = [override for override in overrides if not override.lstrip("+~").startswith("trainer.resume=")]
    return shlex.join(["python", entry_point(), *kept, f"trainer.resume={run_id}"])


def search_rerun(study: str, trial: str, stored: bool) -> str:
    """What a stop means for trial number trial of an Optuna search of study: its sweep stops with it and
    queues its parameters again (harness.search.optuna_sweeper.abandon), so the search re-runs it; a
    trainer.resume of its run would continue it outside its study. A study kept in memory only (stored
    False: tracking=off) ends with the search, and nothing re-runs the trial."""
    if not stored:
        return (f"its search stopped with it; study {study} was kept in memory only (tracking=off), so the "
                "same command starts a new study")
    return (f"its search re-runs it: trial {trial} is queued again in study {study}, and the same search "
            "command, run again, runs the study's interrupted trials first (same parameters, as a new trial "
            "and run)")


def describe_stopped_run(config: RunConfig, steps_done: int, stop: BaseException, command: str | None,
                         rerun: str | None = None) -> str:
    """The Markdown description of a run a signal stopped (stop: its RunInterrupted) after steps_done
    steps: how far it got and the command that continues it (continue_command; None: there is nothing to
    continue), or, for a search's trial, rerun (search_rerun) instead."""
    head = f"**Stopped at step {steps_done} of {config.trainer.steps}** ({stop})."
    if rerun is not None:
        return f"{head} An Optuna trial: {rerun}."
    if command is None:
        return f"{head} It had no training step to keep: run it again."
    return (f"{head} Its checkpoint holds step {steps_done}; continue this run (bit for bit as if it had "
            f"not stopped) with\n\n`{command}`")


def stopped_summary(name: str, run_id: str | None, steps_done: int, steps: int, stop: BaseException,
                    command: str | None, rerun: str | None = None) -> list[str]:
    """The lines train.py ends with when a signal stops it: the run, how far it got, how to continue (the
    command; for a search's trial, rerun: search_rerun)."""
    lines = [f"{_run_line(name, run_id)} stopped at step {steps_done} of {steps} ({stop})"]
    if rerun is not None:
        lines.append(rerun)
    elif command is not None:
        lines.append(f"continue it with: {command}")
    return lines


def resumed_line(name: str, run_id: str, step: int, steps: int) -> str:
    """The line train.py starts with when it continues a run (trainer.resume, a continued sweep's job, a
    requeued job's checkpoint): the run, the step its checkpoint holds and the budget."""
    return f"{_run_line(name, run_id)} resumed from step {step} of {steps}"


def terminal_summary(outcome: Outcome, run_id: str | None, ui_hint: str | None) -> list[str]:
    """The lines train.py ends with: name and id, the metric line, then (a tracked run) ui_hint, the run's
    page in the UI and how to open it (harness.ui.ui_hint)."""
    return [_run_line(outcome.name, run_id), outcome.metric_line, *filter(None, [ui_hint])]


def _run_line(name: str, run_id: str | None) -> str:
    """'run adding-lstm-s0 (<run id>)': how train.py names its run, first in each closing summary."""
    return f"run {name}" + (f" ({run_id})" if run_id else " (tracking off)")
