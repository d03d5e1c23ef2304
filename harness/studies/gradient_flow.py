"""Vanishing and exploding gradients held to account: measured backpropagated gradients against the theory.

Study 1, `closed_form` (note 001, section 2): the scalar linear RNN f_t = v_f f_{t-1} + v_x x_t, ŷ = f_T,
E = 1/2 Σ_i (ŷ_i − y_i)^2 on the bit-sum task. Its backward pass must give, to round-off,
    dE/df_1 = Σ_i (ŷ_i − y_i) v_f^(T−1)                                    (eq. 27)
    dE/dv_x = Σ_t [Σ_i (ŷ_i − y_i) x_t^(i)] v_f^(T−t)                      (eq. 22)
    dE/dv_f = Σ_t [Σ_i (ŷ_i − y_i) f_{t−1}^(i)] v_f^(T−t)                  (eq. 26)
so |dE/df_1| → 0 for v_f < 1 and → ∞ for v_f > 1 as T grows (eq. 28). A cell is one (v_f, T).

Study 2, `spectral` (note 002's product of Jacobians): Elman networks with W_hh rescaled to a largest singular
value σ_max; ||∂h_T/∂h_k|| over the lag T − k decays (or grows) at a fitted rate r, bounded by
(γ σ_max)^lag with γ = max g' (1 for tanh, relu, identity; 1/4 for sigmoid). The study measures how loose
that bound is: ratio r / (γ σ_max) and the gap ln(γ σ_max) − ln r in nats per step, with the share of unit
derivatives far below γ (saturated or dead units) that explains it. A cell is one (activation, σ_max).

Each cell is a pure function of the study config and its seed (the same numbers sequentially, in processes
or as Hydra sweep jobs). See harness.studies.study_run for how cells become tracked runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from harness.app import STUDY_RESUME_SWEEP_KEY
from harness.config import (
    TRACKING_KEYS,
    ConfigError,
    check_keys,
    network_bytes,
    require_memory,
    suggestion,
    tracking_config,
)
from harness.config import allowed_keys as config_allowed_keys
from harness.diagnostics import DERIVATIVE_BOUND, fit_decay_rate, jacobian_product_norms, spectral_radius
from harness.nn import Elman
from harness.nn.activations import ACTIVATIONS, derivative_from_output
from harness.studies.remedies import REMEDIES_KEYS
from harness.studies.study_resume import check_run_keys, stopped_study
from harness.studies.study_run import (
    CellRun,
    Curve,
    StudyOutputs,
    Summarize,
    SweepJob,
    as_tuple,
    check_int,
    check_positive,
    new_figure,
    rebuild,
    run_study,
    run_sweep_cells,
    study_settings,
)
from harness.sweep_continuation import not_a_sweep
from harness.tasks import make_task
from harness.ui import ui_hint

ROUND_OFF = 1e-10  # relative errors below this are float64 round-off accumulated over <= ~10^4 operations
SATURATED = 0.1  # a unit derivative below SATURATED * γ counts as saturated (tanh, sigmoid) or dead (relu)


# ------------------------------------------------------------------------------------ study 1: closed form


@dataclass(frozen=True)
class ClosedFormConfig:
    """Grid v_f x T; v_x the input weight (not 1, so that the residuals ŷ − y are not zero at v_f = 1);
    batch_size sequences I of the bit-sum task drawn from the task's 'train' stream of seed."""

    v_f: tuple[float, ...] = (0.5, 0.9, 1.0, 1.1, 1.5)
    T: tuple[int, ...] = (8, 16, 32, 64, 128)
    v_x: float = 0.5
    batch_size: int = 16
    seed: int = 0

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> ClosedFormConfig:
        config = cls(v_f=tuple(check_positive("closed_form.v_f", v) for v in as_tuple(cfg["v_f"])),
                     T=tuple(check_int("closed_form.T", t, 1) for t in as_tuple(cfg["T"])),
                     v_x=check_positive("closed_form.v_x", cfg["v_x"]),
                     batch_size=check_int("closed_form.batch_size", cfg["batch_size"], 1),
                     seed=check_int("closed_form.seed", cfg["seed"], 0))
        if not config.v_f or not config.T:
            raise ValueError("closed_form.v_f and closed_form.T must each list at least one value")
        return config

    def cells(self) -> list[tuple[float, int]]:
        return [(v_f, T) for v_f in self.v_f for T in self.T]

    def key(self, v_f: float, T: int) -> dict[str, Any]:
        """The key of cell (v_f, T), its child run's `cell.*` tags."""
        return {"v_f": float(v_f), "T": int(T)}

    def largest_cell_bytes(self) -> int:
        """A lower bound of the bytes the longest cell allocates (one scalar unit, batch_size sequences)."""
        return network_bytes("linear", 1, 1, 1, length=max(self.T), batch_size=self.batch_size)

    def sizes(self) -> str:
        return f"closed_form.T up to {max(self.T)} with closed_form.batch_size={self.batch_size}"


def scalar_linear_rnn(v_f: float, v_x: float) -> Elman:
    """Note 001's network: one identity unit, no biases, W_xh = v_x, W_hh = v_f, W_hy = 1, E = 1/2 Σ (ŷ−y)^2
    up to the factor 2 (reduction "sum" of (ŷ−y)^2, i.e. 2E)."""
    model = Elman(1, 1, 1, activation="identity", bias=False, mode="many_to_one", reduction="sum")
    model.params["W_xh"][:] = v_x
    model.params["W_hh"][:] = v_f
    model.params["W_hy"][:] = 1.0
    return model


def _relative_error(measured: float, theory: float) -> float:
    return abs(measured - theory) / abs(theory) if theory != 0 else abs(measured)


def closed_form_cell(config: ClosedFormConfig, v_f: float, T: int) -> CellRun:
    """Measured dE/df_1, dE/dv_x, dE/dv_f (one backward pass) against eqs. 27, 22, 26 for one (v_f, T).

    Curves: |dE/df_t| measured and by eq. 24 (Σ(ŷ−y) v_f^(T−t)), with step = the lag T − t (0..T−1).
    """
    # One batch of the whole input distribution: nothing is validated here, so no part is held out.
    task = make_task("bit_sum", length=T, held_out=0.0)
    batch = task.sample(config.batch_size, task.streams(config.seed)["train"])
    model = scalar_linear_rnn(v_f, config.v_x)
    loss, grads, dh = model.loss_and_grads(batch.X, batch.Y, return_hidden_grads=True)
    residual = model.predict(batch.X)[:, 0] - batch.Y[:, 0]          # ŷ_i − y_i, (I,)
    f = model.hidden_states(batch.X)[:, :, 0]                          # f_t, (T, I)
    f_previous = np.vstack([np.zeros((1, f.shape[1])), f[:-1]])       # f_{t−1}, f_0 = 0
    x = batch.X[:, :, 0]                                               # (T, I)
    powers = float(v_f) ** np.arange(T - 1, -1, -1, dtype=np.float64)  # v_f^(T−t), t = 1..T
    dE_df = 0.5 * dh[:, :, 0].sum(axis=1)                              # Σ_i dE/df_t^(i), (T,)
    theory = {"dE_df1": float(residual.sum()) * float(v_f) ** (T - 1),
              "dE_dvx": float(np.sum((x @ residual) * powers)),
              "dE_dvf": float(np.sum((f_previous @ residual) * powers))}
    measured = {"dE_df1": float(dE_df[0]), "dE_dvx": 0.5 * float(grads["W_xh"][0, 0]),
                "dE_dvf": 0.5 * float(grads["W_hh"][0, 0])}
    metrics = {"E": 0.5 * loss, "residual_sum": float(residual.sum())}
    for name in theory:
        metrics[f"measured_{name}"] = measured[name]
        metrics[f"theory_{name}"] = theory[name]
        metrics[f"rel_error_{name}"] = _relative_error(measured[name], theory[name])
    lags = np.arange(T)  # reversed time: lag T − t for t = T..1
    curves = {"abs_dE_df_by_lag": (lags, np.abs(dE_df)[::-1]),
              "abs_dE_df_theory_by_lag": (lags, np.abs(residual.sum() * powers)[::-1])}
    return CellRun(name=f"closed_form-vf{v_f:g}-T{T}", key=config.key(v_f, T),
                   params={"v_f": v_f, "T": T, "v_x": config.v_x, "batch_size": config.batch_size,
                           "seed": config.seed, "task": "bit_sum"},
                   metrics=metrics, curves=curves)


def summarize_closed_form(cells: pd.DataFrame, curves: Mapping[str, Mapping[str, Curve]]) -> StudyOutputs:
    """Table (one row per (v_f, T)), the measured-vs-theory figure and the findings."""
    table = cells.sort_values(["v_f", "T"]).reset_index(drop=True)[
        ["v_f", "T", "measured_dE_df1", "theory_dE_df1", "rel_error_dE_df1", "rel_error_dE_dvx",
         "rel_error_dE_dvf"]]
    shown = table.copy()
    for column in shown.columns[2:]:
        shown[column] = [f"{value:.3e}" for value in table[column]]
    shown["T"] = table["T"].astype(int)
    worst = {name: float(table[f"rel_error_{name}"].max()) for name in ("dE_df1", "dE_dvx", "dE_dvf")}
    longest = table[table["T"] == table["T"].max()]
    spread = ", ".join(f"{abs(m):.2e} at v_f={v:g}"
                       for v, m in zip(longest["v_f"], longest["measured_dE_df1"], strict=True))
    verdict = "round-off level" if max(worst.values()) < ROUND_OFF else "ABOVE round-off: a mismatch"
    sentences = [
        f"closed form (note 001, eqs. 22, 26, 27) over {len(table)} cells: worst relative errors of the "
        f"backward pass {worst['dE_df1']:.1e} (dE/df_1), {worst['dE_dvx']:.1e} (dE/dv_x), "
        f"{worst['dE_dvf']:.1e} (dE/dv_f), {verdict}.",
        f"eq. 28 in numbers: at T={int(longest['T'].iloc[0])}, |dE/df_1| = {spread}.",
    ]
    return StudyOutputs(table=table, markdown=shown.to_markdown(index=False),
                        figures={"closed_form.png": closed_form_figure(table)}, sentences=sentences)


def closed_form_figure(table: pd.DataFrame):
    """|dE/df_1| against T on log scales: theory Σ(ŷ−y) v_f^(T−1) as lines, the backward pass as markers."""
    fig = new_figure((7, 4.5))
    ax = fig.subplots()
    for k, (v_f, rows) in enumerate(table.groupby("v_f", sort=True)):
        colour = f"C{k}"
        ax.plot(rows["T"], np.abs(rows["theory_dE_df1"]), "-", color=colour, lw=1.2,
                label=f"v_f = {v_f:g}: Σ(ŷ−y) v_f^(T−1)")
        ax.plot(rows["T"], np.abs(rows["measured_dE_df1"]), "o", color=colour, mfc="none", ms=7)
    ax.plot([], [], "o", color="grey", mfc="none", label="measured (BPTT dh)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("|dE/df_1|")
    ax.set_title("Note 001, eq. 27: the gradient reaching the first state", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------- study 2: spectral bound


@dataclass(frozen=True)
class SpectralConfig:
    """Grid activation x sigma_max. Per cell: one Elman network (input_size inputs, hidden_size units,
    W_xh glorot, W_hh drawn by recurrent_init from seed then rescaled to sigma_max, zero biases) and
    `batches` input batches X ~ N(0, input_std^2) of batch_size sequences of length T."""

    activation: tuple[str, ...] = ("identity", "tanh", "sigmoid", "relu")
    sigma_max: tuple[float, ...] = (0.5, 0.8, 0.9, 1.0, 1.1, 1.5, 2.0)
    T: int = 100
    hidden_size: int = 48
    input_size: int = 4
    input_std: float = 1.0
    batches: int = 3
    batch_size: int = 16
    recurrent_init: str = "orthogonal"
    seed: int = 0

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> SpectralConfig:
        activations = tuple(as_tuple(cfg["activation"]))
        for name in activations:
            if name not in ACTIVATIONS:
                raise ValueError(f"spectral.activation must be among {list(ACTIVATIONS)}, got {name!r}"
                                 f"{suggestion(name, ACTIVATIONS)}")
        inits = ("glorot", "orthogonal", "uniform")
        if cfg["recurrent_init"] not in inits:
            raise ValueError(f"spectral.recurrent_init must be one of {list(inits)}, got "
                             f"{cfg['recurrent_init']!r}{suggestion(cfg['recurrent_init'], inits)}")
        config = cls(activation=activations,
                     sigma_max=tuple(check_positive("spectral.sigma_max", s)
                                     for s in as_tuple(cfg["sigma_max"])),
                     T=check_int("spectral.T", cfg["T"], 2),
                     hidden_size=check_int("spectral.hidden_size", cfg["hidden_size"], 1),
                     input_size=check_int("spectral.input_size", cfg["input_size"], 1),
                     input_std=check_positive("spectral.input_std", cfg["input_std"]),
                     batches=check_int("spectral.batches", cfg["batches"], 1),
                     batch_size=check_int("spectral.batch_size", cfg["batch_size"], 1),
                     recurrent_init=cfg["recurrent_init"], seed=check_int("spectral.seed", cfg["seed"], 0))
        if not config.activation or not config.sigma_max:
            raise ValueError("spectral.activation and spectral.sigma_max must each list at least one value")
        return config

    def cells(self) -> list[tuple[str, float]]:
        return [(activation, sigma) for activation in self.activation for sigma in self.sigma_max]

    def key(self, activation: str, sigma_max: float) -> dict[str, Any]:
        """The key of cell (activation, sigma_max), its child run's `cell.*` tags."""
        return {"activation": activation, "sigma_max_target": float(sigma_max)}

    def largest_cell_bytes(self) -> int:
        """A lower bound of the bytes a cell allocates: the network's states on one batch and the batch of
        (hidden_size, hidden_size) Jacobian products with their matmul result and SVD workspace."""
        H, B = self.hidden_size, self.batch_size
        states = network_bytes("elman", self.input_size, H, 1, length=self.T, batch_size=B,
                               parameter_copies=1)
        return states + 8 * 3 * B * H * H

    def sizes(self) -> str:
        return (f"spectral.T={self.T}, spectral.hidden_size={self.hidden_size}, "
                f"spectral.batch_size={self.batch_size}")


def spectral_cell(config: SpectralConfig, activation: str, sigma_max: float) -> CellRun:
    """Jacobian-product norms ||∂h_T/∂h_k|| (lags 1..T, mean over all sequences) against (γ σ_max)^lag.

    The weights depend on seed only (the same W_hh direction for every cell, scaled to sigma_max); input
    batch k comes from SeedSequence([seed, k]). The rate is fitted per batch: metrics give its mean and std.
    """
    model = Elman(config.input_size, config.hidden_size, 1, activation=activation, init="glorot",
                  recurrent_init=config.recurrent_init, max_singular_value=sigma_max, seed=config.seed)
    W_hh = model.recurrent_matrix()
    gamma = DERIVATIVE_BOUND[activation]
    per_batch, rates, derivative_means, saturated = [], [], [], []
    for k in range(config.batches):
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, k]))
        X = config.input_std * rng.standard_normal((config.T, config.batch_size, config.input_size))
        H = model.hidden_states(X)
        norms = jacobian_product_norms(W_hh, H, activation)
        per_batch.append(norms)
        try:
            rates.append(fit_decay_rate(norms).rate)
        except ValueError:  # every product vanished exactly (all relu units dead): no rate to fit
            rates.append(0.0)
        relative = derivative_from_output(activation, H) / gamma
        derivative_means.append(float(relative.mean()))
        saturated.append(float(np.mean(relative < SATURATED)))
    lag_norms = np.mean(per_batch, axis=0)
    lags = np.arange(1, config.T + 1)
    bound_rate = gamma * sigma_max
    log_bound = lags * math.log(bound_rate)
    with np.errstate(divide="ignore"):
        excess = np.log(lag_norms) - log_bound
    rate = float(np.mean(rates))
    metrics = {
        "sigma_max": float(np.linalg.norm(W_hh, 2)), "spectral_radius": spectral_radius(W_hh),
        "gamma": gamma, "bound_rate": bound_rate, "measured_rate": rate,
        "measured_rate_std": float(np.std(rates)), "rate_ratio": rate / bound_rate,
        "log_rate_gap": math.log(bound_rate) - math.log(rate) if rate > 0 else math.inf,
        # the largest ln(norm / bound) over lags: <= 0 when the bound holds (it must)
        "max_log_excess": float(np.max(excess)),
        "log10_gap_at_T": float((log_bound[-1] - math.log(lag_norms[-1])) / math.log(10))
        if lag_norms[-1] > 0 else math.inf,
        "mean_derivative_over_gamma": float(np.mean(derivative_means)),
        "saturated_fraction": float(np.mean(saturated)),
    }
    return CellRun(name=f"spectral-{activation}-sigma{sigma_max:g}",
                   key=config.key(activation, sigma_max),
                   params={**{k: v for k, v in config.__dict__.items()
                              if k not in ("activation", "sigma_max")},
                           "activation": activation, "sigma_max": sigma_max},
                   metrics=metrics,
                   curves={"lag_norm": (lags, lag_norms), "bound": (lags, bound_rate ** lags.astype(float))})


def summarize_spectral(cells: pd.DataFrame, curves: Mapping[str, Mapping[str, Curve]]) -> StudyOutputs:
    """Table (one row per (activation, σ_max)), the rate figure, the decay-curve figure and the findings."""
    order = {name: k for k, name in enumerate(ACTIVATIONS)}
    table = cells.assign(_order=cells["activation"].map(order)).sort_values(["_order", "sigma_max_target"])
    table = table[["activation", "sigma_max", "spectral_radius", "bound_rate", "measured_rate",
                   "measured_rate_std", "rate_ratio", "log_rate_gap", "log10_gap_at_T", "max_log_excess",
                   "mean_derivative_over_gamma", "saturated_fraction"]].reset_index(drop=True)
    shown = table.copy()
    for column in shown.columns[1:]:
        shown[column] = [f"{value:.3g}" for value in table[column]]
    figures = {"spectral_rates.png": spectral_rate_figure(table)}
    if curves:
        figures["spectral_lag_norms.png"] = lag_norm_figure(cells, curves)
    return StudyOutputs(table=table, markdown=shown.to_markdown(index=False), figures=figures,
                        sentences=spectral_sentences(table))


def spectral_sentences(table: pd.DataFrame) -> list[str]:
    """Per activation: how loose the bound is (rate ratio, log-rate gap) and what explains it."""
    sentences = []
    worst_excess = float(table["max_log_excess"].max())
    sentences.append(f"spectral bound: the measured ||∂h_T/∂h_k|| never exceeds (γ σ_max)^lag (largest "
                     f"ln(norm/bound) over all cells and lags: {worst_excess:.2e}, "
                     f"{'<= 0 up to round-off' if worst_excess < 1e-9 else 'ABOVE THE BOUND'}).")
    for activation, rows in table.groupby("activation", sort=False):
        finite = rows[np.isfinite(rows["log_rate_gap"])]
        if finite.empty:
            sentences.append(f"{activation}: every Jacobian product vanished exactly (dead units); no rate.")
            continue
        loosest = finite.loc[finite["log_rate_gap"].idxmax()]
        if abs(loosest["log_rate_gap"]) < 1e-6:
            sentences.append(f"{activation}: the bound is attained, measured rate = γσ_max to "
                             f"{np.max(np.abs(finite['rate_ratio'] - 1)):.1e} (min ρ(W_hh)/σ_max = "
                             f"{np.min(finite['spectral_radius'] / finite['sigma_max']):.3f}; a non-normal "
                             f"W_hh would decay at its spectral radius ρ < σ_max).")
            continue
        below = "zero (inactive units)" if activation == "relu" else f"below {SATURATED:g} γ (saturated)"
        gamma = rows["bound_rate"].iloc[0] / rows["sigma_max"].iloc[0]
        text = (f"{activation} (γ = {gamma:g}): measured rate / bound rate γσ_max from "
                f"{finite['rate_ratio'].min():.2f} to {finite['rate_ratio'].max():.2f}; the bound is loosest "
                f"at σ_max = {loosest['sigma_max']:.2g}, by {loosest['log_rate_gap']:.2f} "
                f"nats per step (a factor 10^{loosest['log10_gap_at_T']:.0f} at the longest lag), where "
                f"{100 * loosest['saturated_fraction']:.0f} % of the unit derivatives are {below} and their "
                f"mean is {loosest['mean_derivative_over_gamma']:.2f} γ")
        if activation == "sigmoid":
            text += ("; γ = 1/4 is reached only at a = 0, while sigmoid outputs sit near 1/2 with g' < 1/4, "
                     "so even without saturation the bound's 1/4 overstates each factor")
        sentences.append(text + ".")
    return sentences


def spectral_rate_figure(table: pd.DataFrame):
    """Fitted decay rate against σ_max per activation (markers, ±std) over the bound rates γσ_max (lines)."""
    fig = new_figure((7, 4.5))
    ax = fig.subplots()
    grid = np.linspace(table["sigma_max"].min(), table["sigma_max"].max(), 50)
    for gamma, style in ((1.0, "-"), (0.25, "--")):
        which = "tanh, relu, identity" if gamma == 1 else "sigmoid"
        ax.plot(grid, gamma * grid, style, color="black", lw=1,
                label=f"bound rate γσ_max, γ = {gamma:g} ({which})")
    for k, (activation, rows) in enumerate(table.groupby("activation", sort=False)):
        ax.errorbar(rows["sigma_max"], rows["measured_rate"], yerr=rows["measured_rate_std"], fmt="o",
                    color=f"C{k}", ms=5, capsize=2, label=f"{activation}: fitted rate")
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("σ_max(W_hh)")
    ax.set_ylabel("decay rate r of ||∂h_T/∂h_k|| ≈ C r^lag")
    ax.set_title("Measured decay rate against the Pascanu et al. bound", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def lag_norm_figure(cells: pd.DataFrame, curves: Mapping[str, Mapping[str, Curve]]):
    """One panel per activation: ||∂h_T/∂h_k|| against the lag per σ_max (solid) and its bound (dashed)."""
    activations = [a for a in ACTIVATIONS if a in set(cells["activation"])]
    fig = new_figure((3.6 * len(activations), 3.6))
    axes = fig.subplots(1, len(activations), squeeze=False)
    sigmas = sorted(set(cells["sigma_max_target"]))
    for ax, activation in zip(axes[0], activations, strict=True):
        for k, sigma in enumerate(sigmas):
            name = f"spectral-{activation}-sigma{sigma:g}"
            if name not in curves or "lag_norm" not in curves[name]:
                continue
            lags, norms = curves[name]["lag_norm"]
            shown = np.where(norms > 0, norms, np.nan)
            ax.plot(lags, shown, color=f"C{k}", lw=1.2, label=f"σ_max {sigma:g}")
            if "bound" in curves[name]:
                ax.plot(*curves[name]["bound"], color=f"C{k}", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(1e-30, 1e30)
        ax.set_xlabel("lag T − k")
        ax.set_title(activation, fontsize=9)
    axes[0, 0].set_ylabel("||∂h_T/∂h_k||  (dashed: (γσ_max)^lag)")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------------------- the app

APP = "gradient_flow"  # the app whose runs these studies log (TrackingSettings.app)
STUDIES = ("closed_form", "spectral", "remedies")


class StudyInputError(ConfigError):
    """Bad study configuration (one line naming the key); raised before any run is created."""


# The keys of conf/gradient_flow.yaml, per section (None: free-form entries, checked where they are used).
KEYS: dict[str, tuple[str, ...] | None] = {
    "": ("study", "n_jobs", "rebuild", "resume", "resume_sweep", *STUDIES, "tracking"),
    "closed_form": tuple(f.name for f in fields(ClosedFormConfig)),
    "spectral": tuple(f.name for f in fields(SpectralConfig)),
    "remedies": REMEDIES_KEYS,
    "remedies.methods": None,
    "remedies.task_params": None,
    "tracking": TRACKING_KEYS,
}


def allowed_keys(key: str) -> list[str] | None:
    """The keys allowed beside dotted key in this app's config (for Hydra's misspelt-key errors)."""
    return config_allowed_keys(key, KEYS)


def check(cfg: Mapping[str, Any]) -> tuple[Any, Study, int]:
    """(tracking settings, study, n_jobs) of the composed config cfg, everything checked before any cell is
    computed or any run exists: keys, values, the tracking store or server, the memory n_jobs cells need, and
    that rebuild and resume do not come together."""
    try:
        check_keys("", cfg, KEYS[""])
        for section in (*STUDIES, "tracking"):
            check_keys(section, cfg.get(section), KEYS[section])
        n_jobs = check_int("n_jobs", cfg.get("n_jobs", 1), 1)
        settings = study_settings(cfg["tracking"], APP)
    except ConfigError as error:
        raise StudyInputError(str(error)) from None
    check_run_keys(cfg)
    study = make_study(cfg)
    if not cfg.get("rebuild"):
        processes = min(n_jobs, len(study.config.cells()))
        try:
            require_memory(processes * study.config.largest_cell_bytes(),
                           f"{study.config.sizes()} in {processes} processes (n_jobs)")
        except ValueError as error:
            raise StudyInputError(str(error)) from None
    return settings, study, n_jobs


@dataclass(frozen=True)
class Study:
    """One study ready to run: its validated config (the grid coordinates of its cells(), and a cell's
    key(*coordinates) before it is computed), the pure cell function cell(config, *coordinates), the
    summarize function and the curve metrics a rebuild or a resumed study reads back from the store."""

    name: str
    config: Any
    cell: Callable[..., CellRun]
    summarize: Summarize
    curve_names: tuple[str, ...] = ()

    def arguments(self) -> list[tuple]:
        return [(self.config, *coordinates) for coordinates in self.config.cells()]

    def params(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """What its parent run logs as params (cfg: the composed config): the settings every number depends
        on, which a resumed study must share (n_jobs changes none)."""
        return {"study": self.name, self.name: cfg[self.name]}


def cell_key(config: Any, *coordinates: Any) -> dict[str, Any]:
    """The key of cell(config, *coordinates) (a Study's cell), known before the cell is computed."""
    return config.key(*coordinates)


def make_study(cfg: Mapping[str, Any]) -> Study:
    """The study named by cfg["study"], its section of cfg validated; StudyInputError on bad input."""
    name = cfg.get("study")
    if name not in STUDIES:
        raise StudyInputError(f"study must be one of {list(STUDIES)}, got {name!r}"
                              f"{suggestion(name, STUDIES)}")
    try:
        if name == "closed_form":
            return Study(name, ClosedFormConfig.from_mapping(cfg[name]), closed_form_cell,
                         summarize_closed_form)
        if name == "spectral":
            return Study(name, SpectralConfig.from_mapping(cfg[name]), spectral_cell, summarize_spectral,
                         ("lag_norm", "bound"))
        from harness.studies import remedies

        config = remedies.RemediesConfig.from_mapping(cfg[name])
        return Study(name, config, remedies.remedies_cell,
                     partial(remedies.summarize_remedies, methods=config.methods))
    except KeyError as error:
        raise StudyInputError(f"{name}.{error.args[0]} is missing") from None
    except ValueError as error:
        raise StudyInputError(str(error)) from None


def run(cfg: Mapping[str, Any], sweep: bool = False, echo: Callable[[str], Any] = print,
        job_num: int | None = None):
    """What experiments/gradient_flow.py runs, given the composed config as a plain dict.

    rebuild=<run id>: table, figures and findings of that run's cells from the store (a new summary run
    under it). sweep (a Hydra -m job, number job_num): the job's cells as children of the sweep's parent
    (resume_sweep=<its id>: only those the store lacks, study_run.run_sweep_cells); returns the cells
    frame. Otherwise the whole study under one parent run (resume=<run id>: that stopped study's, computing
    only the cells it lacks, study_resume.stopped_study); returns the StudyResult.
    """
    from harness.runtime import pin_blas_to_one_thread

    pin_blas_to_one_thread()
    settings, study, n_jobs = check(cfg)
    if cfg.get(STUDY_RESUME_SWEEP_KEY) and not sweep:
        raise not_a_sweep(STUDY_RESUME_SWEEP_KEY)
    if cfg.get("rebuild"):
        try:
            return rebuild(settings, str(cfg["rebuild"]), study.name, study.summarize, study.curve_names,
                           echo)
        except ValueError as error:
            raise StudyInputError(f"rebuild: {error}") from None
    if sweep:
        job = SweepJob(cfg, job_num, cell_key, study.curve_names, echo)
        return run_sweep_cells(settings, study.name, study.cell, study.arguments(), job)
    params = study.params(cfg)
    resume = stopped_study(str(cfg["resume"]), settings, study.name, params) if cfg.get("resume") else None
    arguments = study.arguments()
    started = time.perf_counter()
    result = run_study(settings, study.name, f"{study.name}-{len(arguments)}cells", params, study.cell,
                       cell_key, arguments, study.summarize, echo, n_jobs, resume, study.curve_names)
    echo(f"{study.name}: {result.cells_computed} cells computed and logged in "
         f"{time.perf_counter() - started:.1f} s with n_jobs={n_jobs}")
    if result.parent_run_id:
        again = rebuild_command(study.name, result.parent_run_id)
        echo(f"parent run {result.parent_run_id}; its table again: {again}")
        echo(ui_hint(settings.tracking_uri, (result.experiment_id, result.parent_run_id)))
    return result


def rebuild_command(study: str, parent_run_id: str) -> str:
    return f"python experiments/gradient_flow.py study={study} rebuild={parent_run_id}"


def summarize_sweep(cfg: Mapping[str, Any], parent_run_id: str, echo: Callable[[str], Any] = print):
    """After a `-m` sweep (cfg: its composed config): table, figures and findings of every job's cells from
    the store (a summary run under the sweep's parent, whose description becomes the table), echoed with the
    command that makes them again."""
    from harness.run import tracking_settings

    # a rebuild of the sweep's cells: the continued sweep's resume_sweep is no key of it
    result = run({**cfg, "rebuild": parent_run_id, STUDY_RESUME_SWEEP_KEY: None}, echo=echo)
    echo(f"sweep parent run {parent_run_id}; its table again: {rebuild_command(cfg['study'], parent_run_id)}")
    # run has checked the store (a server's health too): the UI line needs only its URI; the summary run
    # rebuild logged is nested under the parent, in its experiment
    echo(ui_hint(tracking_settings(tracking_config(cfg["tracking"]), APP).tracking_uri,
                 (result.experiment_id, parent_run_id)))
    return result
