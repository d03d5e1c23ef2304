"""RecurrentModel: the machinery shared by every network of harness.nn.

It owns the flat parameter dict, the stacking of recurrent layers, the four sequence modes, masks, the output
head and its loss, predict / loss_and_grads, truncation, and save / load. Batch-row convention throughout:
X (T, B, D), hidden states (T, B, H), outputs o = h @ W_hy + b_y.

Subclassing (how LSTM, GRU, Bidirectional plug in):

    class LSTM(RecurrentModel):
        layer_class = LSTMLayer            # a harness.nn.layers.RecurrentLayer subclass

`make_layer(input_size, hidden_size)` builds each layer; by default it calls
`layer_class(input_size, hidden_size, activation=self.activation, bias=self.bias)`; override it when the layer
takes other arguments. Every subclass is registered by class name for `load_model`; a subclass whose
constructor takes extra arguments must add them to `self.config` so that `type(m)(**m.config)` rebuilds it.
The many_to_one read-out of each sequence is the top layer's `readout(final_state)` (its gradient
`readout_grad`), h at the last valid step unless the layer overrides it (Bidirectional does).
A network that does not fit the layer protocol (Jordan: the output feeds back) overrides the four hooks
`_build_network`, `_network_forward`, `_network_backward` and `_top_hidden` instead.

Parameter names: layer 0 "W_xh", "W_hh", "b_h"; layer i >= 1 "l{i}.W_xh", ...; head "W_hy", "b_y"; decoder
(encoder_decoder) "dec.W_xh", "dec.W_hh", ..., "dec.l1.W_hh", ...

Modes (targets Y and masks; a mask marks target positions):
- "many_to_many":    X (T, B, D), Y (T, B, O), mask (T, B)
- "many_to_one":     X (T, B, D), Y (B, O),    mask (T, B) marks valid input steps; the output is read at each
                     sequence's last valid step
- "one_to_many":     X (1, B, D), Y (L, B, O), mask (L, B); X is read at step 1, zero input for the rest
- "encoder_decoder": X (T, B, D), Y (L, B, O), mask (L, B); the encoder's final states initialise a decoder
                     stack with its own parameters, run for L = output_length steps on zero input
A sequence's length is one past its last masked step; later steps are padding and carry the state unchanged.
dh (return_hidden_grads) and hidden_states() refer to the top layer of the network that reads X (the encoder).
"""

from __future__ import annotations

import inspect
import json
import math
import zipfile
from typing import Any, ClassVar

import numpy as np

from .activations import ACTIVATIONS
from .heads import HEADS, head_losses, head_output
from .init import INITS, input_matrix
from .layers import (
    ReadoutGrad,
    RecurrentLayer,
    check_array,
    check_choice,
    check_dtype,
    check_mask,
    check_optional_positive_float,
    check_positive_int,
)

MODES = ("many_to_many", "many_to_one", "one_to_many", "encoder_decoder")
REDUCTIONS = ("mean", "sum")
_CONFIG_KEY = "__config__"
_REGISTRY: dict[str, type[RecurrentModel]] = {}


def _valid_from_mask(mask: np.ndarray) -> np.ndarray:
    """(T, B) bool: True up to and including each sequence's last masked step."""
    return np.logical_or.accumulate(mask[::-1], axis=0)[::-1]


class RecurrentModel:
    """A recurrent network trained by (truncated) BPTT; see the module docstring."""

    layer_class: ClassVar[type[RecurrentLayer] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *, activation: str = "tanh",
                 head: str = "identity_mse", mode: str = "many_to_many", init: str = "glorot",
                 recurrent_init: str | None = None, spectral_radius: float | None = None,
                 max_singular_value: float | None = None, num_layers: int = 1, bias: bool = True,
                 truncation: int | None = None, output_length: int | None = None, reduction: str = "mean",
                 clip_hidden_delta: float | None = None, seed: int = 0, dtype: str = "float64"):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.output_size = check_positive_int("output_size", output_size)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.head = check_choice("head", head, HEADS)
        self.mode = check_choice("mode", mode, MODES)
        self.init = check_choice("init", init, INITS)
        self.recurrent_init = None if recurrent_init is None else check_choice(
            "recurrent_init", recurrent_init, INITS)
        self.spectral_radius = check_optional_positive_float("spectral_radius", spectral_radius)
        self.max_singular_value = check_optional_positive_float("max_singular_value", max_singular_value)
        if self.spectral_radius is not None and self.max_singular_value is not None:
            raise ValueError("spectral_radius and max_singular_value: give at most one of them")
        self.num_layers = check_positive_int("num_layers", num_layers)
        if not isinstance(bias, bool | np.bool_):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        self.bias = bool(bias)
        if truncation is not None and (isinstance(truncation, bool) or truncation < 1
                                       or not isinstance(truncation, int | np.integer)):
            raise ValueError(f"truncation must be None (full BPTT) or an integer >= 1, got {truncation!r}")
        self.truncation = None if truncation is None else int(truncation)
        if self.mode in ("one_to_many", "encoder_decoder"):
            if output_length is None:
                raise ValueError(f"output_length must be a positive integer for mode {self.mode!r}, got None")
            self.output_length = check_positive_int("output_length", output_length)
        elif output_length is not None:
            raise ValueError(f"output_length must be None for mode {self.mode!r}, got {output_length!r}")
        else:
            self.output_length = None
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.clip_hidden_delta = check_optional_positive_float("clip_hidden_delta", clip_hidden_delta)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.dtype = check_dtype(dtype)
        self.config: dict[str, Any] = {
            "input_size": self.input_size, "hidden_size": self.hidden_size, "output_size": self.output_size,
            "activation": self.activation, "head": self.head, "mode": self.mode, "init": self.init,
            "recurrent_init": self.recurrent_init, "spectral_radius": self.spectral_radius,
            "max_singular_value": self.max_singular_value, "num_layers": self.num_layers, "bias": self.bias,
            "truncation": self.truncation, "output_length": self.output_length, "reduction": self.reduction,
            "clip_hidden_delta": self.clip_hidden_delta, "seed": self.seed, "dtype": self.dtype.name,
        }
        self.params: dict[str, np.ndarray] = self._build_network(np.random.default_rng(self.seed))

    # ----------------------------------------------------------------------------------------- construction
    def make_layer(self, input_size: int, hidden_size: int) -> RecurrentLayer:
        """Build one recurrent layer; override when `layer_class` takes other constructor arguments."""
        if self.layer_class is None:
            raise TypeError(f"{type(self).__name__} has no layer_class; use Elman, Jordan, LSTM, GRU, ...")
        return self.layer_class(input_size, hidden_size, activation=self.activation, bias=self.bias)

    def _make_stack(self, prefix: str) -> tuple[list[RecurrentLayer], list[str]]:
        layers, prefixes = [], []
        width = self.input_size
        for i in range(self.num_layers):
            layer = self.make_layer(width, self.hidden_size)
            layer.clip_hidden_delta = self.clip_hidden_delta
            layer.input_grad = i > 0
            layers.append(layer)
            prefixes.append(prefix + (f"l{i}." if i else ""))
            width = layer.hidden_size
        return layers, prefixes

    def _build_network(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Create layers (encoder, decoder) and draw all parameters; returns the parameter dict."""
        self.layers, self._prefixes = self._make_stack("")
        self.dec_layers, self._dec_prefixes = ([], [])
        if self.mode == "encoder_decoder":
            self.dec_layers, self._dec_prefixes = self._make_stack("dec.")
        params: dict[str, np.ndarray] = {}
        layer_kw = {"init": self.init, "recurrent_init": self.recurrent_init or self.init,
                    "spectral_radius": self.spectral_radius, "max_singular_value": self.max_singular_value,
                    "dtype": self.dtype}
        self._local_names: dict[str, list[str]] = {}
        for layer, prefix in zip(self.layers, self._prefixes, strict=True):
            self._add_layer_params(params, prefix, layer.init_params(rng, **layer_kw))
        top = self.layers[-1].hidden_size
        params["W_hy"] = input_matrix(rng, self.init, top, self.output_size, self.dtype)
        if self.bias:
            params["b_y"] = np.zeros(self.output_size, dtype=self.dtype)
        for layer, prefix in zip(self.dec_layers, self._dec_prefixes, strict=True):
            self._add_layer_params(params, prefix, layer.init_params(rng, **layer_kw))
        return params

    def _add_layer_params(self, params: dict[str, np.ndarray], prefix: str, local: dict[str, np.ndarray]
                          ) -> None:
        self._local_names[prefix] = list(local)
        params.update({prefix + k: v for k, v in local.items()})

    # ------------------------------------------------------------------------------------------ input checks
    def _prepare(self, X: Any, Y: Any = None, mask: Any = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Validate and lay out the inputs: (X_run (T, B, D), valid (T, B), target (T_out, B, O) | None,
        loss weights (T_out, B) | None)."""
        D, n_out, L = self.input_size, self.output_size, self.output_length
        if self.mode == "one_to_many":
            X = check_array("X", X, (1, None, D), self.dtype)
        else:
            X = check_array("X", X, (None, None, D), self.dtype)
        T, B = X.shape[:2]
        if T == 0 or B == 0:
            raise ValueError(f"X must have at least one time step and one sequence, got shape {X.shape}")
        out_steps = {"many_to_many": T, "many_to_one": 1}.get(self.mode, L)
        if mask is not None:
            mask = check_mask(mask, (T if self.mode in ("many_to_many", "many_to_one") else L, B))
        target = None
        if Y is not None:
            if self.mode == "many_to_one":
                target = check_array("Y", Y, (B, n_out), self.dtype)[None]
            else:
                target = check_array("Y", Y, (out_steps, B, n_out), self.dtype)
        valid = np.ones((T, B), dtype=bool)
        weights = None
        if self.mode == "many_to_one" and mask is not None:
            if not mask.any(axis=0).all():
                raise ValueError("mask must mark at least one valid step of every sequence for many_to_one")
            valid = _valid_from_mask(mask)
        elif mask is not None:
            if not mask.any():
                raise ValueError("mask must mark at least one target position")
            weights = mask.astype(self.dtype)
            if self.mode == "many_to_many":
                valid = _valid_from_mask(mask)
        if self.mode == "one_to_many":
            X_run = np.zeros((L, B, D), dtype=self.dtype)
            X_run[0] = X[0]
            X, valid = X_run, np.ones((L, B), dtype=bool)
        return X, valid, target, weights

    # ------------------------------------------------------------------------------ network forward/backward
    def _views(self, params: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
        return {name: params[prefix + name] for name in self._local_names[prefix]}

    def _stack_forward(self, layers: list[RecurrentLayer], prefixes: list[str],
                       params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray, states0: list | None,
                       readout: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, list, list]:
        """Forward through a stack; readout (W, out), for a top layer that fuses_readout, receives H W."""
        finals, caches = [], []
        inp = X
        for i, (layer, prefix) in enumerate(zip(layers, prefixes, strict=True)):
            state0 = None if states0 is None else states0[i]
            extra = {"readout": readout} if readout is not None and i == len(layers) - 1 else {}
            inp, final, cache = layer.forward(self._views(params, prefix), inp, valid, state0, **extra)
            finals.append(final)
            caches.append(cache)
        return inp, finals, caches

    def _stack_backward(self, layers: list[RecurrentLayer], prefixes: list[str],
                        params: dict[str, np.ndarray], dH: np.ndarray | ReadoutGrad, caches: list,
                        d_finals: list | None, grads: dict[str, np.ndarray], hidden_grads: bool = False
                        ) -> tuple[list, np.ndarray | None]:
        """Backward through a stack, top layer first; returns d_states0 per layer and the top layer's dh
        (None unless hidden_grads)."""
        d_states0: list = [None] * len(layers)
        dh_top = None
        for i in reversed(range(len(layers))):
            if isinstance(dH, ReadoutGrad) and not layers[i].accepts_readout_grad:
                dH = dH.full()
            d_final = None if d_finals is None else d_finals[i]
            top = i == len(layers) - 1
            dH, layer_grads, d_states0[i], dh = layers[i].backward(
                self._views(params, prefixes[i]), dH, caches[i], d_final, self.truncation,
                hidden_grads=hidden_grads and top)
            grads.update({prefixes[i] + k: v for k, v in layer_grads.items()})
            if top:
                dh_top = dh
        return d_states0, dh_top

    def _network_forward(self, params: dict[str, np.ndarray], X: np.ndarray, valid: np.ndarray
                         ) -> tuple[np.ndarray, Any]:
        """Logits O (T_out, B, O) at the output positions, and the cache for `_network_backward`."""
        W_hy = params["W_hy"]
        B = X.shape[1]
        T_out = self.output_length if self.mode == "encoder_decoder" else X.shape[0]  # when fused
        top = (self.dec_layers if self.mode == "encoder_decoder" else self.layers)[-1]
        fused = top.fuses_readout and self.mode != "many_to_one"  # the top layer computes H_out W_hy
        logits = np.empty((T_out, B, self.output_size), dtype=self.dtype) if fused else None
        readout = (W_hy, logits) if fused else None
        H_enc, finals, enc_caches = self._stack_forward(self.layers, self._prefixes, params, X, valid, None,
                                                        None if self.mode == "encoder_decoder" else readout)
        dec_caches = None
        if self.mode == "encoder_decoder":
            X_dec = np.zeros((self.output_length, B, self.input_size), dtype=self.dtype)
            H_out, _, dec_caches = self._stack_forward(self.dec_layers, self._dec_prefixes, params, X_dec,
                                                       np.ones((self.output_length, B), dtype=bool), finals,
                                                       readout)
        elif self.mode == "many_to_one":
            H_out = self.layers[-1].readout(finals[-1])[None]
        else:
            H_out = H_enc
        if not fused:
            logits = H_out @ W_hy
        if self.bias:
            logits += params["b_y"]
        return logits, (H_enc, enc_caches, dec_caches, H_out, finals[-1], fused)

    def _network_backward(self, params: dict[str, np.ndarray], dO: np.ndarray, cache: Any,
                          hidden_grads: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Gradients of all parameters and dh of the encoder's top layer (None unless hidden_grads), given
        dL/dO (T_out, B, O). The layers may overwrite their caches, not H_out, which the read-out's weight
        gradient reads (the top layer itself, chunk by chunk, when it fuses the read-out)."""
        H_enc, enc_caches, dec_caches, H_out, final_top, fused = cache
        W_hy = params["W_hy"]
        dH_out = ReadoutGrad(dO, W_hy, weight_grad=fused)  # fused: the top layer adds dL/dW_hy chunk by chunk
        if not fused:
            dH_out.add_weight_grad(H_out, 0)
        grads: dict[str, np.ndarray] = {}
        if self.bias:
            grads["b_y"] = dO.sum(axis=(0, 1))
        d_finals = None
        if self.mode in ("many_to_one", "encoder_decoder"):  # no loss reads the encoder's steps directly
            dH_enc = ReadoutGrad(np.zeros((*H_enc.shape[:2], self.output_size), dtype=dO.dtype), W_hy)
        else:
            dH_enc = dH_out
        if self.mode == "encoder_decoder":
            d_finals, _ = self._stack_backward(self.dec_layers, self._dec_prefixes, params, dH_out,
                                               dec_caches, None, grads)
        elif self.mode == "many_to_one":
            d_finals = [None] * len(self.layers)
            d_finals[-1] = self.layers[-1].readout_grad(dO[0] @ W_hy.T, final_top)
        _, dh = self._stack_backward(self.layers, self._prefixes, params, dH_enc, enc_caches, d_finals, grads,
                                     hidden_grads)
        grads["W_hy"] = dH_out.weight_grad()
        return grads, dh

    def _top_hidden(self, cache: Any) -> np.ndarray:
        return cache[0]

    # ---------------------------------------------------------------------------------------------- public
    def _shape_output(self, Y: np.ndarray) -> np.ndarray:
        return Y[0] if self.mode == "many_to_one" else Y

    def _forward(self, X: Any, Y: Any, mask: Any
                 ) -> tuple[np.ndarray, Any, np.ndarray | None, np.ndarray | None]:
        """One forward pass: logits (T_out, B, O), the cache for `_network_backward`, and `_prepare`'s target
        and loss weights (None without Y / without a loss mask)."""
        X, valid, target, weights = self._prepare(X, Y, mask)
        logits, cache = self._network_forward(self.params, X, valid)
        return logits, cache, target, weights

    def _outputs(self, logits: np.ndarray) -> np.ndarray:
        return self._shape_output(head_output(self.head, logits))

    def predict(self, X: Any, mask: Any = None) -> np.ndarray:
        """Head outputs: (T, B, O) many_to_many, (B, O) many_to_one, (L, B, O) one_to_many/encoder_decoder."""
        return self._outputs(self._forward(X, None, mask)[0])

    def hidden_states(self, X: Any, mask: Any = None) -> np.ndarray:
        """Top-layer hidden states (T, B, H_top) of the network that reads X."""
        return self._top_hidden(self._forward(X, None, mask)[1])

    def _loss_and_dO(self, logits: np.ndarray, target: np.ndarray, weights: np.ndarray | None
                     ) -> tuple[float, np.ndarray]:
        losses, dO = head_losses(self.head, logits, target)
        if weights is None:
            total, count = losses.sum(), losses.size
        else:
            total, count = (losses * weights).sum(), weights.sum()
            dO *= weights[..., None]
        if self.reduction == "mean":
            total = total / count
            dO *= 1.0 / count
        return float(total), dO

    def loss(self, X: Any, Y: Any, mask: Any = None) -> float:
        """The reduced loss (float)."""
        logits, _, target, weights = self._forward(X, Y, mask)
        return self._loss_and_dO(logits, target, weights)[0]

    def loss_and_predict(self, X: Any, Y: Any, mask: Any = None) -> tuple[float, np.ndarray]:
        """`loss(X, Y, mask)` and `predict(X, mask)` from one forward pass, bit-identical to the two calls."""
        logits, _, target, weights = self._forward(X, Y, mask)
        return self._loss_and_dO(logits, target, weights)[0], self._outputs(logits)

    def loss_and_grads(self, X: Any, Y: Any, mask: Any = None, return_hidden_grads: bool = False,
                       return_hidden_states: bool = False):
        """One forward and one backward pass.

        Returns (loss, grads), then dh if return_hidden_grads, then H if return_hidden_states: grads has the
        keys and shapes of `params`; dh (T, B, H_top) is the total dL/dh_t of the encoder's top layer
        (recurrent path included, truncated like the parameter gradients when `truncation` is set); H
        (T, B, H_top) is `hidden_states(X, mask)` as this pass computed it (the layers keep their cached H).
        """
        logits, cache, target, weights = self._forward(X, Y, mask)
        loss, dO = self._loss_and_dO(logits, target, weights)
        del logits  # the backward pass does not need them
        grads, dh = self._network_backward(self.params, dO, cache, return_hidden_grads)
        grads = {k: grads[k] for k in self.params}
        return (loss, grads, *((dh,) if return_hidden_grads else ()),
                *((self._top_hidden(cache),) if return_hidden_states else ()))

    def recurrent_matrix(self) -> np.ndarray:
        """W_hh of the first layer (H, H)."""
        return self.params["W_hh"]

    def save(self, path: str) -> None:
        """Write parameters and config to the .npz file `path` (exact name, no suffix added)."""
        meta = json.dumps({"class": type(self).__name__, "config": self.config})
        with open(path, "wb") as handle:
            np.savez(handle, **{_CONFIG_KEY: np.array(meta)}, **self.params)


# load_model sizes a probe model with these distinct primes to learn how each parameter dimension follows from
# the config (a dimension is a small multiple of one size: 4 * hidden_size for LSTM gates, 2 * hidden_size
# for a bidirectional layer's output) before the real model allocates anything.
_PROBE_SIZES = {"input_size": 101, "hidden_size": 103, "output_size": 107}
_MAX_CONFIG_BYTES = 1 << 20


def _stored_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of every array of the .npz file path, read from the headers alone (no data is
    decompressed); ValueError for a file that is no .npz or whose headers claim more data than it holds."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(member)
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise ValueError(f"path {path!r}: array {info.filename!r} claims more data than it holds")
                headers[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"path must name a file written by RecurrentModel.save, got {path!r} ({exc})"
                         ) from exc
    return headers


def _allowed_config_keys(cls: type[RecurrentModel]) -> set[str]:
    """The constructor arguments of cls (with RecurrentModel's when cls passes **kwargs on to it)."""
    keys: set[str] = set()
    for klass in (cls, RecurrentModel):
        parameters = inspect.signature(klass.__init__).parameters.values()
        keys |= {p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL,
                                                                                    p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return keys


def _expected_shapes(cls: type[RecurrentModel], config: dict[str, Any], num_arrays: int
                     ) -> dict[str, tuple[int, ...]]:
    """The parameter shapes cls(**config) allocates, found without allocating them (see _PROBE_SIZES)."""
    sizes = {key: check_positive_int(key, config.get(key)) for key in _PROBE_SIZES}
    layers = check_positive_int("num_layers", config.get("num_layers", 1))
    if layers > num_arrays:  # every layer stores at least one array
        raise ValueError(f"num_layers {layers} exceeds the {num_arrays} arrays stored")
    probe = cls(**{**config, **_PROBE_SIZES})

    def scaled(dim: int) -> int:
        for key, prime in _PROBE_SIZES.items():
            if dim % prime == 0:
                return dim // prime * sizes[key]
        return dim

    return {name: tuple(scaled(dim) for dim in value.shape) for name, value in probe.params.items()}


def load_model(path: str) -> RecurrentModel:
    """Rebuild a model written by `RecurrentModel.save`, with bit-identical parameters.

    Nothing is allocated before the stored arrays' shapes and dtypes are checked against the config: a
    config that disagrees with its arrays, names a key the class does not take or a class that does not
    exist is refused with one ValueError line.
    """
    import harness.nn  # noqa: F401  (registers every model class, including gated/bidirectional ones)

    headers = _stored_headers(path)
    config_header = headers.pop(_CONFIG_KEY, None)
    if config_header is None or config_header[1].kind != "U" or config_header[1].itemsize > _MAX_CONFIG_BYTES:
        raise ValueError(f"path must name a file written by RecurrentModel.save, got {path!r}")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data[_CONFIG_KEY]))
        if not isinstance(meta, dict) or meta.get("class") not in _REGISTRY:
            got = meta.get("class") if isinstance(meta, dict) else meta
            raise ValueError(f"model class must be one of {sorted(_REGISTRY)}, got {got!r}")
        cls, config = _REGISTRY[meta["class"]], meta.get("config")
        if not isinstance(config, dict):
            raise ValueError(f"path {path!r}: config must be a mapping, got {config!r}")
        unknown = sorted(set(config) - _allowed_config_keys(cls))
        if unknown:
            raise ValueError(f"path {path!r}: config keys {unknown} are not arguments of {cls.__name__}; "
                             f"allowed: {sorted(_allowed_config_keys(cls))}")
        try:
            expected = _expected_shapes(cls, config, len(headers))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"path {path!r}: config of {cls.__name__} is invalid: {exc}") from exc
        dtype = np.dtype(config.get("dtype", "float64"))
        found = {name: shape for name, (shape, _) in headers.items()}
        if found != expected or any(stored_dtype != dtype for _, stored_dtype in headers.values()):
            raise ValueError(f"path {path!r} holds parameters that do not match its config (stored "
                             f"{found}, config {cls.__name__} needs {expected} of {dtype})")
        model = cls(**config)
        model.params = {k: data[k] for k in model.params}
    return model
