"""Finite-difference gradient checking shared by the network tests."""

from __future__ import annotations

import numpy as np

EPS = 1e-5  # central-difference step: truncation error O(EPS^2), round-off O(1e-16 / EPS)
TOL = 1e-6  # the relative error every analytic gradient must reach in float64


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-12))


def numerical_grads(model, X, Y, mask=None) -> dict[str, np.ndarray]:
    """Central differences of model.loss with respect to every entry of every parameter."""
    out = {}
    for name, p in model.params.items():
        fd = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + EPS
            plus = model.loss(X, Y, mask)
            p[i] = old - EPS
            minus = model.loss(X, Y, mask)
            p[i] = old
            fd[i] = (plus - minus) / (2 * EPS)
        out[name] = fd
    return out
