"""The RNN-vs-ARMA comparison: every (series, model, seed) cell forecasts the same test part one step ahead.

A cell is a pure function of (series, model, seed, config): the series is generated from its seed, the model
is fitted on the training part (validation part for early stopping) and predicts the test part one step ahead,
each prediction using only the past. Cells sharing a (series, seed) form a unit: the series, its fingerprint
and the reference ARMA fit that every RNN is Diebold-Mariano-tested against. Units are independent, so a
sequential run, a process-parallel run and a Hydra sweep running one (series, model) per job give
bit-identical numbers.

Tracking: a parent run per study with one child per cell (dataset fingerprint, test scores, the ARMA order,
coefficients, standard errors, psi-weights and convergence, or the RNN training curve and its DM test against
the reference), the summary table (Markdown and CSV), the figures and note 000's RNN-ARMA(1,1) link (a child
plus figures on the parent). rebuild_table reads the table back from the store alone; resume=<parent run id>
finishes a stopped study, computing only the units whose cells the store lacks (harness.studies.study_resume).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from harness.app import STUDY_RESUME_SWEEP_KEY
from harness.config import (
    CELL_GATES,
    TRACKING_KEYS,
    ConfigError,
    check_keys,
    check_value,
    network_bytes,
    require_memory,
    suggestion,
)
from harness.config import allowed_keys as config_allowed_keys
from harness.forecast.arma import fit_arma, minimum_length, predictor_weights, psi_from_predictor_weights
from harness.forecast.backtest import (
    PLAN_KEYS,
    SCORES,
    Backtest,
    BacktestPlan,
    dm_by_horizon,
    dm_errors,
    run_backtest,
    score_backtest,
    score_key,
)
from harness.forecast.datasets import ALL_SERIES_NAMES, CSV_FIELDS, load_series
from harness.forecast.intervals import DEFAULT_LEVELS, level_name, level_of_name, min_calibration_residuals
from harness.forecast.metrics import diebold_mariano
from harness.forecast.models import ArmaForecaster, RnnForecaster, fit_linear_recurrent_predictor
from harness.forecast.series import SERIES_NAMES, Series
from harness.forecast.splits import Split, as_label, split_from_spec
from harness.processes import results_in_processes
from harness.progress import ProgressLines
from harness.seed_stats import summarize_over_seeds
from harness.studies import figures
from harness.studies.comparison_summary import print_width, terminal_summary
from harness.studies.study_resume import StoppedStudy, check_run_keys, stopped_study
from harness.studies.study_run import (
    cell_environment,
    check_int,
    counted,
    now_ms,
    parent_environment,
    stop_account,
    study_settings,
)
from harness.sweep_continuation import JOB_TAG, job_tag, not_a_sweep, planned_job
from harness.tasks import fingerprint
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import MAX_TAG_LENGTH, compact_tables, fit_note
from harness.ui import ui_hint

STUDY = "rnn_vs_arma"
FORECASTERS: dict[str, Callable[..., Any]] = {"arma": ArmaForecaster, "rnn": RnnForecaster}
TABLE_METRICS = (*SCORES, "dm_stat", "dm_pvalue")
DM_LEVEL = 0.05
ERROR_CURVES = ("test_error", "reference_test_error")  # an RNN cell's one-step errors and the reference's
# (series, model, variant, seed) -> the cell's ERROR_CURVES by score key
Errors = Mapping[tuple[str, str, str, int], Mapping[str, np.ndarray]]
LINK_SEQUENCE_LENGTH = 100  # compute_link trains on chunks of this many points
LINK_FIGURE = "link_impulse_response.png"
LINK_SECTION = "link section"  # its name in the progress lines
# the key columns of the cells frame; variant: what a sweep's job changed beyond series, model and seed (""
# in a sequential run), reference: the model an RNN cell is DM-tested against ("" for ARMA cells)
ROW_KEYS = ("series", "window", "h", "model", "variant", "reference", "seed")
FIT_KEYS = ("series", "model", "variant", "reference")  # the cells of one fit but for the seed
WHOLE_TEST = "test"  # the window name of the whole test part
INVERTIBLE_MARGIN = 1.01  # an ARMA cell with an MA root within it is flagged (auto.arima rejects such fits)
# where the terminal's one-step grids say the whole table is (the end of a sentence)
STORED_TABLE = "the parent run's `table.md`, printed again by the rebuild command below"
WINDOW_NAME = re.compile(r"[A-Za-z0-9_-]+")
LEVEL = r"\d+(?:_\d+)?"  # an interval level in a metric's name (intervals.level_name: "95", "97_5")
INTERVAL_SCORE = re.compile(rf"(coverage|winkler)({LEVEL})")
COVERAGE_COLUMN = re.compile(rf"coverage({LEVEL})_mean")  # the summary table's coverage columns
SCORE_KEY = re.compile(  # backtest.score_key's names: score[.h<h>][.<window>]
    rf"(?P<score>[a-z_]+(?:{LEVEL})?)(?:\.h(?P<h>\d+))?(?:\.(?P<window>[A-Za-z0-9_-]+))?"
)


class StudyInputError(ConfigError):
    """Bad study input (grid, series parameters, model keywords, part lengths), one line naming it."""


# The keys of conf/comparison/rnn_vs_arma.yaml, per section (None: free-form entries, each checked by the
# function it is passed to: make_series, the forecasters' constructors).
LINK_KEYS = ("enabled", "series", "seed", "steps", "lags")
KEYS: dict[str, tuple[str, ...] | None] = {
    "": ("series", "model", "seed", "length", "split", "series_params", "reference", "models", "rnn", "link",
         "figure_window", "n_jobs", "progress", "rebuild", "resume", "resume_sweep", "tracking", "backtest",
         "intervals", "windows", "csv"),
    "split": ("train", "val", "test"),
    "link": LINK_KEYS,
    "tracking": TRACKING_KEYS,
    "backtest": PLAN_KEYS,
    "intervals": ("levels",),
    "csv": CSV_FIELDS,
    "windows": None,
    "series_params": None,
    "models": None,
    "rnn": None,
}


def allowed_keys(key: str) -> list[str] | None:
    """The keys allowed beside dotted key in this app's config (for Hydra's misspelt-key errors)."""
    return config_allowed_keys(key, KEYS)


@dataclass(frozen=True)
class StudyConfig:
    """Everything a cell's numbers depend on, plus how the grid is run.

    series, models, seeds: the grid. length: points per generated series (a real or CSV series has its own).
    split: train/val/test fractions, or label ranges [first, last] (dates or index labels; val may be None).
    series_params: series name -> load_series keywords (csv: path, value, date). catalog: model name ->
    {"kind": "arma" | "rnn", ... constructor keywords of ArmaForecaster | RnnForecaster}; rnn: RnnForecaster
    keywords shared by every rnn entry (the entry's own win). reference: the arma model every RNN is tested
    against. link: note 000's section (enabled, series, seed, steps, lags). figure_window: test points
    plotted. n_jobs: processes. progress: a line per finished (series, seed) on stderr (when it is a terminal)
    in a sequential run. backtest: horizon, step, refit_every (BacktestPlan). levels: interval
    probabilities. windows: name -> label range [first, last] inside the test part, scored on its own (e.g.
    the classic sunspot windows).
    """

    series: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    length: int = 1500
    split: Mapping[str, float] = field(default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2})
    series_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    catalog: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rnn: Mapping[str, Any] = field(default_factory=dict)
    reference: str = "arma"
    link: Mapping[str, Any] = field(default_factory=lambda: {"enabled": False})
    figure_window: int = 120
    n_jobs: int = 1
    backtest: Mapping[str, Any] = field(default_factory=dict)
    levels: tuple[float, ...] = DEFAULT_LEVELS
    windows: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    progress: bool = True

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> StudyConfig:
        """From the composed config as a plain dict; series, model and seed may be one value or a list."""

        def as_tuple(value: Any) -> tuple[Any, ...]:
            return tuple(value) if isinstance(value, list | tuple) else (value,)

        series_params = {name: dict(params) for name, params in (cfg.get("series_params") or {}).items()}
        if cfg.get("csv") is not None:
            series_params["csv"] = {**dict(cfg["csv"]), **series_params.get("csv", {})}
        intervals = dict(cfg.get("intervals") or {})
        return cls(
            series=as_tuple(cfg["series"]),
            models=as_tuple(cfg["model"]),
            seeds=as_tuple(cfg["seed"]),
            length=cfg["length"],
            split=dict(cfg["split"]),
            series_params=series_params,
            catalog={name: dict(entry) for name, entry in cfg["models"].items()},
            rnn=dict(cfg.get("rnn") or {}),
            reference=cfg.get("reference", "arma"),
            link=dict(cfg.get("link") or {"enabled": False}),
            figure_window=cfg.get("figure_window", 120),
            n_jobs=cfg.get("n_jobs", 1),
            backtest=dict(cfg.get("backtest") or {}),
            levels=tuple(intervals.get("levels", DEFAULT_LEVELS)),
            windows={name: list(bounds) for name, bounds in (cfg.get("windows") or {}).items()},
            progress=cfg.get("progress", True),
        )

    def kind(self, model: str) -> str:
        return self.catalog[model]["kind"]

    def spec(self, model: str) -> dict[str, Any]:
        """Constructor keywords of model's forecaster (the shared rnn keywords under an rnn entry's own)."""
        entry = {key: value for key, value in self.catalog[model].items() if key != "kind"}
        return {**self.rnn, **entry} if self.kind(model) == "rnn" else entry

    @property
    def plan(self) -> BacktestPlan:
        """The backtest plan (origins, horizons, refits, interval levels)."""
        try:
            return BacktestPlan.from_mapping(self.backtest, self.levels)
        except (TypeError, ValueError) as error:
            raise StudyInputError(str(error)) from None

    @property
    def fitted_models(self) -> list[str]:
        """The reference first, then the grid's models: what every unit fits."""
        return list(dict.fromkeys([self.reference, *self.models]))


# ----------------------------------------------------------------------------------------------- validation


def validate(config: StudyConfig) -> None:
    """Check the whole grid before any run exists; the first problem raises StudyInputError (one line)."""
    try:
        _validate(config)
    except StudyInputError:
        raise
    except ConfigError as error:
        raise StudyInputError(str(error)) from None


def _validate(config: StudyConfig) -> None:
    for key, value, minimum in (
        ("length", config.length, 2),
        ("figure_window", config.figure_window, 1),
        ("n_jobs", config.n_jobs, 1),
    ):
        check_int(key, value, minimum)
    for axis, values in (("series", config.series), ("model", config.models), ("seed", config.seeds)):
        if not values:
            raise StudyInputError(f"{axis} must list at least one value, got none")
    for name in (*config.series, *config.series_params):
        if name not in ALL_SERIES_NAMES:
            raise StudyInputError(f"series must be among {sorted(ALL_SERIES_NAMES)}, got {name!r}"
                                  f"{suggestion(name, ALL_SERIES_NAMES)}")
    config.plan  # noqa: B018 -- building the plan checks backtest.* and intervals.levels
    for name in config.windows:
        if not WINDOW_NAME.fullmatch(str(name)) or name == WHOLE_TEST or re.fullmatch(r"h\d+", str(name)):
            raise StudyInputError(f"windows: a name must use letters, digits, '-' or '_' and not be "
                                  f"{WHOLE_TEST!r} or h<number>, got {name!r}")
    for name in (*config.models, config.reference):
        if name not in config.catalog:
            raise StudyInputError(f"model must be among {sorted(config.catalog)}, got {name!r}"
                                  f"{suggestion(name, config.catalog)}")
    for name, entry in config.catalog.items():
        if entry.get("kind") not in FORECASTERS:
            raise StudyInputError(
                f"models.{name}.kind must be one of {list(FORECASTERS)}, got {entry.get('kind')!r}"
            )
    if config.kind(config.reference) != "arma":
        raise StudyInputError(f"reference must name an arma model, got {config.reference!r}")
    for seed in config.seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise StudyInputError(f"seed must be non-negative integers, got {seed!r}")
    # Generated series are checked before they are made (their length is config.length), real and CSV
    # series once loaded, by their own lengths.
    if any(name in SERIES_NAMES for name in config.series):
        _require_unit_memory(config, config.length, f"length={config.length}")
    # building every forecaster checks its keywords here rather than mid-study
    forecasters = {model: _build_forecaster(config, model, seed=0) for model in config.fitted_models}
    longest = ("", 0)
    for name in config.series:
        for seed in config.seeds:
            values, labels, split = _prepare(config, _make_series(config, name, seed))
            if name not in SERIES_NAMES and len(values) > longest[1]:
                longest = (name, len(values))
            _windows(config, name, labels, split)
            for model, forecaster in forecasters.items():
                _check_part_lengths(config, model, forecaster, name, split)
    if longest[1]:
        _require_unit_memory(config, longest[1], f"series {longest[0]!r} ({longest[1]} points)")
    check_value("link.enabled", config.link.get("enabled", False), kind=bool)
    check_value("progress", config.progress, kind=bool)
    if config.link.get("enabled"):
        _check_link(config)


def _require_unit_memory(config: StudyConfig, n: int, sizes: str) -> None:
    """ConfigError when the units running side by side (n_jobs of them at most), each on a series of n
    points, would exceed the available memory; sizes names where n comes from."""
    processes = min(config.n_jobs, len(config.series) * len(config.seeds))
    hidden = {model: config.spec(model)["hidden_size"] for model in config.fitted_models
              if config.kind(model) == "rnn" and "hidden_size" in config.spec(model)}
    require_memory(processes * _unit_bytes(config, n), f"{sizes} with models {config.fitted_models} "
                   f"(hidden_size {hidden}) in {processes} processes (n_jobs)")


def _unit_bytes(config: StudyConfig, n: int) -> int:
    """A lower bound of the bytes one (series, seed) unit on a series of n points allocates: the series and
    the arrays derived from it (parts, normalised copies, lagged inputs, predictions: 8 per point), the ARMA
    fits' Kalman filter
    (predicted and filtered state covariances, k x k per point for k = max(p, q + 1) states) and an RNN run
    over the whole series as one sequence (its validation and test forecasts)."""

    def size(value: Any, default: int) -> int:  # a bad value is refused by its forecaster, later
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

    needed = 8 * 8 * n
    for model in config.fitted_models:
        spec = config.spec(model)
        if config.kind(model) == "arma":
            p, q = spec.get("order") or (spec.get("max_p", 3), spec.get("max_q", 3))
            states = max(size(p, 0), size(q, 0) + 1)
            needed += 8 * 2 * states * states * n
        else:
            cell = spec.get("model", "elman")
            needed += network_bytes(cell if cell in CELL_GATES else "elman", size(spec.get("lags"), 1),
                                    size(spec.get("hidden_size"), 16), 1, length=n, batch_size=1)
    return needed


def _check_part_lengths(config: StudyConfig, model: str, forecaster, name: str, split: Split) -> None:
    """The training part must hold enough points for the largest ARMA order the model may fit, or more
    points than an RNN's lags."""
    if config.kind(model) == "arma":
        p, q = forecaster.order or (forecaster.max_p, forecaster.max_q)
        needed, what = minimum_length(p, q), f"up to ARMA({p},{q})"
    else:
        needed, what = forecaster.lags + 1, f"with lags={forecaster.lags}"
    if len(split.train) < needed:
        raise StudyInputError(
            f"train part of series {name!r} has {len(split.train)} points (length={config.length}, "
            f"split={dict(config.split)}), too short for model {model!r} {what}: needs >= {needed}"
        )


def _check_link(config: StudyConfig) -> None:
    name, seed = config.link.get("series"), config.link.get("seed", 0)
    for key, minimum in (("seed", 0), ("steps", 1), ("lags", 1)):
        if key in config.link:
            check_int(f"link.{key}", config.link[key], minimum)
    if name not in ALL_SERIES_NAMES:
        raise StudyInputError(f"link.series must be among {sorted(ALL_SERIES_NAMES)}, got {name!r}"
                              f"{suggestion(name, ALL_SERIES_NAMES)}")
    series = _make_series(config, name, seed)
    true = series.true_params or {}
    if len(true.get("ar", ())) != 1 or len(true.get("ma", ())) != 1:
        raise StudyInputError(
            f"link.series must be an ARMA(1,1) series (one ar and one ma coefficient), got {name!r}"
        )
    train = _prepare(config, series)[2].train
    if len(train) < LINK_SEQUENCE_LENGTH:
        raise StudyInputError(
            f"link: the training part of series {name!r} has {len(train)} points, needs >= "
            f"{LINK_SEQUENCE_LENGTH} (one chunk of the linear RNN's sequence_length)"
        )


def _make_series(config: StudyConfig, name: str, seed: int) -> Series:
    try:
        return load_series(name, n=config.length, seed=seed, **config.series_params.get(name, {}))
    except (TypeError, ValueError) as error:
        raise StudyInputError(f"series {name!r}: {error}") from None


def _prepare(config: StudyConfig, series: Series) -> tuple[np.ndarray, np.ndarray, Split]:
    """The values (N,) and labels (N,) the study uses (the split's label ranges may leave out both ends)
    and the split of them."""
    try:
        lo, hi, split = split_from_spec(series.values, series.labels, config.split)
    except (TypeError, ValueError) as error:
        raise StudyInputError(f"split of series {series.name!r}: {error}") from None
    return series.values[lo:hi], series.labels[lo:hi], split


def _windows(config: StudyConfig, name: str, labels: np.ndarray, split: Split) -> dict[str, tuple[int, int]]:
    """Window name -> positions [lo, hi) of its label range, each inside the test part."""
    out = {}
    for window, bounds in config.windows.items():
        if isinstance(bounds, str) or not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise StudyInputError(f"windows.{window} must be a label range [first, last], got {bounds!r}")
        try:
            first, last = (as_label(labels, bound, f"windows.{window}") for bound in bounds)
        except ValueError as error:
            raise StudyInputError(str(error)) from None
        lo, hi = int(np.searchsorted(labels, first, "left")), int(np.searchsorted(labels, last, "right"))
        if not split.val_end <= lo < hi:
            raise StudyInputError(
                f"windows.{window}={list(bounds)} must select points of the test part of series {name!r} "
                f"(labels {labels[split.val_end]} to {labels[-1]})"
            )
        out[window] = (lo, hi)
    return out


def _build_forecaster(config: StudyConfig, model: str, seed: int):
    """model's forecaster; an RNN's initialisation and mini-batches follow the cell's seed."""
    kind, spec = config.kind(model), config.spec(model)
    try:
        return FORECASTERS[kind](**spec, **({"seed": seed} if kind == "rnn" else {}))
    except (TypeError, ValueError) as error:
        raise StudyInputError(f"model {model!r}: {error}") from None


# ------------------------------------------------------------------------------------------------ computing


@dataclass
class Cell:
    """One (series, model, seed) result: everything its child run logs.

    metrics: backtest scores under score_key names (per horizon and window, with interval coverage and
    Winkler scores; DM against the reference for RNNs; order, coefficients, standard errors and the warning
    count for ARMA). params: forecaster keywords. tags: string facts (ARMA convergence, interval method).
    texts: artifact file name -> text. curve: metric name -> (E,) values at curve_steps (E,) (RNN training).
    points (W,): positions of the one-step targets among the first figure_window test points; window (W,):
    their one-step forecasts; bands: level -> (lower (W,), upper (W,)) one-step intervals. started_ms /
    ended_ms: when the model's backtest ran (ms since the epoch), the child run's start and end. forecaster:
    the backtest's first fit (on the training part), logged as the run's MLflow model. errors: for RNNs,
    score_key(ERROR_CURVES[i], 1, window) -> (K,) the cell's / the reference's one-step errors on the K
    targets its DM test used, logged with the index as the step (the pooled DM test reads them).
    """

    series: str
    model: str
    seed: int
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, str]
    texts: dict[str, str]
    curve_steps: np.ndarray
    curve: dict[str, np.ndarray]
    points: np.ndarray
    window: np.ndarray
    bands: dict[float, tuple[np.ndarray, np.ndarray]]
    started_ms: int | None = None
    ended_ms: int | None = None
    forecaster: Any = field(default=None, repr=False)
    errors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Unit:
    """The cells of one (series, seed) with the values (N,) used, their labels (N,), fingerprint, source
    (file of real data, else None) and the test start."""

    series: str
    seed: int
    values: np.ndarray
    labels: np.ndarray
    fingerprint: str
    source: str | None
    test_start: int
    cells: list[Cell]


def compute_unit(config: StudyConfig, name: str, seed: int) -> Unit:
    """Backtest and score every model of the grid on series name drawn with seed (pure: no tracking, no
    globals).

    The reference ARMA is backtested even when it is not in the grid, because every RNN is tested against it.
    """
    series = _make_series(config, name, seed)
    values, labels, split = _prepare(config, series)
    plan = config.plan
    windows = {None: None, **_windows(config, name, labels, split)}
    oracle = series.oracle_mse(plan.horizon)
    backtests, times = {}, {}
    for model in config.fitted_models:
        started = now_ms()
        backtests[model] = run_backtest(lambda model=model: _build_forecaster(config, model, seed), values,
                                        split, plan)
        times[model] = (started, now_ms())
    cells = []
    for model in config.models:
        bt = backtests[model]
        metrics: dict[str, float] = {"refits": float(len(bt.refits))}
        errors: dict[str, np.ndarray] = {}
        for window, bounds in windows.items():
            by_horizon = score_backtest(bt, plan, oracle, bounds)
            if config.kind(model) == "rnn":
                for h, dm in dm_by_horizon(bt, backtests[config.reference], plan, bounds).items():
                    by_horizon.setdefault(h, {}).update(dm)
                one_step = dm_errors(bt, backtests[config.reference], plan, bounds).get(1)
                if one_step is not None:
                    errors.update({score_key(name, 1, window): e
                                   for name, e in zip(ERROR_CURVES, one_step, strict=True)})
            for h, scores in by_horizon.items():
                metrics.update({score_key(key, h, window): value for key, value in scores.items()})
        shown = bt.origins < split.val_end + config.figure_window
        cell = Cell(
            series=name,
            model=model,
            seed=seed,
            metrics=metrics,
            params=config.spec(model),
            tags={"interval": bt.interval,
                  **({"reference": config.reference} if config.kind(model) == "rnn" else {})},
            texts={"forecasts.csv": _forecasts_csv(bt, labels, plan)},
            curve_steps=np.zeros(0, dtype=int),
            curve={},
            points=bt.origins[shown],
            window=bt.forecasts[shown, 0],
            bands={
                level: (bt.lower[i, shown, 0], bt.upper[i, shown, 0]) for i, level in enumerate(plan.levels)
            },
            started_ms=times[model][0],
            ended_ms=times[model][1],
            forecaster=bt.first,
            errors=errors,
        )
        summary = bt.first.summary()
        if config.kind(model) == "arma":
            _describe_arma(cell, summary)
        else:
            _describe_rnn(cell, summary, bt.first.history_)
        cells.append(cell)
    return Unit(name, seed, values, labels, fingerprint(values), series.source, split.val_end, cells)


def _forecasts_csv(bt: Backtest, labels: np.ndarray, plan: BacktestPlan) -> str:
    """Every forecast of the backtest, one row per (origin, h): origin, target label, truth, forecast and
    the interval bounds per level (the cell's scores can be recomputed from it)."""
    M, H = bt.forecasts.shape
    target_at = np.minimum(bt.origins[:, None] + np.arange(H)[None, :], len(labels) - 1)
    frame = pd.DataFrame({
        "origin": np.repeat(labels[bt.origins].astype(str), H),
        "h": np.tile(np.arange(1, H + 1), M),
        "target": labels[target_at].astype(str).reshape(-1),
        "truth": bt.targets.reshape(-1),
        "forecast": bt.forecasts.reshape(-1),
        **{
            f"{side}{level_name(level)}": bounds[i].reshape(-1)
            for i, level in enumerate(plan.levels)
            for side, bounds in (("lower", bt.lower), ("upper", bt.upper))
        },
    })
    return frame[frame["truth"].notna()].to_csv(index=False)


def _describe_arma(cell: Cell, summary: dict[str, Any]) -> None:
    """Order, coefficients and standard errors as metrics, convergence as tag + warning count, fit as JSON."""
    p, q = summary["order"]
    cell.metrics.update(
        p=float(p),
        q=float(q),
        convergence_warnings=float(len(summary["warnings"])),
        # every estimation warning of the order search (each trial's), and the trials left out of the choice
        fit_warnings=float(sum(len(t["warnings"]) for t in summary.get("trials", [summary]))),
        orders_skipped=float(sum(not t["converged"] for t in summary.get("trials", []))),
        constrained=float(summary["constrained"]),
    )
    roots = {f"{part}_root_min_modulus": summary.get(f"{part}_root_min_modulus") for part in ("ar", "ma")}
    cell.metrics.update({key: value for key, value in roots.items() if value is not None})
    cell.metrics.update({f"coef.{name}": value for name, value in summary["params"].items()})
    cell.metrics.update({f"stderr.{name}": value for name, value in summary["bse"].items()})
    cell.tags.update(converged=str(summary["converged"]).lower(), order=f"({p},{q})")
    cell.texts["arma_fit.json"] = json.dumps(summary, indent=1, default=float)


def _describe_rnn(cell: Cell, summary: dict[str, Any], history: Mapping[str, np.ndarray]) -> None:
    """The training curve (train loss, validation MSE per evaluation) and the early-stopping outcome."""
    cell.curve_steps = history["step"].astype(int)
    cell.curve = {key: history[key] for key in ("train_loss", "val_mse")}
    cell.metrics.update(best_step=float(summary["best_step"]), steps_run=float(summary["steps_run"]),
                        best_val_mse=math.nan if summary["best_val_mse"] is None else summary["best_val_mse"])
    cell.texts["rnn_fit.json"] = json.dumps(summary, indent=1, default=float)


@dataclass
class Link:
    """Note 000's RNN-ARMA(1,1) link on one series: what the 1-unit linear RNN learned next to the ARMA fit.

    values (N,): the series. metrics: learned input/feedback weights, fitted and true phi + theta and -theta.
    impulse (K,) / pi (K,): the RNN's response to x_{t-k} and the fitted ARMA predictor weights, k = 1..K.
    rnn_psi (K,) / arma_psi (K,): psi-weights implied by the RNN's response and of the fitted ARMA.
    seconds: the wall time of its computation (for the progress line only).
    """

    series: str
    seed: int
    values: np.ndarray
    fingerprint: str
    metrics: dict[str, float]
    impulse: np.ndarray
    pi: np.ndarray
    rnn_psi: np.ndarray
    arma_psi: np.ndarray
    seconds: float

    @property
    def summary(self) -> str:
        m = self.metrics
        return (
            f"RNN-ARMA(1,1) link on {self.series} (seed {self.seed}): linear RNN input weight "
            f"{m['rnn_input_weight']:.3f} vs fitted phi+theta {m['arma_phi_plus_theta']:.3f} "
            f"(true {m['true_phi_plus_theta']:.3f}); feedback {m['rnn_feedback_weight']:.3f} "
            f"vs fitted -theta "
            f"{m['arma_minus_theta']:.3f} (true {m['true_minus_theta']:.3f})"
        )


def compute_link(config: StudyConfig) -> Link:
    """Train the 1-unit linear RNN with output feedback and fit ARMA(1,1) on the same training part (pure)."""
    started = time.monotonic()
    name, seed, lags = config.link["series"], config.link.get("seed", 0), config.link.get("lags", 12)
    series = _make_series(config, name, seed)
    train = _prepare(config, series)[2].train
    rnn = fit_linear_recurrent_predictor(
        train, steps=config.link.get("steps", 1500), sequence_length=LINK_SEQUENCE_LENGTH, impulse_lags=lags,
        seed=seed,
    )
    arma = fit_arma(train, (1, 1), psi_lags=lags)
    (phi,), (theta,) = arma.ar, arma.ma
    (true_phi,), (true_theta,) = series.true_params["ar"], series.true_params["ma"]
    return Link(
        series=name,
        seed=seed,
        values=series.values,
        fingerprint=fingerprint(series.values),
        metrics={
            "rnn_input_weight": rnn.input_weight,
            "rnn_feedback_weight": rnn.feedback_weight,
            "rnn_train_mse": rnn.loss,
            "arma_phi_plus_theta": phi + theta,
            "arma_minus_theta": -theta,
            "true_phi_plus_theta": true_phi + true_theta,
            "true_minus_theta": -true_theta,
        },
        impulse=rnn.impulse,
        pi=predictor_weights(arma.ar, arma.ma, lags),
        rnn_psi=psi_from_predictor_weights(rnn.impulse, lags),
        arma_psi=arma.psi,
        seconds=time.monotonic() - started,
    )


def _grid_units(config: StudyConfig) -> list[tuple[str, int]]:
    """The grid's units, its (series, seed) pairs in grid order: what the progress lines and a stopped
    study's account count (the link section is none)."""
    return [(name, seed) for name in config.series for seed in config.seeds]


def _grid_cells(config: StudyConfig) -> list[tuple[str, str, int]]:
    """The grid's cells, (series, model, seed), in grid order: each unit's models in turn."""
    return [(series, model, seed) for series, seed in _grid_units(config) for model in config.models]


def _complete_units(config: StudyConfig, held: Iterable[tuple[str, str, int]]) -> frozenset[tuple[str, int]]:
    """The units (series, seed) of the grid all of whose cells are among held (series, model, seed)."""
    held = set(held)
    return frozenset(unit for unit in _grid_units(config)
                     if all((unit[0], model, unit[1]) in held for model in config.models))


def _calls(config: StudyConfig, with_link: bool, done: frozenset[tuple[str, int]] = frozenset()
           ) -> list[tuple[Callable[..., Any], tuple]]:
    """The grid's computations in grid order: one compute_unit per (series, seed) but those in done, then
    the link section."""
    calls: list[tuple[Callable[..., Any], tuple]] = [
        (compute_unit, (config, *unit)) for unit in _grid_units(config) if unit not in done]
    if with_link:
        calls.append((compute_link, (config,)))
    return calls


def _gather(results: Iterable[Unit | Link], log_cell: Callable[[Unit, Cell], Any],
            progress: ProgressLines | None = None) -> tuple[list[Unit], Link | None]:
    """The units (in grid order) and the link section of results (results_in_processes of _calls); each
    unit's cells go to log_cell(unit, cell) as soon as the unit and those before it are done, while the
    processes compute the rest (the logging of 84 child runs no longer waits for the last unit with a core
    idle). progress (progress_lines) gets a line per unit once its cells are logged, and an unnumbered one
    for the link section."""
    units: list[Unit] = []
    link = None
    for result in results:
        if isinstance(result, Link):
            link = result
            if progress is not None:
                progress.extra_finished(LINK_SECTION, f"{LINK_SECTION} ({result.series} seed {result.seed}): "
                                                      f"{result.seconds:.0f} s")
            continue
        units.append(result)
        for cell in result.cells:
            log_cell(result, cell)
        if progress is not None:
            progress.finished(_unit_line(result))
    return units, link


def progress_lines(config: StudyConfig, units_held: int, with_link: bool, stream: TextIO | None = None
                   ) -> ProgressLines:
    """The study's progress lines (stderr by default; off with progress=false): [k/N] over the grid's N
    units, as the account of a stopped study counts them (_progress), the units_held of a stopped study it
    goes on already counted; the link section, when computed (with_link), on a line of its own."""
    extras = [LINK_SECTION] if with_link else []
    return ProgressLines(len(_grid_units(config)), done=units_held, extras=extras, stream=stream,
                         enabled=None if config.progress else False)


def _unit_line(unit: Unit) -> str:
    """'arma11 seed 1: 4 models, 14 s': the unit's cells and the wall time of their backtests."""
    seconds = (max(c.ended_ms for c in unit.cells) - min(c.started_ms for c in unit.cells)) / 1000
    models = f"{len(unit.cells)} model{'s' if len(unit.cells) != 1 else ''}"
    return f"{unit.series} seed {unit.seed}: {models}, {seconds:.0f} s"


# ---------------------------------------------------------------------------------------------------- table


def long_rows(metrics: Mapping[str, float]) -> dict[tuple[str, int], dict[str, float]]:
    """(window, h) -> {table metric: value} from one cell's metric names (backtest.score_key)."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for key, value in metrics.items():
        match = SCORE_KEY.fullmatch(key)
        if match and (match["score"] in TABLE_METRICS or INTERVAL_SCORE.fullmatch(match["score"])):
            where = (match["window"] or WHOLE_TEST, int(match["h"] or 1))
            out.setdefault(where, {})[match["score"]] = float(value)
    return out


def _cells(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The cells frame of rows: the ROW_KEYS, then TABLE_METRICS, then interval scores by level."""
    metrics = {key for row in rows for key in row} - set(ROW_KEYS)
    intervals = sorted(metrics - set(TABLE_METRICS),
                       key=lambda m: (level_of_name(INTERVAL_SCORE.fullmatch(m)[2]), m))
    return pd.DataFrame(rows, columns=[*ROW_KEYS, *TABLE_METRICS, *intervals])


def cells_frame(units: Sequence[Unit]) -> pd.DataFrame:
    """One row per cell, window and horizon: the ROW_KEYS (window "test": the whole test part; variant ""
    outside a sweep; reference: the ARMA model an RNN is DM-tested against) and the table metrics (NaN
    where a metric does not apply)."""
    return _cell_records_frame([(c.series, c.model, c.seed, c.tags.get("reference", ""), c.metrics)
                                for unit in units for c in unit.cells])


def summarize(cells: pd.DataFrame, series_order: Sequence[str], model_order: Sequence[str],
              errors: Errors) -> pd.DataFrame:
    """Statistics over seeds per (series, window, h, model, variant, reference), rows in the given orders (the
    whole test part first, then the windows as they appear; horizons ascending; variants in natural order):
    harness.seed_stats' summarize_over_seeds, the aggregation of every sweep (``python -m harness.report``).

    cells: rows as made by cells_frame. Columns: series, window, h, model, variant, reference, seeds, and for
    each metric column of cells <metric>_n, _mean, _std (ddof 1, NaN for one seed), _low, _high (95% t
    interval of the mean; NaN where the metric does not apply), then identical_seeds, dm_rnn_better /
    dm_rnn_worse (seeds where the RNN's DM statistic against the reference is < 0 / > 0 at p < DM_LEVEL) and
    dm_pooled_stat / dm_pooled_pvalue (h = 1 rows of RNNs: one DM test of the one-step errors of every seed
    concatenated in seed order; NaN elsewhere). A fit whose seeds all gave bit-identical metrics (ARMA on a
    real series: neither its data nor its fit depends on the seed) is one result, not a sample: its rows
    count seeds 1 (no std, no interval) and identical_seeds the seeds that repeated it (0 elsewhere).
    errors: the RNN cells' one-step error curves (cell_errors).
    """
    metrics = [c for c in cells.columns if c not in ROW_KEYS]
    windows = list(dict.fromkeys([WHOLE_TEST, *cells["window"]]))
    variants = sorted(set(cells["variant"]), key=_natural)
    keys = [k for k in ROW_KEYS if k != "seed"]
    # seed order fixes the order of the float sums, so the table does not depend on how rows arrived
    ordered = cells[cells["series"].isin(series_order) & cells["model"].isin(model_order)].assign(
        _series=lambda f: f["series"].map({s: k for k, s in enumerate(series_order)}),
        _window=lambda f: f["window"].map({w: k for k, w in enumerate(windows)}),
        _model=lambda f: f["model"].map({m: k for k, m in enumerate(model_order)}),
        _variant=lambda f: f["variant"].map({v: k for k, v in enumerate(variants)}),
    ).sort_values(["_series", "_window", "h", "_model", "_variant", "reference", "seed"], kind="stable")
    ordered, repeated = _one_result_per_fit(ordered, metrics)
    table = summarize_over_seeds(ordered, keys, metrics, bounds=metric_bounds(metrics))
    table["h"] = table["h"].astype(int)
    fits = zip(*(table[k] for k in FIT_KEYS), strict=True)
    table["identical_seeds"] = [repeated.get(fit, 0) for fit in fits]
    groups = [ordered[k] for k in keys]
    rows = list(zip(*(table[k] for k in keys), strict=True))
    significant = ordered["dm_pvalue"] < DM_LEVEL
    for column, side in (("dm_rnn_better", ordered["dm_stat"] < 0), ("dm_rnn_worse", ordered["dm_stat"] > 0)):
        counts = (side & significant).groupby(groups, sort=False).sum()
        table[column] = [int(counts[row]) for row in rows]
    seeds = ordered.groupby(groups, sort=False)["seed"].apply(list)
    pooled = [(_pooled_dm(errors, series, model, variant, seeds[row], window) if h == 1 else None)
              or (np.nan, np.nan) for row in rows for series, window, h, model, variant, _ in (row,)]
    table["dm_pooled_stat"] = [stat for stat, _ in pooled]
    table["dm_pooled_pvalue"] = [pvalue for _, pvalue in pooled]
    return table


def metric_bounds(metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The range each bounded table metric can take, to which its interval is cut (seed_stats.within): the
    error scores (MSE, MAE, NMSE, oracle ratio) and Winkler scores are >= 0, a coverage and the DM p-value
    lie in [0, 1] (the DM statistic has no bound). A symmetric t interval of 3 seeds' MSEs otherwise reads
    [-0.0000, 0.0010]."""
    bounds = {}
    for metric in metrics:
        score = INTERVAL_SCORE.fullmatch(metric)
        if metric in SCORES or (score and score[1] == "winkler"):
            bounds[metric] = (0.0, math.inf)
        elif score or metric == "dm_pvalue":
            bounds[metric] = (0.0, 1.0)
    return bounds


def _natural(text: str) -> list[Any]:
    """Sort key putting "trial 10" after "trial 9": the digit runs of text compared as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _one_result_per_fit(ordered: pd.DataFrame, metrics: Sequence[str]
                        ) -> tuple[pd.DataFrame, dict[tuple[str, ...], int]]:
    """ordered (cells in seed order) with each fit (FIT_KEYS) that every seed repeated bit for bit, in every
    metric, window and horizon, cut to its first seed's rows; and fit -> the number of seeds that repeated
    it. Seeds of a fit that does not depend on the seed are copies of one number, not a sample of it."""
    repeated: dict[tuple[str, ...], int] = {}
    dropped = []
    for fit, group in ordered.groupby(list(FIT_KEYS), sort=False, dropna=False):
        by_seed = [part[list(metrics)].to_numpy(dtype=float) for _, part in group.groupby("seed", sort=False)]
        first, *others = by_seed
        if others and all(np.array_equal(first, other, equal_nan=True) for other in others):
            repeated[fit] = len(by_seed)
            dropped.append(group.index[group["seed"] != group["seed"].iloc[0]])
    return (ordered.drop(index=np.concatenate(dropped)) if dropped else ordered), repeated


def _pooled_dm(errors: Errors, series: str, model: str, variant: str, seeds: Iterable[int], window: str
               ) -> tuple[float, float] | None:
    """The one-step DM test of model against the reference on the errors of every seed concatenated; None
    for a model without them (ARMA rows). One-step errors of independently drawn series are independent
    across seeds, so the concatenation is one sample of loss differentials."""
    names = [score_key(name, 1, None if window == WHOLE_TEST else window) for name in ERROR_CURVES]
    cells = [(series, model, variant, int(seed)) for seed in seeds]
    found = [errors[cell] for cell in cells if cell in errors]
    found = [curves for curves in found if names[0] in curves]
    if not found:
        return None
    model_errors, reference_errors = (np.concatenate([curves[name] for curves in found]) for name in names)
    return diebold_mariano(model_errors, reference_errors)


def cell_errors(units: Sequence[Unit]) -> dict[tuple[str, str, str, int], dict[str, np.ndarray]]:
    """(series, model, variant "", seed) -> the error curves of every RNN cell of units."""
    return {(c.series, c.model, "", c.seed): c.errors for unit in units for c in unit.cells if c.errors}


def format_table(table: pd.DataFrame) -> str:
    """The summary table as Markdown: mean ± std over seeds (and the MSE's 95% t interval of the mean); DM
    against the reference (named in the header) for RNN rows; interval coverage and Winkler score per level;
    window, h and variant columns when the study has them."""

    def mean_std(metric: str, digits: int, scaled: bool = False) -> list[str]:
        """scaled: a metric in the series' units, whose small values get significant digits (_digits)."""
        if f"{metric}_mean" not in table:
            return [""] * len(table)
        pairs = zip(table[f"{metric}_mean"], table[f"{metric}_std"], strict=True)
        spec = (lambda m: _digits(m, digits)) if scaled else (lambda m: f".{digits}f")
        return ["" if np.isnan(m) else f"{m:{spec(m)}}" + ("" if np.isnan(s) else f" ± {s:{spec(m)}}")
                for m, s in pairs]

    def interval(metric: str, digits: int) -> list[str]:
        """In the format of the row's mean (_digits), as the row's other cells of the metric."""
        if f"{metric}_low" not in table:
            return [""] * len(table)
        bounds = zip(table[f"{metric}_mean"], table[f"{metric}_low"], table[f"{metric}_high"], strict=True)
        return ["" if np.isnan(a) else f"[{a:{_digits(m, digits)}}, {b:{_digits(m, digits)}}]"
                for m, a, b in bounds]

    has_dm = table["dm_pvalue_mean"].notna()
    references = _references(table)
    columns: dict[str, Any] = {"series": table["series"]}
    if (table["window"] != WHOLE_TEST).any():
        columns["window"] = table["window"]
    if (table["h"] > 1).any():
        columns["h"] = table["h"]
    columns["model"] = table["model"]
    if (table["variant"] != "").any():
        columns["variant"] = table["variant"]
    if len(references) > 1:
        columns["reference"] = table["reference"]
    columns.update({
        "seeds": table["seeds"] if not table["identical_seeds"].any() else [
            f"1 ({k} identical)" if k else str(n)
            for n, k in zip(table["seeds"], table["identical_seeds"], strict=True)],
        "MSE": mean_std("mse", 4, scaled=True),
        "MSE 95% t interval": interval("mse", 4),
        "MAE": mean_std("mae", 4, scaled=True),
        "NMSE": mean_std("nmse", 4),
        "oracle ratio": mean_std("oracle_ratio", 3),
        f"DM stat vs {references[0] if len(references) == 1 else 'reference'}": mean_std("dm_stat", 2),
        f"RNN better / worse (p<{DM_LEVEL:g})": [
            f"{better} / {worse} of {n}" if ok else ""
            for better, worse, n, ok in zip(table["dm_rnn_better"], table["dm_rnn_worse"], table["seeds"],
                                            has_dm, strict=True)
        ],
        "pooled DM (p)": [
            "" if np.isnan(stat) else f"{stat:.2f} ({p:.3g})"
            for stat, p in zip(table["dm_pooled_stat"], table["dm_pooled_pvalue"], strict=True)
        ],
    })
    for name, level in _interval_levels(table):
        columns[f"cover {100 * level:g}%"] = mean_std(f"coverage{name}", 3)
        columns[f"Winkler {100 * level:g}%"] = mean_std(f"winkler{name}", 3, scaled=True)
    frame = pd.DataFrame(columns)
    # a formatted column stays text: without ± its cells would be read as numbers (0.800 printed as 0.8)
    text = [k for k, column in enumerate(frame) if all(isinstance(cell, str) for cell in frame[column])]
    return frame.to_markdown(index=False, disable_numparse=text) + "\n\n" + table_legend(table)


def one_step_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The summary table's rows of the whole test part at h = 1, one per series and model (and variant)."""
    return table[(table["window"] == WHOLE_TEST) & (table["h"] == 1)]


def terminal_table(table: pd.DataFrame, whole_table: str = STORED_TABLE, width: int | None = None) -> str:
    """The one-step grids of the summary table (comparison_summary.terminal_summary; whole_table: where every
    row is; width: of the lines, None for any), and a search's objective: what the terminal shows (at
    print_width()), and the top of the parent run's description."""
    notes = [search_objective(table)] if "trial_value" in table else []
    return terminal_summary(one_step_rows(table), DM_LEVEL, whole_table, width, notes)


def _digits(value: float, digits: int) -> str:
    """The format spec of a number in the series' units: digits decimals, or, where those would show fewer
    than two significant digits (a logistic map's MSE of 3.5e-05 printed 0.0000), digits - 1 decimals of a
    power of ten."""
    return f".{digits}f" if not 0 < abs(value) < 10.0 ** (1 - digits) else f".{digits - 1}e"


def _references(table: pd.DataFrame) -> list[str]:
    """The models the table's RNN rows are DM-tested against, sorted (none known for runs logged before
    the cells named theirs)."""
    return sorted({reference for reference in table["reference"] if reference})


def _interval_levels(table: pd.DataFrame) -> list[tuple[str, float]]:
    """(name, level) of every interval level the table has coverage columns of (``coverage97_5_mean``:
    ("97_5", 0.975)), in column order."""
    return [(match[1], level_of_name(match[1])) for column in table.columns
            if (match := COVERAGE_COLUMN.fullmatch(column))]


def blank_where(table: pd.DataFrame, blank: pd.Series) -> str:
    """The rows of table (columns series and h) that blank (a boolean Series on its index) marks, in words:
    a series alone where it has a marked row at each of its horizons, else the series at the marked horizons
    ("setar at h = 2-3"); "" where none is marked. Which models' rows are marked the caller says (an RNN's
    interval cells, every model's oracle ratio)."""
    parts = []
    for series in sorted(set(table.loc[blank, "series"])):
        rows = table["series"] == series
        if set(table.loc[rows & blank, "h"]) == set(table.loc[rows, "h"]):
            parts.append(series)
        else:
            parts.append(f"{series} at h = {_spans(sorted(set(table.loc[rows & blank, 'h'])))}")
    return ", ".join(parts)


def _spans(values: list[int]) -> str:
    """Ascending integers as runs: [2, 3, 4, 7] -> "2-4, 7"."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs)


def search_objective(table: pd.DataFrame) -> str:
    """The legend line of a search's table (one with trial_value): what its objective is, per trial."""
    trials = table.drop_duplicates("variant")
    told = zip(trials["variant"], trials["trial_params"], trials["trial_value"], strict=True)
    values = "; ".join(f"{variant} ({params}): {value:.6g}" for variant, params, value in told)
    return ("Search objective, the value each trial told the Optuna study: the mean over the trial's RNN "
            "cells of best_val_mse, the lowest one-step validation MSE reached in training, on the series "
            "standardised by its training part's mean and standard deviation (an MSE / the training "
            "variance; the test part stays unseen), so not on the scale of the MSE column, the test MSE in "
            f"the series' own units. {values}.")


def table_legend(table: pd.DataFrame) -> str:
    """The lines under the table (a Markdown list): what ±, a repeated fit, a variant, a search's objective,
    the DM columns and a blank cell mean."""
    spread = ("±: sample standard deviation over the row's seeds (none for one seed)"
              if table["seeds"].max() > 1 else "One seed per row, so no ± (standard deviation over seeds)")
    lines = [
        f"{spread}; the MSE's 95% t interval is that of its mean over the seeds, cut at 0 where it would "
        "reach below (the mean MSE is >= 0, so the cut interval covers it as often as the uncut one). "
        "Oracle ratio: MSE / the series' optimal MSE at that horizon (1 is the best possible).",
    ]
    if table["identical_seeds"].any():
        lines.append("Seeds `1 (k identical)`: all k seeds gave bit-identical numbers (a fit that depends "
                     "on neither the seed nor seeded data, such as ARMA on a real series), so the row is "
                     "that one fit: no ±, no interval.")
    if (table["variant"] != "").any():
        lines.append("Variant: what the sweep's job changed beyond series, model and seed (its values of the "
                     "swept keys, its Optuna trial); each variant is a model of its own, its seeds never "
                     "pooled with another's.")
    if "trial_value" in table:
        lines.append(search_objective(table))
    references = _references(table)
    against = (f"{references[0]}'s (the reference)" if len(references) == 1
               else "the reference's (column reference)" if references else "the reference ARMA's")
    lines.append(
        f"DM: Diebold-Mariano test (HLN-corrected, two-sided) of the RNN's squared errors against {against}; "
        "negative favours the RNN. Better / worse: seeds significant at "
        f"p < {DM_LEVEL:g} either way. Pooled DM: one test on the one-step errors of all seeds together.")
    tested = f"only RNNs are tested against {references[0]}" if len(references) == 1 else "the reference"
    blanks = [f"DM columns on ARMA rows ({tested})"] if table["dm_pvalue_mean"].isna().any() else []
    if (table["h"] > 1).any():
        blanks.append("pooled DM beyond h = 1 (overlapping multi-step errors are not pooled)")
    no_oracle = blank_where(table, table["oracle_ratio_mean"].isna())
    if no_oracle:
        blanks.append(f"oracle ratio for {no_oracle} (no known optimum, or an optimum of 0: real or CSV data "
                      "and NARMA-10, driven by an input its past does not show, have none, a noise-free "
                      "deterministic series such as the logistic map at noise_std=0 has 0; beyond h = 1 only "
                      "ARMA series have one)")
    levels = sorted(_interval_levels(table), key=lambda name_level: name_level[1])
    # per level: a validation part may hold enough residuals for 80% intervals and too few for 95% ones
    where_blank: dict[str, list[str]] = {}
    for name, level in levels:
        where = blank_where(table, table[f"coverage{name}_mean"].isna())
        if where:
            where_blank.setdefault(where, []).append(f"{100 * level:g}%")
    if where_blank:
        needs = ", ".join(f"{min_calibration_residuals(level)} at {100 * level:g}%" for _, level in levels)
        cells = " and ".join(f"at {' and '.join(names)} for {where}" for where, names in where_blank.items())
        blanks.append(f"cover and Winkler {cells}, where an RNN's split-conformal "
                      f"interval has too few calibration residuals (it needs {needs}; a validation part of n "
                      "points gives n - h + 1 at horizon h, none without a validation part)")
    if blanks:
        lines.append("Blank: " + "; ".join(blanks) + ".")
    return "\n".join(f"- {line}" for line in lines)


# ------------------------------------------------------------------------------------------------- tracking


@dataclass
class StudyResult:
    """parent_run_id: the study's parent run, experiment_id: its experiment (both None with tracking off).
    cells: cells_frame of every cell. table: summarize(cells). markdown: format_table(table). summary:
    terminal_table(table), what the terminal shows. link: note 000's section (None when disabled)."""

    parent_run_id: str | None
    experiment_id: str | None
    cells: pd.DataFrame
    table: pd.DataFrame
    markdown: str
    summary: str
    link: Link | None


def cell_note(cell: Cell, config: StudyConfig) -> str:
    """A cell run's description (its page in the MLflow UI): what the cell is and its one-step scores over
    the whole test part; the comparison's table is on the parent run."""
    boundary = ""
    if "order" in cell.tags:  # an ARMA cell: its order fixed by the catalog or chosen by AIC
        fixed = config.spec(cell.model).get("order") is not None
        what = f"ARMA{cell.tags['order']}{'' if fixed else ' chosen by AIC'}"
        ma_root = cell.metrics.get("ma_root_min_modulus", math.inf)
        if ma_root < INVERTIBLE_MARGIN:
            boundary = (f" Its MA polynomial has a root at |z| = {ma_root:.4f}: the fit is on (or past) the "
                        "invertibility boundary, which AIC can choose on a short series (auto.arima rejects "
                        f"MA roots within {INVERTIBLE_MARGIN} of it); compare a fixed order, "
                        f"+models.{cell.model}.order=[p,q].")
    else:
        what = config.kind(cell.model).upper()
    plan = config.plan
    horizons = "1 step" if plan.horizon == 1 else f"1 to {plan.horizon} steps"
    refits = "" if plan.refit_every is None else f", refitted every {plan.refit_every} origins"
    fitted = f"fitted on the training part{refits}"
    every = "every origin" if plan.step == 1 else f"origins {plan.step} points apart"
    scores = [f"MSE {cell.metrics['mse']:.4g}"]
    if math.isfinite(cell.metrics.get("oracle_ratio", math.nan)):
        scores.append(f"oracle ratio {cell.metrics['oracle_ratio']:.4g} (1 is the best possible)")
    for level in sorted(config.levels):
        coverage = cell.metrics.get(f"coverage{level_name(level)}", math.nan)
        if math.isfinite(coverage):
            scores.append(f"{100 * level:g}% interval coverage {coverage:.3g}")
    if math.isfinite(cell.metrics.get("dm_stat", math.nan)):
        scores.append(f"Diebold-Mariano against {config.reference} {cell.metrics['dm_stat']:.3g} "
                      f"(p = {cell.metrics['dm_pvalue']:.2g}; negative favours this model)")
    return (f"**{cell.series}**, seed {cell.seed}: **{cell.model}** ({what}), one cell of the RNN-vs-ARMA "
            f"comparison: {fitted}, it forecasts {horizons} ahead from {every} of the test part (rolling "
            f"origin). One step ahead over the test part: {'; '.join(scores)}. "
            f"The comparison's table is on the parent run; this run's metrics hold every horizon and window."
            f"{boundary}")


def _log_cell(settings, parent_run_id: str | None, unit: Unit, cell: Cell, config: StudyConfig,
              label: str = "", job_num: int | None = None, variant: str = "",
              environment: Mapping[str, str] | None = None) -> None:
    """One child run for cell; environment: the env.* and git.dirty tags a training run has
    (environment_tags), read once per study, so that every run shows where it ran."""
    from harness.tracking import open_run

    tags = {
        **(environment or {}),
        **({} if job_num is None else {"job_num": job_num}),
        **({"variant": variant} if variant else {}),
        "study": STUDY,
        "series": cell.series,
        "model": cell.model,
        "seed": cell.seed,
        "kind": config.kind(cell.model),
        "dataset_fingerprint": unit.fingerprint,
        **cell.tags,
        NOTE_TAG: cell_note(cell, config),
    }
    run_name = "-".join(part for part in (cell.series, cell.model, label, f"s{cell.seed}") if part)
    with open_run(settings, run_name=run_name, tags=tags, parent_run_id=parent_run_id,
                  start_time=cell.started_ms, end_time=cell.ended_ms) as log:
        log.log_params(
            {
                "series": cell.series,
                "model": cell.model,
                "seed": cell.seed,
                "length": config.length,
                "split": dict(config.split),
                "series_params": dict(config.series_params.get(cell.series, {})),
                "forecaster": cell.params,
                "backtest": dict(config.backtest),
                "intervals": {"levels": list(config.levels)},
            }
        )
        if unit.source is None:
            log.log_dataset(f"{cell.series}-s{cell.seed}", unit.fingerprint, {"values": unit.values})
        else:  # real data does not depend on the seed
            log.log_dataset(cell.series, unit.fingerprint, {"values": unit.values}, source=unit.source)
        log.log_metrics(cell.metrics, step=0)
        for k, step in enumerate(cell.curve_steps):
            log.log_metrics({key: float(values[k]) for key, values in cell.curve.items()}, step=int(step))
        for key, values in cell.errors.items():
            for k, value in enumerate(values):
                log.log_metrics({key: float(value)}, step=k)
        for file_name, text in cell.texts.items():
            log.log_text(text, file_name)
        if cell.forecaster is not None and log.run_id is not None:
            log.log_model(partial(_save_forecaster_model, cell.forecaster, unit.values[: unit.test_start]))


def _save_forecaster_model(forecaster, example: np.ndarray, folder: Path) -> str:
    """The pyfunc model of a fitted forecaster at folder (harness.pyfunc); module-level, so that it pickles
    for the metric writer process that logs a run's model (MlflowLogger.log_model)."""
    from harness.pyfunc import save_forecaster_pyfunc

    return save_forecaster_pyfunc(forecaster, folder, example)


def _log_link(settings, parent, link: Link, config: StudyConfig, on_parent: bool = True) -> None:
    """The link section: a child run with its weights and figure; the figure and the metrics also on the
    parent (on_parent False: a resumed parent holds them already)."""
    from harness.tracking import open_run

    fig = figures.link_figure(
        link.impulse, link.pi, link.rnn_psi, link.arma_psi, f"{link.series} seed {link.seed}"
    )
    tags = {
        "study": STUDY,
        "kind": "link",
        "series": link.series,
        "seed": link.seed,
        "dataset_fingerprint": link.fingerprint,
        NOTE_TAG: link.summary,
    }
    with open_run(
        settings, run_name=f"link-{link.series}-s{link.seed}", tags=tags, parent_run_id=parent.run_id
    ) as log:
        log.log_params(
            {
                "series": link.series,
                "seed": link.seed,
                "length": config.length,
                "steps": config.link.get("steps", 1500),
                "lags": config.link.get("lags", 12),
            }
        )
        log.log_dataset(f"{link.series}-s{link.seed}", link.fingerprint, {"values": link.values})
        log.log_metrics(link.metrics, step=0)
        log.log_figure(fig, LINK_FIGURE)
        log.log_text(link.summary, "link.txt")
    if on_parent:
        parent.log_figure(fig, LINK_FIGURE)
        parent.log_metrics({f"link.{key}": value for key, value in link.metrics.items()}, step=0)


def run_cells(config: StudyConfig, settings, parent_run_id: str | None = "auto", label: str = "",
              job_num: int | None = None, job_cfg: Mapping[str, Any] | None = None,
              echo: Callable[[str], Any] = print) -> pd.DataFrame:
    """Compute and log every cell of the grid as a child of parent_run_id ("auto": the Hydra sweep's parent),
    tagged with the sweep's job_num and, given the job's composed config job_cfg (a plain dict), with the job
    (sweep_continuation.job_tag).

    One job of a `-m` sweep runs this: no parent, table or figures of its own (summarize_sweep on the sweep's
    parent makes the table). Units run in this process (the launcher parallelises jobs). label: the job's
    swept values beyond series, model and seed (sweep_label), put in its run names. Returns the cells frame
    (cells_frame's rows) with ``attrs["objective"]``: validation_objective of the cells (what an Optuna
    search minimises).

    In a sweep continued with ``resume_sweep=<parent run id>`` (job_cfg's) the job computes only the units
    (series, seed) of which the store lacks a cell, logs only the cells it lacks, as resume= finishes a
    stopped study, and echoes what it found; its frame and objective read the held cells from the store, and
    are an uninterrupted job's.
    """
    validate(config)
    variant = sweep_variant(label)
    tags = cell_environment(settings)
    cells = _grid_cells(config)
    held: dict[tuple[str, str, int], Any] = {}
    if job_cfg is not None:
        tags = {**tags, **job_tag(job_cfg, len(cells))}
        if job_cfg.get(STUDY_RESUME_SWEEP_KEY):
            held = _continued_job_cells(config, settings, job_cfg, job_num, tags[JOB_TAG], echo)

    def log_cell(unit: Unit, cell: Cell) -> None:
        if (unit.series, cell.model, unit.seed) not in held:
            _log_cell(settings, parent_run_id, unit, cell, config, label, job_num, variant, tags)

    with results_in_processes(_calls(config, with_link=False, done=_complete_units(config, held))) as results:
        units, _ = _gather(results, log_cell)
    computed = {(c.series, c.model, c.seed): (c.tags.get("reference", ""), c.metrics)
                for unit in units for c in unit.cells}
    records = [(*cell, *(computed[cell] if cell in computed else _stored_record(held[cell])))
               for cell in cells]
    frame = _cell_records_frame(records)
    frame.attrs["objective"] = validation_objective([metrics for *_, metrics in records])
    return frame


def _continued_job_cells(config: StudyConfig, settings, job_cfg: Mapping[str, Any], job_num: int | None,
                         job: str, echo: Callable[[str], Any]) -> dict[tuple[str, str, int], Any]:
    """The finished cell runs (by series, model, seed) of this job of the sweep its resume_sweep continues
    (job: the job's JOB_TAG value); StudyInputError when the job was not planned so, or a held cell's series
    is not the one config draws. Echoes ``job 3: 4 of 6 cells finished before, under sweep <id>; ...``."""
    from harness.studies.study_resume import held_job_cells

    parent_run_id = str(job_cfg[STUDY_RESUME_SWEEP_KEY])
    try:
        planned_job(STUDY_RESUME_SWEEP_KEY, parent_run_id, job_cfg, job_num)
    except ConfigError as error:
        raise StudyInputError(str(error)) from None
    runs = [run for run in held_job_cells(settings, parent_run_id, job)
            if run.data.tags.get("kind") in FORECASTERS]
    _check_drawn_series(config, runs, STUDY_RESUME_SWEEP_KEY, "sweep", parent_run_id)
    held = {_cell_key(run): run for run in runs}
    total = len(_grid_cells(config))
    echo(f"job {job_num}: {len(held)} of {total} cells finished before, under sweep {parent_run_id}"
         + ("; not computed again" if len(held) == total else "; computing the rest"))
    return held


def _stored_record(run: Any) -> tuple[str, Mapping[str, float]]:
    """(reference, metrics) of a cell run, as (cell.tags' reference, cell.metrics) of the computed cell."""
    return run.data.tags.get("reference", ""), run.data.metrics


def _cell_records_frame(records: Sequence[tuple[str, str, int, str, Mapping[str, float]]]) -> pd.DataFrame:
    """cells_frame's rows of cells given as (series, model, seed, reference, metrics) records."""
    return _cells([
        {"series": series, "window": window, "h": h, "model": model, "variant": "", "reference": reference,
         "seed": seed, **scores}
        for series, model, seed, reference, metrics in records
        for (window, h), scores in long_rows(metrics).items()
    ])


def sweep_variant(label: str) -> str:
    """What a sweep's job changed beyond series, model and seed, the cells' variant: label (its values of the
    swept keys) and its Optuna trial ("trial 3"); "" outside a sweep. Cells of different variants are other
    models, never seeds of one."""
    from harness.search import current_trial

    trial = current_trial()
    return " ".join(part for part in (label, None if trial is None else f"trial {trial}") if part)


def validation_objective(metrics: Iterable[Mapping[str, float]]) -> float:
    """Mean over the RNN cells (of the given metrics, in grid order) of their best validation MSE (normalised
    units), what a search of the RNN forecasters' settings minimises (the test part stays unseen); NaN if a
    cell diverged or has none."""
    values = [cell.get("best_val_mse", math.nan) for cell in metrics if "best_step" in cell]
    return float(np.mean(values)) if values else math.nan


SERIES_IN_NAME = 24  # characters of the series list a parent's name shows; the UI's runs list cuts it anyway


def parent_run_name(config: StudyConfig) -> str:
    """``rnn_vs_arma-<series>x<models>x<seeds> <series names>``, e.g. ``rnn_vs_arma-1x5x5 sunspots``: the
    grid's shape alone named every comparison the same in the UI's runs list. A CSV series is named by its
    file (``csv:prices.csv``). A list longer than SERIES_IN_NAME characters is cut after its last whole name
    that fits (``ar2,arma11,arma22,setar,…``), a first name that does not fit inside it."""
    grid = f"{len(config.series)}x{len(config.models)}x{len(config.seeds)}"
    csv = config.series_params.get("csv", {}).get("path")
    series = ",".join(f"csv:{Path(csv).name}" if name == "csv" and csv else name for name in config.series)
    if len(series) > SERIES_IN_NAME:
        whole = series[:SERIES_IN_NAME + 1].rpartition(",")[0]
        series = f"{whole},…" if whole else f"{series[:SERIES_IN_NAME]}…"
    return f"{STUDY}-{grid} {series}"


def run_study(config: StudyConfig, settings, echo: Callable[[str], Any] = print,
              resume: StoppedStudy | None = None) -> StudyResult:
    """The whole comparison under one parent run: children, table (echoed, Markdown + CSV), figures, link.

    The grid is validated before the parent run opens, so bad input leaves the store untouched. resume (a
    stopped study of this config, stopped_study): its parent run goes on; only the units and the link section
    it lacks are computed (a unit's cells it holds are not logged again), and the table and cells come from
    the store, as rebuild_table reads them: the uninterrupted run's, exactly.
    """
    from harness.tracking import open_run

    validate(config)
    with_link = bool(config.link.get("enabled"))
    run_name = parent_run_name(config)
    held = _held_cells(resume)
    link_run = _link_run(resume)
    logged: list[tuple[str, int]] = [(series, seed) for series, _, seed in held]  # of each cell logged so far
    units_held = _complete_units(config, held)
    calls = _calls(config, with_link and link_run is None, units_held)
    if resume is not None:
        resume.discard_unfinished(settings.tracking_uri)
    # The worker processes start computing first; the parent run opens (MLflow's import, the store) meanwhile.
    with results_in_processes(calls, config.n_jobs) as results, \
            open_run(settings, run_name=run_name, tags={"study": STUDY, "kind": "parent"},
                     resume_run_id=None if resume is None else resume.run_id) as parent, \
            stop_account(parent, run_name, lambda: _progress(config, logged), echo):
        if resume is None:
            parent.log_params(_study_params(config))
        environment = parent_environment(parent, settings)

        def log_cell(unit: Unit, cell: Cell) -> None:
            if (unit.series, cell.model, unit.seed) in held:
                return
            with counted(parent):
                _log_cell(settings, parent.run_id, unit, cell, config, environment=environment)
                logged.append((unit.series, unit.seed))

        if resume is not None:
            resume.announce(parent, run_name, f"{_progress(config, logged)} are", echo,
                            "" if link_run is None else f", and the {LINK_SECTION}")
        progress = progress_lines(config, len(units_held), with_link and link_run is None)
        units, link = _gather(results, log_cell, progress)
        if resume is None:
            cells, errors = cells_frame(units), cell_errors(units)
        else:
            cells, errors, _ = _stored_cells(parent.run_id, settings)
            cells = _grid_order(cells, config)
        table = summarize(cells, config.series, config.models, errors)
        markdown = format_table(table)
        parent.log_text(markdown, "table.md")
        parent.log_text(table.to_csv(index=False), "table.csv")
        parent.log_text(cells.to_csv(index=False), "cells.csv")
        parent.log_figure(_forecast_figure(config, units, () if resume is None else resume.children,
                                           settings.tracking_uri), "forecast_vs_truth.png")
        parent.log_figure(figures.score_figure(one_step_rows(table), config.series, config.models),
                          "oracle_ratio.png")
        if config.plan.horizon > 1:
            whole = table[table["window"] == WHOLE_TEST]
            horizons = figures.horizon_figure(whole, config.series, config.models)
            parent.log_figure(horizons, "mse_by_horizon.png")
        if link is not None:
            # a resumed study's parent may hold the section of a link run deleted since
            copied = resume is not None and any(key.startswith("link.") for key in resume.metric_keys)
            _log_link(settings, parent, link, config, on_parent=not copied)
            findings = [link.summary]
        elif link_run is not None:
            findings = [_held_link(parent, link_run, resume)]
        else:
            findings = []
        if parent.run_id is not None:
            parent.set_tags({NOTE_TAG: parent_note(table, findings, parent.run_id)})
            summary = terminal_table(table, width=print_width())
            printed = [summary]
        else:  # with tracking off, the terminal is the only place the table goes
            summary = terminal_table(table, "above", print_width())
            printed = [markdown, summary]
        for text in (*printed, *findings):
            echo(text)
        return StudyResult(parent.run_id, parent.experiment_id, cells, table, markdown, summary, link)


def _held_cells(resume: StoppedStudy | None) -> frozenset[tuple[str, str, int]]:
    """The (series, model, seed) of the cell runs a stopped study holds (none without one)."""
    if resume is None:
        return frozenset()
    return frozenset(_cell_key(run) for run in resume.children if run.data.tags.get("kind") in FORECASTERS)


def _cell_key(run: Any) -> tuple[str, str, int]:
    """(series, model, seed) of a cell run (an mlflow Run)."""
    tags = run.data.tags
    return tags["series"], tags["model"], int(tags["seed"])


def _link_run(resume: StoppedStudy | None) -> Any | None:
    """The link section's child run of a stopped study, None when it has none."""
    runs = [] if resume is None else [run for run in resume.children if run.data.tags.get("kind") == "link"]
    return runs[0] if runs else None


def _held_link(parent, link_run: Any, resume: StoppedStudy) -> str:
    """The link section a stopped study holds: its summary (the finding), and on the parent, if the stop came
    before they were copied there, its metrics and figure (_log_link's order: child, then parent)."""
    import tempfile

    from mlflow import MlflowClient

    metrics = {f"link.{key}": value for key, value in link_run.data.metrics.items()}
    if not metrics.keys() <= resume.metric_keys:
        client = MlflowClient(parent.tracking_uri)
        with tempfile.TemporaryDirectory() as folder:
            parent.log_artifact(client.download_artifacts(link_run.info.run_id, LINK_FIGURE, folder))
        parent.log_metrics(metrics, step=0)
    return link_run.data.tags[NOTE_TAG]


def _progress(config: StudyConfig, logged: Sequence[tuple[str, int]]) -> str:
    """How much of the grid is logged (logged: the (series, seed) of each cell): ``3 of 4 units (series x
    seed), 7 of 8 cells``; a unit is done once all its cells are."""
    per_unit = len(config.models)
    units = sum(count == per_unit for count in Counter(logged).values())
    total = len(_grid_units(config))
    return f"{units} of {total} units (series x seed), {len(logged)} of {total * per_unit} cells"


def rebuild_command(parent_run_id: str) -> str:
    return f"python experiments/rnn_vs_arma.py rebuild={parent_run_id}"


def parent_note(table: pd.DataFrame, findings: Sequence[str], parent_run_id: str) -> str:
    """A parent run's Markdown description: the terminal's one-step grids (terminal_table), the table
    (format_table) with its legend, the findings, the rebuild command, within MLflow's 8,000 characters of a
    description (fit_note). A table too long for them even compacted (the default grid's 84 rows take about
    15,000) shows its one-step rows of the whole test part, one per series and model, and says so; table.md
    and rebuild= hold every row."""

    grids = terminal_table(table)

    def note(markdown: str) -> str:
        return "\n\n".join([
            "**RNN vs ARMA**: forecasts of the same test points; one child run per (series, model, seed) "
            "holds that cell's scores.", grids, markdown, *findings,
            f"The table again from the store alone: `{rebuild_command(parent_run_id)}`",
        ])

    whole = note(format_table(table))
    if len(compact_tables(whole)) <= MAX_TAG_LENGTH:
        return fit_note(whole)
    one_step = one_step_rows(table)
    where = "every row is in the artifact `table.md`"
    shown = (f"*The one-step rows of the whole test part: {len(one_step)} of the table's {len(table)} rows "
             f"(MLflow keeps {MAX_TAG_LENGTH:,} characters of a description); {where}.*\n\n"
             f"{format_table(one_step)}")
    return fit_note(note(shown), where=where)


def summarize_sweep(cfg: Mapping[str, Any], parent_run_id: str, echo: Callable[[str], Any] = print
                    ) -> pd.DataFrame:
    """After a `-m` sweep (cfg: its composed config): the table of every job's cells read back from the
    store, echoed with the rebuild command, and put on the sweep's parent (description, table.md, .csv)."""
    from harness.tracking import ensure_store

    settings, _ = check({**cfg, "rebuild": parent_run_id})
    table = rebuild_table(parent_run_id, settings)
    markdown = format_table(table)
    client, experiment_id = ensure_store(settings)
    client.set_tag(parent_run_id, NOTE_TAG, parent_note(table, [], parent_run_id))
    client.log_text(parent_run_id, markdown, "table.md")
    client.log_text(parent_run_id, table.to_csv(index=False), "table.csv")
    echo(terminal_table(table, width=print_width()))
    echo(f"sweep parent run {parent_run_id}; its table again: {rebuild_command(parent_run_id)}")
    echo(ui_hint(settings.tracking_uri, (experiment_id, parent_run_id)))
    return table


def _study_params(config: StudyConfig) -> dict[str, Any]:
    """The parent's params; its series and model lists give the row order of a rebuilt table."""
    return {
        "series": ",".join(config.series),
        "model": ",".join(config.models),
        "seed": ",".join(str(seed) for seed in config.seeds),
        "length": config.length,
        "reference": config.reference,
        "split": dict(config.split),
        "models": {model: json.dumps(config.spec(model), sort_keys=True) for model in config.fitted_models},
        "series_params": {
            name: json.dumps(params, sort_keys=True) for name, params in config.series_params.items()
        },
        "link": dict(config.link),
        "backtest": dict(config.backtest),
        "intervals": {"levels": list(config.levels)},
        "windows": {name: list(bounds) for name, bounds in config.windows.items()},
    }


def _forecast_figure(config: StudyConfig, units: Sequence[Unit], held_runs: Sequence[Any] = (),
                     tracking_uri: str = ""):
    """One-step forecasts and interval bands vs truth on the first figure_window test points of each series,
    for the grid's first seed. held_runs: the cell runs of a resumed study (in tracking_uri's store); a unit
    not computed again has its forecasts read back from its runs' forecasts.csv."""
    seed = config.seeds[0]
    computed = {
        unit.series: _forecast_panel(
            config, unit.labels, unit.values, unit.test_start,
            {cell.model: (cell.points, cell.window, cell.bands) for cell in unit.cells})
        for unit in units if unit.seed == seed}
    panels = {}
    for name in config.series:
        runs = [run for run in held_runs if run.data.tags.get("kind") in FORECASTERS
                and (run.data.tags["series"], int(run.data.tags["seed"])) == (name, seed)]
        if name in computed:
            panels[name] = computed[name]
        elif runs:
            panels[name] = _stored_forecast_panel(config, name, runs, tracking_uri)
    return figures.forecast_figure(panels)


# a model's one-step forecasts in the figure: points (V,) among the series, forecasts (V,), level -> bands
FigureForecasts = tuple[np.ndarray, np.ndarray, Mapping[float, tuple[np.ndarray, np.ndarray]]]


def _forecast_panel(config: StudyConfig, labels: np.ndarray, values: np.ndarray, test_start: int,
                    forecasts: Mapping[str, FigureForecasts]) -> figures.ForecastPanel:
    """The figure's panel of one series (labels (N,), values (N,)) from each model's FigureForecasts."""
    end = test_start + config.figure_window
    return figures.ForecastPanel(
        x=labels[test_start:end],
        truth=values[test_start:end],
        forecasts={model: (labels[points], window) for model, (points, window, _) in forecasts.items()},
        bands={model: {level: bounds for level, bounds in bands.items() if np.all(np.isfinite(bounds[0]))}
               for model, (_, _, bands) in forecasts.items()},
    )


def _stored_forecast_panel(config: StudyConfig, name: str, runs: Sequence[Any], tracking_uri: str
                           ) -> figures.ForecastPanel:
    """The figure's panel of series name (the grid's first seed) from its cell runs' forecasts.csv (the
    one-step rows, _forecasts_csv; through tracking_uri's store or server) and the series, drawn again."""
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    values, labels, split = _prepare(config, _make_series(config, name, config.seeds[0]))
    position = {label: k for k, label in enumerate(labels.astype(str))}
    forecasts = {}
    for run in sorted(runs, key=lambda run: config.models.index(run.data.tags["model"])):
        with tempfile.TemporaryDirectory() as folder:
            rows = pd.read_csv(client.download_artifacts(run.info.run_id, "forecasts.csv", folder),
                               dtype={"origin": str})
        one = rows[rows["h"] == 1]
        points = one["origin"].map(position).to_numpy()
        shown = points < split.val_end + config.figure_window
        forecasts[run.data.tags["model"]] = (points[shown], one["forecast"].to_numpy()[shown], {
            level: (one[f"lower{level_name(level)}"].to_numpy()[shown],
                    one[f"upper{level_name(level)}"].to_numpy()[shown]) for level in config.plan.levels})
    return _forecast_panel(config, labels, values, split.val_end, forecasts)


def _grid_order(cells: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """cells (a cells frame) in the order cells_frame gives a computed grid's: series, seed, model as config
    lists them, then the whole test part and the windows as config lists them, then h."""
    orders = {"series": config.series, "seed": config.seeds, "model": config.models,
              "window": [WHOLE_TEST, *config.windows]}
    return cells.sort_values([*orders, "h"], key=lambda column: column.map(orders[column.name].index)
                             if column.name in orders else column, kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------------------------- rebuild


def rebuild_table(parent_run_id: str, settings) -> pd.DataFrame:
    """The summary table of a finished study, or of a sweep's parent, read back from the MLflow store alone.

    Cells are the runs of this study nested under parent_run_id in settings.experiment (_stored_cells); rows
    follow the parent's logged grid order when it has one (a study parent) and sorted names otherwise (a
    sweep's parent). ``attrs["experiment_id"]``: the id of the experiment the runs were read from.
    """
    from harness.report import runs_frame

    cells, errors, runs = _stored_cells(parent_run_id, settings)
    parent = runs_frame(settings.experiment, settings, filter=f"attributes.run_id = '{parent_run_id}'")
    series_order = _logged_list(parent, "series") or sorted(cells["series"].unique())
    model_order = _logged_list(parent, "model") or sorted(cells["model"].unique())
    table = summarize(cells, series_order, model_order, errors)
    table.attrs["experiment_id"] = str(runs["experiment_id"].iloc[0])
    # an Optuna search's trials: what each one's variant sampled and the value it told the study
    trials = {_tag(run, "variant"): (_tag(run, "optuna.params"), float(_tag(run, "optuna.value") or "nan"))
              for _, run in runs.iterrows() if _tag(run, "optuna.trial")}
    if trials:
        table["trial_params"] = [trials.get(variant, ("", math.nan))[0] for variant in table["variant"]]
        table["trial_value"] = [trials.get(variant, ("", math.nan))[1] for variant in table["variant"]]
    return table


def _stored_cells(parent_run_id: str, settings) -> tuple[pd.DataFrame, Errors, pd.DataFrame]:
    """(the cells frame, the RNN cells' one-step errors, the runs' frame) of this study's cell runs nested
    under parent_run_id in settings.experiment (harness.report's runs_frame, MlflowClient.search_runs), read
    from the store alone."""
    from harness.report import metric_history, runs_frame

    try:
        runs = runs_frame(
            settings.experiment, settings, parent_run_id=parent_run_id, filter=f"tags.study = '{STUDY}'"
        )
    except ValueError as error:
        raise StudyInputError(f"rebuild: {error}") from None
    if not runs.empty:
        runs = runs[runs["tags.kind"].isin(list(FORECASTERS))]
    if runs.empty:
        raise StudyInputError(
            f"rebuild: run {parent_run_id!r} has no {STUDY} cell runs in experiment {settings.experiment!r} "
            f"of {settings.tracking_uri}"
        )
    metric_columns = [c for c in runs.columns if c.startswith("metrics.")]
    cells = _cells([
        {"series": run["tags.series"], "window": window, "h": h, "model": run["tags.model"],
         "variant": _tag(run, "variant"), "reference": _tag(run, "reference"), "seed": int(run["tags.seed"]),
         **scores}
        for _, run in runs.iterrows()
        for (window, h), scores in long_rows(
            {c[len("metrics."):]: run[c] for c in metric_columns if pd.notna(run[c])}
        ).items()
    ])
    errors = {
        (run["tags.series"], run["tags.model"], _tag(run, "variant"), int(run["tags.seed"])): {
            key: metric_history(run["run_id"], key, settings)["value"].to_numpy()
            for key in (c[len("metrics."):] for c in metric_columns)
            if key.split(".")[0] in ERROR_CURVES and pd.notna(run[f"metrics.{key}"])
        }
        for _, run in runs.iterrows() if run["tags.kind"] == "rnn"
    }
    return cells, errors, runs


def _tag(run: pd.Series, name: str) -> str:
    """Tag name of a runs_frame row, "" when the run has none (runs logged before the harness wrote it)."""
    value = run.get(f"tags.{name}")
    return value if isinstance(value, str) else ""


def _logged_list(parent: pd.DataFrame, key: str) -> list[str] | None:
    """The comma-separated param key of the parent run, None when it has none (a sweep's parent)."""
    column = f"params.{key}"
    if parent.empty or column not in parent or not isinstance(parent[column].iloc[0], str):
        return None
    return parent[column].iloc[0].split(",")


# ------------------------------------------------------------------------------------------------------ app


def study_to_resume(run_id: str, config: StudyConfig, settings) -> StoppedStudy:
    """The stopped study run_id that config finishes (study_resume.stopped_study: a refusal is one line).

    Beyond the logged params, each held cell's series must be the one config draws (its dataset fingerprint):
    a CSV file or data set that changed since would otherwise mix two series in one table."""
    stopped = stopped_study(run_id, settings, STUDY, _study_params(config))
    _check_drawn_series(config, [run for run in stopped.children if run.data.tags.get("kind") in FORECASTERS],
                        "resume", "study", run_id)
    return stopped


def _check_drawn_series(config: StudyConfig, runs: Sequence[Any], key: str, what: str, run_id: str) -> None:
    """StudyInputError naming key when a cell run of runs (those of the stopped study or sweep run_id: what)
    forecast another series than config draws for its (series, seed) (its dataset fingerprint): a CSV file or
    data set that changed since would otherwise mix two series in one table."""
    drawn: dict[tuple[str, int], str] = {}
    for run in runs:
        tags = run.data.tags
        unit = (tags["series"], int(tags["seed"]))
        if unit not in drawn:
            drawn[unit] = fingerprint(_prepare(config, _make_series(config, *unit))[0])
        logged = tags.get("dataset_fingerprint")
        if logged != drawn[unit]:
            raise StudyInputError(
                f"{key}: {what} {run_id} forecast another {unit[0]} series (seed {unit[1]}) than this "
                f"command draws (dataset fingerprint {logged}, here {drawn[unit]}): its data changed since; "
                f"run the {what} afresh")


def check(cfg: Mapping[str, Any]) -> tuple[Any, StudyConfig | None]:
    """(tracking settings, the validated study config; None for rebuild=<run id>) of the composed config cfg:
    keys, values, grid, part lengths, memory and the tracking store or server checked before any run exists;
    the first problem raises StudyInputError (one line naming the key)."""
    try:
        check_keys("", cfg, KEYS[""])
        for section in ("split", "link", "tracking", "backtest", "intervals", "csv"):
            check_keys(section, cfg.get(section), KEYS[section])
        settings = study_settings(cfg["tracking"], STUDY)
    except ConfigError as error:
        raise StudyInputError(str(error)) from None
    check_run_keys(cfg)
    if cfg.get("rebuild"):
        return settings, None
    config = StudyConfig.from_mapping(cfg)
    validate(config)
    return settings, config


def main(cfg: Mapping[str, Any], sweep: bool = False, echo: Callable[[str], Any] = print,
         overrides: Sequence[str] = (), job_num: int | None = None) -> pd.DataFrame:
    """What experiments/rnn_vs_arma.py runs, given the composed config as a plain dict.

    rebuild=<run id>: echo that study's table from the store, then that run's page in the MLflow UI. sweep
    (a Hydra -m job): run_cells under the sweep's parent. Otherwise run_study (resume=<run id>: finishing
    that stopped study, stopped_study), then echo the parent run's page in the MLflow UI and the command that
    starts the UI. Returns the table (the cells frame for a sweep
    job). Bad input raises StudyInputError before any run is created.
    overrides: a sweep job's Hydra overrides, whose swept values go into its run names.
    """
    from harness.runtime import pin_blas_to_one_thread

    pin_blas_to_one_thread()
    settings, config = check(cfg)
    if config is None:
        parent_run_id = str(cfg["rebuild"])
        table = rebuild_table(parent_run_id, settings)
        echo(format_table(table))
        echo(ui_hint(settings.tracking_uri, (table.attrs["experiment_id"], parent_run_id)))
        return table
    if sweep:
        from harness.tracking.runs import sweep_label

        return run_cells(config, settings, label=sweep_label(overrides, named=("series", "model", "seed")),
                         job_num=job_num, job_cfg=cfg, echo=echo)
    if cfg.get(STUDY_RESUME_SWEEP_KEY):
        raise StudyInputError(str(not_a_sweep(STUDY_RESUME_SWEEP_KEY)))
    resume = study_to_resume(str(cfg["resume"]), config, settings) if cfg.get("resume") else None
    result = run_study(config, settings, echo, resume)
    if settings.mode != "off":
        echo(f"parent run {result.parent_run_id}; its table again: {rebuild_command(result.parent_run_id)}")
        echo(ui_hint(settings.tracking_uri, (result.experiment_id, result.parent_run_id)))
    return result.table
