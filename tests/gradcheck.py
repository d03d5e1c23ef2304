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


def assert_grads_match(model, X, Y, mask) -> None:
    """model.loss_and_grads agrees with central differences for every parameter, relative error < TOL."""
    _, grads = model.loss_and_grads(X, Y, mask)
    numeric = numerical_grads(model, X, Y, mask)
    assert list(grads) == list(model.params)
    for name, g in grads.items():
        assert g.shape == model.params[name].shape
        assert relative_error(g, numeric[name]) < TOL, name


def make_data(mode: str, head: str, masked: bool, seed: int = 0, *, T: int, B: int, D: int, K: int, L: int):
    """Random (X, Y, mask) for a sequence mode and head: X (T or 1, B, D), Y as the mode wants (K outputs,
    L decoder steps); masked: three variable lengths (full, shorter, 2) and a step without target inside the
    first sequence."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((1 if mode == "one_to_many" else T, B, D))
    out_steps = {"many_to_many": T, "many_to_one": None}.get(mode, L)
    shape = (B, K) if out_steps is None else (out_steps, B, K)
    Y = np.eye(K)[rng.integers(0, K, shape[:-1])] if head == "softmax_ce" else rng.random(shape)
    mask = None
    if masked:
        steps = T if mode in ("many_to_many", "many_to_one") else L
        mask = (np.arange(steps)[:, None] < np.array([steps, steps - 2, 2])[None]).astype(float)
        if mode != "many_to_one":
            mask[1, 0] = 0.0
    return X, Y, mask
