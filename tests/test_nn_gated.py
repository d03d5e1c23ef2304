"""LSTM, GRU and Bidirectional networks: finite-difference gradients, truncation, padding, save/load, float32.

Central differences in float64; error measure ||g - g_fd|| / max(||g||, ||g_fd||) below 1e-6.
"""

from __future__ import annotations

import copy
import itertools
import pickle
from functools import partial

import gradcheck
import numpy as np
import pytest
from gradcheck import EPS, TOL, assert_grads_match, finite_difference, relative_error

from harness.nn import Elman, load_model
from harness.nn.bidirectional import Bidirectional, BidirectionalLayer
from harness.nn.gated import CHUNK, GRU, LSTM, GRULayer, LSTMLayer

T, B, D, H, K, L = 5, 3, 2, 3, 2, 4
make_data = partial(gradcheck.make_data, T=T, B=B, D=D, K=K, L=L)
MODES = ["many_to_many", "many_to_one", "one_to_many", "encoder_decoder"]
HEADS = ["identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce"]
NETWORKS = ["lstm", "gru", "bi-elman", "bi-lstm", "bi-gru"]
LONG = 2 * CHUNK + 3  # steps for which the gated layers' backward sweep crosses two chunk boundaries


def build(network: str, mode: str = "many_to_many", head: str = "sigmoid_bce", **kw):
    output_length = L if mode in ("one_to_many", "encoder_decoder") else None
    common = dict(head=head, mode=mode, output_length=output_length, seed=3, **kw)
    if network == "lstm":
        model = LSTM(D, H, K, **common)
    elif network == "gru":
        model = GRU(D, H, K, **common)
    else:
        model = Bidirectional(network.removeprefix("bi-"), D, H, K, **common)
    # zero biases and small weights leave gates near 1/2: perturb so every gradient term is exercised
    rng = np.random.default_rng(7)
    for p in model.params.values():
        p += 0.3 * rng.standard_normal(p.shape).astype(p.dtype)
    return model


@pytest.mark.parametrize(("network", "mode", "masked"),
                         list(itertools.product(NETWORKS, MODES, [False, True])))
def test_gradients_match_finite_differences_in_every_mode(network, mode, masked) -> None:
    model = build(network, mode)
    X, Y, mask = make_data(mode, "sigmoid_bce", masked)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize(("network", "head"), list(itertools.product(NETWORKS, HEADS)))
def test_gradients_match_finite_differences_for_every_head(network, head) -> None:
    model = build(network, "many_to_many", head)
    X, Y, mask = make_data("many_to_many", head, masked=True)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize(("network", "mode"), list(itertools.product(NETWORKS, ["many_to_many", "many_to_one",
                                                                                 "encoder_decoder"])))
def test_stacked_gradients_match_finite_differences(network, mode) -> None:
    model = build(network, mode, num_layers=2)
    X, Y, mask = make_data(mode, "identity_mse", masked=True)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize("network", NETWORKS)
def test_gradients_with_sigmoid_activation_and_no_bias(network) -> None:
    model = build(network, "many_to_many", activation="sigmoid", bias=False)
    X, Y, mask = make_data("many_to_many", "sigmoid_bce", masked=True)
    assert "b" not in model.params and "fw.b" not in model.params
    assert_grads_match(model, X, Y, mask)


# ------------------------------------------------------------------------------------------ truncated BPTT
def truncated_reference(layer, params, X, R, k) -> dict[str, np.ndarray]:
    """Gradient of sum_t R_t . h_t where each h_t is recomputed from the state at t-k, held constant.

    This is the definition of truncation=k (the loss at t reaches back through k steps), computed
    independently of the band bookkeeping by central differences.
    """
    valid = np.ones(X.shape[:2], dtype=bool)

    def loss() -> float:
        total = 0.0
        for t in range(X.shape[0]):
            start = max(0, t - k + 1)
            if start == 0:
                state = None
            else:
                _, state, _ = layer.forward(frozen, X[:start], valid[:start])
            Hs, _, _ = layer.forward(params, X[start:t + 1], valid[start:t + 1], state)
            total += float((R[t] * Hs[-1]).sum())
        return total

    frozen = {name: p.copy() for name, p in params.items()}
    return {name: finite_difference(loss, p) for name, p in params.items()}


def make_layer(kind: str):
    layer = {"lstm": LSTMLayer, "gru": GRULayer}[kind](D, H)
    params = layer.init_params(np.random.default_rng(0), init="glorot", recurrent_init="orthogonal",
                               spectral_radius=None, max_singular_value=None, dtype=np.dtype(np.float64))
    rng = np.random.default_rng(1)
    for p in params.values():
        p += 0.3 * rng.standard_normal(p.shape)
    return layer, params


@pytest.mark.parametrize(("k", "steps"), [(1, T), (2, T), (3, T), (3, LONG)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_truncated_gradients_match_their_definition(kind, k, steps) -> None:
    """steps = LONG: the backward sweep crosses chunk boundaries."""
    layer, params = make_layer(kind)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((steps, B, D))
    R = rng.standard_normal((steps, B, H))
    _, _, cache = layer.forward(params, X, np.ones((steps, B), dtype=bool))
    _, grads, _, _ = layer.backward(params, R, cache, truncation=k)
    reference = truncated_reference(layer, params, X, R, k)
    for name in params:
        assert relative_error(grads[name], reference[name]) < TOL, name


@pytest.mark.parametrize("network", NETWORKS)
def test_truncation_at_least_length_equals_full_and_short_truncation_differs(network) -> None:
    X, Y, mask = make_data("many_to_many", "softmax_ce", masked=True)
    _, g_full, dh_full = build(network, head="softmax_ce").loss_and_grads(
        X, Y, mask, return_hidden_grads=True)
    _, g_long, dh_long = build(network, head="softmax_ce", truncation=T).loss_and_grads(
        X, Y, mask, return_hidden_grads=True)
    _, g_cut, dh_cut = build(network, head="softmax_ce", truncation=2).loss_and_grads(
        X, Y, mask, return_hidden_grads=True)
    for name in g_full:
        np.testing.assert_allclose(g_long[name], g_full[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dh_long, dh_full, rtol=1e-12, atol=1e-14)
    recurrent = [n for n in g_full if n.endswith(("W_h", "W_hh"))]
    assert recurrent and all(not np.allclose(g_cut[n], g_full[n]) for n in recurrent)
    assert not np.allclose(dh_cut[0], dh_full[0])
    # each direction's last step has no future, so truncation cannot change it
    np.testing.assert_allclose(dh_cut[-1, :, :H], dh_full[-1, :, :H], rtol=1e-12)
    np.testing.assert_allclose(dh_cut[0, :, H:], dh_full[0, :, H:], rtol=1e-12)


# ------------------------------------------------------------------------------------------------ dL/dh_t
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_hidden_gradients_match_finite_differences(kind) -> None:
    """dh_t = total dL/dh_t for L = sum_t R_t . h_t + Q . h_T (+ P . c_T for LSTM)."""
    layer, params = make_layer(kind)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((T, B, D))
    R = rng.standard_normal((T, B, H))
    d_final = tuple(rng.standard_normal((B, H)) for _ in range(layer.state_arity))
    valid = np.ones((T, B), dtype=bool)

    def loss_from(t: int, state: tuple[np.ndarray, ...]) -> float:
        """Loss of steps after t, given the state at t (its h included in R_t . h_t)."""
        total = float((R[t] * state[0]).sum())
        if t + 1 < T:
            Hs, state, _ = layer.forward(params, X[t + 1:], valid[t + 1:], state)
            total += float((R[t + 1:] * Hs).sum())
        return total + sum(float((d * s).sum()) for d, s in zip(d_final, state, strict=True))

    _, _, cache = layer.forward(params, X, valid)
    _, _, d_state0, dh = layer.backward(params, R, cache, d_final_state=d_final)
    for t in range(T):
        _, state, _ = layer.forward(params, X[:t + 1], valid[:t + 1])
        fd = np.zeros((B, H))
        for i in np.ndindex(B, H):
            plus, minus = [s.copy() for s in state], [s.copy() for s in state]
            plus[0][i] += EPS
            minus[0][i] -= EPS
            fd[i] = (loss_from(t, tuple(plus)) - loss_from(t, tuple(minus))) / (2 * EPS)
        assert relative_error(dh[t], fd) < TOL, t
    # d_state0 is dL/d(initial state): compare with a perturbed state0
    state0 = tuple(np.zeros((B, H)) for _ in range(layer.state_arity))
    for j in range(layer.state_arity):
        fd = np.zeros((B, H))
        for i in np.ndindex(B, H):
            plus, minus = [s.copy() for s in state0], [s.copy() for s in state0]
            plus[j][i] += EPS
            minus[j][i] -= EPS
            values = []
            for s in (plus, minus):
                Hs, final, _ = layer.forward(params, X, valid, tuple(s))
                values.append(float((R * Hs).sum())
                              + sum(float((d * f).sum()) for d, f in zip(d_final, final, strict=True)))
            fd[i] = (values[0] - values[1]) / (2 * EPS)
        assert relative_error(d_state0[j], fd) < TOL, j


@pytest.mark.parametrize("network", NETWORKS)
def test_model_hidden_gradients_at_the_last_step_of_each_direction_are_the_head_gradients(network) -> None:
    """Where a direction has no future (its last step), dL/dh_t is the head's gradient alone."""
    model = build(network, num_layers=2, head="identity_mse")
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False)
    _, _, dh = model.loss_and_grads(X, Y, return_hidden_grads=True)
    top = model.hidden_states(X)
    assert dh.shape == top.shape == (T, B, model.layers[-1].hidden_size)

    def head_gradient(t: int) -> np.ndarray:
        o = top[t] @ model.params["W_hy"] + model.params["b_y"]
        return (2.0 / (K * T * B)) * (o - Y[t]) @ model.params["W_hy"].T

    if network.startswith("bi-"):  # the backward direction's last step is t = 0
        np.testing.assert_allclose(dh[-1, :, :H], head_gradient(T - 1)[:, :H], rtol=1e-10)
        np.testing.assert_allclose(dh[0, :, H:], head_gradient(0)[:, H:], rtol=1e-10)
    else:
        np.testing.assert_allclose(dh[-1], head_gradient(T - 1), rtol=1e-10)
    assert not np.allclose(dh[0, :, :H], head_gradient(0)[:, :H])  # earlier steps include the recurrence


# ----------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize(("network", "mode"),
                         list(itertools.product(NETWORKS, ["many_to_many", "many_to_one"])))
def test_padded_inputs_change_neither_loss_nor_gradients(network, mode) -> None:
    model = build(network, mode, num_layers=2)
    X, Y, mask = make_data(mode, "sigmoid_bce", masked=True)
    loss, grads = model.loss_and_grads(X, Y, mask)
    X2 = X.copy()
    X2[3:, 2] = 100.0  # sequence 2 has length 2 (sequence 1 length 3): steps >= 3 are padding for both
    X2[3:, 1] = -7.0
    loss2, grads2 = model.loss_and_grads(X2, Y, mask)
    assert loss2 == loss
    for name in grads:
        np.testing.assert_array_equal(grads2[name], grads[name])
    changed = X.copy()
    changed[0, 2] += 1.0  # a valid step does matter
    assert model.loss(changed, Y, mask) != loss


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_bidirectional_reads_each_sequence_back_from_its_last_valid_step(cell) -> None:
    """A padded sequence gives the same outputs at its valid steps as the unpadded sequence alone."""
    model = build("bi-" + cell, "many_to_many", num_layers=2)
    X, _, _ = make_data("many_to_many", "sigmoid_bce", masked=False)
    length = 3
    mask = np.zeros((T, B))
    mask[:length] = 1.0
    padded = model.predict(X, mask)
    alone = model.predict(X[:length])
    np.testing.assert_allclose(padded[:length], alone, rtol=1e-13)
    one = build("bi-" + cell, "many_to_one")
    np.testing.assert_allclose(one.predict(X, mask), one.predict(X[:length]), rtol=1e-13)


def test_bidirectional_state_is_the_concatenation_of_two_directions() -> None:
    layer = BidirectionalLayer(D, H, cell="lstm")
    params = layer.init_params(np.random.default_rng(0), init="glorot", recurrent_init="glorot",
                               spectral_radius=None, max_singular_value=None, dtype=np.dtype(np.float64))
    X = np.random.default_rng(1).standard_normal((T, B, D))
    valid = np.ones((T, B), dtype=bool)
    Hs, final, _ = layer.forward(params, X, valid)
    fw, bw = layer.directions
    p_fw = {k[3:]: v for k, v in params.items() if k.startswith("fw.")}
    p_bw = {k[3:]: v for k, v in params.items() if k.startswith("bw.")}
    H_fw, _, _ = fw.forward(p_fw, X, valid)
    H_bw, final_bw, _ = bw.forward(p_bw, X[::-1], valid)
    assert layer.hidden_size == 2 * H and Hs.shape == (T, B, 2 * H) and len(final) == 4
    np.testing.assert_array_equal(Hs[..., :H], H_fw)
    np.testing.assert_array_equal(Hs[..., H:], H_bw[::-1])
    np.testing.assert_array_equal(final[2], final_bw[0])


# --------------------------------------------------------------------------------------- init and config
def test_lstm_parameters_shapes_forget_bias_and_block_init() -> None:
    model = LSTM(D, 4, K, recurrent_init="orthogonal", num_layers=2, seed=5)
    p = model.params
    assert p["W_x"].shape == (D, 16) and p["W_h"].shape == (4, 16) and p["b"].shape == (16,)
    assert p["l1.W_x"].shape == (4, 16)
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    for block in np.split(p["W_h"], 4, axis=1):  # orthogonal per gate block
        np.testing.assert_allclose(block.T @ block, np.eye(4), atol=1e-12)
    gru = GRU(D, 4, K, recurrent_init="identity", spectral_radius=0.5)
    for block in np.split(gru.params["W_h"], 3, axis=1):
        np.testing.assert_allclose(block, 0.5 * np.eye(4))
    assert gru.params["b"].shape == (12,) and not gru.params["b"].any()


def test_bidirectional_config_and_errors() -> None:
    model = Bidirectional(LSTM, D, H, K)
    assert model.config["cell"] == "lstm" and model.params["W_hy"].shape == (2 * H, K)
    assert type(model)(**model.config).params.keys() == model.params.keys()
    assert Bidirectional("elman", D, H, K).recurrent_matrix().shape == (H, H)
    with pytest.raises(ValueError, match="cell must be one of"):
        Bidirectional("jordan", D, H, K)
    with pytest.raises(TypeError, match="W_h"):
        model.recurrent_matrix()
    with pytest.raises(TypeError, match="W_h"):
        GRU(D, H, K).recurrent_matrix()


@pytest.mark.parametrize("network", NETWORKS)
def test_save_load_roundtrip_is_bit_exact(network, tmp_path) -> None:
    model = build(network, "encoder_decoder", num_layers=2)
    path = str(tmp_path / "model.npz")
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    for name, p in model.params.items():
        assert loaded.params[name].dtype == p.dtype
        np.testing.assert_array_equal(loaded.params[name], p)
    X, _, _ = make_data("encoder_decoder", "sigmoid_bce", masked=False)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("network", NETWORKS)
def test_float32_models_train_in_float32(network) -> None:
    model = build(network, dtype="float32")
    X, Y, mask = make_data("many_to_many", "sigmoid_bce", masked=True)
    loss, grads, dh = model.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    assert all(g.dtype == np.float32 for g in grads.values()) and dh.dtype == np.float32
    reference = build(network)
    ref_loss, ref_grads = reference.loss_and_grads(X, Y, mask)
    assert abs(loss - ref_loss) < 1e-5
    for name, g in grads.items():
        assert relative_error(g.astype(np.float64), ref_grads[name]) < 1e-4, name


def test_lstm_learns_to_remember_a_bit_where_the_gradient_points() -> None:
    """A few SGD steps on a copy-first-bit task lower the loss (gradients point downhill)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (6, 16, 1)).astype(float)
    Y = X[0]
    for cls in (LSTM, GRU):
        model = cls(1, 4, 1, head="sigmoid_bce", mode="many_to_one", seed=0)
        first = model.loss(X, Y)
        for _ in range(30):
            _, grads = model.loss_and_grads(X, Y)
            for name, g in grads.items():
                model.params[name] -= 0.5 * g
        assert model.loss(X, Y) < first


def test_clip_hidden_delta_bounds_the_gate_deltas() -> None:
    X, Y, _ = make_data("many_to_many", "identity_mse", masked=False)
    free = build("lstm", head="identity_mse")
    clipped = build("lstm", head="identity_mse", clip_hidden_delta=1e-4)
    _, g_free = free.loss_and_grads(X, Y)
    _, g_clip = clipped.loss_and_grads(X, Y)
    assert np.abs(g_clip["b"]).max() <= T * B * 1e-4 + 1e-15
    assert np.abs(g_free["b"]).max() > T * B * 1e-4


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forward_follows_the_cell_equations(kind) -> None:
    """LSTM gate order i, f, g, o; GRU resets h_{t-1} before the recurrent matmul (Cho et al. 2014)."""
    layer, p = make_layer(kind)
    X = np.random.default_rng(4).standard_normal((T, B, D))
    Hs, final, _ = layer.forward(p, X, np.ones((T, B), dtype=bool))
    h, c = np.zeros((B, H)), np.zeros((B, H))
    for t in range(T):
        if kind == "lstm":
            a = X[t] @ p["W_x"] + h @ p["W_h"] + p["b"]
            i, f, g, o = np.split(a, 4, axis=1)
            i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            W_x, W_h, b = np.split(p["W_x"], 3, axis=1), np.split(p["W_h"], 3, axis=1), np.split(p["b"], 3)
            z = sigmoid(X[t] @ W_x[0] + h @ W_h[0] + b[0])
            r = sigmoid(X[t] @ W_x[1] + h @ W_h[1] + b[1])
            n = np.tanh(X[t] @ W_x[2] + (r * h) @ W_h[2] + b[2])
            h = z * h + (1.0 - z) * n
        np.testing.assert_allclose(Hs[t], h, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(final[-1], c if kind == "lstm" else h, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------- chunks and the workspace


@pytest.mark.parametrize("network", ["lstm", "gru", "bi-gru"])
def test_gradients_across_backward_chunks_match_finite_differences(network) -> None:
    model = build(network, "many_to_many", num_layers=2)
    X, Y, mask = gradcheck.make_data("many_to_many", "sigmoid_bce", True, T=LONG, B=3, D=D, K=K, L=L)
    assert_grads_match(model, X, Y, mask)


@pytest.mark.parametrize("network", ["lstm", "gru"])
def test_a_reused_workspace_gives_the_numbers_of_a_fresh_model(network) -> None:
    """Calls of other shapes in between (validation batches, shorter sequences) leave no trace."""
    X, Y, mask = gradcheck.make_data("many_to_many", "softmax_ce", True, T=LONG, B=3, D=D, K=K, L=L)
    used = build(network)
    used.loss_and_grads(X[:, :2], Y[:, :2])
    used.loss_and_grads(X[:7], Y[:7], mask[:7])
    used.predict(np.concatenate([X, X], axis=1))
    loss, grads, dh = used.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    fresh_loss, fresh_grads, fresh_dh = build(network).loss_and_grads(X, Y, mask, return_hidden_grads=True)
    assert loss == fresh_loss
    np.testing.assert_array_equal(dh, fresh_dh)
    for name in grads:
        np.testing.assert_array_equal(grads[name], fresh_grads[name])


@pytest.mark.parametrize("network", ["lstm", "gru"])
def test_copies_and_pickles_leave_the_workspace_behind(network) -> None:
    model = build(network)
    X, Y, _ = gradcheck.make_data("many_to_many", "sigmoid_bce", False, T=200, B=64, D=D, K=K, L=L)
    model.loss_and_grads(X, Y)  # the workspace now holds about T * B * 5H floats
    assert len(pickle.dumps(model)) < 20_000
    copied = copy.deepcopy(model)
    np.testing.assert_array_equal(copied.loss_and_grads(X, Y)[1]["W_h"], model.loss_and_grads(X, Y)[1]["W_h"])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_refuses_a_cache_that_a_later_forward_overwrote(kind) -> None:
    layer, params = make_layer(kind)
    X = np.random.default_rng(0).standard_normal((T, B, D))
    valid = np.ones((T, B), dtype=bool)
    H_first, final, first = layer.forward(params, X, valid)
    kept = (H_first.copy(), tuple(s.copy() for s in final))
    layer.forward(params, 2.0 * X, valid)
    with pytest.raises(RuntimeError, match="earlier forward pass"):
        layer.backward(params, np.ones((T, B, H)), first)
    np.testing.assert_array_equal(H_first, kept[0])  # what forward returned is the caller's
    for state, kept_state in zip(final, kept[1], strict=True):
        np.testing.assert_array_equal(state, kept_state)


@pytest.mark.parametrize("network", ["lstm", "gru"])
def test_float32_gradients_across_chunks_match_float64(network) -> None:
    X, Y, mask = gradcheck.make_data("many_to_many", "identity_mse", True, T=LONG, B=3, D=D, K=K, L=L)
    single = build(network, "many_to_many", "identity_mse", dtype="float32", truncation=5)
    double = build(network, "many_to_many", "identity_mse", truncation=5)
    loss, grads = single.loss_and_grads(X, Y, mask)
    ref_loss, ref_grads = double.loss_and_grads(X, Y, mask)
    assert abs(loss - ref_loss) < 1e-5 * abs(ref_loss)
    for name, g in grads.items():
        assert g.dtype == np.float32
        assert relative_error(g.astype(np.float64), ref_grads[name]) < 1e-4, name


# ------------------------------------------------------------------------------------------- benchmark
def test_benchmark_reference_loop_computes_the_harness_gradient() -> None:
    """The one-sample-at-a-time loop of the benchmark does the same SGD step as harness on one sample."""
    from harness.benchmarks.train_step import one_sample_at_a_time

    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (8, 1, 2)).astype(float)
    Y = rng.integers(0, 2, (8, 1, 1)).astype(float)
    model = Elman(2, 5, 1, activation="sigmoid", head="sigmoid_se", init="uniform", bias=False,
                  reduction="sum", seed=1)
    weights = [model.params[k].copy() for k in ("W_xh", "W_hh", "W_hy")]
    one_sample_at_a_time(*weights, X, Y, lr=0.1)
    _, grads = model.loss_and_grads(X, Y)
    for name, w in zip(("W_xh", "W_hh", "W_hy"), weights, strict=True):
        np.testing.assert_allclose(w, model.params[name] - 0.1 * grads[name], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_tiny_sizes() -> None:
    from harness.benchmarks.train_step import main

    result = main(["--quick"])
    assert {r["cell"] for r in result["train_step"]} == {"elman", "lstm", "gru"}
    assert result["binary_addition"]["speedup"] > 0 and set(result["memory"]) == {"elman", "lstm", "gru"}
    assert all(r["float64"]["harness_ms"] > 0 and r["float32_speedup"] > 0 for r in result["train_step"])
    assert all(o["ratio"] > 0 for o in result["fit_overhead"].values())


def test_benchmark_names_every_missed_target() -> None:
    from harness.benchmarks.train_step import target_misses

    def row(cell, size, ratios, peaks, speedup):
        dtypes = zip(("float64", "float32"), ratios, peaks, strict=True)
        return {"cell": cell, "T": size[0], "B": size[1], "H": size[2], "float32_speedup": speedup,
                **{d: {"ratio": r, "harness_peak": p} for d, r, p in dtypes}}

    rows = [row("elman", (8, 1, 16), (0.75, None), (0.0, 0.0), 1.0),  # the peak and f32 targets: largest only
            row("lstm", (200, 128, 128), (0.85, 0.8), (0.41, 0.5), 1.6),
            row("gru", (500, 64, 256), (0.7, 0.7), (0.6, 0.6), 2.0)]
    assert target_misses(rows) == ["elman (8, 1, 16) float64 h/torch 0.75 > 0.7",
                                   "lstm (200, 128, 128) float64 h/torch 0.85 > 0.8",
                                   "lstm (200, 128, 128) float64 41% of the peak < 50%",
                                   "lstm (200, 128, 128) f64/f32 1.60 < 1.7"]


@pytest.mark.slow
def test_arma_benchmark_runs_end_to_end_on_a_short_series() -> None:
    from harness.benchmarks.arma_selection import main

    (row,) = main(["--series", "1", "--length", "400", "--repeats", "1"])
    assert row["cpu"]["harness"] > 0 and row["wall"]["harness n_jobs=2"] > 0
    assert row["order"]["harness n_jobs=2"] == row["order"]["harness"]
    assert row["test_mse"]["harness"] > 0 and len(row["order"]["harness"]) == 2


@pytest.mark.parametrize(("network", "mode"),
                         list(itertools.product(NETWORKS, ["many_to_many", "many_to_one"])))
def test_padding_does_not_consume_truncation_steps(network, mode) -> None:
    """With truncation, a padded sequence gets exactly the gradients it gets unpadded and alone."""
    model = build(network, mode, num_layers=2, truncation=2, reduction="sum")
    X, Y, mask = make_data(mode, "sigmoid_bce", masked=True)
    length = 3  # sequence 1 has length T - 2 = 3
    _, padded = model.loss_and_grads(X[:, 1:2], Y[..., 1:2, :], mask[:, 1:2])
    alone_mask = None if mode == "many_to_one" else mask[:length, 1:2]
    _, alone = model.loss_and_grads(X[:length, 1:2], Y[:length, 1:2] if mode == "many_to_many" else Y[1:2],
                                    alone_mask)
    for name in padded:
        np.testing.assert_allclose(padded[name], alone[name], rtol=1e-12, atol=1e-15)
