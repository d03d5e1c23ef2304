"""Symbol-memory tasks: the copy memory problem (many_to_many) and sequence reversal (encoder_decoder)."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import ClassVar

import numpy as np

from harness.tasks.base import Batch, check_int, cross_entropy, one_hot
from harness.tasks.held_out import HeldOutSplit, check_held_out, every_sequence


class _SymbolSequences(HeldOutSplit):
    """A task whose input is made of SYMBOLS (the name of the parameter that counts them) symbols drawn
    uniformly from n_symbols: its n_symbols**SYMBOLS inputs are one per symbol sequence (_batch_of)."""

    n_symbols: int
    SYMBOLS: ClassVar[str]

    @abstractmethod
    def _batch_of(self, symbols: np.ndarray) -> Batch:
        """(SYMBOLS, B) symbols -> their batch."""

    @property
    def input_count(self) -> int:
        return self.n_symbols ** getattr(self, self.SYMBOLS)

    def _all_inputs(self) -> np.ndarray:
        return self._batch_of(every_sequence(self.n_symbols, getattr(self, self.SYMBOLS))).X

    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        return self._batch_of(rng.integers(0, self.n_symbols, size=(getattr(self, self.SYMBOLS), count)))


class Copy(_SymbolSequences):
    """The copy memory problem (Arjovsky, Shah & Bengio 2016).

    Alphabet of the inputs (D = n_symbols + 2): symbols 0 .. n_symbols - 1, blank n_symbols, marker
    n_symbols + 1. With L = copy_length and total length T_total = delay + 2L, the input is L symbols drawn
    uniformly, delay - 1 blanks, the marker, then L blanks. The targets (O = n_symbols + 1: the symbols and
    the blank; the marker is never a target) are blanks for the first delay + L steps and then the L symbols.
    Every step carries a target (mask None). Defaults give Arjovsky's T + 20 steps with 8 symbols.
    held_out: the fraction of all n_symbols**copy_length inputs kept out of training (harness.tasks.held_out),
    0 by default: the default 8**10 inputs hardly repeat (a validation sequence is among 64,000 training draws
    with probability 6e-5), but at copy_length=5 it is 86%.
    Metrics: cross_entropy (mean over all T_total steps, the task metric), recall_accuracy (argmax accuracy on
    the L recall steps), accuracy (all steps). Solved: recall_accuracy >= 0.99.
    Chance (blank with certainty until the recall, then uniform over the symbols): cross_entropy
    L ln(n_symbols) / T_total, recall_accuracy 1 / n_symbols.
    """

    name = "copy"
    SYMBOLS = "copy_length"
    mode = "many_to_many"
    metric_name = "cross_entropy"
    higher_is_better = False

    def __init__(self, delay: int = 100, n_symbols: int = 8, copy_length: int = 10, held_out: float = 0.0
                 ) -> None:
        self.delay = check_int("delay", delay, minimum=1)
        self.n_symbols = check_int("n_symbols", n_symbols, minimum=2)
        self.copy_length = check_int("copy_length", copy_length, minimum=1)
        self.held_out = check_held_out(held_out)
        super().__init__(delay=self.delay, n_symbols=self.n_symbols, copy_length=self.copy_length,
                         held_out=self.held_out)
        self.blank, self.marker = self.n_symbols, self.n_symbols + 1
        self.input_size, self.output_size, self.head = self.n_symbols + 2, self.n_symbols + 1, "softmax_ce"
        self.length = self.delay + 2 * self.copy_length
        self._check_split(self.SYMBOLS)

    @property
    def recall_start(self) -> int:
        """First step whose target is a recalled symbol (the step after the marker)."""
        return self.delay + self.copy_length

    def _batch_of(self, symbols: np.ndarray) -> Batch:
        """(copy_length, B) symbols to copy -> their batch."""
        inputs = np.full((self.length, symbols.shape[1]), self.blank)
        inputs[: self.copy_length] = symbols
        inputs[self.recall_start - 1] = self.marker
        targets = np.full((self.length, symbols.shape[1]), self.blank)
        targets[self.recall_start :] = symbols
        return Batch(X=one_hot(inputs, self.input_size), Y=one_hot(targets, self.output_size))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        Y_hat = self._check_prediction(Y_hat, batch)
        correct = np.argmax(Y_hat, axis=-1) == np.argmax(batch.Y, axis=-1)
        return {
            "cross_entropy": float(np.mean(cross_entropy(Y_hat, batch.Y))),
            "recall_accuracy": float(np.mean(correct[self.recall_start :])),
            "accuracy": float(np.mean(correct)),
        }

    solved_metric = "recall_accuracy"  # the symbols to recall: cross_entropy also scores the blanks

    def chance(self) -> dict[str, float]:
        return {
            "cross_entropy": self.copy_length * math.log(self.n_symbols) / self.length,
            "recall_accuracy": 1.0 / self.n_symbols,
        }


class Reversal(_SymbolSequences):
    """Read a sequence of symbols, then emit it reversed (encoder_decoder).

    X (T_in, B, D): length one-hot symbols drawn uniformly from n_symbols; with delimiter=True (default) an
    end-of-input step follows (D = n_symbols + 1, T_in = length + 1), with delimiter=False T_in = length and
    D = n_symbols. Y (length, B, n_symbols): the input symbols in reverse order, so output_length = length;
    every output step carries a target (mask None). softmax_ce.
    held_out: the fraction of all n_symbols**length inputs kept out of training (harness.tasks.held_out), 0 by
    default: the default 8**10 inputs hardly repeat (probability 6e-5 among 64,000 training draws), but at
    length=5 a validation sequence is among them with probability 86%.
    Metrics: sequence_accuracy (all symbols right, the task metric), symbol_accuracy, cross_entropy (mean over
    output steps). Solved: sequence_accuracy >= 0.99.
    Chance (uniform guessing): symbol_accuracy 1 / n_symbols, sequence_accuracy n_symbols**-length,
    cross_entropy ln(n_symbols).
    """

    name = "reversal"
    SYMBOLS = "length"
    mode = "encoder_decoder"
    metric_name = "sequence_accuracy"
    higher_is_better = True

    def __init__(self, length: int = 10, n_symbols: int = 8, delimiter: bool = True, held_out: float = 0.0
                 ) -> None:
        self.length = check_int("length", length, minimum=1)
        self.n_symbols = check_int("n_symbols", n_symbols, minimum=2)
        if not isinstance(delimiter, bool | np.bool_):
            raise ValueError(f"delimiter must be True or False, got {delimiter!r}")
        self.delimiter = bool(delimiter)
        self.held_out = check_held_out(held_out)
        super().__init__(length=self.length, n_symbols=self.n_symbols, delimiter=self.delimiter,
                         held_out=self.held_out)
        self.input_size = self.n_symbols + int(self.delimiter)
        self.output_size, self.head = self.n_symbols, "softmax_ce"
        self.output_length = self.length
        self._check_split(self.SYMBOLS)

    def _batch_of(self, symbols: np.ndarray) -> Batch:
        """(length, B) symbols -> their batch."""
        if self.delimiter:
            inputs = np.concatenate([symbols, np.full((1, symbols.shape[1]), self.n_symbols)])
        else:
            inputs = symbols
        return Batch(X=one_hot(inputs, self.input_size), Y=one_hot(symbols[::-1], self.output_size))

    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        Y_hat = self._check_prediction(Y_hat, batch)
        correct = np.argmax(Y_hat, axis=-1) == np.argmax(batch.Y, axis=-1)
        return {
            "sequence_accuracy": float(np.mean(np.all(correct, axis=0))),
            "symbol_accuracy": float(np.mean(correct)),
            "cross_entropy": float(np.mean(cross_entropy(Y_hat, batch.Y))),
        }

    def chance(self) -> dict[str, float]:
        return {
            "sequence_accuracy": float(self.n_symbols) ** -self.length,
            "symbol_accuracy": 1.0 / self.n_symbols,
            "cross_entropy": math.log(self.n_symbols),
        }
