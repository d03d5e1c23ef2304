"""A study as tracked runs: one parent run, one child run per grid cell, the summary table and figures on the
parent; the same cells as children of a Hydra sweep's parent; and the table rebuilt from the store alone.

A study supplies the cells (`CellRun`, computed by pure functions of its config and seed), each cell's key
(its grid coordinates, known before it is computed, so that a resumed study skips the cells the store holds)
and a `summarize` function that turns the cells frame (one row per cell: its grid coordinates and metrics)
plus the cells' curves into a `StudyOutputs` (table, Markdown, figures, sentences). Nothing here knows what a
study computes. MLflow is reached only through harness.tracking, imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.app import STUDY_RESUME_SWEEP_KEY
from harness.config import check_value, tracking_config
from harness.processes import results_in_processes
from harness.studies.study_resume import StoppedStudy, resume_hint
from harness.sweep_continuation import JOB_TAG, job_tag, planned_job
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import fit_note, tag_values

Curve = tuple[np.ndarray, np.ndarray]  # (steps (n,) int, values (n,) float)


@dataclass
class CellRun:
    """Everything one child run logs.

    name: run name. key: grid coordinates (tags `cell.<name>` and the first columns of the cells frame).
    params: the cell's configuration. metrics: scalars logged at step 0 (the other columns of the frame).
    curves: metric name -> (steps, values), logged with those steps (e.g. the lag as the step).
    texts: artifact file name -> text. started_ms / ended_ms: when its computation ran (ms since the epoch,
    set by timed_cell), the child run's start and end, so its duration in the UI is the computation's.
    """

    name: str
    key: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, float]
    curves: dict[str, Curve] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    started_ms: int | None = None
    ended_ms: int | None = None


@dataclass
class StudyOutputs:
    """What a study's summarize returns: table (DataFrame), markdown (the table for humans), figures
    (artifact name -> matplotlib Figure) and sentences (the findings in words)."""

    table: pd.DataFrame
    markdown: str
    figures: dict[str, Any]
    sentences: list[str]


Summarize = Callable[[pd.DataFrame, Mapping[str, Mapping[str, Curve]]], StudyOutputs]
# MLflow's SQL stores keep ±inf as ± the largest float64 (SQL has no infinity): stored_cells reads inf back
STORED_INFINITY = float(np.finfo(np.float64).max)


@dataclass
class StudyResult:
    """parent_run_id and its experiment_id (both None with tracking off), the cells frame, the curves per cell
    name, the outputs, and how many cells this call computed (a resumed study: those the store lacked)."""

    parent_run_id: str | None
    experiment_id: str | None
    cells: pd.DataFrame
    curves: dict[str, dict[str, Curve]]
    outputs: StudyOutputs
    cells_computed: int = 0


def as_tuple(value: Any) -> tuple:
    """A grid axis from a config value: a list stays a tuple of its values, a scalar becomes a 1-tuple."""
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def check_int(name: str, value: Any, minimum: int) -> int:
    """value if it is an integer >= minimum, else ConfigError naming it."""
    value = int(value) if isinstance(value, np.integer) else value
    return check_value(name, value, kind=int, minimum=minimum)


def check_positive(name: str, value: Any) -> float:
    """value as a float if it is a finite number > 0, else ConfigError naming it."""
    return check_value(name, value, kind=float, minimum=0.0, strict=True)


def study_settings(values: Any, app: str):
    """The TrackingSettings of a study config's tracking section for the runs of app (TrackingSettings.app),
    keys and values checked and, for a tracking server, its health: ConfigError before any cell is
    computed."""
    from harness.run import tracking_settings
    from harness.tracking import check_server

    settings = tracking_settings(tracking_config(values), app)
    if settings.mode == "server":
        check_server(settings.tracking_uri)
    return settings


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure of the object API, for a study's figures: no pyplot, so it draws headless in any
    process and is freed with its last reference (pyplot keeps every figure it made until it is closed, and a
    notebook or a test running studies one after another piled them up). matplotlib loads on the first one."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def timed_cell(function: Callable[..., CellRun], *args: Any) -> CellRun:
    """function(*args) with the wall-clock times of the call in its started_ms / ended_ms."""
    started = now_ms()
    cell = function(*args)
    cell.started_ms, cell.ended_ms = started, now_ms()
    return cell


def compute_cells(function: Callable[..., CellRun], arguments: Sequence[tuple], n_jobs: int = 1,
                  logged: Callable[[CellRun], Any] | None = None) -> list[CellRun]:
    """[timed_cell(function, *args) for args in arguments], n_jobs processes side by side; logged(cell),
    when given, is called on each cell in order, in this process, as soon as the cell and those before it
    are computed (results_in_processes)."""
    cells = []
    with results_in_processes([(timed_cell, (function, *args)) for args in arguments], n_jobs) as results:
        for cell in results:
            cells.append(cell)
            if logged is not None:
                logged(cell)
    return cells


@contextmanager
def stop_account(parent, run_name: str, done: Callable[[], str], echo: Callable[[str], Any] = print
                 ) -> Iterator[None]:
    """Inside (parent: the study's open parent run, a logger of open_run), a signal that stops the study
    (RunInterrupted) first gets its account, then goes on up and open_run ends the parent KILLED: the
    parent's description and the echoed lines say which run stopped, how much of the grid was done
    (done(), e.g. ``3 of 8 cells``), the signal, what to do next (study_resume.resume_hint: the resume=
    command) and the run's page in the MLflow UI."""
    from harness.tracking import RunInterrupted
    from harness.ui import ui_hint

    try:
        yield
    except RunInterrupted as stop:
        if parent.interrupts is not None:
            parent.interrupts.quiet()  # the run is closing: a second Ctrl-C must not cut its account short
        progress = done()
        head = f"study {run_name}" + (f" ({parent.run_id})" if parent.run_id else " (tracking off)")
        echo(f"{head} stopped after {progress} ({stop}); the cells done are its child runs")
        hint = resume_hint(parent.run_id)
        echo(hint)
        if parent.run_id is not None:
            parent.set_tags({NOTE_TAG: f"**Stopped after {progress}** ({stop}); the cells done are its child "
                                       f"runs. {hint[0].upper()}{hint[1:]}."})
            echo(ui_hint(parent.tracking_uri, (str(parent.experiment_id), parent.run_id)))
        raise


def counted(parent) -> AbstractContextManager:
    """``with counted(parent):`` around logging a cell's child run and counting it (stop_account's done):
    a signal arriving inside is raised once both are done, so the account counts every child the store
    holds."""
    return parent.interrupts.held() if parent.interrupts is not None else nullcontext()


def cells_frame(cells: Sequence[CellRun]) -> pd.DataFrame:
    """One row per cell: its key columns then its metrics (NaN where a cell lacks a metric)."""
    return pd.DataFrame([{**cell.key, **cell.metrics} for cell in cells])


def key_tags(key: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a cell run that hold its key (grid coordinates), as the store keeps them."""
    return tag_values({f"cell.{name}": value for name, value in key.items()})


def cell_environment(settings) -> dict[str, str]:
    """The env.* and git.dirty tags (harness.environment.environment_tags) every cell run of a study or
    sweep job carries, read once for all of them; none for runs nobody records (no git calls)."""
    from harness.environment import environment_tags
    from harness.tracking import project_root

    return environment_tags(project_root())[0] if settings.mode != "off" else {}


def parent_environment(parent, settings) -> dict[str, str]:
    """Tag a study's parent run (a logger of open_run) with where it runs (harness.environment.
    log_environment: the tags, and the patch of uncommitted changes as an artifact) and return the tags for
    its cell runs; nothing for runs nobody records (no git calls)."""
    from harness.environment import log_environment
    from harness.tracking import project_root

    return log_environment(parent, project_root()) if settings.mode != "off" else {}


def log_cell(settings, study: str, cell: CellRun, parent_run_id: str | None,
             environment: Mapping[str, str]) -> str | None:
    """Open the child run of cell under parent_run_id ("auto": the sweep's parent) and log everything;
    environment: the tags of where it ran (cell_environment), so that every run shows it as a training
    run does, and a sweep job's cells the job's (sweep_continuation.job_tag)."""
    from harness.tracking import open_run

    tags = {**environment, "study": study, "kind": "cell", **key_tags(cell.key)}
    with open_run(settings, run_name=cell.name, tags=tags, parent_run_id=parent_run_id,
                  start_time=cell.started_ms, end_time=cell.ended_ms) as log:
        log.log_params(cell.params)
        log.log_metrics(cell.metrics, step=0)
        for metric, (steps, values) in cell.curves.items():
            for step, value in zip(steps, values, strict=True):
                log.log_metrics({metric: float(value)}, step=int(step))
        for file_name, text in cell.texts.items():
            log.log_text(text, file_name)
        return log.run_id


def study_note(study: str, outputs: StudyOutputs) -> str:
    """The Markdown description of a study's parent run: the table, then the findings as a list."""
    findings = "\n".join(f"- {sentence}" for sentence in outputs.sentences)
    return (f"**{study}** study: one child run per cell of its grid.\n\n{outputs.markdown}\n\n"
            f"**Findings**\n\n{findings}")


def log_outputs(log, cells: pd.DataFrame, outputs: StudyOutputs) -> None:
    """Table (Markdown + CSV), the cells frame (CSV), figures (PNG) and sentences on one run."""
    log.log_text(outputs.markdown, "table.md")
    log.log_text(outputs.table.to_csv(index=False), "table.csv")
    log.log_text(cells.to_csv(index=False), "cells.csv")
    log.log_text("\n".join(outputs.sentences) + "\n", "findings.txt")
    for name, figure in outputs.figures.items():
        log.log_figure(figure, name)


def run_study(settings, study: str, run_name: str, params: Mapping[str, Any],
              cell: Callable[..., CellRun], key: Callable[..., Mapping[str, Any]], arguments: Sequence[tuple],
              summarize: Summarize, echo: Callable[[str], Any] = print, n_jobs: int = 1,
              resume: StoppedStudy | None = None, curve_names: Sequence[str] = ()) -> StudyResult:
    """The parent run of a whole study, open while its cells compute (cell(*args) for args in arguments,
    n_jobs processes; key(*args) is that cell's key, known before it is computed): params, one child per
    cell, the metrics compute_seconds, cells_computed and n_jobs, table, figures and findings; echoes the
    table and the findings (or, stopped by a signal, stop_account's).

    resume (a stopped study of these params, study_resume.stopped_study): its parent run goes on, params not
    logged again; only the cells whose keys its child runs lack are computed and logged, and the outputs
    come from the cells read back from the store (stored_cells, curve_names as rebuild reads them), which
    are those of a run never stopped. compute_seconds is always the wall-clock seconds this call spent
    computing and logging its cells_computed cells in n_jobs processes (a resumed study: those it lacked; the
    cells' own durations are their child runs').
    """
    from harness.tracking import open_run

    held = _held_runs(() if resume is None else resume.children, study, [key(*args) for args in arguments])
    missing = [args for args, run_id in zip(arguments, held, strict=True) if run_id is None]
    logged: list[str | None] = [run_id for run_id in held if run_id is not None]
    if resume is not None:
        resume.discard_unfinished(settings.tracking_uri)
    with open_run(settings, run_name=run_name, tags={"study": study, "kind": "parent"},
                  resume_run_id=None if resume is None else resume.run_id) as parent, \
            stop_account(parent, run_name, lambda: f"{len(logged)} of {len(arguments)} cells", echo):
        if resume is None:
            parent.log_params(params)
        else:
            resume.announce(parent, run_name, f"{len(logged)} of {len(arguments)} cells are", echo)
        environment = parent_environment(parent, settings)
        started = time.perf_counter()
        def log_and_count(done: CellRun) -> None:
            with counted(parent):
                logged.append(log_cell(settings, study, done, parent.run_id, environment))

        cells = compute_cells(cell, missing, n_jobs, logged=log_and_count)
        parent.log_metrics({"compute_seconds": time.perf_counter() - started, "cells_computed": len(cells),
                            "n_jobs": n_jobs}, step=0)
        if resume is None:
            frame, curves = cells_frame(cells), {done.name: done.curves for done in cells}
        else:
            computed = iter(logged[len(logged) - len(cells):])  # their run ids, in the order of missing
            order = [run_id if run_id is not None else next(computed) for run_id in held]
            frame, curves = stored_cells(settings, parent.run_id, study, curve_names, order)
        outputs = summarize(frame, curves)
        log_outputs(parent, frame, outputs)
        parent.set_tags({NOTE_TAG: study_note(study, outputs)})
        echo(outputs.markdown)
        for sentence in outputs.sentences:
            echo(sentence)
        return StudyResult(parent.run_id, parent.experiment_id, frame, curves, outputs, len(cells))


def _held_runs(runs: Sequence[Any], study: str, keys: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Per key, the run id of the finished cell run of study among runs (a stopped study's children, or a
    continued sweep job's finished cells) that holds it (None: the cell is to be computed)."""
    by_tags = {frozenset((name, value) for name, value in run.data.tags.items() if name.startswith("cell.")):
               run.info.run_id for run in runs
               if run.data.tags.get("study") == study and run.data.tags.get("kind") == "cell"}
    return [by_tags.get(frozenset(key_tags(key).items())) for key in keys]


def run_sweep_cells(settings, study: str, cell: Callable[..., CellRun], arguments: Sequence[tuple],
                    job: SweepJob) -> pd.DataFrame:
    """One job of a `-m` sweep: its cells computed here, each a child of the sweep's parent run logged as
    soon as it is done, tagged with the job (sweep_continuation.job_tag); returns the cells frame.

    In a sweep continued with ``resume_sweep=<parent run id>`` the job computes only the cells of its grid
    the store lacks (its finished cells under that parent, found by the job's tag), as resume= finishes a
    stopped study, and returns the frame of all its cells read back from the store (curves: job.curve_names),
    which is an uninterrupted job's; a job whose cells are all there computes nothing."""
    from harness.studies.study_resume import held_job_cells

    tags = {**cell_environment(settings), **job_tag(job.cfg, len(arguments))}
    parent_run_id = job.cfg.get(STUDY_RESUME_SWEEP_KEY)
    if not parent_run_id:
        return cells_frame(compute_cells(
            cell, arguments, logged=lambda done: log_cell(settings, study, done, "auto", tags)))
    planned_job(STUDY_RESUME_SWEEP_KEY, str(parent_run_id), job.cfg, job.num)
    runs = held_job_cells(settings, str(parent_run_id), tags[JOB_TAG])
    held = _held_runs(runs, study, [job.key(*args) for args in arguments])
    missing = [args for args, run_id in zip(arguments, held, strict=True) if run_id is None]
    done = len(arguments) - len(missing)
    job.echo(f"job {job.num}: {done} of {len(arguments)} cells finished before, under sweep {parent_run_id}"
             + ("; not computed again" if not missing else "; computing the rest"))
    logged: list[str | None] = []
    compute_cells(cell, missing, logged=lambda done: logged.append(
        log_cell(settings, study, done, "auto", tags)))
    computed = iter(logged)  # their run ids, in the order of missing
    order = [run_id if run_id is not None else next(computed) for run_id in held]
    return stored_cells(settings, str(parent_run_id), study, job.curve_names, order)[0]


@dataclass(frozen=True)
class SweepJob:
    """What run_sweep_cells needs of the Hydra sweep job: its composed config (a plain dict), Hydra job
    number, the study's cell key function (key(*args): a cell's grid coordinates), its curve metrics and
    where its lines go."""

    cfg: Mapping[str, Any]
    num: int | None
    key: Callable[..., Mapping[str, Any]]
    curve_names: Sequence[str] = ()
    echo: Callable[[str], Any] = print


def stored_cells(settings, parent_run_id: str, study: str, curve_names: Sequence[str] = (),
                 order: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, dict[str, Curve]]]:
    """The cells frame and curves of study's child runs under parent_run_id, read back from the store
    (experiment settings.experiment) with harness.report; rows newest run first, or in the order of the run
    ids order (a resumed study's: its arguments' order, as cells_frame gives a computed study's).

    Key columns come from the `cell.<name>` tags (numbers parsed back), metrics from the runs' latest values
    (the step-0 scalars), curves (the metrics named in curve_names) from their full histories; every value
    as the cells logged it (±inf too: _infinite).
    """
    from harness.report import metric_history, runs_frame

    runs = runs_frame(settings.experiment, settings, parent_run_id=parent_run_id,
                      filter=f"tags.study = '{study}' and tags.kind = 'cell'")
    if runs.empty:
        raise ValueError(f"parent_run_id must name a run with {study} cell runs, got {parent_run_id!r}")
    if order:
        runs = runs.set_index("run_id").loc[list(order)].reset_index()
    columns = {name[len("tags.cell."):]: runs[name].map(_parse) for name in runs.columns
               if name.startswith("tags.cell.")}
    columns.update({name[len("metrics."):]: _infinite(runs[name].to_numpy()) for name in runs.columns
                    if name.startswith("metrics.") and name[len("metrics."):] not in curve_names})
    curves: dict[str, dict[str, Curve]] = {}
    for run_id, run_name in zip(runs["run_id"], runs["tags.mlflow.runName"], strict=True):
        histories = {name: metric_history(run_id, name, settings) for name in curve_names}
        curves[run_name] = {name: (history["step"].to_numpy(), _infinite(history["value"].to_numpy()))
                            for name, history in histories.items() if not history.empty}
    return pd.DataFrame(columns).reset_index(drop=True), curves


def _infinite(values: np.ndarray) -> np.ndarray:
    """Stored metric values with STORED_INFINITY (what the store made of ±inf) back to ±inf."""
    return np.where(values == STORED_INFINITY, np.inf, np.where(values == -STORED_INFINITY, -np.inf, values))


def _parse(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def rebuild(settings, parent_run_id: str, study: str, summarize: Summarize, curve_names: Sequence[str] = (),
            echo: Callable[[str], Any] = print) -> StudyResult:
    """Table, figures and findings of the cells under parent_run_id (a sweep's parent, or a study's), from
    the store alone, logged on a new `<study>-summary` run nested under that parent; the parent's description
    becomes the table and the findings."""
    from harness.tracking import ensure_store, open_run

    frame, curves = stored_cells(settings, parent_run_id, study, curve_names)
    outputs = summarize(frame, curves)
    client, _ = ensure_store(settings)
    client.set_tag(parent_run_id, NOTE_TAG, fit_note(study_note(study, outputs)))
    with open_run(settings, run_name=f"{study}-summary", tags={"study": study, "kind": "summary"},
                  parent_run_id=parent_run_id) as log:
        log_outputs(log, frame, outputs)
        run_id, experiment_id = log.run_id, log.experiment_id
    echo(outputs.markdown)
    for sentence in outputs.sentences:
        echo(sentence)
    return StudyResult(run_id, experiment_id, frame, curves, outputs)
