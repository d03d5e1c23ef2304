"""Weight initialisations. Every draw comes from the `np.random.Generator` passed in.

Draws are made in float64 and cast afterwards, so float32 and float64 models with the same seed start from
the same (rounded) weights. Biases are zeros (set by the layers).
"""

from __future__ import annotations

import numpy as np

INITS = ("uniform", "glorot", "orthogonal", "identity")


def check_init(argument: str, name: str) -> str:
    """Validate an init name for constructor argument `argument` ("init" or "recurrent_init")."""
    if name not in INITS:
        raise ValueError(f"{argument} must be one of {list(INITS)}, got {name!r}")
    return name


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    big, small = max(rows, cols), min(rows, cols)
    q, r = np.linalg.qr(rng.standard_normal((big, small)))
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # sign fix makes the distribution uniform (Haar)
    return q if rows >= cols else q.T


def input_matrix(rng: np.random.Generator, init: str, rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """A non-recurrent weight matrix (rows, cols) in batch-row convention (x @ W).

    "uniform": U(-1, 1) as in note 000; "glorot": U(-s, s), s = sqrt(6 / (rows + cols)); "orthogonal":
    semi-orthogonal; "identity" applies to recurrent matrices only, so input matrices fall back to glorot.
    """
    if init == "uniform":
        w = rng.uniform(-1.0, 1.0, (rows, cols))
    elif init == "orthogonal":
        w = _orthogonal(rng, rows, cols)
    else:
        limit = np.sqrt(6.0 / (rows + cols)) if rows + cols > 0 else 0.0
        w = rng.uniform(-limit, limit, (rows, cols))
    return w.astype(dtype)


def rescale(w: np.ndarray, spectral_radius: float | None, max_singular_value: float | None) -> np.ndarray:
    """Scale a float64 matrix so its spectral radius (square only) or largest singular value hits a target."""
    if spectral_radius is not None:
        current = np.max(np.abs(np.linalg.eigvals(w)))
        if current == 0:
            raise ValueError("spectral_radius cannot be set: the initial recurrent matrix is nilpotent/zero")
        w = w * (spectral_radius / current)
    if max_singular_value is not None:
        current = np.linalg.norm(w, 2)
        if current == 0:
            raise ValueError("max_singular_value cannot be set: the initial recurrent matrix is zero")
        w = w * (max_singular_value / current)
    return w


def recurrent_matrix(
    rng: np.random.Generator,
    init: str,
    rows: int,
    cols: int,
    dtype: np.dtype,
    spectral_radius: float | None = None,
    max_singular_value: float | None = None,
) -> np.ndarray:
    """A recurrent matrix (rows, cols), "identity" allowed (IRNN, square only), then optionally rescaled."""
    if init == "identity":
        if rows != cols:
            raise ValueError(f"recurrent_init 'identity' needs a square recurrent matrix, "
                             f"got ({rows}, {cols})")
        w = np.eye(rows)
    else:
        w = input_matrix(rng, init, rows, cols, np.dtype(np.float64))
    if spectral_radius is not None and rows != cols:
        raise ValueError(f"spectral_radius needs a square recurrent matrix, got ({rows}, {cols})")
    return rescale(w, spectral_radius, max_singular_value).astype(dtype)
