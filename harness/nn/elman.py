"""Elman layer and model: h_t = g(x_t W_xh + h_{t-1} W_hh + b_h) (batch-row convention).

BPTT, side by side with the forward pass (dL/dh_t written dh_t, a_t the pre-activation):

    forward                                   backward (t = T-1 ... 0)
    a_t = x_t W_xh + h_{t-1} W_hh + b_h       dh_t = dH_t + da_{t+1} W_hh^T        (dH_t: from above)
    h_t = g(a_t)                              da_t = g'(a_t) * dh_t,  g'(a_t) from h_t
                                              dW_hh += h_{t-1}^T da_t (h_{-1} = h0)
    (chunk by chunk, see below)               dW_xh = sum_t x_t^T da_t, db_h = sum_t da_t, dX_t = da_t W_xh^T

Memory and speed: each step's whole pre-activation is one product, [h_{t-1} | x_t | 1] [W_hh; W_xh; b_h]
(no input projection of all steps is written and read back). The forward pass keeps only the hidden states
Hs (T, B, H). The backward sweep runs in chunks of at most CHUNK steps and about CHUNK_ELEMENTS of dL/da_t,
so besides Hs it needs O(CHUNK * B * H), and each chunk adds its share to every gradient (dW_hh, dW_xh, db_h,
dX) while its dL/da_t are still in cache; the shares are summed pairwise (layers.PairwiseSum). The
read-out's dH = dO W_hy^T arrives factored (ReadoutGrad) and is materialised one chunk at a time. The layer
fuses the read-out (layers.py, `fuses_readout`): the forward writes each chunk's outputs H W_hy right after
the chunk's steps, and the backward adds each chunk's share of dW_hy = H^T dO next to its dW_hh, so the
read-out never reads Hs back from memory (measured 1-5% of a train step from (100, 64, 64) to (500, 64,
256)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import activate_, derivative_from_output
from .init import input_matrix, recurrent_matrix
from .layers import PairwiseSum, ReadoutGrad, RecurrentLayer, chunk_steps, clip_band_sum, grad_rows, step_rows
from .model import RecurrentModel

CHUNK = 16  # most steps per backward chunk: enough rows for efficient matmuls, few next to T * B * H
# a chunk holds at least one step and at most about this many elements of dL/da_t: in float64 (512 KiB, with
# the chunk's hidden rows in a 2 MiB L2) measured 1-3% faster per train step than twice as many at (200, 128,
# 128), (500, 64, 256); float32 chunks of as many elements (half the bytes) measured 3-6% faster than of as
# many bytes at (200, 128, 128) (six interleaved runs), the same at (500, 64, 256)
CHUNK_ELEMENTS = 1 << 16


class ElmanLayer(RecurrentLayer):
    """One Elman layer; params W_xh (D, H), W_hh (H, H), b_h (H,) (without b_h when bias=False)."""

    accepts_readout_grad = True
    fuses_readout = True

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        H = self.hidden_size
        params = {"W_xh": input_matrix(rng, init, self.input_size, H, dtype),
                  "W_hh": recurrent_matrix(rng, recurrent_init, H, H, dtype, spectral_radius,
                                           max_singular_value)}
        if self.bias:
            params["b_h"] = np.zeros(H, dtype=dtype)
        return params

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None,
                readout: tuple[np.ndarray, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, tuple[np.ndarray], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, H), (h_T,), cache; readout (W (H, O), out (T, B, O)) or None:
        out receives H W, chunk by chunk (layers.py, `fuses_readout`)."""
        T, B, D = X.shape
        H = self.hidden_size
        # a_t = [h_{t-1} | x_t | 1] [W_hh; W_xh; b_h]: the step's whole pre-activation in one product
        W = np.concatenate([params["W_hh"], params["W_xh"], *([params["b_h"][None]] if self.bias else [])])
        Hs = np.empty((T, B, H), dtype=W.dtype)
        h0 = np.zeros((B, H), dtype=W.dtype) if state0 is None else state0[0]
        Z = np.empty((B, H + D + self.bias), dtype=W.dtype)
        h_row, x_row = step_rows(Z, h0, D, self.bias)
        padding = None if valid.all() else ~valid[:, :, None]
        activation = self.activation
        steps = chunk_steps(B * H, CHUNK, CHUNK_ELEMENTS)
        h = h0
        with np.errstate(over="ignore"):  # sigmoid's exp(-a) is inf for a << 0: 1 / (1 + inf) = 0 is right
            for start in range(0, T, steps):
                stop = min(T, start + steps)
                for t in range(start, stop):
                    np.copyto(x_row, X[t])
                    a = Hs[t]
                    np.matmul(Z, W, out=a)
                    activate_(activation, a)
                    if padding is not None:
                        np.copyto(a, h, where=padding[t])
                    np.copyto(h_row, a)
                    h = a
                if readout is not None:  # while the chunk's rows are in cache
                    np.matmul(Hs[start:stop], readout[0], out=readout[1][start:stop])
        return Hs, (h,), (X, Hs, h0, padding)

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray | ReadoutGrad, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray], np.ndarray | None]:
        """dH (T, B, H) from above -> dX (T, B, D) (None unless input_grad), grads, (dL/dh_0,), dh (T, B, H)
        (None unless hidden_grads); see the module docstring."""
        X, Hs, h0, padding = cache
        T, B, D = X.shape
        H = self.hidden_size
        W_hh_T = np.ascontiguousarray(params["W_hh"].T)
        dh = np.empty((T, B, H), dtype=Hs.dtype) if hidden_grads else None
        sums = {name: PairwiseSum() for name in ("W_xh", "W_hh", *(["b_h"] if self.bias else []))}
        dX = np.empty((T, B, D), dtype=Hs.dtype) if self.input_grad else None
        steps = chunk_steps(B * H, CHUNK, CHUNK_ELEMENTS)
        dA_buffer = np.empty((min(T, steps), B, H), dtype=Hs.dtype)
        ones = np.ones(min(T, steps) * B, dtype=Hs.dtype) if self.bias else None
        W_xh_T = np.ascontiguousarray(params["W_xh"].T) if dX is not None else None
        truncated = truncation is not None and truncation < T
        if truncated:  # carry: bands[j] = the part of dL/dh_t that came through exactly j recurrent steps
            carry = np.zeros((truncation, B, H), dtype=Hs.dtype)
            if d_final_state is not None:
                carry[0] += d_final_state[0]
        else:  # carry: dL/dh_t through h_{t+1}
            carry = np.zeros((B, H), dtype=Hs.dtype) if d_final_state is None else d_final_state[0].copy()
        for stop in range(T, 0, -steps):
            start = max(0, stop - steps)
            # dA (n, B, H): g'(a_t) of the chunk's steps; the sweep turns it into dL/da_t
            dA = derivative_from_output(self.activation, Hs[start:stop], out=dA_buffer[:stop - start])
            pad = None if padding is None else padding[start:stop]
            if pad is not None:
                dA *= ~pad
            sweep = self._truncated_steps if truncated else self._full_steps
            carry = sweep(W_hh_T, carry, grad_rows(dH, start, stop), dA,
                          None if dh is None else dh[start:stop], pad)
            # the chunk's share of every gradient, while its dL/da_t and hidden rows are in cache
            if isinstance(dH, ReadoutGrad) and dH.collects_weight_grad:
                dH.add_weight_grad(Hs[start:stop], start)
            dA2 = dA.reshape(-1, H)
            if start == 0:  # h_{-1} is h0, not a row of Hs
                share = h0.T @ dA[0]
                share += Hs[:stop - 1].reshape(-1, H).T @ dA2[B:]
            else:
                share = Hs[start - 1:stop - 1].reshape(-1, H).T @ dA2
            sums["W_hh"].add(share)
            sums["W_xh"].add(X[start:stop].reshape(-1, D).T @ dA2)
            if self.bias:
                sums["b_h"].add(ones[:len(dA2)] @ dA2)  # measured 2x faster than dA2.sum(axis=0)
            if dX is not None:
                np.matmul(dA, W_xh_T, out=dX[start:stop])
        d_state0 = carry.sum(axis=0) if truncated else carry
        grads = {name: total.total() for name, total in sums.items()}
        return dX, grads, (d_state0,), dh

    def _full_steps(self, W_hh_T: np.ndarray, carry: np.ndarray, dH: np.ndarray, dA: np.ndarray,
                    dh: np.ndarray | None, padding: np.ndarray | None) -> np.ndarray:
        """Full BPTT over one chunk of n steps, last step first.

        carry (B, H): dL/dh through the step after the chunk; dH (n, B, H) from above; dA (n, B, H) holds
        g'(a_t) on entry and dL/da_t on exit; dh (n, B, H) or None receives dL/dh_t. Returns the carry into
        the step before the chunk.
        """
        clip = self.clip_hidden_delta
        dh_t = np.empty_like(carry)
        for t in range(dA.shape[0] - 1, -1, -1):
            if dh is not None:
                dh_t = dh[t]
            np.add(dH[t], carry, out=dh_t)  # dL/dh_t = from above + through h_{t+1}
            da = dA[t]
            da *= dh_t                      # dL/da_t = g'(a_t) dL/dh_t
            if clip is not None:
                np.clip(da, -clip, clip, out=da)
            np.matmul(da, W_hh_T, out=carry)  # dL/dh_{t-1} through h_t
            if padding is not None:  # a padding step passes dh straight to the previous step
                np.copyto(carry, dh_t, where=padding[t])
        return carry

    def _truncated_steps(self, W_hh_T: np.ndarray, bands: np.ndarray, dH: np.ndarray, dA: np.ndarray,
                         dh: np.ndarray | None, padding: np.ndarray | None) -> np.ndarray:
        """BPTT cut after k steps back from every loss position, over one chunk; arguments as _full_steps.

        bands (k, B, H): bands[j] holds the part of dL/dh_t that arrived through exactly j recurrent steps; a
        step back shifts every band by one and drops band k-1, so all loss positions are truncated in one
        sweep.
        """
        clip = self.clip_hidden_delta
        for t in range(dA.shape[0] - 1, -1, -1):
            bands[0] += dH[t]
            if dh is not None:
                bands.sum(axis=0, out=dh[t])
            deltas = bands * dA[t]
            if clip is not None:
                clip_band_sum(deltas, clip)
            deltas.sum(axis=0, out=dA[t])
            shifted = np.empty_like(bands)
            shifted[0] = 0.0
            np.matmul(deltas[:-1], W_hh_T, out=shifted[1:])
            if padding is not None:  # padding steps do not count as a step of recurrence
                shifted = np.where(padding[t][None], bands, shifted)
            bands = shifted
        return bands


class Elman(RecurrentModel):
    """Elman network (a linear RNN with activation="identity"); see RecurrentModel for the arguments."""

    layer_class = ElmanLayer
