"""Speed and memory of the harness engine: `python -m harness.benchmarks.train_step [--quick] [--cells lstm]
[--sizes 200x128x128] [--sections 4] [--steps-only]` (--cells and --sizes narrow section 1; --sections runs
only the sections listed, e.g. `--sections 4` the fit overhead alone; --steps-only is `--sections 1`).

1. Train-step time (forward + backward + plain SGD update p -= lr * g) of harness Elman (tanh, identity_mse,
   many_to_many), LSTM and GRU against torch.nn.RNN / LSTM / GRU + nn.Linear head + MSELoss + torch.optim.SGD
   on CPU, in float64 and in float32, at (T, B, H) = (8, 1, 16), (50, 32, 32), (100, 64, 64), (200, 128, 128),
   (500, 64, 256), D = O = 8. Both engines run on one thread: torch.set_num_threads(1), every BLAS of the
   process through harness.runtime. The torch columns are skipped when torch is not installed. torch's GRU
   applies the reset gate after the recurrent matmul (a different variant with the same cost). Printed per
   row: the medians, harness/torch, the share of the one-thread matmul peak each engine reaches (the matrix
   products of the step counted at 2 FLOP per multiply-add, the peak measured on a 2000x2000 matmul in the
   same run) and harness's float64/float32 time.
2. Samples per second on binary addition (8 bits, Elman H=16, sigmoid, note 000's squared error on a sigmoid
   output, no biases): harness trained on batches of 64 against note 000's way of training, one sample at a
   time with a Python loop over the bits (written here from the notes' equations).
3. Peak memory of one loss_and_grads (BPTT) at T=1000, B=64, H=128 measured by tracemalloc (NumPy reports its
   allocations to it) on a fresh model, divided by the T*B*H*8 bytes the hidden states alone need.
4. harness.training.fit against a bare loop over the same batches, loss_and_grads and optimizer steps
   (adding, T=50, B=32, Elman H=64, Adam, 2,000 steps, tracking off): with every per-step metric, the
   validation every 100 steps and the gradient-flow diagnostics every 500 steps of the default trainer, and
   with the diagnostics off. Then what one gradient-flow check costs, next to its floor: the spectral norms
   of the T * B Jacobian products (one per lag and sequence, the numbers the check reports) need the largest
   eigenvalue of one symmetric Gram matrix each, timed alone (np.linalg.eigvalsh, as the check solves them)
   on as many H x H Gram matrices. `--sections 4` runs this section alone.

Times are CPU seconds of this process (time.process_time; every engine runs on one thread), so that time
spent waiting for a core on a shared machine is not counted; medians over repeated measurements, ratios
medians of per-measurement ratios, the engines measured in turn so that load from other processes (which
still competes for caches and memory bandwidth) hits both alike. Only ratios are meant to carry over. The
load average is printed at the start and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import TrainerConfig
from harness.nn import Elman
from harness.nn.gated import GRU, LSTM
from harness.nn.model import RecurrentModel
from harness.optim import make_optimizer
from harness.runtime import pin_blas_to_one_thread
from harness.tasks import make_task
from harness.tracking import MemoryLogger
from harness.training import _is_check, fit, gradient_flow

SIZES = ((8, 1, 16), (50, 32, 32), (100, 64, 64), (200, 128, 128), (500, 64, 256))
QUICK_SIZES = ((8, 1, 16), (20, 8, 16))
DTYPES = ("float64", "float32")
IO_SIZE = 8
LR = 1e-3
CELLS: dict[str, type[RecurrentModel]] = {"elman": Elman, "lstm": LSTM, "gru": GRU}
GATE_BLOCKS = {"elman": 1, "lstm": 4, "gru": 3}
PEAK_SIZE = 2000
TARGET_RATIO = {"elman": 0.7, "lstm": 0.8, "gru": 0.8}  # harness/torch step time, at every size
TARGET_PEAK_SHARE = 0.5  # of the one-thread matmul peak, at the two largest sizes
TARGET_FLOAT32_SPEEDUP = 1.7  # float64 / float32 step time, at the two largest sizes
SECTIONS = (1, 2, 3, 4)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Pin NumPy's BLAS (for the rest of the process) and torch (for the block) to one thread."""
    pin_blas_to_one_thread()
    with contextlib.ExitStack() as stack:
        torch = _torch()
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, previous)
        yield


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def interleaved_seconds(fns: list[Callable[[], object]], repeats: int, min_time: float = 0.05
                        ) -> list[list[float]]:
    """Per-call CPU seconds of each fn (time.process_time), `repeats` measurements each, taken in turn (fn0,
    fn1, fn0, ...) so that load from other processes hits all of them alike; each measurement loops for at
    least min_time."""
    loops = []
    for fn in fns:
        fn()
        start = time.process_time()
        fn()
        loops.append(max(1, int(min_time / max(time.process_time() - start, 1e-7))))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, n, out in zip(fns, loops, samples, strict=True):
            start = time.process_time()
            for _ in range(n):
                fn()
            out.append((time.process_time() - start) / n)
    return samples


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-measurement ratios (robust to load that varies between measurements)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def sgd_(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
    for name, p in params.items():
        p -= lr * grads[name]


# --------------------------------------------------------------------------------------- 1. train step
def harness_train_step(cell: str, T: int, B: int, H: int, rng: np.random.Generator, dtype: str = "float64"
                       ) -> Callable[[], None]:
    model = CELLS[cell](IO_SIZE, H, IO_SIZE, activation="tanh", head="identity_mse", mode="many_to_many",
                        dtype=dtype)
    X = rng.standard_normal((T, B, IO_SIZE)).astype(dtype)
    Y = rng.standard_normal((T, B, IO_SIZE)).astype(dtype)

    def step() -> None:
        _, grads = model.loss_and_grads(X, Y)
        sgd_(model.params, grads, LR)

    return step


def torch_train_step(cell: str, T: int, B: int, H: int, rng: np.random.Generator, dtype: str = "float64"
                     ) -> Callable[[], None] | None:
    torch = _torch()
    if torch is None:
        return None
    torch_dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    recurrent = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = recurrent(IO_SIZE, H).to(torch_dtype)
    head = torch.nn.Linear(H, IO_SIZE).to(torch_dtype)
    optimizer = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=LR)
    loss_fn = torch.nn.MSELoss()
    X = torch.from_numpy(rng.standard_normal((T, B, IO_SIZE)).astype(dtype))
    Y = torch.from_numpy(rng.standard_normal((T, B, IO_SIZE)).astype(dtype))

    def step() -> None:
        optimizer.zero_grad()
        out, _ = net(X)
        loss = loss_fn(head(out), Y)
        loss.backward()
        optimizer.step()

    return step


def step_flops(cell: str, T: int, B: int, H: int) -> float:
    """FLOPs (2 per multiply-add) of the matrix products of one train step, D = O = IO_SIZE: forward input
    and recurrent products and head; backward recurrent product, W_h, W_x, head weights and head-to-H."""
    G = GATE_BLOCKS[cell] * H
    forward = IO_SIZE * G + H * G + H * IO_SIZE
    backward = H * G + H * G + IO_SIZE * G + 2 * H * IO_SIZE
    return 2.0 * T * B * (forward + backward)


def matmul_peak(dtype: str, repeats: int, size: int = PEAK_SIZE) -> float:
    """FLOP/s of a (size, size) @ (size, size) matmul on the current BLAS threads (median of repeats)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    (seconds,) = interleaved_seconds([lambda: a @ b], repeats)
    return 2.0 * size ** 3 / statistics.median(seconds)


def train_step_table(sizes: tuple[tuple[int, int, int], ...], repeats: int, peaks: dict[str, float],
                     cells: tuple[str, ...] = tuple(CELLS)) -> list[dict[str, Any]]:
    """One row per cell and size; harness and torch in both dtypes are measured in turn (interleaved)."""
    rows = []
    for cell in cells:
        for T, B, H in sizes:
            steps, names = [], []
            for dtype in DTYPES:
                rng = np.random.default_rng(0)
                steps.append(harness_train_step(cell, T, B, H, rng, dtype))
                names.append(("harness", dtype))
                torch_step = torch_train_step(cell, T, B, H, rng, dtype)
                if torch_step is not None:
                    steps.append(torch_step)
                    names.append(("torch", dtype))
            times = dict(zip(names, interleaved_seconds(steps, repeats), strict=True))
            flops = step_flops(cell, T, B, H)
            row: dict[str, Any] = {"cell": cell, "T": T, "B": B, "H": H}
            for dtype in DTYPES:
                ours, theirs = times[("harness", dtype)], times.get(("torch", dtype))
                theirs_s = None if theirs is None else statistics.median(theirs)
                row[dtype] = {
                    "harness_ms": 1e3 * statistics.median(ours),
                    "torch_ms": None if theirs is None else 1e3 * theirs_s,
                    "ratio": None if theirs is None else median_ratio(ours, theirs),
                    "harness_peak": flops / statistics.median(ours) / peaks[dtype],
                    "torch_peak": None if theirs is None else flops / theirs_s / peaks[dtype],
                }
            row["float32_speedup"] = median_ratio(times[("harness", "float64")],
                                                  times[("harness", "float32")])
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------- 2. binary addition
def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def one_sample_at_a_time(W_i: np.ndarray, W_h: np.ndarray, W_o: np.ndarray, X: np.ndarray, Y: np.ndarray,
                         lr: float) -> None:
    """Note 000's training loop: for each sample, a Python loop over the bits forwards, one backwards through
    time, then an SGD update. h_t = s(x_t W_i + h_{t-1} W_h), y_t = s(h_t W_o), L = sum_t (y_t - t_t)^2.

    X (bits, N, 2), Y (bits, N, 1); updates W_i (2, H), W_h (H, H), W_o (H, 1) in place.
    """
    bits, N, _ = X.shape
    H = W_h.shape[0]
    for n in range(N):
        hs = [np.zeros((1, H))]
        out_deltas = []
        for t in range(bits):
            h = _sigmoid(X[t, n:n + 1] @ W_i + hs[-1] @ W_h)
            y = _sigmoid(h @ W_o)
            out_deltas.append(2.0 * (y - Y[t, n:n + 1]) * y * (1.0 - y))  # dL/do_t
            hs.append(h)
        g_i, g_h, g_o = np.zeros_like(W_i), np.zeros_like(W_h), np.zeros_like(W_o)
        dh_future = np.zeros((1, H))
        for t in range(bits - 1, -1, -1):
            h, h_prev = hs[t + 1], hs[t]
            da = (out_deltas[t] @ W_o.T + dh_future) * h * (1.0 - h)  # dL/da_t
            g_o += h.T @ out_deltas[t]
            g_h += h_prev.T @ da
            g_i += X[t, n:n + 1].T @ da
            dh_future = da @ W_h.T
        W_i -= lr * g_i
        W_h -= lr * g_h
        W_o -= lr * g_o


def binary_addition_rates(repeats: int, batch: int = 64, hidden: int = 16, samples: int = 256
                          ) -> dict[str, float]:
    task = make_task("binary_addition", bits=8, head="sigmoid_se")
    data = task.sample(samples, np.random.default_rng(0))
    model = Elman(2, hidden, 1, activation="sigmoid", head="sigmoid_se", init="uniform", bias=False,
                  reduction="sum", seed=0)
    X, Y = data.X[:, :batch], data.Y[:, :batch]

    def harness_step() -> None:
        _, grads = model.loss_and_grads(X, Y)
        sgd_(model.params, grads, 0.1)

    weights = [model.params[k].copy() for k in ("W_xh", "W_hh", "W_hy")]
    ours, loop = interleaved_seconds(
        [harness_step, lambda: one_sample_at_a_time(*weights, data.X, data.Y, 0.1)], repeats)
    per_sample_ours = [t / batch for t in ours]
    per_sample_loop = [t / samples for t in loop]
    return {"harness_samples_per_s": 1.0 / statistics.median(per_sample_ours),
            "loop_samples_per_s": 1.0 / statistics.median(per_sample_loop),
            "speedup": median_ratio(per_sample_loop, per_sample_ours)}


# ---------------------------------------------------------------------------------------- 3. memory
def peak_memory_ratio(cell: str, T: int, B: int, H: int) -> float:
    """tracemalloc peak of one loss_and_grads (inputs and parameters excluded) / (T*B*H*8 bytes)."""
    model = CELLS[cell](IO_SIZE, H, IO_SIZE, head="identity_mse", mode="many_to_many")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, IO_SIZE))
    Y = rng.standard_normal((T, B, IO_SIZE))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        model.loss_and_grads(X, Y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / (T * B * H * 8)


# ------------------------------------------------------------------------------------ 4. fit overhead
def fit_against_bare_loop(steps: int, repeats: int, diagnostics_interval: int) -> dict[str, float]:
    """Seconds of harness.training.fit (MemoryLogger, every metric every step) and of a bare loop over the
    same batches, loss_and_grads and Adam steps, measured in turn; adding T=50, B=32, Elman H=64."""
    task = make_task("adding", length=50)
    trainer = TrainerConfig(steps=steps, progress=False, checkpoint_every=0,
                            diagnostics_interval=diagnostics_interval)

    def setup() -> tuple[dict[str, np.random.Generator], RecurrentModel, Any]:
        streams = task.streams(0)
        model = Elman(task.input_size, 64, task.output_size, head=task.head, mode=task.mode, seed=0)
        return streams, model, make_optimizer("adam", lr=1e-3, clip_norm=1.0)

    def with_fit() -> None:
        streams, model, optimizer = setup()
        fit(model, task, optimizer, trainer, train_rng=streams["train"],
            val_batch=task.validation_set(trainer.eval_batch_size, streams["val"]),
            diagnostics_batch=task.validation_set(trainer.diagnostics_batch_size, streams["val"]),
            logger=MemoryLogger())

    def bare() -> None:
        streams, model, optimizer = setup()
        for _ in range(steps):
            batch = task.sample(trainer.batch_size, streams["train"])
            loss, grads = model.loss_and_grads(batch.X, batch.Y, batch.mask)
            optimizer.step(model.params, grads, loss=loss)

    fit_times, bare_times = interleaved_seconds([with_fit, bare], repeats, min_time=0.0)
    return {"fit_s": statistics.median(fit_times), "bare_s": statistics.median(bare_times),
            "ratio": median_ratio(fit_times, bare_times)}


def gradient_flow_cost(repeats: int, length: int = 50, hidden: int = 64) -> dict[str, float]:
    """Seconds of one gradient-flow check of the default trainer (diagnostics batch of 32, adding T=length,
    Elman H=hidden) and of the check's eigenvalue solver (np.linalg.eigvalsh) alone on its T * 32 Gram
    matrices (hidden x hidden)."""
    task = make_task("adding", length=length)
    trainer = TrainerConfig()
    model = Elman(task.input_size, hidden, task.output_size, head=task.head, mode=task.mode, seed=0)
    batch = task.validation_set(trainer.diagnostics_batch_size, task.streams(0)["val"])
    products = np.random.default_rng(0).standard_normal((length * trainer.diagnostics_batch_size, hidden,
                                                         hidden))
    grams = np.swapaxes(products, 1, 2) @ products
    check_s, eigen_s = interleaved_seconds(
        [lambda: gradient_flow(model, batch), lambda: np.linalg.eigvalsh(grams)], repeats)
    return {"check_s": statistics.median(check_s), "eigen_s": statistics.median(eigen_s),
            "problems": float(len(grams))}


# ------------------------------------------------------------------------------------------- report
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def load_average() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def blas_report() -> list[str]:
    """One line per BLAS library loaded, after statsmodels has loaded SciPy's own: path, kernel, threads."""
    import statsmodels.tsa.arima.model  # noqa: F401  (loads SciPy's OpenBLAS, as the ARMA side does)
    from threadpoolctl import threadpool_info

    lines = []
    for info in threadpool_info():
        if info["user_api"] == "blas":
            lines.append(f"  {Path(info['filepath']).name}: {info['internal_api']} "
                         f"{info.get('architecture', '?')} kernel, {info['num_threads']} thread(s)")
    core = os.environ.get("OPENBLAS_CORETYPE")
    lines.append(f"  OPENBLAS_CORETYPE {'unset' if core is None else '= ' + core}")
    return lines


def print_train_steps(rows: list[dict[str, Any]], peaks: dict[str, float]) -> None:
    print(f"one-thread matmul peak ({PEAK_SIZE}x{PEAK_SIZE}): "
          + ", ".join(f"{d} {peaks[d] / 1e9:.1f} GFLOP/s" for d in DTYPES))
    header = f"{'cell':<6}{'T':>5}{'B':>5}{'H':>5}"
    for dtype in DTYPES:
        header += f" | {dtype + ' harness ms':>19}{'torch ms':>10}{'h/torch':>9}{'peak h/t':>12}"
    print(header + f" | {'f64/f32':>8}")
    for r in rows:
        line = f"{r['cell']:<6}{r['T']:>5}{r['B']:>5}{r['H']:>5}"
        for dtype in DTYPES:
            d = r[dtype]
            torch_share = None if d["torch_peak"] is None else 100 * d["torch_peak"]
            shares = f"{100 * d['harness_peak']:.0f}%/{_fmt(torch_share, '.0f')}%"
            line += (f" | {d['harness_ms']:>19.3f}{_fmt(d['torch_ms'], '.3f'):>10}"
                     f"{_fmt(d['ratio'], '.2f'):>9}{shares:>12}")
        print(line + f" | {r['float32_speedup']:>8.2f}")
    ratios = ", ".join(f"<= {target} ({cell})" for cell, target in TARGET_RATIO.items())
    print(f"targets: harness/torch {ratios} at every size; >= {100 * TARGET_PEAK_SHARE:.0f}% of the peak at "
          f"the two largest sizes; float64/float32 >= {TARGET_FLOAT32_SPEEDUP} at the two largest sizes")
    misses = target_misses(rows)
    print("every target met" if not misses else "missed: " + "; ".join(misses))


def target_misses(rows: list[dict[str, Any]]) -> list[str]:
    """One entry per row and target the row misses: which cell, size and dtype, the value and the target."""
    largest = {(T, B, H) for T, B, H in sorted(SIZES, key=lambda size: size[0] * size[1] * size[2])[-2:]}
    misses = []
    for r in rows:
        size = (r["T"], r["B"], r["H"])
        name = f"{r['cell']} {size}"
        for dtype in DTYPES:
            d = r[dtype]
            if d["ratio"] is not None and d["ratio"] > TARGET_RATIO[r["cell"]]:
                misses.append(f"{name} {dtype} h/torch {d['ratio']:.2f} > {TARGET_RATIO[r['cell']]}")
            if size in largest and d["harness_peak"] < TARGET_PEAK_SHARE:
                misses.append(f"{name} {dtype} {100 * d['harness_peak']:.0f}% of the peak < "
                              f"{100 * TARGET_PEAK_SHARE:.0f}%")
        if size in largest and r["float32_speedup"] < TARGET_FLOAT32_SPEEDUP:
            misses.append(f"{name} f64/f32 {r['float32_speedup']:.2f} < {TARGET_FLOAT32_SPEEDUP}")
    return misses


def _cells(text: str) -> tuple[str, ...]:
    cells = tuple(text.split(","))
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown cell(s) {unknown}: allowed {list(CELLS)}")
    return cells


def _sizes(text: str) -> tuple[tuple[int, int, int], ...]:
    try:
        sizes = tuple(tuple(int(n) for n in size.split("x")) for size in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(len(size) != 3 or min(size) < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be TxBxH with positive integers, e.g. 200x128x128, "
                                         f"got {text!r}")
    return sizes  # type: ignore[return-value]


def _sections(text: str) -> frozenset[int]:
    try:
        sections = frozenset(int(n) for n in text.split(","))
    except ValueError:
        sections = frozenset()
    if not sections or not sections <= set(SECTIONS):
        raise argparse.ArgumentTypeError(f"sections must be comma-separated numbers among {list(SECTIONS)}, "
                                         f"e.g. 4, got {text!r}")
    return sections


def fit_overhead_section(fit_steps: int, repeats: int, quick: bool) -> tuple[dict[str, dict[str, float]],
                                                                              dict[str, float]]:
    """Section 4, printed: fit against the bare loop with the default trainer's diagnostics and without,
    then one gradient-flow check against its eigenvalue solver; returns (overhead per label, check cost)."""
    fit_repeats = 1 if quick else 3
    print(f"\n4. training.fit vs a bare loop, adding T=50, B=32, Elman H=64, Adam, {fit_steps} steps, "
          f"tracking off, median of {fit_repeats} (target <= 1.10)")
    overhead = {}
    default = TrainerConfig()
    every = default.diagnostics_interval
    for label, interval in ((f"default trainer (validation every {default.eval_interval}, diagnostics "
                             f"every {every})", every),
                            ("diagnostics off", 0)):
        overhead[label] = fit_against_bare_loop(fit_steps, fit_repeats, interval)
        o = overhead[label]
        print(f"{label}: fit {o['fit_s']:.2f} s, bare loop {o['bare_s']:.2f} s, ratio {o['ratio']:.3f}")
    checks = sum(_is_check(step, every, fit_steps) for step in range(fit_steps + 1))
    length, hidden = (10, 8) if quick else (50, 64)
    cost = gradient_flow_cost(repeats, length, hidden)
    print(f"one gradient-flow check: {1e3 * cost['check_s']:.1f} ms ({checks} in the fit); its "
          f"eigenvalue solver (np.linalg.eigvalsh) alone on its {cost['problems']:.0f} Gram "
          f"matrices: {1e3 * cost['eigen_s']:.1f} ms ({100 * cost['eigen_s'] / cost['check_s']:.0f}% of the "
          f"check)")
    return overhead, cost


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=7, help="measurements per median (default 7)")
    parser.add_argument("--cells", type=_cells, default=tuple(CELLS),
                        help=f"comma-separated cells of section 1 (default all: {','.join(CELLS)})")
    parser.add_argument("--sizes", type=_sizes, default=None,
                        help="comma-separated TxBxH sizes of section 1, e.g. 200x128x128 (default: all five)")
    parser.add_argument("--sections", type=_sections, default=frozenset(SECTIONS),
                        help="comma-separated sections to run, e.g. 4 (default all: 1,2,3,4)")
    parser.add_argument("--steps-only", action="store_true", help="section 1 only (the train-step table)")
    args = parser.parse_args(argv)
    sections = frozenset({1}) if args.steps_only else args.sections
    repeats = 3 if args.quick else args.repeats
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    memory_size = (50, 8, 16) if args.quick else (1000, 64, 128)
    fit_steps = 20 if args.quick else 2000
    result: dict[str, Any] = {}
    with single_thread():
        torch = _torch()
        print(f"NumPy {np.__version__}: every BLAS pinned to 1 thread; torch "
              f"{'not installed (columns skipped)' if torch is None else torch.__version__ + ', 1 thread'}; "
              f"{load_average()}")
        print("\n".join(blas_report()))
        if 1 in sections:
            peaks = {dtype: matmul_peak(dtype, repeats, 200 if args.quick else PEAK_SIZE) for dtype in DTYPES}
            print(f"\n1. Train step (forward + backward + SGD), D = O = {IO_SIZE}, median of {repeats}")
            steps = train_step_table(sizes, repeats, peaks, args.cells)
            print_train_steps(steps, peaks)
            result.update(train_step=steps, peaks=peaks)
        if 2 in sections:
            rates = binary_addition_rates(repeats, samples=64 if args.quick else 256)
            print("\n2. Binary addition, 8 bits, Elman H=16 sigmoid, samples/s (median)")
            print(f"harness, batches of 64: {rates['harness_samples_per_s']:,.0f}   one sample at a time "
                  f"(note 000 loop): {rates['loop_samples_per_s']:,.0f}   speedup {rates['speedup']:.1f}x "
                  f"(target >= 20x)")
            result["binary_addition"] = rates
        if 3 in sections:
            T, B, H = memory_size
            print(f"\n3. Peak memory of loss_and_grads at T={T}, B={B}, H={H} / hidden-state storage T*B*H*8 "
                  f"(targets: Elman <= 1.5x, LSTM <= 7x, GRU <= 5x)")
            memory = {cell: peak_memory_ratio(cell, T, B, H) for cell in CELLS}
            print("   ".join(f"{cell}: {ratio:.2f}x" for cell, ratio in memory.items()))
            result["memory"] = memory
        if 4 in sections:
            result["fit_overhead"], result["gradient_flow_check"] = fit_overhead_section(fit_steps, repeats,
                                                                                         args.quick)
        print(f"\n{load_average()}")
    return result


if __name__ == "__main__":
    main()
