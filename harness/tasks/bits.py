"""Bit-stream tasks from the course notes: binary addition (note 000's exercise), the XOR stream and the bit
count (note 001)."""

from __future__ import annotations

import math

import numpy as np

from harness.tasks.base import Batch, check_choice, check_int
from harness.tasks.held_out import (
    ENUMERATION_LIMIT,
    HeldOutSplit,
    check_held_out,
    every_sequence,
    held_out_inputs,
)


def _to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """(B,) non-negative int64 -> (bits, B) float64, least-significant bit first."""
    return ((values[None, :] >> np.arange(bits, dtype=np.int64)[:, None]) & 1).astype(np.float64)


class BinaryAddition(HeldOutSplit):
    """Add two binary numbers bit by bit, least-significant bit first, carrying in the hidden state.

    X (bits, B, 2): step k holds bit k of a and of b. Y (bits, B, 1): bit k of a + b. Pairs are uniform over
    {(a, b): 0 <= a, b and a + b < 2**bits}, so the sum never overflows the bits steps. head: 'sigmoid_bce' or
    note 000's 'sigmoid_se'. A bit is predicted as 1 when the output is >= 0.5.
    held_out: the fraction of all sums kept out of training (harness.tasks.held_out): `sample` draws only the
    other sums and `validation_set` only these, so validation scores sums the network never trained on. Which
    sums are held out is a fixed pseudo-random function of (a, b), the same for every seed; 0 trains and
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
    # Uniform pairs below 2**bits are candidates; about half of them have a sum that fits.
    CANDIDATE_SHARE = 0.5

    def __init__(self, bits: int = 8, head: str = "sigmoid_bce", held_out: float = 0.2) -> None:
        self.bits = check_int("bits", bits, minimum=1, maximum=self.MAX_BITS)
        self.length = self.bits
        self.head = check_choice("head", head, ("sigmoid_bce", "sigmoid_se"))
        self.held_out = check_held_out(held_out)
        super().__init__(bits=self.bits, head=self.head, held_out=self.held_out)
        self.input_size, self.output_size = 2, 1
        self._check_split("bits")

    @property
    def input_count(self) -> int:
        """The pairs whose sum fits: sum over s < 2**bits of (s + 1)."""
        return (1 << self.bits) * ((1 << self.bits) + 1) // 2

    def _all_inputs(self) -> np.ndarray:
        a, b = np.divmod(np.arange(1 << 2 * self.bits, dtype=np.int64), 1 << self.bits)
        fits = a + b < (1 << self.bits)
        return self._sums(a[fits], b[fits]).X

    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        """Uniform pairs below 2**bits, kept when their sum fits."""
        limit = 1 << self.bits
        a, b = rng.integers(0, limit, size=(2, count), dtype=np.int64)
        fits = a + b < limit
        return self._sums(a[fits], b[fits])

    def _sums(self, a: np.ndarray, b: np.ndarray) -> Batch:
        """(B,) operands -> their batch: X (bits, B, 2), Y (bits, B, 1)."""
        X = np.stack([_to_bits(a, self.bits), _to_bits(b, self.bits)], axis=-1)
        return Batch(X=X, Y=_to_bits(a + b, self.bits)[:, :, None])

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        correct = (self._check_prediction(Y_hat, batch) >= 0.5) == (batch.Y >= 0.5)
        return {
            "sequence_accuracy": float(np.mean(np.all(correct, axis=(0, 2)))),
            "bit_accuracy": float(np.mean(correct)),
        }

    def chance(self) -> dict[str, float]:
        return {"sequence_accuracy": 0.5**self.bits, "bit_accuracy": 0.5}


class XorStream(HeldOutSplit):
    """Predict the next bit of a stream of triples (a, b, a xor b) with a, b fair coins (note 001).

    The stream s has 3 * triples bits; X (T, B, 1) = s[:-1] and Y (T, B, 1) = s[1:] with T = 3 * triples - 1.
    Only the targets s[3k + 2] = s[3k] xor s[3k + 1] are predictable (input steps t with t % 3 == 1); the
    others are fresh coin flips. Every step carries a target (mask None).
    held_out: the fraction of all 4**triples streams kept out of training (harness.tasks.held_out): `sample`
    draws only the others and `validation_set` only these, the same for every seed; 0 trains and validates on
    all streams.
    Metrics: accuracy_predictable (the task metric), accuracy_all. Solved: accuracy_predictable >= 0.99.
    Chance (no memory, or ignoring the input): 0.5 on both; a single step's input says nothing about a xor b.
    best_achievable(): 1.0 on the predictable steps and (1 + p) / 2 on all steps, p = triples / T the fraction
    of predictable steps, because the other steps cannot beat 0.5.
    """

    name = "xor"
    mode = "many_to_many"
    metric_name = "accuracy_predictable"
    higher_is_better = True

    def __init__(self, triples: int = 10, head: str = "sigmoid_bce", held_out: float = 0.2) -> None:
        self.triples = check_int("triples", triples, minimum=1)
        self.head = check_choice("head", head, ("sigmoid_bce", "sigmoid_se"))
        self.held_out = check_held_out(held_out)
        super().__init__(triples=self.triples, head=self.head, held_out=self.held_out)
        self.input_size, self.output_size = 1, 1
        self.length = 3 * self.triples - 1
        self._check_split("triples")

    @property
    def predictable_steps(self) -> np.ndarray:
        """(T,) bool: the input steps whose next bit is the xor of the two bits before it."""
        return np.arange(self.length) % 3 == 1

    @property
    def input_count(self) -> int:
        """Every (a, b) of the triples: the stream's last bit is an xor, not in X."""
        return 4**self.triples

    def _all_inputs(self) -> np.ndarray:
        coins = every_sequence(2, 2 * self.triples)
        return self._stream(coins[0::2], coins[1::2]).X

    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        a, b = rng.integers(0, 2, size=(2, self.triples, count))
        return self._stream(a, b)

    def _stream(self, a: np.ndarray, b: np.ndarray) -> Batch:
        """(triples, B) coins a and b -> the batch of their streams."""
        stream = np.stack([a, b, a ^ b], axis=1).reshape(3 * self.triples, a.shape[1]).astype(np.float64)
        return Batch(X=stream[:-1, :, None], Y=stream[1:, :, None])

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        correct = ((self._check_prediction(Y_hat, batch) >= 0.5) == (batch.Y >= 0.5))[:, :, 0]
        return {
            "accuracy_predictable": float(np.mean(correct[self.predictable_steps])),
            "accuracy_all": float(np.mean(correct)),
        }

    def chance(self) -> dict[str, float]:
        return {"accuracy_predictable": 0.5, "accuracy_all": 0.5}

    def best_achievable(self) -> dict[str, float]:
        """Accuracies of the optimal predictor (exact xor on predictable steps, a coin elsewhere)."""
        predictable_fraction = self.triples / self.length
        return {"accuracy_predictable": 1.0, "accuracy_all": (1.0 + predictable_fraction) / 2.0}


class BitSum(HeldOutSplit):
    """Count the ones among length fair bits, read out after the last step (note 001, section 2).

    X (T, B, 1) bits, Y (B, 1) their count; many_to_one with identity_mse. A linear RNN solves it exactly
    (W_xh = 1, W_hh = 1, W_hy = 1, zero biases: h_T is the count).
    held_out: the fraction of all 2**length bit sequences kept out of training (harness.tasks.held_out):
    `sample` draws only the others and `validation_set` only these, the same for every seed; 0 trains and
    validates on all sequences.
    Metrics: accuracy (fraction with |y_hat - y| < 0.5, the task metric), mse. Solved: accuracy >= 0.99.
    Chance (best constant predictions on the validated inputs): over all inputs mse T / 4 (predicting the mean
    T / 2; the count is Binomial(T, 1/2)) and accuracy C(T, floor(T / 2)) / 2**T (predicting the most likely
    count). With held_out > 0 the validation set holds the held-out part only, whose counts are not exactly
    binomial (at T = 8 its 46 sequences give mse 2.74, accuracy 0.26): up to ENUMERATION_LIMIT inputs chance
    is computed exactly on that part (the variance of its counts, the share of its most frequent count).
    """

    name = "bit_sum"
    mode = "many_to_one"
    metric_name = "accuracy"
    higher_is_better = True

    def __init__(self, length: int = 8, held_out: float = 0.2) -> None:
        self.length = check_int("length", length, minimum=1)
        self.held_out = check_held_out(held_out)
        super().__init__(length=self.length, held_out=self.held_out)
        self.input_size, self.output_size, self.head = 1, 1, "identity_mse"
        self._check_split("length")

    @property
    def input_count(self) -> int:
        return 2**self.length

    def _all_inputs(self) -> np.ndarray:
        return every_sequence(2, self.length)[:, :, None].astype(np.float64)

    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        X = rng.integers(0, 2, size=(self.length, count, 1)).astype(np.float64)
        return Batch(X=X, Y=X.sum(axis=0))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        error = self._check_prediction(Y_hat, batch) - batch.Y
        return {"accuracy": float(np.mean(np.abs(error) < 0.5)), "mse": float(np.mean(error**2))}

    def chance(self) -> dict[str, float]:
        if self.held_out == 0 or self.input_count > ENUMERATION_LIMIT:
            return {
                "accuracy": math.comb(self.length, self.length // 2) / 2.0**self.length,
                "mse": self.length / 4.0,
            }
        every = self._all_inputs()
        counts = every[:, held_out_inputs(every, self.held_out), 0].sum(axis=0).astype(np.int64)
        return {"accuracy": float(np.bincount(counts).max() / counts.size), "mse": float(np.var(counts))}
