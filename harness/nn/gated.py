"""Gated recurrent cells: LSTM and GRU layers and models (batch-row convention, x_t @ W).

LSTM (Hochreiter & Schmidhuber 1997, with forget gate), gate blocks in the order i, f, g, o:
    [a_i, a_f, a_g, a_o] = x_t W_x + h_{t-1} W_h + b          W_x (D, 4H), W_h (H, 4H), b (4H,)
    i, f, o = sigmoid(a_i, a_f, a_o);  g = act(a_g)
    c_t = f * c_{t-1} + i * g;          h_t = o * act(c_t)              state (h, c); b_f starts at 1.0
GRU (Cho et al. 2014: the reset gate acts on h_{t-1} before the recurrent matmul), blocks z, r, n:
    z, r = sigmoid(x_t W_x[:, z|r] + h_{t-1} W_h[:, z|r] + b[z|r])
    n = act(x_t W_x[:, n] + (r * h_{t-1}) W_h[:, n] + b[n])              W_x (D, 3H), W_h (H, 3H), b (3H,)
    h_t = z * h_{t-1} + (1 - z) * n                                       state (h,)
`act` is the model's `activation` (tanh by default). Padding steps (valid False) carry the whole state.
`clip_hidden_delta` clips every gate's pre-activation delta dL/da element-wise at each step.

Speed: the input projections of all steps are one matmul before the time loop, the weight gradients one
matmul after it; every elementwise factor that does not depend on the backpropagated gradient is computed
for all steps at once, so the Python loop only does the recurrence.

Truncated BPTT uses gradient "bands": bands[j] holds the part of dL/d(state_t) that arrived through exactly j
steps of recurrence; each step back shifts the bands by one and drops band k-1. Full BPTT is the same sweep
with a single band that is never dropped, so both share one code path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import activate_, derivative_from_output
from .init import input_matrix, recurrent_matrix
from .layers import RecurrentLayer
from .model import RecurrentModel


def _gate_blocks(rng: np.random.Generator, layer: RecurrentLayer, blocks: int, *, init: str,
                 recurrent_init: str, spectral_radius: float | None, max_singular_value: float | None,
                 dtype: np.dtype) -> dict[str, np.ndarray]:
    """W_x (D, blocks*H) and W_h (H, blocks*H), each gate block initialised (and rescaled) on its own."""
    D, H = layer.input_size, layer.hidden_size
    W_x = np.concatenate([input_matrix(rng, init, D, H, dtype) for _ in range(blocks)], axis=1)
    W_h = np.concatenate([recurrent_matrix(rng, recurrent_init, H, H, dtype, spectral_radius,
                                           max_singular_value) for _ in range(blocks)], axis=1)
    params = {"W_x": W_x, "W_h": W_h}
    if layer.bias:
        params["b"] = np.zeros(blocks * H, dtype=dtype)
    return params


def _input_projection(params: dict[str, np.ndarray], X: np.ndarray, bias: bool) -> np.ndarray:
    """x_t W_x (+ b) for all steps at once: (T, B, G)."""
    T, B, D = X.shape
    A = (X.reshape(T * B, D) @ params["W_x"]).reshape(T, B, -1)
    if bias:
        A += params["b"]
    return A


def _previous(first: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """(T, B, H) array of the values at t-1: first (B, H) then seq[:-1]."""
    out = np.empty_like(seq)
    out[0] = first
    out[1:] = seq[:-1]
    return out


def _step_bands(bands: tuple[np.ndarray, ...], previous: tuple[np.ndarray, ...], pad: np.ndarray | None,
                truncated: bool) -> tuple[np.ndarray, ...]:
    """Move the band gradients one step back in time (see the module docstring).

    bands / previous: tuples of (n, B, H); previous[j] is what bands[j] sends to the earlier step. A padding
    row (pad (B, 1) True) keeps its bands: padding does not consume a step of recurrence.
    """
    moved = []
    for band, prev in zip(bands, previous, strict=True):
        if truncated:
            shifted = np.empty_like(prev)
            shifted[0] = 0.0
            shifted[1:] = prev[:-1]
        else:
            shifted = prev
        if pad is not None:
            np.copyto(shifted, band, where=pad)
        moved.append(shifted)
    return tuple(moved)


def _weight_grads(params: dict[str, np.ndarray], X: np.ndarray, dA: np.ndarray, bias: bool,
                  input_grad: bool) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """dX (T, B, D) (None unless input_grad) and the input-side gradients W_x, b from dL/da (T, B, G)."""
    T, B, D = X.shape
    dA2 = dA.reshape(T * B, -1)
    grads = {"W_x": X.reshape(T * B, D).T @ dA2}
    if bias:
        grads["b"] = dA2.sum(axis=0)
    dX = (dA2 @ params["W_x"].T).reshape(T, B, D) if input_grad else None
    return dX, grads


class _GatedLayer(RecurrentLayer):
    """Shared plumbing of the gated layers: state handling, band bookkeeping, padding."""

    blocks: int = 0
    state_arity: int = 1

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        return _gate_blocks(rng, self, self.blocks, init=init, recurrent_init=recurrent_init,
                            spectral_radius=spectral_radius, max_singular_value=max_singular_value,
                            dtype=dtype)

    def _initial_state(self, state0: tuple[np.ndarray, ...] | None, B: int, dtype: np.dtype
                       ) -> tuple[np.ndarray, ...]:
        if state0 is None:
            return tuple(np.zeros((B, self.hidden_size), dtype=dtype) for _ in range(self.state_arity))
        return tuple(state0)

    def _clip(self, delta: np.ndarray) -> None:
        if self.clip_hidden_delta is not None:
            np.clip(delta, -self.clip_hidden_delta, self.clip_hidden_delta, out=delta)

    def _initial_bands(self, dH: np.ndarray, d_final_state: tuple[np.ndarray, ...] | None,
                       truncation: int | None) -> tuple[tuple[np.ndarray, ...], bool]:
        T = dH.shape[0]
        truncated = truncation is not None and truncation < T
        n = truncation if truncated else 1
        bands = tuple(np.zeros((n, *dH.shape[1:]), dtype=dH.dtype) for _ in range(self.state_arity))
        if d_final_state is not None:
            for band, d in zip(bands, d_final_state, strict=True):
                band[0] += d
        return bands, truncated


class LSTMLayer(_GatedLayer):
    """One LSTM layer; params W_x (D, 4H), W_h (H, 4H), b (4H,) with gate blocks i, f, g, o."""

    blocks = 4
    state_arity = 2

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        params = super().init_params(rng, init=init, recurrent_init=recurrent_init,
                                     spectral_radius=spectral_radius, max_singular_value=max_singular_value,
                                     dtype=dtype)
        if self.bias:  # forget gate open at the start so the cell remembers (Gers et al. 2000)
            params["b"][self.hidden_size:2 * self.hidden_size] = 1.0
        return params

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, H), (h_T, c_T), cache."""
        T, B, _ = X.shape
        Hn = self.hidden_size
        W_h = params["W_h"]
        A = _input_projection(params, X, self.bias)  # becomes the gate values i, f, g, o step by step
        h0, c0 = self._initial_state(state0, B, A.dtype)
        Hs = np.empty((T, B, Hn), dtype=A.dtype)
        C = np.empty_like(Hs)
        padding = None if valid.all() else ~valid[:, :, None]
        recurrent = np.empty((B, 4 * Hn), dtype=A.dtype)
        h, c = h0, c0
        for t in range(T):
            a = A[t]
            np.matmul(h, W_h, out=recurrent)
            a += recurrent
            activate_("sigmoid", a[:, :2 * Hn])
            activate_(self.activation, a[:, 2 * Hn:3 * Hn])
            activate_("sigmoid", a[:, 3 * Hn:])
            c_new, h_new = C[t], Hs[t]
            np.multiply(a[:, Hn:2 * Hn], c, out=c_new)
            c_new += a[:, :Hn] * a[:, 2 * Hn:3 * Hn]
            np.copyto(h_new, c_new)
            activate_(self.activation, h_new)
            h_new *= a[:, 3 * Hn:]
            if padding is not None:
                np.copyto(c_new, c, where=padding[t])
                np.copyto(h_new, h, where=padding[t])
            h, c = h_new, c_new
        return Hs, (h, c), (X, A, Hs, C, h0, c0, padding)

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray, np.ndarray],
                            np.ndarray | None]:
        """dH (T, B, H) from above -> dX, grads, (dL/dh_0, dL/dc_0), dh (T, B, H) or None."""
        X, A, Hs, C, h0, c0, padding = cache
        T, B, _ = X.shape
        Hn = self.hidden_size
        gates = A.reshape(T, B, 4, Hn)
        i, f, g, o = gates[:, :, 0], gates[:, :, 1], gates[:, :, 2], gates[:, :, 3]
        tanh_c = activate_(self.activation, C.copy())
        # dL/da_gate = (dL/dc_t or dL/dh_t) * factor[gate]; factors need no gradient: build them all at once
        factors = np.empty_like(gates)
        np.multiply(g, derivative_from_output("sigmoid", i), out=factors[:, :, 0])
        np.multiply(_previous(c0, C), derivative_from_output("sigmoid", f), out=factors[:, :, 1])
        np.multiply(i, derivative_from_output(self.activation, g), out=factors[:, :, 2])
        np.multiply(tanh_c, derivative_from_output("sigmoid", o), out=factors[:, :, 3])
        h_to_c = o * derivative_from_output(self.activation, tanh_c)
        if padding is not None:
            factors *= ~padding[:, :, :, None]
        del tanh_c
        W_h_T = params["W_h"].T
        (dh_bands, dc_bands), truncated = self._initial_bands(dH, d_final_state, truncation)
        dA = factors.reshape(A.shape)  # dL/da_t overwrites factors[t], which step t no longer needs
        dh = np.empty_like(dH) if hidden_grads else None
        n = dh_bands.shape[0]
        band_deltas = np.empty((n, B, 4, Hn), dtype=A.dtype) if truncated else None
        for t in range(T - 1, -1, -1):
            # with one band the deltas are dL/da_t itself: write them straight into dA[t]
            deltas = dA[t].reshape(1, B, 4, Hn) if band_deltas is None else band_deltas
            dh_bands[0] += dH[t]
            if dh is not None:
                dh_bands.sum(axis=0, out=dh[t])
            dc_total = dc_bands + dh_bands * h_to_c[t]
            np.multiply(dc_total[:, :, None, :], factors[t, :, :3], out=deltas[:, :, :3])
            np.multiply(dh_bands, factors[t, :, 3], out=deltas[:, :, 3])
            self._clip(deltas)
            flat = deltas.reshape(n, B, 4 * Hn)
            if truncated:
                flat.sum(axis=0, out=dA[t])
            previous = (flat @ W_h_T, dc_total * f[t])
            pad = None if padding is None else padding[t]
            dh_bands, dc_bands = _step_bands((dh_bands, dc_bands), previous, pad, truncated)
        dX, grads = _weight_grads(params, X, dA, self.bias, self.input_grad)
        grads["W_h"] = h0.T @ dA[0]
        if T > 1:
            grads["W_h"] += Hs[:-1].reshape(-1, Hn).T @ dA[1:].reshape(-1, 4 * Hn)
        return dX, grads, (dh_bands.sum(axis=0), dc_bands.sum(axis=0)), dh


class GRULayer(_GatedLayer):
    """One GRU layer; params W_x (D, 3H), W_h (H, 3H), b (3H,) with gate blocks z, r, n."""

    blocks = 3
    state_arity = 1

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, H), (h_T,), cache."""
        T, B, _ = X.shape
        Hn = self.hidden_size
        W_zr, W_n = params["W_h"][:, :2 * Hn], params["W_h"][:, 2 * Hn:]
        A = _input_projection(params, X, self.bias)  # becomes the gate values z, r, n step by step
        (h0,) = self._initial_state(state0, B, A.dtype)
        Hs = np.empty((T, B, Hn), dtype=A.dtype)
        padding = None if valid.all() else ~valid[:, :, None]
        zr = np.empty((B, 2 * Hn), dtype=A.dtype)
        reset_h = np.empty((B, Hn), dtype=A.dtype)
        recurrent_n = np.empty((B, Hn), dtype=A.dtype)
        h = h0
        for t in range(T):
            a = A[t]
            np.matmul(h, W_zr, out=zr)
            a[:, :2 * Hn] += zr
            activate_("sigmoid", a[:, :2 * Hn])
            np.multiply(a[:, Hn:2 * Hn], h, out=reset_h)
            np.matmul(reset_h, W_n, out=recurrent_n)
            n = a[:, 2 * Hn:]
            n += recurrent_n
            activate_(self.activation, n)
            h_new = Hs[t]
            np.subtract(h, n, out=h_new)  # h_t = n + z (h_{t-1} - n)
            h_new *= a[:, :Hn]
            h_new += n
            if padding is not None:
                np.copyto(h_new, h, where=padding[t])
            h = h_new
        return Hs, (h,), (X, A, Hs, h0, padding)

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray], np.ndarray | None]:
        """dH (T, B, H) from above -> dX, grads, (dL/dh_0,), dh (T, B, H) or None."""
        X, A, Hs, h0, padding = cache
        T, B, _ = X.shape
        Hn = self.hidden_size
        gates = A.reshape(T, B, 3, Hn)
        z, r, n = gates[:, :, 0], gates[:, :, 1], gates[:, :, 2]
        H_prev = _previous(h0, Hs)
        factors = np.empty_like(gates)  # dL/da_z = dh f_z, dL/da_n = dh f_n, dL/da_r = (dL/d(r h)) f_r
        np.multiply(H_prev - n, derivative_from_output("sigmoid", z), out=factors[:, :, 0])
        np.multiply(H_prev, derivative_from_output("sigmoid", r), out=factors[:, :, 1])
        np.multiply(1.0 - z, derivative_from_output(self.activation, n), out=factors[:, :, 2])
        if padding is not None:
            factors *= ~padding[:, :, :, None]
        W_zr_T, W_n_T = params["W_h"][:, :2 * Hn].T, params["W_h"][:, 2 * Hn:].T
        (dh_bands,), truncated = self._initial_bands(dH, d_final_state, truncation)
        dA = factors.reshape(A.shape)  # dL/da_t overwrites factors[t], which step t no longer needs
        dh = np.empty_like(dH) if hidden_grads else None
        n_bands = dh_bands.shape[0]
        band_deltas = np.empty((n_bands, B, 3, Hn), dtype=A.dtype) if truncated else None
        for t in range(T - 1, -1, -1):
            deltas = dA[t].reshape(1, B, 3, Hn) if band_deltas is None else band_deltas
            dh_bands[0] += dH[t]
            if dh is not None:
                dh_bands.sum(axis=0, out=dh[t])
            np.multiply(dh_bands, factors[t, :, 0], out=deltas[:, :, 0])
            np.multiply(dh_bands, factors[t, :, 2], out=deltas[:, :, 2])
            self._clip(deltas[:, :, 2])
            d_reset_h = deltas[:, :, 2] @ W_n_T
            np.multiply(d_reset_h, factors[t, :, 1], out=deltas[:, :, 1])
            self._clip(deltas[:, :, :2])
            flat = deltas.reshape(n_bands, B, 3 * Hn)
            if truncated:
                flat.sum(axis=0, out=dA[t])
            previous = dh_bands * z[t] + d_reset_h * r[t] + flat[:, :, :2 * Hn] @ W_zr_T
            pad = None if padding is None else padding[t]
            (dh_bands,) = _step_bands((dh_bands,), (previous,), pad, truncated)
        dX, grads = _weight_grads(params, X, dA, self.bias, self.input_grad)
        grads["W_h"] = np.concatenate(
            [H_prev.reshape(T * B, Hn).T @ dA[:, :, :2 * Hn].reshape(T * B, 2 * Hn),
             (H_prev * r).reshape(T * B, Hn).T @ dA[:, :, 2 * Hn:].reshape(T * B, Hn)], axis=1)
        return dX, grads, (dh_bands.sum(axis=0),), dh


class _GateBlocksMixin:
    """A gated network has gate blocks, not one (H, H) recurrent matrix."""

    layers: list[_GatedLayer]

    def recurrent_matrix(self) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} has gate blocks W_h (H, {self.layers[0].blocks}H), not one "
                        f"(H, H) recurrent matrix; read model.params['W_h'] instead")


class LSTM(_GateBlocksMixin, RecurrentModel):
    """LSTM network; same arguments as RecurrentModel, `activation` is the cell's g / output non-linearity."""

    layer_class = LSTMLayer


class GRU(_GateBlocksMixin, RecurrentModel):
    """GRU network (Cho et al. 2014); same arguments as RecurrentModel, `activation` is the candidate's."""

    layer_class = GRULayer
