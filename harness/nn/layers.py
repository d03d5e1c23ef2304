"""The recurrent layer protocol and the argument checks shared by all layers and models.

Protocol (exactly as in /work/contract.md; parameter names inside a layer are local, e.g. "W_xh", and the
model adds the prefixes "l1.", "dec." ...):

    layer = SomeLayer(input_size, hidden_size, *, activation=..., bias=True)
    layer.init_params(rng, *, init, recurrent_init, spectral_radius, max_singular_value, dtype) -> dict
    layer.forward(params, X, valid, state0=None) -> (H, final_state, cache)
        X (T, B, D), valid (T, B) bool (always an array; all True when nothing is masked),
        state0: tuple of (B, .) arrays or None (zeros); H (T, B, hidden_size);
        padding (valid False) carries the state unchanged: h_t = where(valid_t, h_new, h_{t-1}).
    layer.backward(params, dH, cache, d_final_state=None, truncation=None, hidden_grads=True)
            -> (dX, grads, d_state0, dh)
        dH (T, B, hidden_size): dL/dH from above only; dh: total dL/dh_t including the recurrent path;
        grads has the local names of `params`; d_state0 is a tuple shaped like the state.

Additions to the contract (documented here for the gated/bidirectional layers):
- Constructor: the model builds layers through `RecurrentModel.make_layer(input_size, hidden_size)`, which
  by default calls `layer_class(input_size, hidden_size, activation=model.activation, bias=model.bias)`.
  A layer whose constructor differs overrides nothing here; its model class overrides `make_layer`.
- `clip_hidden_delta`: instance attribute (default None), set by the model after construction. When a float,
  backward clips the backpropagated pre-activation delta dL/da_t element-wise to [-c, c] at every step
  (note 000's exercise), so the delta reaching the weights never leaves [-c, c]. With truncation, dL/da_t is
  the sum of the shares of the loss positions whose window reaches step t (the bands): `clip_band_sum` clips
  that sum and scales every share by the same factor, and the scaled shares travel on. Layers that cannot
  honour it should raise in `make_layer`; a wrapping layer (bidirectional) passes it on to the layers it
  wraps.
- Truncation (truncation=k): the gradient of the loss at position t flows back through at most k time steps
  (t, t-1, ..., t-k+1) of the layer's own recurrence; k=1 is the no-recurrence gradient. Padding steps do not
  consume a step. `d_final_state` enters as if it were a loss at the last step. In a stack, each layer
  truncates its own recurrence.
- `input_grad`: instance attribute (default True), set False by the model on bottom layers, whose dX nobody
  uses; backward may then return None for dX and skip that matmul (computing it anyway is also fine).
- The decoder of "encoder_decoder" gets zero inputs of width input_size, so its W_xh receives zero gradient.
- `hidden_grads=False` (backward keyword): nobody reads dh; backward may then return None for it and skip
  storing the (T, B, H) array.
- `accepts_readout_grad`: class attribute (default False). The gradient a linear read-out O = H W (+ b) sends
  to the top layer is dH = dO W^T, a (T, B, H) array as big as the hidden states; a layer that sets this
  True receives it as a `ReadoutGrad` and materialises only the steps it is working on (`rows`). Other
  layers receive the plain array.
- `fuses_readout`: class attribute (default False). The read-out reads every hidden row once more after the
  forward (O = H W) and after the backward (dL/dW = H^T dO), by then evicted from cache. A layer that sets
  this True (it must also accept ReadoutGrad) does both while its rows are in cache: the model calls
  `forward(..., readout=(W, out))` on the top layer, which writes H W (T, B, O) into `out` chunk by chunk
  (with the same per-step products as `H @ W`), and its backward adds its steps' share of the weight
  gradient to a ReadoutGrad made with weight_grad=True (`add_weight_grad`).
- Read-out of "many_to_one": `layer.readout(final_state) -> (B, hidden_size)` is what the head reads of each
  sequence (default: h of the final state, i.e. h at each sequence's last valid step, since padding carries
  the state); `layer.readout_grad(d_readout, final_state) -> d_final_state` is its gradient. Bidirectional
  layers override both (h_fwd at the last valid step and h_bwd after reading back to step 0).
- A cache serves one backward: backward may overwrite it (the gated layers write dL/da_t over their cached
  gate values), but not the H its forward returned, which a layer that fuses the read-out reads in its
  backward. A layer may also reuse its cache's buffers in its next forward (the gated layers keep them as a
  workspace), so a cache is valid only until the layer's next forward; their backward raises on an older one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES = ("float32", "float64")


def clip_band_sum(deltas: np.ndarray, clip: float) -> None:
    """Clip the sum over axis -3 of deltas (..., n_bands, B, H) element-wise to [-clip, clip], in place.

    The bands are the shares of dL/da_t by loss position under truncated BPTT; each band's elements are
    scaled by the factor that takes their sum to its clipped value, so the bands sum to clip(sum) and keep
    their signs and proportions. One band is plainly clipped (full BPTT: bit for bit np.clip).
    """
    if deltas.shape[-3] == 1:
        np.clip(deltas, -clip, clip, out=deltas)
        return
    total = np.abs(deltas.sum(axis=-3, keepdims=True))
    over = total > clip
    if over.any():
        deltas *= np.where(over, clip / np.where(over, total, 1.0), 1.0)


def chunk_steps(step_size: int, most: int, budget: int) -> int:
    """Steps per chunk of a sweep over the steps (a backward sweep, a fused read-out, a weight-gradient
    product): at most `most`, at least one, and about `budget` of steps of step_size each, both in one unit
    (bytes, or elements), sized so that a chunk stays in cache."""
    return max(1, min(most, budget // step_size))


def step_rows(Z: np.ndarray, h0: np.ndarray, D: int, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Prepare the step rows Z (B, H + D + bias + extra) = [h_{t-1} | x_t | 1 (with a bias) | extra] that a
    fused step product reads (times the stacked weights [W_h; W_x; b]): write h0 (B, H) and the ones, return
    the views h (B, H) and x (B, D) that each step fills."""
    H = h0.shape[1]
    Z[:, :H] = h0
    if bias:
        Z[:, H + D] = 1.0
    return Z[:, :H], Z[:, H:H + D]


def check_choice(argument: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return `value` if it is one of `allowed`, else raise ValueError naming `argument`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument} must be one of {list(allowed)}, got {value!r}")
    return value


def check_positive_int(argument: str, value: Any) -> int:
    """Return `value` as int if it is an integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)


def check_optional_positive_float(argument: str, value: Any) -> float | None:
    """Return None or a finite float > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{argument} must be None or a finite number > 0, got {value!r}")
    return float(value)


def check_dtype(value: Any) -> np.dtype:
    """"float32" or "float64" (names, or the numpy dtypes themselves) -> np.dtype."""
    name = np.dtype(value).name if isinstance(value, type | np.dtype) else value
    return np.dtype(check_choice("dtype", name, DTYPES))


def check_array(argument: str, value: Any, shape: tuple[int | None, ...], dtype: np.dtype) -> np.ndarray:
    """Convert to a finite array of `dtype` whose shape matches `shape` (None = any size); never broadcast."""
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be a numeric array, got {type(value).__name__}") from error
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if array.ndim != len(shape) or any(s not in (None, a) for s, a in zip(shape, array.shape, strict=True)):
        raise ValueError(f"{argument} must have shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must contain only finite values (no NaN or inf)")
    return array


def check_mask(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """A (T, B) mask of 0/1 (or bool) values -> bool array."""
    mask = check_array("mask", value, shape, np.dtype(np.float64))
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must contain only 0/1 (or boolean) values")
    return mask.astype(bool)


class PairwiseSum:
    """The sum of arrays of one shape added one by one (the shares of a gradient, chunk by chunk), added
    pairwise as a binary counter: a sum of n shares is a tree of depth log2(n), whose rounding errors grow
    with log n, not with n as a running sum's do, at the running sum's cost (n - 1 additions, no copy).
    Measured against long double on the shares of a train step at (200, 128, 128) and (500, 64, 256): mean
    error 0.05-0.25 eps against 0.09-0.78 for the running sum, max 0.2-1.3 eps against 0.3-5.6. `add` takes
    ownership of the array it is given and adds into it."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray | None] = []  # _levels[i]: None or the sum of 2^i shares

    def add(self, share: np.ndarray) -> None:
        for i, level in enumerate(self._levels):
            if level is None:
                self._levels[i] = share
                return
            level += share
            share, self._levels[i] = level, None
        self._levels.append(share)

    def total(self) -> np.ndarray | None:
        """The sum of the shares added so far (None before the first); the partial sums from the smallest.
        Call it once, after the last add: it adds the partial sums into one another."""
        total = None
        for level in self._levels:
            if level is not None:
                total = level if total is None else np.add(total, level, out=level)
        return total


class ReadoutGrad:
    """dL/dH = dO W^T (T, B, H) of a linear read-out O = H W (+ b), kept factored: dO (T, B, O), W (H, O).

    It also sums the read-out's weight gradient dL/dW = H^T dO (H, O) over step ranges (add_weight_grad,
    pairwise: PairwiseSum); with weight_grad=True (`collects_weight_grad`) the layer that receives it adds
    every range itself (see `fuses_readout` in the module docstring).
    """

    def __init__(self, dO: np.ndarray, W: np.ndarray, weight_grad: bool = False):
        self.dO, self.W = dO, W
        # BLAS multiplies by a C-ordered W^T up to 2x faster than by the transposed view W.T (float32)
        self.W_T = np.ascontiguousarray(W.T)
        self.collects_weight_grad = weight_grad
        self._weight_grad_T = PairwiseSum()  # of (O, H) shares

    def add_weight_grad(self, H: np.ndarray, start: int) -> None:
        """Add the share H^T dO of the steps start..start+n-1, given their hidden rows H (n, B, H)."""
        rows = H.shape[0] * H.shape[1]
        # as (dO^T H)^T, the few outputs as the product's rows: measured 1.5-2.5x faster than H^T dO at
        # T * B = 25,600-32,000 rows
        self._weight_grad_T.add(self.dO[start:start + H.shape[0]].reshape(rows, -1).T @ H.reshape(rows, -1))

    def weight_grad(self) -> np.ndarray:
        """dL/dW (H, O), C-ordered, of the steps added so far."""
        total = self._weight_grad_T.total()
        return np.zeros_like(self.W) if total is None else np.ascontiguousarray(total.T)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """dL/dH at steps start..stop-1: a new (stop - start, B, H) array."""
        return self.dO[start:stop] @ self.W_T

    def full(self) -> np.ndarray:
        """The whole (T, B, H) array."""
        return self.rows(0, self.dO.shape[0])


def grad_rows(dH: np.ndarray | ReadoutGrad, start: int, stop: int) -> np.ndarray:
    """Steps start..stop-1 of dL/dH given as an array (a view is returned) or as a ReadoutGrad."""
    return dH.rows(start, stop) if isinstance(dH, ReadoutGrad) else dH[start:stop]


class RecurrentLayer:
    """Base class of a recurrent layer; see the module docstring for the protocol.

    Subclasses implement `init_params`, `forward` and `backward`. `hidden_size` is the width of the outputs H
    passed upward (for a bidirectional layer, twice the cell width).
    """

    clip_hidden_delta: float | None = None
    input_grad: bool = True
    accepts_readout_grad: bool = False
    fuses_readout: bool = False

    def __init__(self, input_size: int, hidden_size: int, *, activation: str = "tanh", bias: bool = True):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.activation = activation
        self.bias = bias

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
        raise NotImplementedError

    def readout(self, final_state: tuple[np.ndarray, ...]) -> np.ndarray:
        """(B, hidden_size): what a many_to_one read-out sees; by default h of the final state."""
        return final_state[0]

    def readout_grad(self, d_readout: np.ndarray, final_state: tuple[np.ndarray, ...]
                     ) -> tuple[np.ndarray, ...]:
        """d_final_state (shaped like the state) for the gradient d_readout (B, hidden_size) of `readout`."""
        return (d_readout, *(np.zeros_like(s) for s in final_state[1:]))

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray, ...],
                            np.ndarray | None]:
        raise NotImplementedError
