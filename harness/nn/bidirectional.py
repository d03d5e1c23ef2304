"""Bidirectional recurrent networks (Schuster & Paliwal 1997; note 003).

A bidirectional layer runs one cell forwards and an independent cell backwards in time and concatenates their
states: H_t = [h_fwd_t, h_bwd_t], width 2 * hidden_size. Reversing X and `valid` together along time makes the
backward cell start each sequence at its own last valid step: the reversed padding comes first and carries the
zero initial state, so padding never reaches either direction.

Parameters: the forward cell's local names prefixed "fw.", the backward cell's "bw." (e.g. "fw.W_xh",
"bw.W_xh"; the model adds "l1.", "dec." ...). The state is the forward cell's state followed by the backward
cell's, e.g. (h_fwd, h_bwd) for Elman/GRU, (h_fwd, c_fwd, h_bwd, c_bwd) for LSTM.

Sequence modes: many_to_one reads [h_fwd at the last valid step, h_bwd after reading back to step 0] (each
direction's final state, through the layer's `readout` hook), not H at the last step, whose backward half has
seen only one input.
encoder_decoder: the decoder is a bidirectional stack too, each direction started from the encoder's final
state of the same direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .elman import Elman, ElmanLayer
from .gated import GRU, LSTM, GRULayer, LSTMLayer
from .layers import RecurrentLayer
from .model import RecurrentModel

CELLS: dict[str, type[RecurrentLayer]] = {"elman": ElmanLayer, "lstm": LSTMLayer, "gru": GRULayer}
_MODEL_CELLS: dict[type[RecurrentModel], str] = {Elman: "elman", LSTM: "lstm", GRU: "gru"}
_DIRECTIONS = ("fw.", "bw.")


def cell_name(cell: Any) -> str:
    """"elman" | "lstm" | "gru" from a cell name or one of the model classes Elman, LSTM, GRU."""
    if isinstance(cell, type) and cell in _MODEL_CELLS:
        return _MODEL_CELLS[cell]
    if isinstance(cell, str) and cell.lower() in CELLS:
        return cell.lower()
    raise ValueError(f"cell must be one of {list(CELLS)} (or the classes Elman, LSTM, GRU), got {cell!r}")


class BidirectionalLayer(RecurrentLayer):
    """Forward and backward cells of width `hidden_size` each; outputs H (T, B, 2 * hidden_size)."""

    def __init__(self, input_size: int, hidden_size: int, *, cell: str = "elman", activation: str = "tanh",
                 bias: bool = True):
        super().__init__(input_size, 2 * hidden_size, activation=activation, bias=bias)
        self.cell_size = hidden_size
        layer_class = CELLS[cell_name(cell)]
        self.directions = tuple(layer_class(input_size, hidden_size, activation=activation, bias=bias)
                                for _ in _DIRECTIONS)

    # the model sets these after construction; both directions must honour them
    @property
    def clip_hidden_delta(self) -> float | None:
        return self.directions[0].clip_hidden_delta

    @clip_hidden_delta.setter
    def clip_hidden_delta(self, value: float | None) -> None:
        for layer in self.directions:
            layer.clip_hidden_delta = value

    @property
    def input_grad(self) -> bool:
        return self.directions[0].input_grad

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        for layer in self.directions:
            layer.input_grad = value

    def init_params(self, rng: np.random.Generator, *, init: str, recurrent_init: str,
                    spectral_radius: float | None, max_singular_value: float | None,
                    dtype: np.dtype) -> dict[str, np.ndarray]:
        params = {}
        for prefix, layer in zip(_DIRECTIONS, self.directions, strict=True):
            local = layer.init_params(rng, init=init, recurrent_init=recurrent_init,
                                      spectral_radius=spectral_radius, max_singular_value=max_singular_value,
                                      dtype=dtype)
            params.update({prefix + k: v for k, v in local.items()})
        return params

    @staticmethod
    def _split(params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], ...]:
        return tuple({k[len(p):]: v for k, v in params.items() if k.startswith(p)} for p in _DIRECTIONS)

    def forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray,
                state0: tuple[np.ndarray, ...] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
        """X (T, B, D), valid (T, B) -> H (T, B, 2H), forward state + backward state, cache."""
        fw, bw = self.directions
        p_fw, p_bw = self._split(params)
        half = None if state0 is None else len(state0) // 2
        H_fw, final_fw, cache_fw = fw.forward(p_fw, X, valid, None if state0 is None else state0[:half])
        H_bw, final_bw, cache_bw = bw.forward(p_bw, np.ascontiguousarray(X[::-1]), valid[::-1],
                                              None if state0 is None else state0[half:])
        H = np.concatenate([H_fw, H_bw[::-1]], axis=-1)
        return H, final_fw + final_bw, (cache_fw, cache_bw, len(final_fw))

    def backward(self, params: dict[str, np.ndarray], dH: np.ndarray, cache: Any,
                 d_final_state: tuple[np.ndarray, ...] | None = None, truncation: int | None = None,
                 hidden_grads: bool = True,
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple[np.ndarray, ...],
                            np.ndarray | None]:
        """dH (T, B, 2H) -> dX (T, B, D) or None, grads, d_state0 (like the state), dh (T, B, 2H) or None."""
        fw, bw = self.directions
        p_fw, p_bw = self._split(params)
        cache_fw, cache_bw, half = cache
        Hc = self.cell_size
        d_fw = None if d_final_state is None else d_final_state[:half]
        d_bw = None if d_final_state is None else d_final_state[half:]
        dX_fw, g_fw, d0_fw, dh_fw = fw.backward(p_fw, dH[..., :Hc], cache_fw, d_fw, truncation, hidden_grads)
        dX_bw, g_bw, d0_bw, dh_bw = bw.backward(p_bw, np.ascontiguousarray(dH[::-1, :, Hc:]), cache_bw,
                                                d_bw, truncation, hidden_grads)
        grads = {"fw." + k: v for k, v in g_fw.items()} | {"bw." + k: v for k, v in g_bw.items()}
        dX = None if dX_fw is None else dX_fw + dX_bw[::-1]
        dh = np.concatenate([dh_fw, dh_bw[::-1]], axis=-1) if hidden_grads else None
        return dX, grads, d0_fw + d0_bw, dh

    def readout(self, final_state: tuple[np.ndarray, ...]) -> np.ndarray:
        """(B, 2H): [h_fwd at each sequence's last valid step, h_bwd after reading back to step 0]."""
        half = len(final_state) // 2
        return np.concatenate([final_state[0], final_state[half]], axis=-1)

    def readout_grad(self, d_readout: np.ndarray, final_state: tuple[np.ndarray, ...]
                     ) -> tuple[np.ndarray, ...]:
        """d_final_state (shaped like the state) for the gradient d_readout (B, 2H) of `readout`."""
        half = len(final_state) // 2
        d_state = [np.zeros_like(s) for s in final_state]
        d_state[0] = d_readout[:, :self.cell_size]
        d_state[half] = d_readout[:, self.cell_size:]
        return tuple(d_state)


class Bidirectional(RecurrentModel):
    """Bidirectional network of Elman, LSTM or GRU cells.

    Bidirectional(cell, input_size, hidden_size, output_size, **RecurrentModel keywords): `cell` is "elman",
    "lstm", "gru" or one of the classes Elman, LSTM, GRU; `hidden_size` is the width of each direction, so
    every layer outputs 2 * hidden_size and W_hy is (2 * hidden_size, output_size).
    """

    def __init__(self, cell: Any, input_size: int, hidden_size: int, output_size: int, **kwargs: Any):
        self.cell = cell_name(cell)
        super().__init__(input_size, hidden_size, output_size, **kwargs)
        self.config = {"cell": self.cell, **self.config}

    def make_layer(self, input_size: int, hidden_size: int) -> BidirectionalLayer:
        return BidirectionalLayer(input_size, hidden_size, cell=self.cell, activation=self.activation,
                                  bias=self.bias)

    def recurrent_matrix(self) -> np.ndarray:
        """W_hh (H, H) of the first layer's forward cell (Elman cells only)."""
        if self.cell != "elman":
            raise TypeError(f"Bidirectional({self.cell!r}) has gate blocks, not one (H, H) recurrent matrix; "
                            "read model.params['fw.W_h'] instead")
        return self.params["fw.W_hh"]
