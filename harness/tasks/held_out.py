"""The held-out split of a discrete task's inputs: a fixed fraction of all input sequences that training never
draws and validation draws alone, so that validation scores inputs the network never trained on.

Which inputs are held out is a pseudo-random function of the input sequence's bits alone, the same for every
seed and every stream: X (T, D) of 0/1 values is packed channel by channel, earliest step in the lowest bit,
into 64-bit words w_0 .. w_{n-1} (ceil(T / 64) words per channel; a one-word input is paired with a zero
word), folded as h = w_0, then h = mix((h + 1) * 0x9E3779B97F4A7C15 + w_k) for k = 1 .. n - 1 with mix
SplitMix64's finaliser, and held out when h's top 53 bits, read as a number in [0, 1), are below the fraction.
For two words (a, b), binary addition's operands, this is SplitMix64 of (a + 1) * golden + b.

A task with the split subclasses HeldOutSplit: it draws candidate inputs uniformly (_candidates), and sample
(training) and validation_set keep only those of their part, by rejection.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from harness.tasks.base import Batch, SequenceTask, check_int

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_WORD_WEIGHTS = np.uint64(1) << np.arange(64, dtype=np.uint64)

# Input spaces of up to this many sequences are enumerated when a task is built, to refuse a held_out that
# leaves one part empty.
ENUMERATION_LIMIT = 1 << 16
# Rejection sampling gives up after MAX_ROUNDS rounds. Each round draws enough candidates to fill the batch
# at the part's nominal share, but at most ROUND_FACTOR times the sequences still missing or CANDIDATE_BYTES
# of X, whichever is more, so that a tiny fraction costs bounded memory and time: a part that holds less than
# about one in MAX_ROUNDS * max(ROUND_FACTOR, CANDIDATE_BYTES / bytes of a sequence) candidates (an empty one)
# gives up after about a second. Parts of shares 1/56 and above never reach the limits.
MAX_ROUNDS = 64
ROUND_FACTOR = 64
CANDIDATE_BYTES = 1 << 22


def check_held_out(value: object) -> float:
    """value as a float in [0, 1), else ValueError naming held_out."""
    if (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
            or not 0.0 <= float(value) < 1.0):
        raise ValueError(f"held_out must be a fraction in [0, 1), got {value!r}")
    return float(value)


def input_words(X: np.ndarray) -> np.ndarray:
    """(T, B, D) of 0/1 values -> (B, D * ceil(T / 64)) uint64: each sequence's bits, channel by channel,
    64 steps a word, the earliest step in the lowest bit."""
    if not np.all((X == 0) | (X == 1)):
        raise ValueError("the held-out split keys on inputs of 0/1 values only")
    T, B, D = X.shape
    chunks = -(-T // 64)
    bits = np.zeros((B, D, chunks * 64), dtype=np.uint64)
    bits[:, :, :T] = X.transpose(1, 2, 0)
    words = (bits.reshape(B, D, chunks, 64) * _WORD_WEIGHTS).sum(axis=-1, dtype=np.uint64)
    return words.reshape(B, D * chunks)


def every_sequence(n_symbols: int, length: int) -> np.ndarray:
    """(length, n_symbols**length) int64: every sequence of length symbols in 0 .. n_symbols - 1 once, the
    first symbol varying fastest."""
    codes = np.arange(n_symbols**length, dtype=np.int64)
    return codes[None, :] // n_symbols ** np.arange(length, dtype=np.int64)[:, None] % n_symbols


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (a bijection)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def held_out_inputs(X: np.ndarray, fraction: float) -> np.ndarray:
    """(T, B, D) 0/1 inputs -> (B,) bool: whether each sequence lies in the held-out part of size fraction."""
    words = input_words(X)
    if words.shape[1] == 1:
        words = np.concatenate([words, np.zeros_like(words)], axis=1)
    h = words[:, 0]
    for word in words[:, 1:].T:
        h = _mix((h + np.uint64(1)) * _GOLDEN + word)
    return (h >> np.uint64(11)).astype(np.float64) < fraction * 2.0**53


def _batch_axis(mode: str) -> int:
    """The axis of Y that indexes sequences: (B, O) targets for many_to_one, (T, B, O) otherwise."""
    return 0 if mode == "many_to_one" else 1


class HeldOutSplit(SequenceTask):
    """A discrete task whose held_out fraction of all inputs is never drawn for training (see the module).

    A subclass validates held_out with check_held_out, sets self.held_out, implements _candidates,
    input_count and _all_inputs, and calls _check_split at the end of __init__. Its masks are None.
    """

    held_out: float
    # Share of the candidates asked of _candidates that it returns (binary addition keeps the sums that fit).
    CANDIDATE_SHARE: ClassVar[float] = 1.0

    @abstractmethod
    def _candidates(self, count: int, rng: np.random.Generator) -> Batch:
        """About CANDIDATE_SHARE * count sequences drawn uniformly from all inputs, in a batch."""

    @property
    @abstractmethod
    def input_count(self) -> int:
        """The number of distinct input sequences (each equally likely)."""

    @abstractmethod
    def _all_inputs(self) -> np.ndarray:
        """X (T, input_count, D): every input sequence once (only called up to ENUMERATION_LIMIT of them)."""

    def _check_split(self, size: str) -> None:
        """ValueError when held_out leaves the training or the held-out part of an enumerable input space
        empty; size names the parameter that sets the space (e.g. 'bits')."""
        if self.held_out == 0 or self.input_count > ENUMERATION_LIMIT:
            return
        held = held_out_inputs(self._all_inputs(), self.held_out)
        if held.all() or not held.any():
            raise ValueError(f"held_out={self.held_out!r} leaves one part of the {self.input_count} inputs "
                             f"of {size}={getattr(self, size)} empty; use a larger {size} or held_out=0")

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Training sequences: inputs outside the held-out part (all inputs with held_out=0)."""
        return self._draw(batch_size, rng, False if self.held_out > 0 else None)

    def validation_set(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Held-out inputs only, disjoint from what sample draws (all inputs with held_out=0)."""
        return self._draw(batch_size, rng, True if self.held_out > 0 else None)

    def _draw(self, batch_size: int, rng: np.random.Generator, held: bool | None) -> Batch:
        """Rejection sampling of batch_size sequences of one part (held True: held-out, False: training,
        None: all), uniform over that part; ValueError after MAX_ROUNDS rounds that did not fill it."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        part_share = 1.0 if held is None else self.held_out if held else 1.0 - self.held_out
        share = self.CANDIDATE_SHARE * part_share
        bytes_per_candidate = 8 * self.length * self.input_size
        axis = _batch_axis(self.mode)
        parts: list[Batch] = []
        missing, drawn = batch_size, 0
        for _ in range(MAX_ROUNDS):
            # Some slack where candidates are rejected, so that one round nearly always fills the batch.
            count = missing if share == 1.0 else min(
                int(missing / share) + 8, max(ROUND_FACTOR * missing, CANDIDATE_BYTES // bytes_per_candidate))
            candidates = self._candidates(count, rng)
            drawn += count
            keep = np.arange(candidates.batch_size)
            if held is not None:
                keep = np.flatnonzero(held_out_inputs(candidates.X, self.held_out) == held)
            keep = keep[:missing]
            if not parts and len(keep) == candidates.batch_size == missing:
                return candidates  # the first round's candidates are the batch (held_out=0): no copies
            parts.append(Batch(X=candidates.X[:, keep], Y=np.take(candidates.Y, keep, axis=axis)))
            missing -= len(keep)
            if missing == 0:
                if len(parts) == 1:
                    return parts[0]
                return Batch(X=np.concatenate([part.X for part in parts], axis=1),
                             Y=np.concatenate([part.Y for part in parts], axis=axis))
        part = "held-out" if held else "training"
        raise ValueError(f"held_out={self.held_out!r}: {MAX_ROUNDS} rounds of rejection sampling drew "
                         f"{batch_size - missing} of {batch_size} {part} sequences from {drawn} candidates, "
                         f"so the {part} part is (nearly) empty; use another held_out or held_out=0")
