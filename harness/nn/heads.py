"""Output heads: the output non-linearity y = out(o) and the per-position loss l(o, t), as in the contract.

- "identity_mse": y = o,          l = mean_o (y - t)^2
- "sigmoid_bce":  y = sigmoid(o), l = -sum_o [t log y + (1 - t) log(1 - y)]   (from logits, stably)
- "sigmoid_se":   y = sigmoid(o), l = sum_o (y - t)^2                         (note 000's exercise)
- "softmax_ce":   y = softmax(o), l = -sum_o t log y                          (from logits, stably)
Arrays are (..., O): the head acts on the last axis.
"""

from __future__ import annotations

import numpy as np

from .activations import activate_

HEADS = ("identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce")


def _sigmoid(o: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-o) is inf for o << 0: 1 / (1 + inf) = 0 is right
        return activate_("sigmoid", o.copy())


def _log_softmax(o: np.ndarray) -> np.ndarray:
    shifted = o - o.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def head_output(head: str, o: np.ndarray) -> np.ndarray:
    """y = out(o), shape of o."""
    if head == "identity_mse":
        return o.copy()
    if head == "softmax_ce":
        return np.exp(_log_softmax(o))
    return _sigmoid(o)


def head_losses(head: str, o: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position losses l (...,) and their gradients dl/do (..., O) for logits o and targets t (..., O)."""
    if head == "identity_mse":
        diff = o - target
        n_out = o.shape[-1]
        losses = np.einsum("...o,...o->...", diff, diff) / n_out
        diff *= 2.0 / n_out
        return losses, diff
    if head == "sigmoid_bce":
        # -[t log s(o) + (1-t) log(1-s(o))] = softplus(o) - t o, softplus(o) = max(o,0) + log1p(exp(-|o|))
        softplus = np.maximum(o, 0.0) + np.log1p(np.exp(-np.abs(o)))
        return (softplus - target * o).sum(axis=-1), _sigmoid(o) - target
    if head == "sigmoid_se":
        y = _sigmoid(o)
        diff = y - target
        return (diff * diff).sum(axis=-1), 2.0 * diff * y * (1.0 - y)
    log_y = _log_softmax(o)
    return -(target * log_y).sum(axis=-1), np.exp(log_y) * target.sum(axis=-1, keepdims=True) - target


def head_output_vjp(head: str, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/do given y = out(o) and dL/dy (both (..., O)); used where the output feeds back (Jordan)."""
    if head == "identity_mse":
        return dy
    if head == "softmax_ce":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return dy * y * (1.0 - y)
