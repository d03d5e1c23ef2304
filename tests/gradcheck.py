"""Finite-difference gradient checking shared by the network tests."""

from __future__ import annotations

import numpy as np

EPS = 1e-5  # central-difference step: truncation error O(EPS^2), round-off O(1e-16 / EPS)
TOL = 1e-6  # the relative error every analytic gradient must reach in float64


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-12))


def finite_difference(f, array: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of array (perturbed in place)."""
    out = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        old = array[i]
        array[i] = old + EPS
        plus = f()
        array[i] = old - EPS
        minus = f()
        array[i] = old
        out[i] = (plus - minus) / (2 * EPS)
    return out


def numerical_grads(model, X, Y, mask=None) -> dict[str, np.ndarray]:
    """Central differences of model.loss with respect to every entry of every parameter."""
    return {name: finite_difference(lambda: model.loss(X, Y, mask), p) for name, p in model.params.items()}
