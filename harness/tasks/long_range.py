"""Long-range dependency benchmarks read out after the last step (many_to_one): the adding problem, the
temporal order problem and the latch (two-sequence) problem."""

from __future__ import annotations

import math

import numpy as np

from harness.tasks.base import (
    Batch,
    SequenceTask,
    categorical_metrics,
    check_float,
    check_int,
    one_hot,
)
from harness.tasks.held_out import HeldOutSplit, check_held_out, every_sequence


class Adding(SequenceTask):
    """The adding problem (Hochreiter & Schmidhuber 1997), in the variant of Le et al. (2015).

    X (T, B, 2): channel 0 holds values U[0, 1], channel 1 a marker that is 1 at exactly two steps, one drawn
    uniformly in [0, T // 2) and one in [T // 2, T). Y (B, 1): the sum of the two marked values.
    Metrics: mse (the task metric), nmse = mse / (1/6), accuracy (fraction with |error| < 0.04, the criterion
    of Hochreiter & Schmidhuber). Solved: mse < 0.1 * 1/6, a tenth of the baseline.
    Chance (predicting the mean 1 always): mse 1/6, the variance of a sum of two U[0, 1]; accuracy
    P(|S - 1| < 0.04) = 2 * 0.04 - 0.04**2 for the triangular sum S.
    """

    name = "adding"
    mode = "many_to_one"
    metric_name = "mse"
    higher_is_better = False

    BASELINE_MSE = 1.0 / 6.0
    SOLVED_FRACTION = 0.1
    TOLERANCE = 0.04

    def __init__(self, length: int = 100) -> None:
        self.length = check_int("length", length, minimum=2)
        super().__init__(length=self.length)
        self.input_size, self.output_size, self.head = 2, 1, "identity_mse"

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        half = self.length // 2
        values = rng.random((self.length, batch_size))
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, self.length, size=batch_size)
        columns = np.arange(batch_size)
        markers = np.zeros((self.length, batch_size))
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        target = values[first, columns] + values[second, columns]
        return Batch(X=np.stack([values, markers], axis=-1), Y=target[:, None])

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        error = self._check_prediction(Y_hat, batch) - batch.Y
        mse = float(np.mean(error**2))
        return {
            "mse": mse,
            "nmse": mse / self.BASELINE_MSE,
            "accuracy": float(np.mean(np.abs(error) < self.TOLERANCE)),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["mse"] < self.SOLVED_FRACTION * self.BASELINE_MSE

    @property
    def solved_rule(self) -> str:
        return f"mse < {self.SOLVED_FRACTION * self.BASELINE_MSE:.4g}, a tenth of chance"

    def chance(self) -> dict[str, float]:
        return {
            "mse": self.BASELINE_MSE,
            "nmse": 1.0,
            "accuracy": 2.0 * self.TOLERANCE - self.TOLERANCE**2,
        }


class TemporalOrder(HeldOutSplit):
    """The temporal order problem (Hochreiter & Schmidhuber 1997, experiment 6a; Pascanu et al. 2013).

    Symbols (one-hot, D = 8): distractors a, b, c, d (0-3), keys X (4) and Y (5), start B (6), end E (7).
    X (T, B, 8): B at step 0, E at step T - 1, distractors elsewhere except two keys, each X or Y, at steps
    drawn uniformly in [T // 10, 2T // 10) and [5T // 10, 6T // 10) (the windows [10, 20), [50, 60) of the
    original at T = 100). Y (B, 4) one-hot class of the key order: XX 0, XY 1, YX 2, YY 3; softmax_ce.
    held_out: the fraction of all inputs kept out of training (harness.tasks.held_out), 0 by default: at
    T = 100 no input repeats, but at length=10 (16,384 inputs) a validation sequence is among 64,000 training
    draws with probability 98%.
    Metrics: accuracy (the task metric), cross_entropy. Solved: accuracy >= 0.99.
    Chance: accuracy 1/4, cross_entropy ln 4 (uniform prediction).
    """

    name = "temporal_order"
    mode = "many_to_one"
    metric_name = "accuracy"
    higher_is_better = True

    KEY_X, START, END = 4, 6, 7
    N_SYMBOLS, N_CLASSES = 8, 4

    def __init__(self, length: int = 100, held_out: float = 0.0) -> None:
        # length >= 10 keeps both windows non-empty and between the start and end symbols.
        self.length = check_int("length", length, minimum=10)
        self.held_out = check_held_out(held_out)
        super().__init__(length=self.length, held_out=self.held_out)
        self.input_size, self.output_size, self.head = self.N_SYMBOLS, self.N_CLASSES, "softmax_ce"
        self._check_split("length")

    @property
    def windows(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The half-open step ranges of the first and second key."""
        T = self.length
        return (T // 10, 2 * T // 10), (5 * T // 10, 6 * T // 10)

    @property
    def input_count(self) -> int:
        """Key positions times key pairs times the distractors at the T - 4 other steps."""
        (first, end_first), (second, end_second) = self.windows
        return (end_first - first) * (end_second - second) * 4 * self.KEY_X ** (self.length - 4)

    def _all_inputs(self) -> np.ndarray:
        distractors = every_sequence(self.KEY_X, self.length - 4)
        blocks = []
        for first in range(*self.windows[0]):
            for second in range(*self.windows[1]):
                others = [t for t in range(1, self.length - 1) if t not in (first, second)]
                for key_first in (0, 1):
                    for key_second in (0, 1):
                        symbols = np.empty((self.length, distractors.shape[1]), dtype=np.int64)
                        symbols[0], symbols[-1] = self.START, self.END
                        symbols[others] = distractors
                        symbols[first], symbols[second] = self.KEY_X + key_first, self.KEY_X + key_second
                        blocks.append(symbols)
        return one_hot(np.concatenate(blocks, axis=1), self.N_SYMBOLS)

    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        symbols = rng.integers(0, self.KEY_X, size=(self.length, count))
        symbols[0], symbols[-1] = self.START, self.END
        keys = rng.integers(0, 2, size=(2, count))
        columns = np.arange(count)
        for window, key in zip(self.windows, keys, strict=True):
            symbols[rng.integers(*window, size=count), columns] = self.KEY_X + key
        label = 2 * keys[0] + keys[1]
        return Batch(X=one_hot(symbols, self.N_SYMBOLS), Y=one_hot(label, self.N_CLASSES))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        return categorical_metrics(self._check_prediction(Y_hat, batch), batch.Y)

    def chance(self) -> dict[str, float]:
        return {"accuracy": 1.0 / self.N_CLASSES, "cross_entropy": math.log(self.N_CLASSES)}


class Latch(SequenceTask):
    """The latch, or two-sequence, problem (Bengio, Simard & Frasconi 1994): keep one bit through noise.

    X (T, B, 1): the class sign s = +1 (class 1) or -1 (class 0) at the first info_length steps, then Gaussian
    noise N(0, noise_std**2) for the remaining T - info_length steps. Y (B, 2) one-hot class; softmax_ce.
    The class is fully determined by the first step, so a network that latches it reaches accuracy 1.
    Metrics: accuracy (the task metric), cross_entropy. Solved: accuracy >= 0.99.
    Chance: accuracy 1/2, cross_entropy ln 2.
    """

    name = "latch"
    mode = "many_to_one"
    metric_name = "accuracy"
    higher_is_better = True

    def __init__(self, length: int = 50, info_length: int = 3, noise_std: float = 0.2) -> None:
        self.length = check_int("length", length, minimum=2)
        self.info_length = check_int("info_length", info_length, minimum=1, maximum=self.length - 1)
        self.noise_std = check_float("noise_std", noise_std, minimum=0.0)
        super().__init__(length=self.length, info_length=self.info_length, noise_std=self.noise_std)
        self.input_size, self.output_size, self.head = 1, 2, "softmax_ce"

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        label = rng.integers(0, 2, size=batch_size)
        X = self.noise_std * rng.standard_normal((self.length, batch_size, 1))
        X[: self.info_length, :, 0] = 2.0 * label - 1.0
        return Batch(X=X, Y=one_hot(label, 2))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        return categorical_metrics(self._check_prediction(Y_hat, batch), batch.Y)

    def chance(self) -> dict[str, float]:
        return {"accuracy": 0.5, "cross_entropy": math.log(2.0)}
