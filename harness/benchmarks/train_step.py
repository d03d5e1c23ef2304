"""Speed and memory of the harness engine: `python -m harness.benchmarks.train_step [--quick]`.

1. Train-step time (forward + backward + plain SGD update p -= lr * g) of harness Elman (tanh, identity_mse,
   many_to_many), LSTM and GRU against torch.nn.RNN / LSTM / GRU + nn.Linear head + MSELoss + torch.optim.SGD
   on CPU in float64, at (T, B, H) = (8, 1, 16), (50, 32, 32), (100, 64, 64), (200, 128, 128), D = O = 8.
   Both engines run on one thread: torch.set_num_threads(1), NumPy's BLAS through threadpoolctl. The torch
   column is skipped when torch is not installed. torch's GRU applies the reset gate after the recurrent
   matmul (a different variant with the same cost).
2. Samples per second on binary addition (8 bits, Elman H=16, sigmoid, note 000's squared error on a sigmoid
   output, no biases): harness trained on batches of 64 against note 000's way of training, one sample at a
   time with a Python loop over the bits (written here from the notes' equations).
3. Peak memory of one loss_and_grads (BPTT) at T=1000, B=64, H=128 measured by tracemalloc (NumPy reports its
   allocations to it), divided by the T*B*H*8 bytes the hidden states alone need.

Times are medians over repeated measurements, ratios medians of per-measurement ratios, the engines measured
in turn so that load from other processes hits both alike; only ratios are meant to carry over.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from harness.nn import Elman
from harness.nn.gated import GRU, LSTM
from harness.nn.model import RecurrentModel
from harness.runtime import pin_blas_to_one_thread
from harness.tasks import make_task

SIZES = ((8, 1, 16), (50, 32, 32), (100, 64, 64), (200, 128, 128))
QUICK_SIZES = ((8, 1, 16), (20, 8, 16))
IO_SIZE = 8
LR = 1e-3
CELLS: dict[str, type[RecurrentModel]] = {"elman": Elman, "lstm": LSTM, "gru": GRU}


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
    """Per-call times of each fn, `repeats` measurements each, taken in turn (fn0, fn1, fn0, ...) so that
    load from other processes hits all of them alike; each measurement loops for at least min_time."""
    loops = []
    for fn in fns:
        fn()
        start = time.perf_counter()
        fn()
        loops.append(max(1, int(min_time / max(time.perf_counter() - start, 1e-7))))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, n, out in zip(fns, loops, samples, strict=True):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - start) / n)
    return samples


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-measurement ratios (robust to load that varies between measurements)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def sgd_(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
    for name, p in params.items():
        p -= lr * grads[name]


# --------------------------------------------------------------------------------------- 1. train step
def harness_train_step(cell: str, T: int, B: int, H: int, rng: np.random.Generator) -> Callable[[], None]:
    model = CELLS[cell](IO_SIZE, H, IO_SIZE, activation="tanh", head="identity_mse", mode="many_to_many")
    X = rng.standard_normal((T, B, IO_SIZE))
    Y = rng.standard_normal((T, B, IO_SIZE))

    def step() -> None:
        _, grads = model.loss_and_grads(X, Y)
        sgd_(model.params, grads, LR)

    return step


def torch_train_step(cell: str, T: int, B: int, H: int, rng: np.random.Generator
                     ) -> Callable[[], None] | None:
    torch = _torch()
    if torch is None:
        return None
    recurrent = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = recurrent(IO_SIZE, H).double()
    head = torch.nn.Linear(H, IO_SIZE).double()
    optimizer = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=LR)
    loss_fn = torch.nn.MSELoss()
    X = torch.from_numpy(rng.standard_normal((T, B, IO_SIZE)))
    Y = torch.from_numpy(rng.standard_normal((T, B, IO_SIZE)))

    def step() -> None:
        optimizer.zero_grad()
        out, _ = net(X)
        loss = loss_fn(head(out), Y)
        loss.backward()
        optimizer.step()

    return step


def train_step_table(sizes: tuple[tuple[int, int, int], ...], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for cell in CELLS:
        for T, B, H in sizes:
            rng = np.random.default_rng(0)
            steps = [harness_train_step(cell, T, B, H, rng)]
            torch_step = torch_train_step(cell, T, B, H, rng)
            if torch_step is not None:
                steps.append(torch_step)
            times = interleaved_seconds(steps, repeats)
            rows.append({"cell": cell, "T": T, "B": B, "H": H,
                         "harness_ms": 1e3 * statistics.median(times[0]),
                         "torch_ms": None if torch_step is None else 1e3 * statistics.median(times[1]),
                         "ratio": None if torch_step is None else median_ratio(times[0], times[1])})
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


# ------------------------------------------------------------------------------------------- report
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=7, help="measurements per median (default 7)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    sizes = QUICK_SIZES if args.quick else SIZES
    memory_size = (50, 8, 16) if args.quick else (1000, 64, 128)
    with single_thread():
        torch = _torch()
        print(f"NumPy {np.__version__}: BLAS pinned to 1 thread; torch "
              f"{'not installed (column skipped)' if torch is None else torch.__version__ + ', 1 thread'}")
        print(f"\n1. Train step (forward + backward + SGD), float64, D = O = {IO_SIZE}, median of {repeats}")
        print(f"{'cell':<6}{'T':>5}{'B':>5}{'H':>5}{'harness ms':>12}{'torch ms':>10}{'harness/torch':>15}")
        steps = train_step_table(sizes, repeats)
        for r in steps:
            print(f"{r['cell']:<6}{r['T']:>5}{r['B']:>5}{r['H']:>5}{r['harness_ms']:>12.3f}"
                  f"{_fmt(r['torch_ms'], '.3f'):>10}{_fmt(r['ratio'], '.2f'):>15}")
        rates = binary_addition_rates(repeats, samples=64 if args.quick else 256)
        print("\n2. Binary addition, 8 bits, Elman H=16 sigmoid, samples/s (median)")
        print(f"harness, batches of 64: {rates['harness_samples_per_s']:,.0f}   one sample at a time "
              f"(note 000 loop): {rates['loop_samples_per_s']:,.0f}   speedup {rates['speedup']:.1f}x "
              f"(target >= 20x)")
        T, B, H = memory_size
        print(f"\n3. Peak memory of loss_and_grads at T={T}, B={B}, H={H} / hidden-state storage T*B*H*8 "
              f"(target <= 1.5x for Elman)")
        memory = {cell: peak_memory_ratio(cell, T, B, H) for cell in CELLS}
        print("   ".join(f"{cell}: {ratio:.2f}x" for cell, ratio in memory.items()))
    return {"train_step": steps, "binary_addition": rates, "memory": memory}


if __name__ == "__main__":
    main()
