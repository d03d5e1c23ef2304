"""Bit-stream tasks from the course notes: binary addition (note 000's exercise), the XOR stream and the bit
count (note 001)."""

from __future__ import annotations

import math

import numpy as np

from harness.tasks.base import SOLVED_ACCURACY, Batch, SequenceTask, check_choice, check_float, check_int


def _to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """(B,) non-negative int64 -> (bits, B) float64, least-significant bit first."""
    return ((values[None, :] >> np.arange(bits, dtype=np.int64)[:, None]) & 1).astype(np.float64)


class BinaryAddition(SequenceTask):
    """Add two binary numbers bit by bit, least-significant bit first, carrying in the hidden state.

    X (bits, B, 2): step k holds bit k of a and of b. Y (bits, B, 1): bit k of a + b. Pairs are uniform over
    {(a, b): 0 <= a, b and a + b < 2**bits}, so the sum never overflows the bits steps. head: 'sigmoid_bce' or
    note 000's 'sigmoid_se'. A bit is predicted as 1 when the output is >= 0.5.
    held_out: the fraction of all sums kept out of training: `sample` draws only the other sums and
    `validation_set` only these, so validation scores sums the network never trained on. Which sums are held
    out is a fixed pseudo-random function of (a, b) (a SplitMix64 hash), the same for every seed; 0 trains and
    validates on all sums.
    Metrics: sequence_accuracy (all bits of the sum right; the task metric), bit_accuracy.
    Solved: sequence_accuracy >= 0.99.
    Chance: a fair coin per bit, bit_accuracy 0.5, sequence_accuracy 2**-bits.
    """

    name = "binary_addition"
    mode = "many_to_many"
    metric_name = "sequence_accuracy"
    higher_is_better = True

    # Sampling a and b as int64 and adding them must not overflow.
    MAX_BITS = 62
    # Up to this many bits the sums are enumerated to check that both parts of the held-out split hold some.
    ENUMERATED_BITS = 6

    def __init__(self, bits: int = 8, head: str = "sigmoid_bce", held_out: float = 0.2) -> None:
        self.bits = check_int("bits", bits, minimum=1, maximum=self.MAX_BITS)
        self.length = self.bits
        self.head = check_choice("head", head, ("sigmoid_bce", "sigmoid_se"))
        self.held_out = check_float("held_out", held_out, minimum=0.0)
        if self.held_out >= 1.0:
            raise ValueError(f"held_out must be a fraction in [0, 1), got {held_out!r}")
        super().__init__(bits=self.bits, head=self.head, held_out=self.held_out)
        self.input_size, self.output_size = 2, 1
        if self.held_out > 0 and self.bits <= self.ENUMERATED_BITS:
            a, b = np.divmod(np.arange(1 << 2 * self.bits, dtype=np.int64), 1 << self.bits)
            fits = a + b < (1 << self.bits)
            held = self._is_held_out(a[fits], b[fits])
            if held.all() or not held.any():
                raise ValueError(f"held_out={held_out!r} leaves one part of the {fits.sum()} sums of "
                                 f"bits={self.bits} empty; use more bits or held_out=0")

    def _is_held_out(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(B,) bool: whether each pair (a, b) is a held-out sum (SplitMix64 of (a + 1) golden + b, as a
        uniform number in [0, 1), below held_out)."""
        z = (a.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) + b.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        return (z >> np.uint64(11)).astype(np.float64) < self.held_out * 2.0**53

    def _draw_operands(self, batch_size: int, rng: np.random.Generator, held: bool | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Rejection sampling: uniform pairs below 2**bits, kept when their sum fits (about half are kept) and
        they are in the part asked for (held True: held-out sums, False: the others, None: all)."""
        limit = 1 << self.bits
        kept_share = 0.5 * (1.0 if held is None else self.held_out if held else 1.0 - self.held_out)
        a_kept: list[np.ndarray] = []
        b_kept: list[np.ndarray] = []
        missing = batch_size
        while missing > 0:
            a, b = rng.integers(0, limit, size=(2, int(missing / kept_share) + 8), dtype=np.int64)
            keep = a + b < limit
            if held is not None:
                keep &= self._is_held_out(a, b) == held
            a_kept.append(a[keep][:missing])
            b_kept.append(b[keep][:missing])
            missing -= len(a_kept[-1])
        return np.concatenate(a_kept), np.concatenate(b_kept)

    def _batch(self, batch_size: int, rng: np.random.Generator, held: bool | None) -> Batch:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        a, b = self._draw_operands(batch_size, rng, held)
        X = np.stack([_to_bits(a, self.bits), _to_bits(b, self.bits)], axis=-1)
        Y = _to_bits(a + b, self.bits)[:, :, None]
        return Batch(X=X, Y=Y)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Training sums (all sums with held_out=0)."""
        return self._batch(batch_size, rng, False if self.held_out > 0 else None)

    def validation_set(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Held-out sums only, disjoint from what sample draws (all sums with held_out=0)."""
        return self._batch(batch_size, rng, True if self.held_out > 0 else None)

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        correct = (self._check_prediction(Y_hat, batch) >= 0.5) == (batch.Y >= 0.5)
        return {
            "sequence_accuracy": float(np.mean(np.all(correct, axis=(0, 2)))),
            "bit_accuracy": float(np.mean(correct)),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["sequence_accuracy"] >= SOLVED_ACCURACY

    def chance(self) -> dict[str, float]:
        return {"sequence_accuracy": 0.5**self.bits, "bit_accuracy": 0.5}


class XorStream(SequenceTask):
    """Predict the next bit of a stream of triples (a, b, a xor b) with a, b fair coins (note 001).

    The stream s has 3 * triples bits; X (T, B, 1) = s[:-1] and Y (T, B, 1) = s[1:] with T = 3 * triples - 1.
    Only the targets s[3k + 2] = s[3k] xor s[3k + 1] are predictable (input steps t with t % 3 == 1); the
    others are fresh coin flips. Every step carries a target (mask None).
    Metrics: accuracy_predictable (the task metric), accuracy_all. Solved: accuracy_predictable >= 0.99.
    Chance (no memory, or ignoring the input): 0.5 on both; a single step's input says nothing about a xor b.
    best_achievable(): 1.0 on the predictable steps and (1 + p) / 2 on all steps, p = triples / T the fraction
    of predictable steps, because the other steps cannot beat 0.5.
    """

    name = "xor"
    mode = "many_to_many"
    metric_name = "accuracy_predictable"
    higher_is_better = True

    def __init__(self, triples: int = 10, head: str = "sigmoid_bce") -> None:
        self.triples = check_int("triples", triples, minimum=1)
        self.head = check_choice("head", head, ("sigmoid_bce", "sigmoid_se"))
        super().__init__(triples=self.triples, head=self.head)
        self.input_size, self.output_size = 1, 1
        self.length = 3 * self.triples - 1

    @property
    def predictable_steps(self) -> np.ndarray:
        """(T,) bool: the input steps whose next bit is the xor of the two bits before it."""
        return np.arange(self.length) % 3 == 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        a, b = rng.integers(0, 2, size=(2, self.triples, batch_size))
        stream = np.stack([a, b, a ^ b], axis=1).reshape(3 * self.triples, batch_size).astype(np.float64)
        return Batch(X=stream[:-1, :, None], Y=stream[1:, :, None])

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        correct = ((self._check_prediction(Y_hat, batch) >= 0.5) == (batch.Y >= 0.5))[:, :, 0]
        return {
            "accuracy_predictable": float(np.mean(correct[self.predictable_steps])),
            "accuracy_all": float(np.mean(correct)),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy_predictable"] >= SOLVED_ACCURACY

    def chance(self) -> dict[str, float]:
        return {"accuracy_predictable": 0.5, "accuracy_all": 0.5}

    def best_achievable(self) -> dict[str, float]:
        """Accuracies of the optimal predictor (exact xor on predictable steps, a coin elsewhere)."""
        predictable_fraction = self.triples / self.length
        return {"accuracy_predictable": 1.0, "accuracy_all": (1.0 + predictable_fraction) / 2.0}


class BitSum(SequenceTask):
    """Count the ones among length fair bits, read out after the last step (note 001, section 2).

    X (T, B, 1) bits, Y (B, 1) their count; many_to_one with identity_mse. A linear RNN solves it exactly
    (W_xh = 1, W_hh = 1, W_hy = 1, zero biases: h_T is the count).
    Metrics: accuracy (fraction with |y_hat - y| < 0.5, the task metric), mse. Solved: accuracy >= 0.99.
    Chance (best constant predictions): mse T / 4 (predicting the mean T / 2; the count is Binomial(T, 1/2)),
    accuracy C(T, floor(T / 2)) / 2**T (predicting the most likely count).
    """

    name = "bit_sum"
    mode = "many_to_one"
    metric_name = "accuracy"
    higher_is_better = True

    def __init__(self, length: int = 8) -> None:
        self.length = check_int("length", length, minimum=1)
        super().__init__(length=self.length)
        self.input_size, self.output_size, self.head = 1, 1, "identity_mse"

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        X = rng.integers(0, 2, size=(self.length, batch_size, 1)).astype(np.float64)
        return Batch(X=X, Y=X.sum(axis=0))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        error = self._check_prediction(Y_hat, batch) - batch.Y
        return {"accuracy": float(np.mean(np.abs(error) < 0.5)), "mse": float(np.mean(error**2))}

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy"] >= SOLVED_ACCURACY

    def chance(self) -> dict[str, float]:
        return {
            "accuracy": math.comb(self.length, self.length // 2) / 2.0**self.length,
            "mse": self.length / 4.0,
        }
