"""Hidden-unit activations g and their derivatives expressed through the output h = g(a).

Expressing g'(a) through h lets BPTT keep only the hidden states (T, B, H) and no pre-activations.
All functions work in place on the array they are given, so the recurrent loop allocates nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")


def check_activation(name: str) -> str:
    """Return `name` if it is a known activation, else raise ValueError naming the allowed ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {name!r}")
    return name


def activate_(name: str, a: np.ndarray) -> np.ndarray:
    """Overwrite the pre-activations `a` (any shape) with g(a) and return `a`."""
    return activate(name, a, out=a)


def activate(name: str, a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write g(a) to `out` (a's shape: `a` itself, or an array sharing no memory with it) and return `out`."""
    if name == "tanh":
        np.tanh(a, out=out)
    elif name == "sigmoid":
        # 1 / (1 + exp(-a)) keeps the relative precision of small values, which (1 + tanh(a / 2)) / 2 loses
        # (relative error 1e-11 at a = -12 in float64, 3e-3 in float32), and is faster in float64. exp(-a)
        # overflows to inf for a < -709 (float64) / -88 (float32), giving the right 0: callers that may meet
        # such values run it under np.errstate(over="ignore").
        sigmoid_from_negated(np.negative(a, out=out), out=out)
    elif name == "relu":
        np.maximum(a, 0.0, out=out)
    elif out is not a:
        np.copyto(out, a)
    return out


def activation_function(name: str) -> Callable[..., np.ndarray]:
    """g as a function f(a, out=out) with activate's contract: np.tanh itself for tanh, so that a loop calling
    it per step pays for one ufunc call only."""
    return np.tanh if name == "tanh" else functools.partial(activate, name)


def sigmoid_from_negated(minus_a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """sigmoid(a) = 1 / (1 + exp(-a)) from -a, written to `out` (minus_a itself, or an array sharing no memory
    with it); returns `out`. For callers that get -a for free (a product with negated weights: negation is
    exact, so the gates are bit for bit those of activate("sigmoid", a))."""
    return np.reciprocal(sigmoid_denominator_from_negated(minus_a, out=out), out=out)


def sigmoid_denominator_from_negated(minus_a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """1 + exp(-a), the denominator of sigmoid(a), from -a, written to `out` (as sigmoid_from_negated);
    returns `out`. A caller that only multiplies by sigmoid(a) divides by it instead: one rounding instead
    of two (x / d is correctly rounded, x * (1 / d) is not) and no reciprocal pass. inf for a < -709
    (float64) / -88 (float32), where x / inf = 0 is right."""
    np.exp(minus_a, out=out)
    out += 1.0
    return out


def derivative_from_output(name: str, h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """g'(a) computed from h = g(a), written to `out` (a new array of h's shape and dtype when None; out must
    not share memory with h). No temporaries."""
    out = np.empty_like(h) if out is None else out
    if name == "identity":
        out.fill(1.0)
    elif name == "tanh":
        np.multiply(h, h, out=out)
        np.subtract(1.0, out, out=out)
    elif name == "sigmoid":
        np.subtract(1.0, h, out=out)
        out *= h
    else:
        np.greater(h, 0, out=out)
    return out
