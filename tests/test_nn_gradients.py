"""Finite-difference checks of every gradient harness.nn's Elman/Jordan networks compute.

Central differences in float64; the error measure is the per-parameter relative error
||g - g_fd|| / max(||g||, ||g_fd||), required below 1e-6.
"""

from __future__ import annotations

import itertools
from functools import partial

import gradcheck
import numpy as np
import pytest
from gradcheck import TOL, assert_grads_match, finite_difference, relative_error

from harness.nn import GRU, LSTM, Elman, Jordan, elman
from harness.nn.activations import activate_

T, B, D, H, K, L = 5, 3, 2, 4, 3, 4
make_data = partial(gradcheck.make_data, T=T, B=B, D=D, K=K, L=L)


def build(network: str, mode: str, activation: str, head: str, **kw):
    output_length = L if mode in ("one_to_many", "encoder_decoder") else None
    common = dict(activation=activation, head=head, mode=mode, output_length=output_length, seed=3, **kw)
    if network == "jordan":
        return Jordan(D, H, K, **common)
    if network == "stacked":
        return Elman(D, H, K, num_layers=2, **common)
    if network == "linear_nobias":
        return Elman(D, H, K, bias=False, **common)
    return Elman(D, H, K, **common)


def shift_relu_biases(model) -> None:
    # keep ReLU pre-activations away from the kink so central differences see a smooth function
    for name, p in model.params.items():
        if name.endswith("b_h"):
            p += 0.3


ELMAN_CASES = [
    (net, mode, act, head, masked)
    for net, mode, act, head, masked in itertools.product(
        ["elman", "stacked"], ["many_to_many", "many_to_one", "one_to_many", "encoder_decoder"],
        ["tanh", "sigmoid", "relu", "identity"], ["identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce"],
        [False, True])
] + [("linear_nobias", mode, "identity", "identity_mse", masked)
     for mode in ["many_to_many", "many_to_one", "one_to_many", "encoder_decoder"]
     for masked in [False, True]]

JORDAN_CASES = list(itertools.product(
    ["jordan"], ["many_to_many", "many_to_one", "one_to_many"], ["tanh", "sigmoid", "relu", "identity"],
    ["identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce"], [False, True]))


@pytest.mark.parametrize(("network", "mode", "activation", "head", "masked"), ELMAN_CASES + JORDAN_CASES)
def test_parameter_gradients_match_finite_differences(network, mode, activation, head, masked) -> None:
    model = build(network, mode, activation, head)
    if activation == "relu":
        shift_relu_biases(model)
    X, Y, mask = make_data(mode, head, masked)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize("truncation", [None, 1])
@pytest.mark.parametrize(("network", "mode"), [
    ("stacked", "many_to_many"), ("stacked", "many_to_one"), ("stacked", "one_to_many"),
    ("stacked", "encoder_decoder"), ("jordan", "many_to_many"), ("jordan", "many_to_one"),
    ("jordan", "one_to_many")])
def test_single_step_single_sequence(network, mode, truncation) -> None:
    model = build(network, mode, "tanh", "sigmoid_bce", truncation=truncation)
    if mode in ("one_to_many", "encoder_decoder"):
        model = type(model)(**{**model.config, "output_length": 1})
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1, 1, D))
    Y = rng.random((1, K)) if mode == "many_to_one" else rng.random((1, 1, K))
    assert_grads_match(model, X, Y, None)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("truncation", [1, 2, 3])
@pytest.mark.parametrize(("network", "mode"), [("stacked", "many_to_many"), ("stacked", "encoder_decoder"),
                                               ("jordan", "many_to_one")])
def test_truncation_at_least_sequence_length_is_full_bptt(reduction, truncation, network, mode) -> None:
    X, Y, mask = make_data(mode, "softmax_ce", masked=True)
    steps = X.shape[0]
    full = build(network, mode, "tanh", "softmax_ce", reduction=reduction)
    cut = build(network, mode, "tanh", "softmax_ce", reduction=reduction, truncation=steps + truncation - 1)
    _, g_full, dh_full = full.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    _, g_cut, dh_cut = cut.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    for name in g_full:
        np.testing.assert_allclose(g_cut[name], g_full[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dh_cut, dh_full, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------- independent reference implementation
def reference_loss(params, X, Y, activation, *, jordan=False, delta=None, window=None, frozen=None) -> float:
    """Loss (identity_mse, reduction sum, many_to_many) of a one-layer Elman/Jordan net written out plainly.

    delta (T, B, H) is added to each h_t after it is computed (so dL/d delta_t = total dL/dh_t).
    window=(start, end): only loss position end-1 counts, steps before `start` use the `frozen` parameters
    (detached), which gives the gradient truncated to the steps start..end-1.
    """
    steps, batch, _ = X.shape
    h = np.zeros((batch, params["W_xh"].shape[1]))
    y = np.zeros((batch, Y.shape[-1]))
    total = 0.0
    for t in range(steps if window is None else window[1]):
        p = frozen if window is not None and t < window[0] else params
        recurrent = y @ p["W_yh"] if jordan else h @ p["W_hh"]
        h = activate_(activation, X[t] @ p["W_xh"] + recurrent + p["b_h"])
        if delta is not None:
            h = h + delta[t]
        y = h @ p["W_hy"] + p["b_y"]
        if window is None or t == window[1] - 1:
            total += float(((y - Y[t]) ** 2).sum() / Y.shape[-1])
    return total


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("network", ["elman", "jordan"])
def test_hidden_grads_match_finite_differences_of_a_perturbation_of_h(network, activation) -> None:
    model = build(network, "many_to_many", activation, "identity_mse", reduction="sum")
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False)
    loss, _, dh = model.loss_and_grads(X, Y, return_hidden_grads=True)
    delta = np.zeros((T, B, H))
    assert reference_loss(model.params, X, Y, activation, jordan=network == "jordan", delta=delta) \
        == pytest.approx(loss, rel=1e-12)
    jordan = network == "jordan"
    numeric = finite_difference(
        lambda: reference_loss(model.params, X, Y, activation, jordan=jordan, delta=delta), delta)
    assert dh.shape == (T, B, H)
    assert relative_error(dh, numeric) < TOL


@pytest.mark.parametrize("mode", ["many_to_one", "encoder_decoder", "one_to_many"])
def test_hidden_grads_in_other_modes_match_a_perturbation_of_the_input_side(mode) -> None:
    # dL/dh_t of the first layer equals dL/d(b_h) restricted to step t and row b, since a_t = ... + b_h and
    # dL/da_t = dL/dh_t * g'(a_t); for identity activation the two coincide, which gives an FD handle on dh
    model = build("elman", mode, "identity", "identity_mse")
    X, Y, mask = make_data(mode, "identity_mse", masked=mode != "one_to_many")
    _, _, dh = model.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    X_run = X.copy()
    if mode == "one_to_many":  # perturb step 1's input only: its effect is dh_1 @ W_xh^T
        numeric = finite_difference(lambda: model.loss(X_run, Y, mask), X_run)
        np.testing.assert_allclose(numeric[0], dh[0] @ model.params["W_xh"].T, rtol=1e-6, atol=1e-10)
        return
    numeric = finite_difference(lambda: model.loss(X_run, Y, mask), X_run)
    expected = dh @ model.params["W_xh"].T
    if mask is not None and mode == "many_to_one":
        valid = np.logical_or.accumulate(mask[::-1], axis=0)[::-1]
        expected = expected * valid[..., None]  # padding inputs are ignored
    assert relative_error(numeric, expected) < TOL


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("network", ["elman", "jordan"])
def test_truncated_bptt_equals_sum_over_paths_of_at_most_k_steps(network, activation, k) -> None:
    model = build(network, "many_to_many", activation, "identity_mse", reduction="sum", truncation=k)
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False, seed=5)
    _, grads = model.loss_and_grads(X, Y)
    frozen = {name: p.copy() for name, p in model.params.items()}
    jordan = network == "jordan"
    for name in model.params:
        expected = sum(
            finite_difference(lambda t=t: reference_loss(model.params, X, Y, activation, jordan=jordan,
                                                         window=(max(0, t - k + 1), t + 1), frozen=frozen),
                              model.params[name])
            for t in range(T))
        assert relative_error(grads[name], expected) < TOL, name


def test_truncation_one_is_the_no_recurrence_gradient() -> None:
    model = build("elman", "many_to_many", "tanh", "identity_mse", reduction="sum", truncation=1)
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False)
    _, grads = model.loss_and_grads(X, Y)
    Hs = model.hidden_states(X)
    p = model.params
    dH = 2.0 / K * ((Hs @ p["W_hy"] + p["b_y"]) - Y) @ p["W_hy"].T
    dA = dH * (1 - Hs**2)
    H_prev = np.concatenate([np.zeros((1, B, H)), Hs[:-1]])
    np.testing.assert_allclose(grads["W_hh"], np.einsum("tbi,tbj->ij", H_prev, dA), rtol=1e-12)
    np.testing.assert_allclose(grads["W_xh"], np.einsum("tbi,tbj->ij", X, dA), rtol=1e-12)


@pytest.mark.parametrize("network", ["elman", "jordan"])
def test_truncation_with_padding_counts_only_valid_steps(network) -> None:
    # many_to_one reads each sequence at its last valid step; with k=1 only that step's input matters
    model = build(network, "many_to_one", "tanh", "identity_mse", truncation=1)
    X, Y, mask = make_data("many_to_one", "identity_mse", masked=True)
    _, grads = model.loss_and_grads(X, Y, mask)
    last = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)
    Hs = model.hidden_states(X, mask)
    p = model.params
    h_last = Hs[-1]
    dH = 2.0 / (K * B) * ((h_last @ p["W_hy"] + p["b_y"]) - Y) @ p["W_hy"].T
    dA = dH * (1 - h_last**2)
    x_last = X[last, np.arange(B)]
    np.testing.assert_allclose(grads["W_xh"], x_last.T @ dA, rtol=1e-12)


def test_clip_hidden_delta_bounds_the_backpropagated_delta() -> None:
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False)
    free = build("elman", "many_to_many", "identity", "identity_mse", reduction="sum")
    clipped = build("elman", "many_to_many", "identity", "identity_mse", reduction="sum",
                    clip_hidden_delta=1e-3)
    _, g_free, dh_free = free.loss_and_grads(X, Y, return_hidden_grads=True)
    _, g_clip, _ = clipped.loss_and_grads(X, Y, return_hidden_grads=True)
    assert np.abs(dh_free).max() > 1e-3  # clipping is active
    # identity activation: dL/da_t = dL/dh_t clipped, so the bias gradient is the sum of clipped deltas
    assert np.all(np.abs(g_clip["b_h"]) <= T * B * 1e-3 + 1e-15)
    assert not np.allclose(g_clip["b_h"], g_free["b_h"])


def step_deltas(cell: str, clip: float | None, truncation: int | None) -> np.ndarray:
    """dL/da_t (T, gates * H) reaching the weights at every step of one sequence: with input x_t = e_t (a
    one-hot of the step), row t of the input weights' gradient is exactly step t's delta."""
    steps, hidden = 12, 6
    X = np.eye(steps)[:, None, :]
    Y = np.random.default_rng(1).standard_normal((steps, 1, 2)) * 3.0
    model = {"elman": Elman, "jordan": Jordan, "lstm": LSTM, "gru": GRU}[cell](
        steps, hidden, 2, head="identity_mse", reduction="sum", truncation=truncation, clip_hidden_delta=clip,
        seed=0)
    grads = model.loss_and_grads(X, Y)[1]
    return grads["W_x" if cell in ("lstm", "gru") else "W_xh"]


@pytest.mark.parametrize("cell", ["elman", "jordan", "lstm", "gru"])
@pytest.mark.parametrize("truncation", [None, 3, 7])
def test_clip_hidden_delta_bounds_the_summed_delta_of_every_step(cell: str, truncation: int | None) -> None:
    free = step_deltas(cell, None, truncation)
    clip = 0.25 * float(np.abs(free).max())
    clipped = step_deltas(cell, clip, truncation)
    assert np.abs(clipped).max() <= clip * (1 + 1e-12)  # what reaches the weights stays in [-c, c]
    assert np.abs(clipped).max() >= 0.99 * clip  # and the clip is active
    # a clip above every step's summed delta changes nothing, whatever the bands carry one by one
    loose = step_deltas(cell, 1.0001 * float(np.abs(free).max()), truncation)
    np.testing.assert_allclose(loose, free, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------- Elman's chunked backward sweep (elman.CHUNK)
LONG = 2 * elman.CHUNK + 5  # three chunks: the last two full, the first one short


def long_data(mode: str, seed: int = 0):
    """X (LONG, B, D) and targets; the mask gives sequence 1 padding that starts inside a chunk and crosses a
    chunk boundary, sequence 2 padding over two boundaries, and sequence 0 a target hole at a boundary."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((LONG, B, D))
    mask = (np.arange(LONG)[:, None] < np.array([LONG, LONG - elman.CHUNK + 3, 4])[None]).astype(float)
    if mode == "many_to_one":
        return X, rng.random((B, K)), mask
    if mode == "encoder_decoder":
        return X, rng.random((L, B, K)), None
    mask[LONG - elman.CHUNK, 0] = 0.0
    return X, rng.random((LONG, B, K)), mask


@pytest.mark.parametrize(("network", "mode"), [("elman", "many_to_many"), ("elman", "many_to_one"),
                                               ("stacked", "many_to_many"), ("stacked", "encoder_decoder")])
def test_gradients_across_backward_chunks_match_finite_differences(network, mode) -> None:
    model = build(network, mode, "tanh", "identity_mse")
    X, Y, mask = long_data(mode)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize("k", [3, elman.CHUNK + 2])
def test_truncated_gradients_across_backward_chunks_equal_their_definition(k) -> None:
    model = build("elman", "many_to_many", "tanh", "identity_mse", reduction="sum", truncation=k)
    X, Y, _ = long_data("many_to_many")
    _, grads = model.loss_and_grads(X, Y)
    frozen = {name: p.copy() for name, p in model.params.items()}
    for name in ("W_hh", "W_xh"):
        expected = sum(
            finite_difference(lambda t=t: reference_loss(model.params, X, Y, "tanh",
                                                         window=(max(0, t - k + 1), t + 1), frozen=frozen),
                              model.params[name])
            for t in range(LONG))
        assert relative_error(grads[name], expected) < TOL, name


def test_hidden_grads_across_backward_chunks_match_finite_differences() -> None:
    model = build("elman", "many_to_many", "sigmoid", "identity_mse", reduction="sum")
    X, Y, _ = long_data("many_to_many")
    _, _, dh = model.loss_and_grads(X, Y, return_hidden_grads=True)
    delta = np.zeros((LONG, B, H))
    numeric = finite_difference(lambda: reference_loss(model.params, X, Y, "sigmoid", delta=delta), delta)
    assert relative_error(dh, numeric) < TOL


@pytest.mark.parametrize(("mode", "kw"), [
    ("many_to_many", {}), ("many_to_many", {"truncation": 3, "clip_hidden_delta": 1e-4}),
    ("many_to_one", {"clip_hidden_delta": 1e-4}), ("many_to_one", {"truncation": 4}),
    ("encoder_decoder", {"num_layers": 2}), ("encoder_decoder", {"truncation": 2})])
def test_chunk_size_changes_nothing_but_rounding(monkeypatch, mode, kw) -> None:
    X, Y, mask = long_data(mode)
    results = []
    for chunk in (LONG, elman.CHUNK, 5, 1):
        monkeypatch.setattr(elman, "CHUNK", chunk)
        model = build("elman", mode, "tanh", "sigmoid_bce", **kw)
        results.append(model.loss_and_grads(X, Y, mask, return_hidden_grads=True))
    (_, g_ref, dh_ref), others = results[0], results[1:]
    for _, grads, dh in others:
        for name in g_ref:
            np.testing.assert_allclose(grads[name], g_ref[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(dh, dh_ref, rtol=1e-12, atol=1e-15)
    if "clip_hidden_delta" in kw:  # the clip is active, so chunks do clip per step
        free = build("elman", mode, "tanh", "sigmoid_bce", **{**kw, "clip_hidden_delta": None})
        assert not np.allclose(free.loss_and_grads(X, Y, mask)[1]["W_hh"], g_ref["W_hh"])
