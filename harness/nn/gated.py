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
`clip_hidden_delta` clips every gate's pre-activation delta dL/da element-wise at each step (with truncation:
the sum over loss positions, layers.clip_band_sum).

BPTT, the deltas dL/da of each gate block at step t (dh_t = dL/dh_t, dc_t = dL/dc_t, s' = s (1 - s)):
    LSTM  dc_t = dc_{t+1} f_{t+1} + dh_t o act'(act(c_t))
          da_i = dc_t g s'(i)   da_f = dc_t c_{t-1} s'(f)   da_g = dc_t i act'(g)   da_o = dh_t act(c_t) s'(o)
          dh_{t-1} = da_t W_h^T (+ dL/dH_{t-1} from above)
    GRU   da_z = dh_t (h_{t-1} - n) s'(z)   da_n = dh_t (1 - z) act'(n)   d(r h) = da_n W_h[:, n]^T
          da_r = d(r h) h_{t-1} s'(r)       dh_{t-1} = dh_t z + d(r h) r + da_{z|r} W_h[:, z|r]^T

Speed and memory. Each step's pre-activations come whole from one fused product per gate group, input and bias
included: the step rows Z = [h_{t-1} | x_t | 1] times the stacked weights [W_h; W_x; b] (LSTM: (H + D + 1,
4H); GRU: z and r from (H + D + 1, 2H), then n from [x_t | 1 | r h_{t-1}] times [W_x; b; W_h] of its block),
so no input projection of all steps is written and read back. The sigmoid gates' columns enter negated, so
that the product yields -a and the sigmoid starts at its exp (negation is exact: the same bits). The first
elementwise operation of each gate reads the product's row and writes the gate's slab of the gate buffer G,
where the rest is computed in place, so G ends up holding the gate values (LSTM's sigmoid gates as their
denominators, see below). LSTM keeps its blocks internally in the order o, i, f, g: the three sigmoid gates
are one group in the forward pass, the three deltas that dc_t drives (i, f, g) one in the backward sweep;
parameters and gradients keep i, f, g, o. BPTT keeps nothing else but the hidden states (LSTM's next to the
inputs, as step rows) and, for LSTM, c_t: 6x the bytes of the hidden states for LSTM, 4x for GRU. The
backward sweep runs in chunks of steps: the factors of a chunk that need no backpropagated gradient
(g s'(i), ...) are computed for the whole chunk at once (at most CHUNK steps and about CHUNK_BYTES of gate
values, so that the step loop finds them still in cache), then the step loop does only the recurrence and
writes dL/da_t over the gate values (LSTM: the factors) of step t, which nothing reads again. GRU's chunks
then add their share to the gradients of W_x and b and to dX while their dL/da_t are in cache, and the
gradient of W_h is one product over all steps (its candidate block, whose input r h_{t-1} is not kept, one
product per chunk). GRU's shares of a gradient, chunk by chunk, and the read-out's are summed pairwise
(layers.PairwiseSum).

LSTM's gate buffer is step-major, (T, 4, B, H): the four gates of a step are one contiguous block, which the
sigmoid writes whole. LSTM keeps the step rows Z[t] = [h_{t-1} | x_t | 1] of every step (T + 1, B, H + D + 1)
instead of a separate hidden-state array: the forward copies X into them once, writes h_t straight into the
next step's row, and returns the hidden states as the view Z[1:, :, :H]. The backward computes a chunk's
factors in place over its gates (step t's four factor slabs in G[t]), builds each step's deltas as a row
(B, 4H) of the fused recurrent product dL/da_t W_h^T and copies it over G[t], whose factors it has read, so
that G ends up holding every step's rows (T*B, 4H): the gradients of W_h, W_x and b are then one product
Z^T dL/da (b's sum as a product, over pieces of steps), dX one. It keeps the sigmoid gates o, i, f as their
denominators 1 + exp(-a) and divides by them (f c_{t-1} as c_{t-1} / (1 + exp(-a_f)), ...): no reciprocal
pass, and one rounding instead of two; the backward turns a chunk's denominators into the gate values in
place before computing its factors. LSTM fuses the read-out (layers.py, `fuses_readout`): the forward writes
each chunk's outputs H W_hy right after the chunk's steps, the backward adds each chunk's share of
dW_hy = H^T dO, both while the rows are in cache.

The gate buffer, c_t and the chunk buffers are the layer's workspace, reused by every call: arrays above
glibc's mmap threshold (32 MiB) come from the kernel as fresh pages at every allocation, which cost as much
as the matmuls at the larger sizes. A cache therefore stays valid until the layer's next forward; backward
refuses a cache that a later forward has overwritten.

Truncated BPTT uses gradient "bands": bands[j] holds the part of dL/d(state_t) that arrived through exactly j
steps of recurrence; each step back shifts the bands by one and drops band k-1. Full BPTT is the same sweep
with a single band that is never dropped, so both share one code path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .activations import (
    activate,
    activate_,
    activation_function,
    derivative_from_output,
    sigmoid_denominator_from_negated,
    sigmoid_from_negated,
)
from .init import input_matrix, recurrent_matrix
from .layers import PairwiseSum, ReadoutGrad, RecurrentLayer, chunk_steps, clip_band_sum, grad_rows, step_rows
from .model import RecurrentModel

CHUNK = 16  # most steps per backward chunk: the chunk's factors are computed at once
CHUNK_BYTES = 1 << 20  # a chunk holds at least one step and at most about this many bytes of gate values
# LSTM's weight-gradient product is summed over pieces of at least this many rows: each piece costs an
# addition of an (H + D + 1, 4H) array; pieces of 128-256 rows measured no more accurate, up to 1.2x slower;
# pieces of 2048 rows up to 1.14x faster in float32 but less accurate (mean error 0.025 against 0.021 eps)
MIN_ROWS = 512

_LSTM_ORDER = (3, 0, 1, 2)  # LSTM's internal block order o, i, f, g, as indices of the parameters' i, f, g, o


class _Workspace:
    """Named buffers reused from call to call; each grows to the largest shape asked for, never shrinks."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of `shape` and `dtype` (a view of the buffer `name`)."""
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.dtype != dtype or flat.size < size:
            flat = self._flat[name] = np.empty(size, dtype=dtype)
        return flat[:size].reshape(shape)


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


def _reorder_blocks(W: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """(R, blocks*H) -> a new (R, blocks*H) whose k-th gate block of columns is W's block order[k]."""
    return np.take(W.reshape(W.shape[0], len(order), -1), order, axis=1).reshape(W.shape)  # one copy


def _split_blocks(W: np.ndarray, blocks: int) -> np.ndarray:
    """(R, blocks*H) -> the view (blocks, R, H) of its gate blocks."""
    return W.reshape(W.shape[0], blocks, -1).transpose(1, 0, 2)


def _join_blocks(W: np.ndarray) -> np.ndarray:
    """(blocks, R, H) -> a new (R, blocks*H): the gate blocks side by side, as the parameters store them."""
    return np.concatenate(list(W), axis=1)


def _step_bands(bands: tuple[np.ndarray, ...], previous: tuple[np.ndarray, ...], pad: np.ndarray | None,
                truncated: bool) -> tuple[np.ndarray, ...]:
    """Move the band gradients one step back in time (see the module docstring).

    bands / previous: tuples of (n, B, H); previous[j] is what bands[j] sends to the earlier step. A padding
    row (pad (B, 1) True) keeps its bands: padding does not consume a step of recurrence.
    """
    if not truncated and pad is None:
        return previous
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


def _previous_states(first: np.ndarray, seq: np.ndarray, start: int, stop: int, out: np.ndarray
                     ) -> np.ndarray:
    """The states at t-1 for t = start..stop-1, into out (stop - start, B, H); first (B, H) is the one at -1
    (t = 0)."""
    out[0] = first if start == 0 else seq[start - 1]
    out[1:] = seq[start:stop - 1]
    return out


def _recurrent_weight_grad(dA: np.ndarray, Hs: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """sum_t h_{t-1}^T dA_t over all steps for dA (blocks, T, B, H): (blocks, H_in, H), h_{-1} = h0."""
    blocks, T, B, Hn = dA.shape
    grad = h0.T @ dA[:, 0]
    if T > 1:
        grad += Hs[:-1].reshape(-1, Hs.shape[2]).T @ dA[:, 1:].reshape(blocks, (T - 1) * B, Hn)
    return grad


class _InputGrads:
    """GRU: the gradients of W_x and b (block-major) and dX, added to chunk by chunk of the backward sweep
    while the chunk's dL/da are still in cache."""

    def __init__(self, layer: _GatedLayer, params: dict[str, np.ndarray], X: np.ndarray, dtype: np.dtype):
        T, B, D = X.shape
        blocks = layer.blocks
        self.X = X
        self.W_x = PairwiseSum()  # of (blocks, D, H) shares
        self.b = PairwiseSum() if layer.bias else None  # of (blocks, H) shares
        # b's sum as a product with ones: measured 2x faster than a sum over axis 1 (as Elman's)
        self._ones = np.ones(B * min(T, CHUNK), dtype=dtype) if layer.bias else None
        self.dX = np.empty((T, B, D), dtype=dtype) if layer.input_grad else None
        self._W_x_blocks = _split_blocks(params["W_x"], blocks) if layer.input_grad else None

    def add(self, dA: np.ndarray, start: int) -> None:
        """Add the share of the steps start..start+k-1, whose dL/da are dA (blocks, k, B, H)."""
        blocks, k, B, Hn = dA.shape
        dA3 = dA.reshape(blocks, k * B, Hn)
        self.W_x.add(self.X[start:start + k].reshape(k * B, -1).T @ dA3)
        if self.b is not None:
            self.b.add(self._ones[:k * B] @ dA3)
        if self.dX is not None:
            rows = self.dX[start:start + k].reshape(k * B, -1)
            np.matmul(dA3[0], self._W_x_blocks[0].T, out=rows)
            for j in range(1, blocks):
                rows += dA3[j] @ self._W_x_blocks[j].T


class _GatedLayer(RecurrentLayer):
    """Shared plumbing of the gated layers: workspace, gate layout, step rows, state handling, band
    bookkeeping.

    GRU's gate buffer G is laid out block-major, (blocks, T, B, H), LSTM's step-major, (T, blocks, B, H):
    either way every gate of a step is one contiguous (B, H) slab, on which NumPy's elementwise loops run up
    to twice as fast as on the strided column blocks of a (B, blocks*H) row (measured for exp, tanh and
    multiply at B, H = 32..256). A step's fused product
    yields such a row; the first elementwise operation of each gate reads it and writes the gate's slab.
    `order` (None: the parameters' own) is the internal order of the blocks, as parameter block indices.
    """

    blocks: int = 0
    state_arity: int = 1
    accepts_readout_grad = True
    order: tuple[int, ...] | None = None

    def __init__(self, input_size: int, hidden_size: int, *, activation: str = "tanh", bias: bool = True):
        super().__init__(input_size, hidden_size, activation=activation, bias=bias)
        self._workspace = _Workspace()
        self._forwards = 0  # forward passes so far: a cache remembers its own, see _check_current

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the workspace behind: its buffers are scratch, as big as the last call."""
        return {**self.__dict__, "_workspace": _Workspace()}

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        return _gate_blocks(rng, self, self.blocks, init=init, recurrent_init=recurrent_init,
                            spectral_radius=spectral_radius, max_singular_value=max_singular_value,
                            dtype=dtype)

    def _transposed_blocks(self, W: np.ndarray, blocks: slice) -> np.ndarray:
        """The gate blocks `blocks` (internal order) of a parameter (R, blocks*H), transposed into one new
        C-ordered (n*H, R) array, which BLAS multiplies by faster than by a transposed view (measured up to
        1.4x in float32)."""
        order = range(self.blocks) if self.order is None else self.order
        chosen = order[blocks]
        Hn = self.hidden_size
        out = np.empty((len(chosen) * Hn, W.shape[0]), dtype=W.dtype)
        for k, block in enumerate(chosen):
            out[k * Hn:(k + 1) * Hn] = W[:, block * Hn:(block + 1) * Hn].T
        return out

    def _internal(self, W: np.ndarray) -> np.ndarray:
        """A parameter (R, blocks*H) with its blocks in the internal order (W itself if that is its own)."""
        return W if self.order is None else _reorder_blocks(W, self.order)

    def _input_rows(self, params: dict[str, np.ndarray]) -> list[np.ndarray]:
        """[W_x (D, blocks*H), b as a row (1, blocks*H)] (no b without a bias): the weights of the x_t and 1
        columns of the step rows, blocks in the internal order."""
        rows = [params["W_x"], params["b"][None]] if self.bias else [params["W_x"]]
        return [self._internal(w) for w in rows]

    def _step_rows(self, h0: np.ndarray, D: int, extra: int, dtype: np.dtype
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The workspace's step rows Z (B, H + D + bias + extra) (layers.step_rows) and their views h (B, H)
        and x (B, D)."""
        Z = self._workspace.get("step_rows", (h0.shape[0], self.hidden_size + D + self.bias + extra), dtype)
        return Z, *step_rows(Z, h0, D, self.bias)

    def _new_cache_id(self) -> int:
        self._forwards += 1
        return self._forwards

    def _check_current(self, cache_id: int) -> None:
        if cache_id != self._forwards:
            raise RuntimeError(f"{type(self).__name__}.backward got the cache of an earlier forward pass, "
                               "whose workspace a later forward has overwritten: call backward before the "
                               "next forward")

    def _initial_state(self, state0: tuple[np.ndarray, ...] | None, B: int, dtype: np.dtype
                       ) -> tuple[np.ndarray, ...]:
        if state0 is None:
            return tuple(np.zeros((B, self.hidden_size), dtype=dtype) for _ in range(self.state_arity))
        return tuple(state0)

    def _clip(self, delta: np.ndarray) -> None:
        """delta (..., n_bands, B, H): the bands' sum clipped (layers.clip_band_sum)."""
        if self.clip_hidden_delta is not None:
            clip_band_sum(delta, self.clip_hidden_delta)

    @staticmethod
    def _chunks_back(dH: np.ndarray | ReadoutGrad, T: int, step_bytes: int
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, stop, dL/dH of the steps start..stop-1 (stop - start, B, H)) per chunk of T steps, last
        first, for step_bytes of gate values per step."""
        steps = chunk_steps(step_bytes, CHUNK, CHUNK_BYTES)
        for stop in range(T, 0, -steps):
            start = max(0, stop - steps)
            yield start, stop, grad_rows(dH, start, stop)

    @staticmethod
    def _arrive(dh_bands: np.ndarray, dH_t: np.ndarray, dh: np.ndarray | None, t: int) -> None:
        """Add dL/dH_t from above to band 0; record the total dL/dh_t in dh[t] unless dh is None."""
        dh_bands[0] += dH_t
        if dh is not None:
            dh_bands.sum(axis=0, out=dh[t])

    def _initial_bands(self, shape: tuple[int, int, int], dtype: np.dtype,
                       d_final_state: tuple[np.ndarray, ...] | None, truncation: int | None
                       ) -> tuple[tuple[np.ndarray, ...], bool]:
        """Bands (n, B, H) per state array for dL/dH of `shape` (T, B, H): n = truncation, or 1 (full)."""
        T = shape[0]
        truncated = truncation is not None and truncation < T
        n = truncation if truncated else 1
        bands = tuple(np.zeros((n, *shape[1:]), dtype=dtype) for _ in range(self.state_arity))
        if d_final_state is not None:
            for band, d in zip(bands, d_final_state, strict=True):
                band[0] += d
        return bands, truncated


class LSTMLayer(_GatedLayer):
    """One LSTM layer; params W_x (D, 4H), W_h (H, 4H), b (4H,) with gate blocks i, f, g, o.

    Internally the blocks are in the order o, i, f, g: the sigmoid gates are the first three blocks of a
    step, and the deltas dc_t drives (i, f, g) the last three."""

    blocks = 4
    state_arity = 2
    order = _LSTM_ORDER
    fuses_readout = True

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
                state0: tuple[np.ndarray, ...] | None = None,
                readout: tuple[np.ndarray, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, H), (h_T, c_T), cache; readout (W (H, O), out (T, B, O)) or
        None: out receives H W, chunk by chunk (layers.py, `fuses_readout`)."""
        T, B, D = X.shape
        Hn = self.hidden_size
        W = np.concatenate([self._internal(params["W_h"]), *self._input_rows(params)])  # (H + D + 1, 4H)
        np.negative(W[:, :3 * Hn], out=W[:, :3 * Hn])  # the product yields -a of the sigmoid gates o, i, f
        ws = self._workspace
        G = ws.get("gates", (T, 4, B, Hn), W.dtype)  # the gate values o, i, f, g of every step
        C = ws.get("c", (T + 1, B, Hn), W.dtype)  # C[t] = c_{t-1}
        # the step rows Z[t] = [h_{t-1} | x_t | 1] of every step, kept: the weight gradients are one product
        # Z^T dL/da, and the hidden states are their views Hs = Z[1:, :, :H] (Z[T] holds only h_{T-1})
        Z = np.empty((T + 1, B, Hn + D + self.bias), dtype=W.dtype)
        h0, C[0] = self._initial_state(state0, B, W.dtype)
        Z[0, :, :Hn] = h0
        Z[:T, :, Hn:Hn + D] = X
        if self.bias:
            Z[:T, :, Hn + D] = 1.0
        Hs = Z[1:, :, :Hn]
        pre = ws.get("pre_activations", (B, 4 * Hn), W.dtype)
        pre_blocks = pre.reshape(B, 4, Hn).transpose(1, 0, 2)
        input_part = ws.get("input_part", (B, Hn), W.dtype)
        padding = None if valid.all() else ~valid[:, :, None]
        act = activation_function(self.activation)
        steps = min(CHUNK, T)
        with np.errstate(over="ignore"):  # sigmoid's exp(-a) is inf for a << 0: 1 / (1 + inf) = 0 is right
            for start in range(0, T, steps):
                stop = min(T, start + steps)
                for t in range(start, stop):
                    np.matmul(Z[t], W, out=pre)  # all pre-activations of the step: the fused product
                    d_o, d_i, d_f, g = a = G[t]  # the sigmoid gates as their denominators 1 + exp(-a)
                    sigmoid_denominator_from_negated(pre_blocks[:3], out=a[:3])
                    act(pre_blocks[3], out=g)
                    c_new = C[t + 1]
                    np.divide(C[t], d_f, out=c_new)
                    np.divide(g, d_i, out=input_part)
                    c_new += input_part
                    h_new = Hs[t]  # h_t is the next step's row
                    act(c_new, out=h_new)
                    np.divide(h_new, d_o, out=h_new)
                    if padding is not None:
                        np.copyto(c_new, C[t], where=padding[t])
                        np.copyto(h_new, Z[t, :, :Hn], where=padding[t])
                if readout is not None:  # while the chunk's rows are in cache
                    np.matmul(Hs[start:stop], readout[0], out=readout[1][start:stop])
        # c_T is copied out of the workspace: the next forward overwrites C
        return Hs, (Hs[T - 1], C[T].copy()), (G, C, Z, padding, self._new_cache_id())

    def _chunk_factors(self, gates: np.ndarray, C: np.ndarray, start: int, padding: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The factors of steps start..start+k-1 that need no gradient, for the gate values gates (k, 4, B, H)
        (o, i, f as their denominators) and the cells C (T + 1, B, H) (C[t] = c_{t-1}), written over the
        gates in place: gates[:, m] becomes F_m of F = [act(c_t) s'(o), g s'(i), c_{t-1} s'(f), i act'(g)]
        (zero at padding steps), so that the step loop reads a step's factors where it writes its dL/da_t.
        Returns f and o act'(act(c_t)), each (k, B, H) in the workspace until the next chunk."""
        k, _, B, Hn = gates.shape
        np.reciprocal(gates[:, :3], out=gates[:, :3])  # the sigmoid gates o, i, f from their denominators
        o, i, f, g = gates.transpose(1, 0, 2, 3)
        ws = self._workspace
        forget, h_to_c, scratch = (ws.get(name, (k, B, Hn), gates.dtype)
                                   for name in ("forget", "h_to_c", "scratch"))
        act_c = activate(self.activation, C[start + 1:start + k + 1], out=forget)  # forget's buffer, free yet
        derivative_from_output(self.activation, act_c, out=h_to_c)
        h_to_c *= o
        o *= np.subtract(1.0, o, out=scratch)  # s'(o)
        o *= act_c
        derivative_from_output(self.activation, g, out=scratch)
        input_to_c = derivative_from_output("sigmoid", i, out=forget)  # s'(i); act(c_t) is read no more
        input_to_c *= g
        np.multiply(i, scratch, out=g)
        np.copyto(i, input_to_c)
        np.copyto(forget, f)
        derivative_from_output("sigmoid", forget, out=f)
        f *= C[start:start + k]
        if padding is not None:
            gates *= ~padding[start:start + k, None]
        return forget, h_to_c

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray | ReadoutGrad, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray, np.ndarray],
                            np.ndarray | None]:
        """dH (T, B, H) from above -> dX, grads, (dL/dh_0, dL/dc_0), dh (T, B, H) or None.
        Overwrites the gate values in the cache with dL/da_t."""
        G, C, Z, padding, cache_id = cache  # Z holds the inputs X too
        self._check_current(cache_id)
        T, _, B, _ = G.shape
        Hn = self.hidden_size
        Hs = Z[1:, :, :Hn]
        W_h_T = self._transposed_blocks(params["W_h"], slice(None))  # (4H, H)
        (dh_bands, dc_bands), truncated = self._initial_bands((T, B, Hn), G.dtype, d_final_state, truncation)
        n = dh_bands.shape[0]
        dh = np.empty((T, B, Hn), dtype=G.dtype) if hidden_grads else None
        ws = self._workspace
        dc_total = ws.get("dc_total", (n, B, Hn), G.dtype)
        # the bands that step t sends back, in buffers alternating with t (a padding step keeps the other's)
        dh_back, dc_back = (ws.get(name, (2, n, B, Hn), G.dtype) for name in ("dh_back", "dc_back"))
        # each band's deltas as rows for the fused W_h^T product (their sum is dL/da_t), in a buffer of their
        # own: G[t] holds the step's factors in the gate slabs' layout, which the rows' layout would overwrite
        rows = ws.get("rows", (n, B, 4 * Hn), G.dtype)
        deltas = rows.reshape(n, B, 4, Hn).transpose(2, 0, 1, 3)
        clip = self.clip_hidden_delta
        for start, stop, dH_chunk in self._chunks_back(dH, G.shape[0], 4 * B * Hn * G.itemsize):
            k = stop - start
            forget, h_to_c = self._chunk_factors(G[start:stop], C, start, padding)
            dA = G[start:stop].reshape(k, B, 4 * Hn)  # dL/da_t overwrites the factors of step t, as its rows
            for j in range(k - 1, -1, -1):
                t = start + j
                self._arrive(dh_bands, dH_chunk[j], dh, t)
                np.multiply(dh_bands, h_to_c[j], out=dc_total)
                dc_total += dc_bands
                dc_previous = np.multiply(dc_total, forget[j], out=dc_back[t % 2])
                np.multiply(dh_bands, G[t, 0], out=deltas[0])
                np.multiply(dc_total, G[t, 1:, None], out=deltas[1:])
                if clip is not None:
                    clip_band_sum(deltas, clip)
                if truncated:
                    rows.sum(axis=0, out=dA[j])
                else:
                    np.copyto(dA[j], rows[0])
                pad = None if padding is None else padding[t]
                dh_bands, dc_bands = _step_bands((dh_bands, dc_bands),
                                                 (np.matmul(rows, W_h_T, out=dh_back[t % 2]), dc_previous),
                                                 pad, truncated)
            if isinstance(dH, ReadoutGrad) and dH.collects_weight_grad:  # while the chunk's rows are in cache
                dH.add_weight_grad(Hs[start:stop], start)
        del dH_chunk  # the first steps' rows of dL/dH: not needed for the weight gradients
        dX, grads = self._weight_grads_from_rows(G.reshape(T * B, 4 * Hn), params, Z[:T])
        return dX, grads, (dh_bands.sum(axis=0), dc_bands.sum(axis=0)), dh

    def _weight_grads_from_rows(self, dA: np.ndarray, params: dict[str, np.ndarray], Z: np.ndarray
                                ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """dX (T, B, D) (None unless input_grad) and the gradients of W_x, W_h and b from dL/da as step rows
        dA (T*B, 4H) (internal block order), in the parameters' layout: all three are one product Z^T dA of
        the step rows Z (T, B, H + D + bias) = [h_{t-1} | x_t | 1] (the bias's sum as a product), summed
        over pieces of about CHUNK_BYTES of dA and at least MIN_ROWS rows: shorter running sums than one
        product's, as accurate as the per-chunk products of W_x and b were. A running sum, not a PairwiseSum:
        its partial sums (up to log2 of the pieces, each (H + D + bias, 4H)) would take LSTM's memory
        past 7x the hidden states at (200, 16, 64)."""
        T, B, K = Z.shape
        Hn = self.hidden_size
        D = K - Hn - self.bias
        order = tuple(np.argsort(self.order))  # parameter block p is internal block order[p]
        Z = Z.reshape(T * B, K)
        rows = max(MIN_ROWS, B * chunk_steps(B * 4 * Hn * dA.itemsize, T, CHUNK_BYTES))
        W_hxb = Z[:rows].T @ dA[:rows]  # (H + D + bias, 4H)
        for start in range(rows, T * B, rows):
            W_hxb += Z[start:start + rows].T @ dA[start:start + rows]
        grads = {"W_x": _reorder_blocks(W_hxb[Hn:Hn + D], order), "W_h": _reorder_blocks(W_hxb[:Hn], order)}
        if self.bias:
            grads["b"] = _reorder_blocks(W_hxb[Hn + D:], order)[0]
        dX = None
        if self.input_grad:
            dX = (dA @ self._transposed_blocks(params["W_x"], slice(None))).reshape(T, B, D)
        return dX, grads


class GRULayer(_GatedLayer):
    """One GRU layer; params W_x (D, 3H), W_h (H, 3H), b (3H,) with gate blocks z, r, n."""

    blocks = 3
    state_arity = 1

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, H), (h_T,), cache."""
        T, B, D = X.shape
        Hn = self.hidden_size
        W_h, inputs = params["W_h"], self._input_rows(params)
        # step rows Z = [h_{t-1} | x_t | 1 | r h_{t-1}]: z and r read Z[:, :K], the candidate Z[:, H:]
        W_zr = -np.concatenate([W_h[:, :2 * Hn], *(w[:, :2 * Hn] for w in inputs)])  # (K, 2H), negated:
        # the product yields -a of the sigmoid gates z and r
        W_n = np.concatenate([*(w[:, 2 * Hn:] for w in inputs), W_h[:, 2 * Hn:]])  # (K, H)
        ws = self._workspace
        G = ws.get("gates", (3, T, B, Hn), W_zr.dtype)  # the gate values z, r, n of every step
        (h0,) = self._initial_state(state0, B, W_zr.dtype)
        Hs = np.empty((T, B, Hn), dtype=W_zr.dtype)
        Z, h_row, x_row = self._step_rows(h0, D, Hn, W_zr.dtype)
        K = W_zr.shape[0]
        zr_rows, n_rows, reset_h = Z[:, :K], Z[:, Hn:], Z[:, K:]
        zr = ws.get("pre_activations", (B, 2 * Hn), W_zr.dtype)
        zr_blocks = zr.reshape(B, 2, Hn).transpose(1, 0, 2)
        padding = None if valid.all() else ~valid[:, :, None]
        activation = self.activation
        h = h0
        with np.errstate(over="ignore"):  # sigmoid's exp(-a) is inf for a << 0: 1 / (1 + inf) = 0 is right
            for t in range(T):
                np.copyto(x_row, X[t])
                np.matmul(zr_rows, W_zr, out=zr)  # the fused (H + D + 1, 2H) product of z and r
                a = G[:, t]
                sigmoid_from_negated(zr_blocks, out=a[:2])
                z, r, n = a
                np.multiply(r, h, out=reset_h)
                np.matmul(n_rows, W_n, out=n)  # the candidate's (D + 1 + H, H) product
                activate_(activation, n)
                h_new = Hs[t]
                np.subtract(h, n, out=h_new)  # h_t = n + z (h_{t-1} - n)
                h_new *= z
                h_new += n
                if padding is not None:
                    np.copyto(h_new, h, where=padding[t])
                np.copyto(h_row, h_new)
                h = h_new
        return Hs, (h,), (X, G, Hs, h0, padding, self._new_cache_id())

    def _chunk_factors(self, gates: np.ndarray, Hs: np.ndarray, h0: np.ndarray, start: int,
                       padding: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """For steps start..start+k-1 with gate values gates (3, k, B, H): the factors that need no gradient,
        F (3, k, B, H) = [(h_{t-1} - n) s'(z), h_{t-1} s'(r), (1 - z) act'(n)] (zero at padding steps), and
        the candidate's recurrent input r h_{t-1} (k, B, H). Both live in the workspace until the next
        chunk."""
        _, k, B, Hn = gates.shape
        z, r, n = gates
        ws = self._workspace
        F = ws.get("factors", (3, k, B, Hn), gates.dtype)
        reset_h = ws.get("reset_h_chunk", (k, B, Hn), gates.dtype)
        scratch = ws.get("scratch", (k, B, Hn), gates.dtype)
        h_prev = _previous_states(h0, Hs, start, start + k, out=ws.get("h_prev", (k, B, Hn), gates.dtype))
        np.subtract(h_prev, n, out=F[0])
        F[0] *= derivative_from_output("sigmoid", z, out=scratch)
        np.multiply(h_prev, derivative_from_output("sigmoid", r, out=scratch), out=F[1])
        derivative_from_output(self.activation, n, out=F[2])
        F[2] *= np.subtract(1.0, z, out=scratch)
        np.multiply(r, h_prev, out=reset_h)
        if padding is not None:
            F *= ~padding[start:start + k]
        return F, reset_h

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray | ReadoutGrad, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray], np.ndarray | None]:
        """dH (T, B, H) from above -> dX, grads, (dL/dh_0,), dh (T, B, H) or None.
        Overwrites the gate values in the cache with dL/da_t."""
        X, G, Hs, h0, padding, cache_id = cache
        self._check_current(cache_id)
        T, B, _ = X.shape
        Hn = self.hidden_size
        W_zr_T, W_n_T = (self._transposed_blocks(params["W_h"], blocks) for blocks in (slice(2), slice(2, 3)))
        (dh_bands,), truncated = self._initial_bands((T, B, Hn), G.dtype, d_final_state, truncation)
        n_bands = dh_bands.shape[0]
        dh = np.empty((T, B, Hn), dtype=G.dtype) if hidden_grads else None
        delta_rows = self._workspace.get("delta_rows", (n_bands, B, 2 * Hn), G.dtype)  # z, r rows for W_zr^T
        delta_blocks = delta_rows.reshape(n_bands, B, 2, Hn).transpose(2, 0, 1, 3)
        band_deltas = np.empty((3, n_bands, B, Hn), dtype=G.dtype) if truncated else None
        dW_n = PairwiseSum()  # of (H, H) shares
        inputs = _InputGrads(self, params, X, G.dtype)
        for start, stop, dH_chunk in self._chunks_back(dH, T, G.itemsize * G[:, 0].size):
            F, reset_h = self._chunk_factors(G[:, start:stop], Hs, h0, start, padding)
            for j in range(stop - start - 1, -1, -1):
                t = start + j
                self._arrive(dh_bands, dH_chunk[j], dh, t)
                previous = dh_bands * G[0, t]  # z_t, read before dL/da_t overwrites it
                deltas = G[:, t, None] if band_deltas is None else band_deltas
                np.multiply(dh_bands, F[0, j], out=deltas[0])
                np.multiply(dh_bands, F[2, j], out=deltas[2])
                self._clip(deltas[2])
                d_reset_h = deltas[2] @ W_n_T
                previous += d_reset_h * G[1, t]  # r_t, still there: only the z and n slots are written
                np.multiply(d_reset_h, F[1, j], out=deltas[1])
                self._clip(deltas[:2])
                if truncated:
                    deltas.sum(axis=1, out=G[:, t])
                np.copyto(delta_blocks, deltas[:2])
                previous += delta_rows @ W_zr_T
                pad = None if padding is None else padding[t]
                (dh_bands,) = _step_bands((dh_bands,), (previous,), pad, truncated)
            k = stop - start
            dW_n.add(reset_h.reshape(k * B, Hn).T @ G[2, start:stop].reshape(k * B, Hn))
            inputs.add(G[:, start:stop], start)
        del dH_chunk  # the first steps' rows of dL/dH: not needed for the weight gradients
        # G now holds dL/da_t: W_h's z and r blocks are one product over all steps
        grads = {"W_x": _join_blocks(inputs.W_x.total()),
                 "W_h": np.concatenate([_join_blocks(_recurrent_weight_grad(G[:2], Hs, h0)), dW_n.total()],
                                       axis=1)}
        if inputs.b is not None:
            grads["b"] = inputs.b.total().reshape(-1)
        return inputs.dX, grads, (dh_bands.sum(axis=0),), dh


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
