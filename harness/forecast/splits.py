"""Time-ordered train/validation/test splits (by fraction or by label: date or index), one-step-ahead windows
and training-only normalisation.

No leakage: the split keeps time order (train before validation before test), windows whose targets lie in
a later part only look back into earlier parts, and Normalizer statistics come from the training part alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.tasks.base import check_float, check_int


@dataclass(frozen=True)
class Split:
    """values[:train_end] is train, values[train_end:val_end] val, values[val_end:] test (all (N_part,))."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_end: int
    val_end: int

    @property
    def bounds(self) -> dict[str, tuple[int, int]]:
        """Half-open index range of each part in the full series."""
        n = self.val_end + len(self.test)
        return {
            "train": (0, self.train_end),
            "val": (self.train_end, self.val_end),
            "test": (self.val_end, n),
        }


def _as_series(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be a 1-D series of shape (N,), got shape {values.shape}")
    return values


def split_series(values: np.ndarray, train: float = 0.6, val: float = 0.2, test: float = 0.2) -> Split:
    """Split (N,) values in time order into fractions train, val, test (summing to 1; val may be 0).

    Part sizes are round(train * N) and round(val * N); the test part takes the rest. Train and test must each
    get at least one point.
    """
    values = _as_series(values)
    fractions = {
        "train": check_float("train", train, minimum=0.0, strict=True),
        "val": check_float("val", val, minimum=0.0),
        "test": check_float("test", test, minimum=0.0, strict=True),
    }
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(f"train + val + test must equal 1, got {fractions}")
    n = len(values)
    train_end = int(np.floor(fractions["train"] * n + 0.5))
    val_end = train_end + int(np.floor(fractions["val"] * n + 0.5))
    if train_end < 1 or val_end >= n:
        raise ValueError(f"values must be long enough to give train and test at least one point, got N={n}")
    return Split(
        train=values[:train_end].copy(),
        val=values[train_end:val_end].copy(),
        test=values[val_end:].copy(),
        train_end=train_end,
        val_end=val_end,
    )


def make_windows(values: np.ndarray, window: int, start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-step-ahead supervised pairs from (N,) values: X (M, window), y (M,) with M = N - start.

    Row i predicts y[i] = values[start + i] from X[i] = values[start + i - window : start + i]. start defaults
    to window (every target with a full window). To score a later part without leakage, pass the series up to
    the end of that part and start at the part's first index: targets are then all in that part and the inputs
    only look back. For an RNN, X.T[:, :, None] is the (window, M, 1) time-major input.
    """
    values = _as_series(values)
    window = check_int("window", window, minimum=1, maximum=len(values) - 1)
    start = window if start is None else check_int("start", start, minimum=window, maximum=len(values) - 1)
    X = np.lib.stride_tricks.sliding_window_view(values[:-1], window)[start - window :]
    return np.ascontiguousarray(X), values[start:].copy()


class Normalizer:
    """Standardise with the mean and standard deviation of the data given to fit (the training part only)."""

    def __init__(self) -> None:
        self.mean: float | None = None
        self.std: float | None = None

    def fit(self, train: np.ndarray) -> Normalizer:
        """Learn mean and std (ddof 0) from (N_tr,) training values; a constant series raises ValueError."""
        train = _as_series(train)
        std = float(np.std(train))
        if not std > 0.0:
            raise ValueError("train must not be constant: its standard deviation is 0")
        self.mean, self.std = float(np.mean(train)), std
        return self

    def _fitted(self) -> tuple[float, float]:
        if self.mean is None or self.std is None:
            raise ValueError("Normalizer must be fit on the training part before transform")
        return self.mean, self.std

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(values - mean) / std, any shape."""
        mean, std = self._fitted()
        return (np.asarray(values, dtype=np.float64) - mean) / std

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """values * std + mean, any shape: predictions back in the series' units."""
        mean, std = self._fitted()
        return np.asarray(values, dtype=np.float64) * std + mean


def as_label(labels: np.ndarray, value: object, field: str) -> np.generic:
    """value as a label comparable with labels (a date for datetime64 labels, else a number); field names
    the bound in the error."""
    try:
        if np.issubdtype(labels.dtype, np.datetime64):
            return np.datetime64(str(value)).astype(labels.dtype)
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise TypeError
        return np.asarray(value, dtype=labels.dtype if np.issubdtype(labels.dtype, np.integer) else None)[()]
    except (TypeError, ValueError):
        kind = "a date" if np.issubdtype(labels.dtype, np.datetime64) else "a number (index label)"
        raise ValueError(f"{field} bounds must be {kind}, got {value!r}") from None


def split_by_labels(values: np.ndarray, labels: np.ndarray, train: Sequence[object],
                    val: Sequence[object] | None, test: Sequence[object]) -> tuple[int, int, Split]:
    """Split (N,) values by inclusive label ranges [first, last] of its (N,) increasing labels.

    Parts must follow each other without a gap (val, if given, starts right after train; test right after
    val or train). Returns (lo, hi, split): the points used are values[lo:hi] (before train's first label and
    after test's last label nothing is used) and split indexes values[lo:hi].
    """
    values, labels = _as_series(values), np.asarray(labels)
    if labels.shape != values.shape:
        raise ValueError(f"labels must have the shape of values {values.shape}, got {labels.shape}")
    bounds = {}
    for part, pair in (("train", train), ("val", val), ("test", test)):
        if pair is None:
            continue
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"split.{part} must be a pair [first, last] of labels or a fraction, "
                             f"got {pair!r}")
        first, last = (as_label(labels, bound, f"split.{part}") for bound in pair)
        lo, hi = int(np.searchsorted(labels, first, "left")), int(np.searchsorted(labels, last, "right"))
        if hi <= lo:
            raise ValueError(f"split.{part}={list(pair)} selects no point: the labels run from "
                             f"{labels[0]} to {labels[-1]}")
        bounds[part] = (lo, hi)
    previous = "train"
    for part in ("val", "test"):
        if part in bounds:
            if bounds[part][0] != bounds[previous][1]:
                expected = labels[bounds[previous][1]] if bounds[previous][1] < len(labels) else "(none left)"
                raise ValueError(f"split.{part} must start right after split.{previous} ends, at label "
                                 f"{expected}, got {labels[bounds[part][0]]}")
            previous = part
    lo, train_end = bounds["train"]
    val_end = bounds.get("val", (train_end, train_end))[1]
    hi = bounds["test"][1]
    used = values[lo:hi]
    split = Split(used[: train_end - lo].copy(), used[train_end - lo : val_end - lo].copy(),
                  used[val_end - lo :].copy(), train_end - lo, val_end - lo)
    return lo, hi, split


def split_from_spec(values: np.ndarray, labels: np.ndarray, spec: Mapping[str, object]
                    ) -> tuple[int, int, Split]:
    """The split a config asks for: fractions {train, val, test} (split_series, all points used) or label
    ranges {train: [first, last], val: [first, last] | None, test: [first, last]} (split_by_labels).

    Returns (lo, hi, split) as split_by_labels does.
    """
    unknown = sorted(set(spec) - {"train", "val", "test"})
    if unknown:
        raise ValueError(f"unknown split key(s) {unknown}; allowed: ['train', 'val', 'test']")
    if "train" not in spec or "test" not in spec:
        raise ValueError(f"split must give train and test, got {dict(spec)}")
    ranges = [isinstance(v, Sequence) and not isinstance(v, str) for v in spec.values() if v is not None]
    if all(ranges):
        return split_by_labels(values, labels, spec["train"], spec.get("val"), spec["test"])
    if any(ranges):
        raise ValueError(f"split parts must all be fractions or all be label ranges [first, last], "
                         f"got {dict(spec)}")
    fractions = {part: (0.0 if spec.get(part) is None else spec[part]) for part in ("train", "val", "test")}
    return 0, len(values), split_series(values, **fractions)
