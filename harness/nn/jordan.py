"""Jordan network (note 001, sec. 1.2): the previous output, after the head's non-linearity, is fed back.

    a_t = x_t W_xh + y_{t-1} W_yh + b_h,   h_t = g(a_t),   o_t = h_t W_hy + b_y,   y_t = out(o_t),   y_0 = 0

Parameters W_xh (D, H), W_yh (O, H), b_h (H,), W_hy (H, O), b_y (O,). Because the recurrence passes through
the head, BPTT goes through the output non-linearity: dL/do_t = (direct loss term) + out'(o_t)^T dL/dy_t.
Scope (refused with ValueError otherwise): one layer (the output of the only layer is what feeds back), modes
many_to_many / many_to_one / one_to_many (one_to_many feeds its own outputs back on zero input), and no
spectral_radius (W_yh is (O, H), not square; max_singular_value works).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import activate_, derivative_from_output
from .heads import head_output, head_output_vjp
from .init import input_matrix, recurrent_matrix
from .layers import clip_band_sum
from .model import RecurrentModel


class Jordan(RecurrentModel):
    """Jordan network; same constructor as RecurrentModel, restricted as the module docstring says."""

    def _build_network(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.num_layers != 1:
            raise ValueError(f"num_layers must be 1 for Jordan (only one layer's output feeds back), "
                             f"got {self.num_layers}")
        allowed = ["many_to_many", "many_to_one", "one_to_many"]
        if self.mode not in allowed:
            raise ValueError(f"mode must be one of {allowed} for Jordan, got {self.mode!r}")
        if self.spectral_radius is not None:
            raise ValueError("spectral_radius must be None for Jordan (W_yh is not square); "
                             "use max_singular_value")
        D, H, n_out = self.input_size, self.hidden_size, self.output_size
        params = {"W_xh": input_matrix(rng, self.init, D, H, self.dtype),
                  "W_yh": recurrent_matrix(rng, self.recurrent_init or self.init, n_out, H, self.dtype,
                                           None, self.max_singular_value)}
        if self.bias:
            params["b_h"] = np.zeros(H, dtype=self.dtype)
        params["W_hy"] = input_matrix(rng, self.init, H, n_out, self.dtype)
        if self.bias:
            params["b_y"] = np.zeros(n_out, dtype=self.dtype)
        return params

    def _network_forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray
                         ) -> tuple[np.ndarray, Any]:
        """X (T, B, D), valid (T, B) -> logits at the output positions, cache (X, H, Y, padding)."""
        T, B, D = X.shape
        W_yh, W_hy = params["W_yh"], params["W_hy"]
        Hs = (X.reshape(T * B, D) @ params["W_xh"]).reshape(T, B, self.hidden_size)
        if self.bias:
            Hs += params["b_h"]
        Os = np.empty((T, B, self.output_size), dtype=Hs.dtype)
        Ys = np.empty_like(Os)
        padding = None if valid.all() else ~valid[:, :, None]
        h = np.zeros((B, self.hidden_size), dtype=Hs.dtype)
        y = np.zeros((B, self.output_size), dtype=Hs.dtype)
        with np.errstate(over="ignore"):  # sigmoid's exp(-a) is inf for a << 0: 1 / (1 + inf) = 0 is right
            for t in range(T):
                a = Hs[t]
                a += y @ W_yh
                activate_(self.activation, a)
                if padding is not None:
                    np.copyto(a, h, where=padding[t])
                h = a
                np.matmul(h, W_hy, out=Os[t])
                if self.bias:
                    Os[t] += params["b_y"]
                y = Ys[t] = head_output(self.head, Os[t])
        return (Os[-1:] if self.mode == "many_to_one" else Os), (X, Hs, Ys, padding)

    def _network_backward(self, params: dict[str, np.ndarray], dO: np.ndarray, cache: Any,
                          hidden_grads: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        X, Hs, Ys, padding = cache
        T, B, D = X.shape
        H, n_out = self.hidden_size, self.output_size
        W_yh_T, W_hy_T = params["W_yh"].T, params["W_hy"].T
        if self.mode == "many_to_one":
            dO_loss = np.zeros_like(Ys)
            dO_loss[-1] = dO[0]
        else:
            dO_loss = dO
        dA = derivative_from_output(self.activation, Hs)  # becomes dL/da_t in place
        if padding is not None:
            dA *= ~padding
        dO_total = np.empty_like(Ys)
        dh = np.empty_like(Hs) if hidden_grads else None
        if self.truncation is None or self.truncation >= T:
            self._backward_full(W_yh_T, W_hy_T, dO_loss, Ys, dA, dO_total, dh, padding)
        else:
            self._backward_truncated(W_yh_T, W_hy_T, dO_loss, Ys, dA, dO_total, dh, padding)
        dA2, dO2 = dA.reshape(T * B, H), dO_total.reshape(T * B, n_out)
        grads = {"W_xh": X.reshape(T * B, D).T @ dA2,
                 "W_yh": Ys[:-1].reshape(-1, n_out).T @ dA[1:].reshape(-1, H),
                 "W_hy": Hs.reshape(T * B, H).T @ dO2}
        if self.bias:
            grads["b_h"] = dA2.sum(axis=0)
            grads["b_y"] = dO2.sum(axis=0)
        return grads, dh

    def _backward_full(self, W_yh_T: np.ndarray, W_hy_T: np.ndarray, dO_loss: np.ndarray, Ys: np.ndarray,
                       dA: np.ndarray, dO_total: np.ndarray, dh: np.ndarray | None,
                       padding: np.ndarray | None) -> None:
        """Full BPTT. Fills dO_total (T, B, O) = dL/do_t and dh (T, B, H) unless None; dA holds g'(a_t), then
        dL/da_t."""
        B, n_out = Ys.shape[1:]
        dy = np.zeros((B, n_out), dtype=Ys.dtype)          # dL/dy_t through a_{t+1}
        passed = np.zeros(dA.shape[1:], dtype=dA.dtype)  # dL/dh_t carried back through padding steps
        dh_t = np.empty_like(passed)
        clip = self.clip_hidden_delta
        for t in range(Ys.shape[0] - 1, -1, -1):
            if dh is not None:
                dh_t = dh[t]
            np.add(dO_loss[t], head_output_vjp(self.head, Ys[t], dy), out=dO_total[t])
            np.matmul(dO_total[t], W_hy_T, out=dh_t)
            dh_t += passed
            da = dA[t]
            da *= dh_t
            if clip is not None:
                np.clip(da, -clip, clip, out=da)
            dy = da @ W_yh_T
            if padding is not None:
                passed = np.where(padding[t], dh_t, 0.0)

    def _backward_truncated(self, W_yh_T: np.ndarray, W_hy_T: np.ndarray, dO_loss: np.ndarray,
                            Ys: np.ndarray, dA: np.ndarray, dO_total: np.ndarray, dh: np.ndarray | None,
                            padding: np.ndarray | None) -> None:
        """BPTT cut after k = truncation steps back from each loss position; fills what _backward_full does.

        bands[j] (B, H) is the part of dL/dh_t that went through exactly j recurrences h -> y -> a;
        dy_bands[j] is the part of dL/dy_t that becomes band j+1 at step t (band k-1 stops there).
        """
        k = self.truncation
        B, n_out = Ys.shape[1:]
        dy_bands = np.zeros((k - 1, B, n_out), dtype=Ys.dtype)
        passed = np.zeros((k, *dA.shape[1:]), dtype=dA.dtype)
        bands = np.empty_like(passed)
        clip = self.clip_hidden_delta
        for t in range(Ys.shape[0] - 1, -1, -1):
            do_bands = head_output_vjp(self.head, Ys[t], dy_bands)
            np.add(dO_loss[t], do_bands.sum(axis=0), out=dO_total[t])
            np.matmul(dO_loss[t], W_hy_T, out=bands[0])
            np.matmul(do_bands, W_hy_T, out=bands[1:])
            bands += passed
            if dh is not None:
                bands.sum(axis=0, out=dh[t])
            deltas = bands * dA[t]
            if clip is not None:
                clip_band_sum(deltas, clip)
            deltas.sum(axis=0, out=dA[t])
            dy_bands = deltas[:-1] @ W_yh_T
            if padding is not None:  # padding steps do not count as a step of recurrence
                passed = np.where(padding[t], bands, 0.0)

    def _top_hidden(self, cache: Any) -> np.ndarray:
        return cache[1]

    def recurrent_matrix(self) -> np.ndarray:
        """W_hy W_yh (H, H): the linear part of the map h_{t-1} -> a_t (before the head's derivative)."""
        return self.params["W_hy"] @ self.params["W_yh"]
