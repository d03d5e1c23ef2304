"""Early stopping on the validation task metric, with the best parameters kept."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class EarlyStopping:
    """Counts validation checks without improvement; `update` says whether to stop.

    A check improves when its value beats the best so far by more than min_delta (above it when
    higher_is_better, else below; NaN never improves). After `patience` checks in a row without improvement
    the run stops. best_params holds copies of the parameters at the best check.
    """

    def __init__(self, patience: int, min_delta: float, higher_is_better: bool) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.higher_is_better = higher_is_better
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_checks = 0
        self.best_params: dict[str, np.ndarray] = {}

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.higher_is_better:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, step: int, params: dict[str, np.ndarray]) -> bool:
        """Record the check at step; True when the run should stop now."""
        if self._improves(value):
            self.best, self.best_step, self.bad_checks = value, step, 0
            self.best_params = {k: v.copy() for k, v in params.items()}
        else:
            self.bad_checks += 1
        return self.bad_checks >= self.patience

    def reason(self, metric: str, step: int) -> str:
        """Why the run stopped at step, for the run's `stopped_reason` tag."""
        return (f"early stopping at step {step}: {metric} did not improve by more than {self.min_delta:g} in "
                f"{self.patience} validation checks; best {self.best:.6g} at step {self.best_step}")

    def state(self) -> dict[str, Any]:
        """JSON-safe counters (best_params travel separately, as arrays)."""
        return {"best": self.best, "best_step": self.best_step, "bad_checks": self.bad_checks}

    def restore(self, state: dict[str, Any], best_params: dict[str, np.ndarray]) -> None:
        self.best, self.best_step, self.bad_checks = state["best"], state["best_step"], state["bad_checks"]
        self.best_params = {k: v.copy() for k, v in best_params.items()}
