"""Results over seeds for any sweep: ``python -m harness.report <parent run id> [--interval t|bootstrap]``.

The sweep's finished child runs are grouped by every parameter that varies among them except the seed; each
group gets the statistics of harness.seed_stats (mean, std, a named 95% interval of each final metric, the
solved rate with its Wilson interval) and, for each learning curve, a band plot (mean and interval over seeds
per step). The table (``seeds/table.md``, ``seeds/table.csv``) and the figures (``seeds/<curve>.png``) are
logged to the sweep's parent run; the Markdown table is printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report import find_run, metric_history, runs_frame
from harness.seed_stats import INTERVAL_NAMES, curve_band, summarize_over_seeds
from harness.tracking import TrackingSettings, store_client

SEED = "seed"
SOLVED = "solved"
# Per-step training diagnostics: their last value is no result of the run.
STEP_PREFIXES = ("train/", "grad_norm/", "grad_flow/")
DEFAULT_CURVES = ("train/loss", "val/loss")
# Counters of the run and the solved flag (summarised as a rate of its own), not results to average.
BOOKKEEPING = (SOLVED, "val/solved", "steps_done", "diverged_step")


@dataclass(frozen=True)
class SeedReport:
    """table: one row per group (harness.seed_stats.summarize_over_seeds columns); markdown: it as shown;
    groups: the varying parameters (without params.); runs: group label -> run ids (seed order);
    skipped: child runs left out (not FINISHED) as (run name, status)."""

    table: pd.DataFrame
    markdown: str
    groups: list[str]
    metrics: list[str]
    runs: dict[str, list[str]]
    skipped: list[tuple[str, str]]
    kind: str


def default_metrics(frame: pd.DataFrame) -> list[str]:
    """The final metrics of frame's runs: every logged metric but per-step diagnostics and BOOKKEEPING
    (``diverged`` stays: its mean is the divergence rate)."""
    names = [c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics.")]
    return sorted(n for n in names if not n.startswith(STEP_PREFIXES) and n not in BOOKKEEPING)


def varying_params(frame: pd.DataFrame) -> list[str]:
    """The parameters (without params.) taking more than one value among frame's runs, the seed excluded."""
    columns = [c for c in frame.columns if c.startswith("params.") and c != f"params.{SEED}"]
    return [c.removeprefix("params.") for c in columns if frame[c].astype(str).nunique(dropna=False) > 1]


def group_label(row: pd.Series, groups: list[str]) -> str:
    """``model.name=lstm model.hidden_size=8``: the group's parameters, those that do not apply to it
    (missing: an LSTM's model.activation) left out."""
    return " ".join(f"{g}={row[g]}" for g in groups if pd.notna(row[g])) or "all runs"


def seed_report(parent_run_id: str, settings: TrackingSettings | None = None, kind: str = "t",
                metrics: list[str] | None = None) -> SeedReport:
    """The statistics over seeds of the sweep under parent_run_id (see the module docstring)."""
    settings = settings or TrackingSettings()
    client, parent = find_run(parent_run_id, settings)
    experiment = client.get_experiment(parent.info.experiment_id).name
    children = runs_frame(experiment, settings, parent_run_id=parent_run_id)
    if children.empty:
        raise ValueError(f"run {parent_run_id} has no child runs: not a sweep's parent")
    finished = children[children["status"] == "FINISHED"].copy()
    skipped = [(name, status) for name, status in
               zip(children["tags.mlflow.runName"], children["status"], strict=True) if status != "FINISHED"]
    if finished.empty:
        raise ValueError(f"no finished child run under {parent_run_id} ({len(children)} runs)")
    groups = varying_params(finished)
    metrics = list(metrics) if metrics else default_metrics(finished)
    unknown = [m for m in metrics if f"metrics.{m}" not in finished]
    if unknown:
        raise ValueError(f"metrics {unknown} not logged by the sweep's runs; "
                         f"logged: {default_metrics(finished)}")
    frame = pd.DataFrame({g: finished[f"params.{g}"].to_numpy() for g in groups})
    seeds = finished.get(f"params.{SEED}")
    frame[SEED] = pd.to_numeric(seeds, errors="coerce").to_numpy() if seeds is not None else np.nan
    for metric in metrics:
        frame[metric] = finished[f"metrics.{metric}"].to_numpy()
    has_solved = f"metrics.{SOLVED}" in finished
    if has_solved:
        frame[SOLVED] = finished[f"metrics.{SOLVED}"].to_numpy()
    frame["run_id"] = finished["run_id"].to_numpy()
    frame = frame.sort_values([*groups, SEED], kind="stable").reset_index(drop=True)
    table = summarize_over_seeds(frame, groups, metrics, solved=SOLVED if has_solved else None, kind=kind)
    runs = {group_label(row, groups): list(members["run_id"])
            for (_, row), (_, members) in zip(table.iterrows(), _grouped(frame, groups), strict=True)}
    markdown = seed_markdown(table, groups, metrics, kind)
    return SeedReport(table, markdown, groups, metrics, runs, skipped, kind)


def _grouped(frame: pd.DataFrame, groups: list[str]):
    return frame.groupby(groups, sort=False, dropna=False) if groups else [((), frame)]


def _mean_std_interval(row: pd.Series, metric: str) -> str:
    mean, std, low, high = (row[f"{metric}_{k}"] for k in ("mean", "std", "low", "high"))
    if math.isnan(mean):
        return "-"
    text = f"{mean:.4g}" + (f" ± {std:.2g}" if not math.isnan(std) else "")
    if not math.isnan(low):
        text += f" [{low:.4g}, {high:.4g}]"
    if row[f"{metric}_n"] < row["seeds"]:
        text += f" (n={int(row[f'{metric}_n'])})"
    return text


def seed_markdown(table: pd.DataFrame, groups: list[str], metrics: list[str], kind: str) -> str:
    """table as Markdown: per metric 'mean ± std [95% interval]', solved as 'k/n rate [Wilson 95%]'."""
    # a parameter that does not apply to a group (an LSTM's model.activation) is missing: a blank cell
    shown = pd.DataFrame(index=table.index)
    for group in groups:
        shown[group] = table[group].astype(object).where(table[group].notna(), "")
    shown["seeds"] = table["seeds"]
    for metric in metrics:
        shown[metric] = [_mean_std_interval(row, metric) for _, row in table.iterrows()]
    if "solved_rate" in table:
        shown["solved [Wilson 95%]"] = [
            f"{int(r['solved'])}/{int(r['seeds'])} = {r['solved_rate']:.2f} [{r['solved_low']:.2f}, "
            f"{r['solved_high']:.2f}]" for _, r in table.iterrows()]
    legend = (f"mean ± std (ddof 1) [95% {INTERVAL_NAMES[kind]} interval of the mean] over seeds; "
              "(n=k): only k seeds gave a finite value")
    if groups and table[groups].isna().any(axis=None):
        legend += "; a blank parameter does not apply to that group's runs"
    return shown.to_markdown(index=False) + "\n\n" + legend


def curve_figure(report: SeedReport, key: str, settings: TrackingSettings | None = None):
    """Mean and interval over seeds per step of metric key, one line and band per group; None if no run
    logged key."""
    from harness.studies.study_run import new_figure

    fig = new_figure((7, 4.5))
    ax = fig.subplots()
    drawn, positive = 0, True
    for k, (label, run_ids) in enumerate(report.runs.items()):
        curves = []
        for run_id in run_ids:
            history = metric_history(run_id, key, settings)
            curves.append((history["step"].to_numpy(), history["value"].to_numpy()))
        band = curve_band(curves, report.kind)
        if band.empty:
            continue
        drawn += 1
        positive = positive and bool((band["low"].fillna(band["mean"]) > 0).all())
        ax.plot(band["step"], band["mean"], color=f"C{k % 10}", lw=1.2,
                label=f"{label} ({len(run_ids)} seeds)")
        ax.fill_between(band["step"], band["low"], band["high"], color=f"C{k % 10}", alpha=0.2, lw=0)
    if not drawn:
        return None
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{key}: mean and 95% {INTERVAL_NAMES[report.kind]} interval over seeds", fontsize=10)
    if key.endswith("loss") and positive:  # a t band reaching below zero would vanish on a log axis
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def log_seed_report(parent_run_id: str, report: SeedReport, settings: TrackingSettings | None = None,
                    curves: tuple[str, ...] = DEFAULT_CURVES) -> list[str]:
    """Log the table and the curve figures to the parent run; returns the artifact paths written."""
    client = store_client(settings or TrackingSettings())
    client.log_text(parent_run_id, report.markdown + "\n", "seeds/table.md")
    client.log_text(parent_run_id, report.table.to_csv(index=False), "seeds/table.csv")
    written = ["seeds/table.md", "seeds/table.csv"]
    for key in curves:
        figure = curve_figure(report, key, settings)
        if figure is not None:
            path = f"seeds/{key.replace('/', '_')}.png"
            client.log_figure(parent_run_id, figure, path)
            written.append(path)
    return written
