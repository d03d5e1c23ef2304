"""First-order optimizers (SGD, momentum, Adam, Rprop and its variants) and gradient clipping.

Every optimizer updates a dict of parameter arrays in place from a dict of gradients with the same keys and
shapes. State (velocities, moments, Rprop step sizes) is kept per parameter name, with the parameter's dtype,
and is allocated on the first step; later steps only run in-place ufuncs on these buffers.

Clipping (note 001, section 4) is configured on the optimizer and applied inside `step()` before the update:
first element-wise to [-clip_value, clip_value], then by the global norm over all parameters together,
g <- clip_norm * g / ||g|| when ||g|| > clip_norm. The caller's gradient arrays are never modified.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.config import suggestion

OPTIMIZER_NAMES = ("adam", "momentum", "rprop", "sgd")
RPROP_VARIANTS = ("irprop+", "irprop-", "rprop+", "rprop-")

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class StepInfo:
    """What one optimizer step did.

    grad_norm: global L2 norm of the gradient over all parameters, before clipping.
    clipped: whether clipping changed the gradient.
    step_size: mean |Δθ| over all parameter elements.
    mean_delta: Rprop only, mean step size Δ over all elements after this step's adaptation.
    sign_flips: Rprop only, fraction of elements whose gradient sign flipped against the previous step.
    backtracked: Rprop+ / iRprop+ only, fraction of elements whose previous update was reverted.
    """

    grad_norm: float
    clipped: bool
    step_size: float
    mean_delta: float | None = None
    sign_flips: float | None = None
    backtracked: float | None = None

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        """The fields that are set, as floats keyed `prefix + field`, ready for `Logger.log_metrics`."""
        # vars, not dataclasses.asdict: the fields are scalars, and asdict's deep copy took 10x as long
        return {prefix + k: float(v) for k, v in vars(self).items() if v is not None}


def global_norm(grads: Arrays) -> float:
    """L2 norm of all gradient arrays taken together as one vector; exact even when squares overflow."""
    total = 0.0
    # einsum, not np.dot: a threaded BLAS dot slows down by 1000x on an oversubscribed machine (parallel jobs)
    with np.errstate(over="ignore"):  # an overflow is caught below and handled by rescaling
        for g in grads.values():
            flat = g.reshape(-1)
            total += float(np.einsum("i,i->", flat, flat))
    if math.isfinite(total):
        return math.sqrt(total)
    # squares overflowed (or a value is inf/nan): rescale by the largest magnitude, which keeps nan/inf as is
    scale = max((float(np.max(np.abs(g))) for g in grads.values() if g.size), default=0.0)
    if not math.isfinite(scale) or scale == 0.0:
        return scale
    return scale * math.sqrt(sum(float(np.sum(np.square(g / scale))) for g in grads.values()))


def clip_by_global_norm(grads: Arrays, max_norm: float) -> tuple[dict[str, np.ndarray], float, bool]:
    """Rescale all gradients together so that their global norm is at most `max_norm` (note 001, sec. 4).

    grads: name -> array (any shapes). Returns (new clipped arrays, norm before clipping, clipped?).
    The direction is kept; when the norm exceeds max_norm it becomes exactly max_norm (up to rounding).
    """
    _check_positive("max_norm", max_norm)
    norm = global_norm(grads)
    clipped = norm > max_norm
    scale = max_norm / norm if clipped else 1.0
    return {k: g * g.dtype.type(scale) for k, g in grads.items()}, norm, clipped


def clip_by_value(grads: Arrays, max_value: float) -> tuple[dict[str, np.ndarray], bool]:
    """Clip every gradient element to [-max_value, max_value] (note 000 clips its deltas to ±5).

    grads: name -> array (any shapes). Returns (new clipped arrays, whether any element was changed).
    """
    _check_positive("max_value", max_value)
    clipped = any(bool(g.size and (g.max() > max_value or g.min() < -max_value)) for g in grads.values())
    return {k: np.clip(g, -max_value, max_value) for k, g in grads.items()}, clipped


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(name: str, value: Any) -> None:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_optional_positive(name: str, value: Any) -> None:
    if value is not None:
        _check_positive(name, value)


def _check_unit_interval(name: str, value: Any, *, open_low: bool) -> None:
    """Require value in (0, 1) when open_low, else in [0, 1)."""
    ok = _is_real(value) and (
        (0 < value < 1) if open_low else (0 <= value < 1))
    if not ok:
        allowed = "(0, 1)" if open_low else "[0, 1)"
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")


class Optimizer:
    """Base class: clipping, per-parameter state and scratch buffers, the shared step bookkeeping.

    Subclasses implement `_update(param, grad, state, work)`, which writes Δθ into `work["delta"]` (the base
    adds it to the parameter and measures |Δθ|). `_new_state(param)` gives the buffers that carry over from
    step to step (saved by `state_dict`); `_new_work(param)` gives extra scratch buffers reused every step.
    """

    name = ""

    def __init__(self, lr: float = 0.01, *, clip_norm: float | None = None,
                 clip_value: float | None = None) -> None:
        _check_positive("lr", lr)
        _check_optional_positive("clip_norm", clip_norm)
        _check_optional_positive("clip_value", clip_value)
        self.lr = float(lr)
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._work: dict[str, dict[str, np.ndarray]] = {}
        self._grad_buf: dict[str, np.ndarray] = {}  # the clipped gradient, when clipping is on

    def buffers_per_parameter(self) -> int:
        """Arrays of a parameter's shape this optimizer allocates per parameter: its state, its scratch
        buffers and, with clipping on, the clipped gradient (what a memory estimate must count)."""
        probe = np.zeros(1)
        clipping = self.clip_norm is not None or self.clip_value is not None
        return len(self._new_state(probe)) + 1 + len(self._new_work(probe)) + int(clipping)

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments, so that `make_optimizer(opt.name, **opt.hyperparameters())` rebuilds it."""
        return {k: getattr(self, k) for k in inspect.signature(type(self)).parameters}

    def step(self, params: dict[str, np.ndarray], grads: Arrays, loss: float | None = None) -> StepInfo:
        """Update `params` in place from `grads` (same keys and shapes); `loss` is the loss at `params`.

        Only iRprop+ uses `loss`; the others accept and ignore it.
        """
        self._check_inputs(params, grads)
        grad_norm, effective, clipped = self._clip(grads)
        self.t += 1
        abs_sum = 0.0
        n_elements = 0
        for name, p in params.items():
            if name not in self.state:
                self.state[name] = self._new_state(p)
            if name not in self._work:
                self._work[name] = {"delta": np.empty_like(p), **self._new_work(p)}
            work = self._work[name]
            delta = work["delta"]
            self._update(p, effective[name], self.state[name], work)
            p += delta
            np.abs(delta, out=delta)
            abs_sum += float(delta.sum())
            n_elements += p.size
        return self._info(grad_norm, clipped, abs_sum / max(n_elements, 1))

    def _info(self, grad_norm: float, clipped: bool, step_size: float) -> StepInfo:
        return StepInfo(grad_norm=grad_norm, clipped=clipped, step_size=step_size)

    def _check_inputs(self, params: Mapping[str, np.ndarray], grads: Arrays) -> None:
        if params.keys() != grads.keys():
            raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")
        for name, p in params.items():
            if grads[name].shape != p.shape:
                raise ValueError(f"grads[{name!r}] must have shape {p.shape}, got {grads[name].shape}")
            if name in self._work and self._work[name]["delta"].shape != p.shape:
                raise ValueError(f"params[{name!r}] must keep the shape "
                                 f"{self._work[name]['delta'].shape} its optimizer state has, got {p.shape}")

    def _clip(self, grads: Arrays) -> tuple[float, Arrays, bool]:
        """Return (norm before clipping, gradients to use, clipped?) without touching the caller's arrays."""
        grad_norm = global_norm(grads)
        if self.clip_value is None and self.clip_norm is None:
            return grad_norm, grads, False
        out: dict[str, np.ndarray] = {}
        for name, g in grads.items():
            buf = self._grad_buf.get(name)
            if buf is None or buf.shape != g.shape:
                buf = self._grad_buf[name] = np.empty_like(g)
            if self.clip_value is None:
                np.copyto(buf, g)
            else:
                np.clip(g, -self.clip_value, self.clip_value, out=buf)
            out[name] = buf
        clipped = False
        norm = grad_norm
        if self.clip_value is not None:
            clipped = any(bool(g.size and (g.max() > self.clip_value or g.min() < -self.clip_value))
                          for g in grads.values())
            norm = global_norm(out) if clipped else grad_norm
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
            for buf in out.values():
                buf *= buf.dtype.type(scale)
            clipped = True
        return grad_norm, out, clipped

    def _new_state(self, param: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _new_work(self, param: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray],
                work: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """A deep copy of all that is needed to continue bit-exactly: name, hyperparameters, step, state."""
        return {"name": self.name, "hyperparameters": self.hyperparameters(), "t": self.t,
                "state": {k: {b: a.copy() for b, a in s.items()} for k, s in self.state.items()},
                "extra": self._extra_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a `state_dict()` taken from an optimizer of the same kind (hyperparameters included)."""
        if state_dict.get("name") != self.name:
            raise ValueError(f"state_dict must come from a {self.name!r} optimizer, "
                             f"got {state_dict.get('name')!r}")
        for k, v in state_dict["hyperparameters"].items():
            setattr(self, k, v)
        self.t = int(state_dict["t"])
        self.state = {k: {b: np.array(a, copy=True) for b, a in s.items()}
                      for k, s in state_dict["state"].items()}
        self._work = {}
        self._load_extra_state(state_dict.get("extra", {}))

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        """Subclasses with state beyond per-parameter arrays restore it here."""


class SGD(Optimizer):
    """Plain gradient descent: θ <- θ - lr g."""

    name = "sgd"

    def _update(self, param, grad, state, work) -> None:
        np.multiply(grad, -self.lr, out=work["delta"])


class Momentum(Optimizer):
    """Heavy-ball momentum, v <- μ v - lr g, with θ <- θ + v (classical) or θ <- θ + μ v - lr g (Nesterov).

    The Nesterov form is Sutskever et al.'s (2013) look-ahead rewritten in terms of the current parameters.
    """

    name = "momentum"

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False, *,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        _check_unit_interval("momentum", momentum, open_low=False)
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        self.momentum = float(momentum)
        self.nesterov = nesterov

    def _new_state(self, param):
        return {"velocity": np.zeros_like(param)}

    def _new_work(self, param):
        return {"look_ahead": np.empty_like(param)} if self.nesterov else {}

    def _update(self, param, grad, state, work) -> None:
        v, delta = state["velocity"], work["delta"]
        np.multiply(grad, -self.lr, out=delta)
        v *= self.momentum
        v += delta
        if self.nesterov:
            delta += np.multiply(v, self.momentum, out=work["look_ahead"])
        else:
            np.copyto(delta, v)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected moments: θ <- θ - lr m̂ / (sqrt(v̂) + eps)."""

    name = "adam"

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        _check_unit_interval("beta1", beta1, open_low=False)
        _check_unit_interval("beta2", beta2, open_low=False)
        _check_positive("eps", eps)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)

    def _new_state(self, param):
        return {"m": np.zeros_like(param), "v": np.zeros_like(param)}

    def _update(self, param, grad, state, work) -> None:
        m, v, delta = state["m"], state["v"], work["delta"]
        # m += (1 - β1)(g - m) and v += (1 - β2)(g² - v), with delta as the temporary
        np.subtract(grad, m, out=delta)
        delta *= 1.0 - self.beta1
        m += delta
        np.multiply(grad, grad, out=delta)
        delta -= v
        delta *= 1.0 - self.beta2
        v += delta
        # Δθ = -lr / (1 - β1^t) · m / (sqrt(v / (1 - β2^t)) + eps)
        np.divide(v, 1.0 - self.beta2 ** self.t, out=delta)
        np.sqrt(delta, out=delta)
        delta += self.eps
        np.divide(m, delta, out=delta)
        delta *= -self.lr / (1.0 - self.beta1 ** self.t)


class Rprop(Optimizer):
    """Resilient propagation: move each weight by its own step Δ against the sign of its gradient.

    Δ grows by eta_plus while the gradient sign holds and shrinks by eta_minus when it flips, bounded to
    [delta_min, delta_max]; `lr` is the initial step Δ0 (note 001, sec. 3: 0.001). Variants
    (Riedmiller & Braun 1993; Igel & Hüsken 2000, 2003), per weight, with s = sign(g_{t-1}) sign(g_t):
      rprop-  : adapt Δ, then Δθ = -sign(g_t) Δ.
      rprop+  : s > 0 or s = 0: Δθ = -sign(g_t) Δ; s < 0: revert the previous update (Δθ = -Δθ_{t-1})
                and store g_t = 0 so the next step neither adapts Δ nor backtracks.
      irprop- : like rprop- but on s < 0 store g_t = 0 and make no move this step.
      irprop+ : like rprop+ but revert only when the loss increased, E_t > E_{t-1} (needs `loss`);
                otherwise no move on s < 0.
    """

    name = "rprop"

    def __init__(self, lr: float = 0.001, variant: str = "rprop-", eta_plus: float = 1.2,
                 eta_minus: float = 0.5, delta_min: float = 1e-6, delta_max: float = 50.0, *,
                 clip_norm: float | None = None, clip_value: float | None = None) -> None:
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        if variant not in RPROP_VARIANTS:
            raise ValueError(f"variant must be one of {list(RPROP_VARIANTS)}, got {variant!r}"
                             f"{suggestion(variant, RPROP_VARIANTS)}")
        if not _is_real(eta_plus) or not 1 < eta_plus < math.inf:
            raise ValueError(f"eta_plus must be a finite number > 1, got {eta_plus!r}")
        _check_unit_interval("eta_minus", eta_minus, open_low=True)
        _check_positive("delta_min", delta_min)
        _check_positive("delta_max", delta_max)
        if delta_max < delta_min:
            raise ValueError(f"delta_max must be >= delta_min={delta_min}, got {delta_max!r}")
        if not delta_min <= lr <= delta_max:
            raise ValueError(f"lr (the initial step Δ0) must be in [delta_min, delta_max] = "
                             f"[{delta_min}, {delta_max}], got {lr!r}")
        self.variant = variant
        self.eta_plus = float(eta_plus)
        self.eta_minus = float(eta_minus)
        self.delta_min = float(delta_min)
        self.delta_max = float(delta_max)
        self.prev_loss: float | None = None
        # per-step tallies for StepInfo, reset at each step
        self._backtrack = False
        self._n_flip = self._n_backtracked = self._n_elements = 0
        self._delta_sum = 0.0

    def _new_state(self, param):
        state = {"step": np.full_like(param, self.lr), "prev_sign": np.zeros_like(param)}
        if self.variant.endswith("+"):
            state["prev_update"] = np.zeros_like(param)
        return state

    def _new_work(self, param):
        return {"sign": np.empty_like(param), "same": np.empty(param.shape, dtype=bool),
                "flip": np.empty(param.shape, dtype=bool)}

    def step(self, params, grads, loss=None) -> StepInfo:
        if self.variant == "irprop+" and (loss is None or not math.isfinite(loss)):
            raise ValueError(f"loss must be a finite float for variant 'irprop+', got {loss!r}")
        self._backtrack = self.variant == "rprop+" or (
            self.variant == "irprop+" and self.prev_loss is not None and loss > self.prev_loss)
        self._n_flip = self._n_backtracked = self._n_elements = 0
        self._delta_sum = 0.0
        info = super().step(params, grads, loss)
        if self.variant == "irprop+":
            self.prev_loss = float(loss)
        return info

    def _update(self, param, grad, state, work) -> None:
        step, prev_sign = state["step"], state["prev_sign"]
        sign, same, flip, delta = work["sign"], work["same"], work["flip"], work["delta"]
        np.sign(grad, out=sign)
        np.multiply(sign, prev_sign, out=delta)
        np.greater(delta, 0, out=same)
        np.less(delta, 0, out=flip)
        np.multiply(step, self.eta_plus, out=step, where=same)
        np.minimum(step, self.delta_max, out=step, where=same)
        np.multiply(step, self.eta_minus, out=step, where=flip)
        np.maximum(step, self.delta_min, out=step, where=flip)
        if self.variant != "rprop-":
            # a flipped gradient is forgotten: the next step sees sign 0 and neither adapts Δ nor backtracks
            np.copyto(sign, 0, where=flip)
        np.multiply(sign, step, out=delta)
        np.negative(delta, out=delta)
        n_flip = int(np.count_nonzero(flip))
        if self._backtrack:
            np.subtract(delta, state["prev_update"], out=delta, where=flip)
            self._n_backtracked += n_flip
        if self.variant.endswith("+"):
            np.copyto(state["prev_update"], delta)
        np.copyto(prev_sign, sign)
        self._n_flip += n_flip
        self._n_elements += param.size
        self._delta_sum += float(step.sum())

    def _info(self, grad_norm, clipped, step_size) -> StepInfo:
        n = max(self._n_elements, 1)
        return StepInfo(grad_norm=grad_norm, clipped=clipped, step_size=step_size,
                        mean_delta=self._delta_sum / n, sign_flips=self._n_flip / n,
                        backtracked=self._n_backtracked / n if self.variant.endswith("+") else None)

    def _extra_state(self):
        return {"prev_loss": self.prev_loss}

    def _load_extra_state(self, extra):
        self.prev_loss = extra.get("prev_loss")


_CLASSES: dict[str, type[Optimizer]] = {"adam": Adam, "momentum": Momentum, "rprop": Rprop, "sgd": SGD}


def make_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """Build an optimizer by name ('adam', 'momentum', 'rprop', 'sgd'); keywords as the class constructor.

    Unknown names, unknown keywords and out-of-range values raise ValueError naming what is allowed.
    """
    allowed = optimizer_arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"optimizer {name!r} accepts arguments {allowed}, got unknown {unknown}")
    return _CLASSES[name](**kwargs)


def optimizer_arguments(name: str) -> list[str]:
    """The keywords optimizer name's constructor takes (lr, clip_norm, clip_value and its own)."""
    if name not in _CLASSES:
        raise ValueError(f"optimizer name must be one of {list(OPTIMIZER_NAMES)}, got {name!r}")
    return list(inspect.signature(_CLASSES[name]).parameters)
