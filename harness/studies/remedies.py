"""Study 3, `remedies`: which remedy for vanishing/exploding gradients learns a long-range task, and up to
which length T (the success-rate-against-T curve of Bengio, Simard & Frasconi 1994 and Pascanu, Mikolov &
Bengio 2013).

Methods (a catalog in the config): plain SGD and SGD with gradient-norm clipping on a tanh Elman network
(note 001, section 4), Rprop on large batches (note 001, section 3), the identity-initialised ReLU network
(IRNN, Le et al. 2015), LSTM and GRU. A cell is one (method, T, seed): the network is trained by
harness.training.fit for a fixed budget and succeeds when the task's own solved() rule holds on the fixed
validation set at the end. Gradient norms (before clipping) and whether each step was clipped are recorded at
every step; the training curves go to the cell's child run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from harness.config import (
    CELL_GATES,
    ModelConfig,
    TrainerConfig,
    network_bytes,
    require_memory,
    suggestion,
)
from harness.optim import StepInfo, make_optimizer
from harness.seed_stats import summarize_over_seeds
from harness.studies.study_run import CellRun, Curve, StudyOutputs, as_tuple, check_int, new_figure
from harness.tasks import make_task

TASKS = ("adding", "copy", "temporal_order")
LENGTH_PARAMETER = {"adding": "length", "temporal_order": "length", "copy": "delay"}
MODELS = ("elman", "irnn", "lstm", "gru")
METHOD_KEYS = ("model", "activation", "recurrent_init", "optimizer", "lr", "clip_norm", "options",
               "batch_size")
METHOD_DEFAULTS = {"model": "elman", "activation": None, "recurrent_init": None, "optimizer": "sgd",
                   "lr": 0.01, "clip_norm": None, "options": {}, "batch_size": None}


def method_spec(methods: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, Any]:
    """The catalog entry of method name with METHOD_DEFAULTS filled in."""
    return {**METHOD_DEFAULTS, **methods[name]}


@dataclass(frozen=True)
class RemediesConfig:
    """Grid method x T x seed on task (its length parameter set to T; task_params for the others).

    methods: name -> {model, activation, recurrent_init, optimizer, lr, clip_norm, options, batch_size}
    (batch_size overrides the shared one). steps: optimizer updates per cell; eval_interval: validation
    checks (the last step always); eval_batch_size: the fixed validation set; log_every: training curve
    resolution in the child runs.
    """

    method: tuple[str, ...]
    T: tuple[int, ...]
    seed: tuple[int, ...]
    methods: Mapping[str, Mapping[str, Any]]
    task: str = "adding"
    task_params: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 1500
    hidden_size: int = 32
    batch_size: int = 32
    eval_interval: int = 100
    eval_batch_size: int = 256
    log_every: int = 10

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> RemediesConfig:
        config = cls(method=as_tuple(cfg["method"]),
                     T=tuple(check_int("remedies.T", t, 2) for t in as_tuple(cfg["T"])),
                     seed=tuple(check_int("remedies.seed", s, 0) for s in as_tuple(cfg["seed"])),
                     methods={name: dict(spec) for name, spec in cfg["methods"].items()},
                     task=cfg["task"], task_params=dict(cfg.get("task_params") or {}),
                     steps=check_int("remedies.steps", cfg["steps"], 1),
                     hidden_size=check_int("remedies.hidden_size", cfg["hidden_size"], 1),
                     batch_size=check_int("remedies.batch_size", cfg["batch_size"], 1),
                     eval_interval=check_int("remedies.eval_interval", cfg["eval_interval"], 1),
                     eval_batch_size=check_int("remedies.eval_batch_size", cfg["eval_batch_size"], 1),
                     log_every=check_int("remedies.log_every", cfg["log_every"], 1))
        config.validate()
        return config

    def validate(self) -> None:
        """Every name, method and the task at every T must build; the first problem raises ValueError."""
        if self.task not in TASKS:
            raise ValueError(f"remedies.task must be one of {list(TASKS)}, got {self.task!r}"
                             f"{suggestion(self.task, TASKS)}")
        if not self.method or not self.T or not self.seed:
            raise ValueError("remedies.method, remedies.T and remedies.seed must each list a value")
        for name in self.method:
            if name not in self.methods:
                raise ValueError(f"remedies.method must be among {sorted(self.methods)}, got {name!r}"
                                 f"{suggestion(name, self.methods)}")
            unknown = sorted(set(self.methods[name]) - set(METHOD_KEYS))
            if unknown:
                raise ValueError(f"remedies.methods.{name} accepts keys {list(METHOD_KEYS)}, "
                                 f"got unknown {unknown}")
            for T in self.T:
                require_memory(self.cell_bytes(name, T), f"remedies.hidden_size={self.hidden_size}, "
                               f"T={T} and batches of up to {self.largest_batch(name)} sequences "
                               f"(remedies.batch_size, remedies.eval_batch_size) for method {name!r}")
                build(self, name, T, seed=0)

    def largest_batch(self, method: str) -> int:
        spec = method_spec(self.methods, method)
        return max(int(spec["batch_size"] or self.batch_size), self.eval_batch_size)

    def cell_bytes(self, method: str, T: int) -> int:
        """A lower bound of the bytes one cell of method at length T allocates (harness.config.network_bytes);
        ConfigError on a bad task or optimizer setting."""
        spec = method_spec(self.methods, method)
        try:
            task = make_study_task(self, T)
            optimizer = make_optimizer(spec["optimizer"], lr=spec["lr"], clip_norm=spec["clip_norm"],
                                       **dict(spec["options"] or {}))
        except ValueError as error:
            raise ValueError(f"remedies.methods.{method}: {error}") from None
        cell = spec["model"] if spec["model"] in CELL_GATES else "elman"
        return network_bytes(cell, task.input_size, self.hidden_size, task.output_size,
                             length=task.length + (task.output_length or 0),
                             batch_size=self.largest_batch(method),
                             parameter_copies=2 + optimizer.buffers_per_parameter())

    def largest_cell_bytes(self) -> int:
        return max(self.cell_bytes(method, T) for method in self.method for T in self.T)

    def sizes(self) -> str:
        return (f"remedies.hidden_size={self.hidden_size}, remedies.T up to {max(self.T)}, "
                f"remedies.batch_size={self.batch_size}, remedies.eval_batch_size={self.eval_batch_size}")

    def cells(self) -> list[tuple[str, int, int]]:
        return [(method, T, seed) for method in self.method for T in self.T for seed in self.seed]

    def key(self, method: str, T: int, seed: int) -> dict[str, Any]:
        """The key of cell (method, T, seed), its child run's `cell.*` tags."""
        return {"method": method, "T": int(T), "seed": int(seed)}


REMEDIES_KEYS = tuple(f.name for f in fields(RemediesConfig))


def make_study_task(config: RemediesConfig, T: int):
    return make_task(config.task, **{**config.task_params, LENGTH_PARAMETER[config.task]: T})


def build(config: RemediesConfig, method: str, T: int, seed: int):
    """(task, model, optimizer, batch_size) of one cell; ValueError names the method on bad settings."""
    from harness.run import build_model

    spec = method_spec(config.methods, method)
    try:
        task = make_study_task(config, T)
        model_config = ModelConfig(name=spec["model"], hidden_size=config.hidden_size,
                                   activation=spec["activation"], recurrent_init=spec["recurrent_init"])
        if model_config.name not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model_config.name!r}")
        model = build_model(model_config, task, truncation=None, seed=seed)
        optimizer = make_optimizer(spec["optimizer"], lr=spec["lr"], clip_norm=spec["clip_norm"],
                                   **dict(spec["options"] or {}))
    except ValueError as error:
        raise ValueError(f"remedies.methods.{method}: {error}") from None
    return task, model, optimizer, int(spec["batch_size"] or config.batch_size)


class _RecordingOptimizer:
    """Passes every step to the wrapped optimizer and keeps each StepInfo's gradient norm and clip flag."""

    def __init__(self, optimizer) -> None:
        self.optimizer = optimizer
        self.grad_norms: list[float] = []
        self.clipped: list[bool] = []

    def step(self, params, grads, loss=None) -> StepInfo:
        info = self.optimizer.step(params, grads, loss=loss)
        self.grad_norms.append(info.grad_norm)
        self.clipped.append(info.clipped)
        return info


def remedies_cell(config: RemediesConfig, method: str, T: int, seed: int) -> CellRun:
    """Train one (method, T, seed) cell; success = task.solved on the validation set after the last step."""
    from harness.tracking import MemoryLogger
    from harness.training import fit

    task, model, optimizer, batch_size = build(config, method, T, seed)
    recorder = _RecordingOptimizer(optimizer)
    trainer = TrainerConfig(steps=config.steps, batch_size=batch_size, eval_interval=config.eval_interval,
                            eval_batch_size=config.eval_batch_size, diagnostics_interval=config.steps,
                            diagnostics_batch_size=32, log_every=config.log_every, progress=False)
    streams = task.streams(seed)
    val_batch = task.validation_set(config.eval_batch_size, streams["val"])
    diagnostics_batch = task.validation_set(trainer.diagnostics_batch_size, streams["val"])
    memory = MemoryLogger()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = fit(model, task, recorder, trainer, train_rng=streams["train"], val_batch=val_batch,
                 diagnostics_batch=diagnostics_batch, logger=memory)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    norms = np.array(recorder.grad_norms) if recorder.grad_norms else np.array([math.nan])
    final = result.final
    metrics = {
        "solved": float(not result.diverged and bool(final.get("val/solved"))),
        "diverged": float(result.diverged),
        "final_metric": final.get(f"val/{task.metric_name}", math.nan),
        "final_loss": final.get("val/loss", math.nan),
        "chance_metric": task.chance()[task.metric_name],
        "steps_done": float(result.steps_done),
        "clip_fraction": float(np.mean(recorder.clipped)) if recorder.clipped else 0.0,
        "grad_norm_median": float(np.median(norms)),
        "grad_norm_max": float(np.max(norms)),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }
    curves = {key: (np.array([s for s, _ in pairs]), np.array([v for _, v in pairs]))
              for key, pairs in memory.metrics.items()}
    return CellRun(name=f"remedies-{config.task}-{method}-T{T}-s{seed}",
                   key=config.key(method, T, seed),
                   params={"task": config.task, "task_params": dict(task.params),
                           "method": method_spec(config.methods, method), "hidden_size": config.hidden_size,
                           "batch_size": batch_size, "steps": config.steps,
                           "eval_batch_size": config.eval_batch_size, "seed": seed},
                   metrics=metrics, curves=curves)


def summarize_remedies(cells: pd.DataFrame, curves: Mapping[str, Mapping[str, Curve]],
                       methods: Mapping[str, Mapping[str, Any]] | None = None) -> StudyOutputs:
    """Success rate per (method, T) over seeds with its Wilson 95% interval (harness.seed_stats, the
    aggregation of every sweep), the median final metric, clipping and gradient norms."""
    rows = []
    present = set(cells["method"])
    method_order = [m for m in methods if m in present] if methods else sorted(present)
    for method in method_order:
        for T in sorted(set(cells.loc[cells["method"] == method, "T"])):
            group = cells[(cells["method"] == method) & (cells["T"] == T)].sort_values("seed")
            (rate,) = summarize_over_seeds(group, [], [], solved="solved").to_dict("records")
            rows.append({"method": method, "T": int(T), "seeds": len(group),
                         "solved": rate["solved"], "success_rate": rate["solved_rate"],
                         "success_low": rate["solved_low"], "success_high": rate["solved_high"],
                         "final_metric_median": float(group["final_metric"].median()),
                         "chance_metric": float(group["chance_metric"].iloc[0]),
                         "diverged": int(group["diverged"].sum()),
                         "clip_fraction_mean": float(group["clip_fraction"].mean()),
                         "grad_norm_median": float(group["grad_norm_median"].median()),
                         "grad_norm_max": float(group["grad_norm_max"].max())})
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "method": table["method"], "T": table["T"],
        "solved [Wilson 95%]": [
            f"{k}/{n} [{a:.2f}, {b:.2f}]" for k, n, a, b in
            zip(table["solved"], table["seeds"], table["success_low"], table["success_high"], strict=True)],
        "final metric (median)": [f"{v:.4g}" for v in table["final_metric_median"]],
        "chance": [f"{v:.4g}" for v in table["chance_metric"]],
        "diverged": table["diverged"],
        "clipped steps": [f"{100 * v:.0f} %" for v in table["clip_fraction_mean"]],
        "grad norm median / max": [f"{a:.3g} / {b:.3g}" for a, b in
                                   zip(table["grad_norm_median"], table["grad_norm_max"], strict=True)],
    })
    if methods:
        shown.insert(1, "setup", [_describe(method_spec(methods, m)) for m in table["method"]])
    return StudyOutputs(table=table, markdown=shown.to_markdown(index=False),
                        figures={"remedies_success.png": success_figure(table)},
                        sentences=remedies_sentences(table))


def _describe(spec: Mapping[str, Any]) -> str:
    text = f"{spec['model']} {spec['optimizer']} lr {spec['lr']:g}"
    if spec["clip_norm"]:
        text += f" clip {spec['clip_norm']:g}"
    if spec["batch_size"]:
        text += f" batch {spec['batch_size']}"
    return text


def remedies_sentences(table: pd.DataFrame) -> list[str]:
    """Per method: the longest T solved by a majority of seeds, or that it solved nothing."""
    sentences = []
    for method, rows in table.groupby("method", sort=False):
        majority = rows[rows["success_rate"] > 0.5]
        solved_any = rows[rows["solved"] > 0]
        if solved_any.empty:
            sentences.append(f"{method}: solved no length T in {sorted(rows['T'])} within the budget.")
            continue
        rates = ", ".join(f"T={T}: {k}/{n}" for T, k, n in zip(rows["T"], rows["solved"], rows["seeds"],
                                                                strict=True))
        longest = f"longest T solved by most seeds: {int(majority['T'].max())}" if not majority.empty \
            else "no T solved by most seeds"
        sentences.append(f"{method}: {rates} ({longest}).")
    return sentences


def success_figure(table: pd.DataFrame):
    """Success rate (fraction of seeds solving the task) against T per method; bars: Wilson 95% intervals."""
    fig = new_figure((7, 4.5))
    ax = fig.subplots()
    markers = "osD^vx*"
    for k, (method, rows) in enumerate(table.groupby("method", sort=False)):
        offset = (k - (table["method"].nunique() - 1) / 2) * 0.012  # keep coinciding points visible
        rate, low, high = (rows[name].to_numpy() for name in ("success_rate", "success_low", "success_high"))
        # arrays, not Series: matplotlib calls float() on a one-row Series, which pandas deprecates
        ax.errorbar(rows["T"].to_numpy(), rate + offset, yerr=[rate - low, high - rate], capsize=2,
                    elinewidth=0.8, marker=markers[k % len(markers)], color=f"C{k}", lw=1.2, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(table["T"])), [str(t) for t in sorted(set(table["T"]))])
    ax.set_ylim(-0.06, 1.06)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("success rate over seeds (Wilson 95% interval)")
    ax.set_title("Remedies for vanishing/exploding gradients: who solves the task at which T", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
