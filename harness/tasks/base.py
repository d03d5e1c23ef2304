"""Common machinery of the synthetic sequence tasks: the Batch container, the task base class, random streams
and the argument checks shared by every task.

Shapes follow harness.nn: inputs X (T, B, D); many_to_many targets Y (T, B, O); many_to_one Y (B, O);
encoder_decoder X (T_in, B, D) and Y (T_out, B, O). A mask of None means every step carries a target
(many_to_many, encoder_decoder) or every input step is valid (many_to_one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

HEADS = ("identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce")
MODES = ("many_to_many", "many_to_one", "encoder_decoder")
STREAM_NAMES = ("train", "val", "test")
# Accuracy-based solved rules: at most one error in a hundred sequences.
SOLVED_ACCURACY = 0.99

# Probabilities are clipped before taking logs so that a confident wrong prediction costs a large but finite
# cross-entropy instead of inf.
_PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class Batch:
    """One batch of a sequence task.

    X: (T, B, D) float64 inputs. Y: targets, (T, B, O) for many_to_many, (B, O) for many_to_one,
    (T_out, B, O) for encoder_decoder. mask: None, or (T, B) / (T_out, B) float64 with 1 where a step counts.
    """

    X: np.ndarray
    Y: np.ndarray
    mask: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return int(self.X.shape[1])


def task_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for training, validation and test batches, keyed 'train', 'val', 'test'.

    Each generator comes from its own child of np.random.SeedSequence(seed), so drawing more (or larger)
    batches from one stream never changes what another stream produces: changing the test-set size leaves the
    training data bit-identical.
    """
    children = np.random.SeedSequence(check_int("seed", seed, minimum=0)).spawn(len(STREAM_NAMES))
    return {name: np.random.default_rng(child) for name, child in zip(STREAM_NAMES, children, strict=True)}


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return value as int, or raise ValueError naming the argument and the allowed range."""
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_float(name: str, value: object, *, minimum: float, strict: bool = False) -> float:
    """Return value as float, or raise ValueError naming the argument (strict: value must exceed minimum)."""
    allowed = f"a finite number {'>' if strict else '>='} {minimum}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    number = float(value)
    if not np.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return value if it is one of choices, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return str(value)


def one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    """(...) int array -> (..., size) float64 one-hot encoding."""
    return np.eye(size, dtype=np.float64)[indices]


def cross_entropy(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position categorical cross-entropy -sum_o t log p: (..., O), (..., O) -> (...)."""
    return -np.sum(targets * np.log(np.clip(probabilities, _PROBABILITY_FLOOR, 1.0)), axis=-1)


def binary_cross_entropy(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-position binary cross-entropy summed over outputs: (..., O), (..., O) -> (...)."""
    p = np.clip(probabilities, _PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR)
    return -np.sum(targets * np.log(p) + (1.0 - targets) * np.log1p(-p), axis=-1)


class SequenceTask(ABC):
    """Base class of the synthetic sequence tasks.

    A subclass sets the class attributes name, mode, metric_name, higher_is_better, fills input_size,
    output_size, head, length (the steps of X; for encoder_decoder the input's, without an end marker),
    output_length and params in __init__, and implements sample, evaluate, solved, chance.
    """

    name: ClassVar[str]
    mode: ClassVar[str]
    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    input_size: int
    output_size: int
    head: str
    length: int
    output_length: int | None = None

    def __init__(self, **params: object) -> None:
        self._params = dict(params)

    @property
    def params(self) -> dict[str, object]:
        """The task's parameters as passed to make_task (JSON-able)."""
        return dict(self._params)

    def streams(self, seed: int) -> dict[str, np.random.Generator]:
        """Independent 'train' / 'val' / 'test' generators for sample(); see task_streams."""
        return task_streams(seed)

    @abstractmethod
    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw batch_size sequences with rng; X (T, B, D) float64 and targets/mask per the mode."""

    def validation_set(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """batch_size sequences to validate on. Tasks whose sequences repeat between draws (few distinct
        inputs) draw it from a held-out part that sample never draws (harness.tasks.held_out.HeldOutSplit);
        here it is sample."""
        return self.sample(batch_size, rng)

    @abstractmethod
    def evaluate(self, Y_hat: np.ndarray, batch: Batch) -> dict[str, float]:
        """Score head outputs Y_hat (the targets' shape) on batch; the dict includes metric_name."""

    def solved(self, metrics: dict[str, float]) -> bool:
        """Whether metrics (from evaluate) meet the task's documented solved rule (solved_rule): by default
        solved_metric >= SOLVED_ACCURACY."""
        return metrics[self.solved_metric] >= SOLVED_ACCURACY

    @property
    def solved_metric(self) -> str:
        """The metric solved() tests: metric_name, unless the task's rule reads another one."""
        return self.metric_name

    @property
    def solved_rule(self) -> str:
        """What solved means, in words of the metrics (e.g. 'accuracy >= 0.99'); a task whose solved()
        reads another rule says so here."""
        return f"{self.solved_metric} >= {SOLVED_ACCURACY:g}"

    @abstractmethod
    def chance(self) -> dict[str, float]:
        """Metric values of a predictor that ignores the inputs (documented per task)."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._params.items())
        return f"{type(self).__name__}({arguments})"

    def _check_prediction(self, Y_hat: np.ndarray, batch: Batch) -> np.ndarray:
        """Y_hat as a float64 array of the targets' shape, else ValueError."""
        Y_hat = np.asarray(Y_hat, dtype=np.float64)
        if Y_hat.shape != batch.Y.shape:
            raise ValueError(f"Y_hat must have the targets' shape {batch.Y.shape}, got {Y_hat.shape}")
        return Y_hat


def categorical_metrics(Y_hat: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Argmax accuracy and mean cross-entropy: (..., O) probabilities, (..., O) one-hot targets."""
    return {
        "accuracy": float(np.mean(np.argmax(Y_hat, axis=-1) == np.argmax(Y, axis=-1))),
        "cross_entropy": float(np.mean(cross_entropy(Y_hat, Y))),
    }
