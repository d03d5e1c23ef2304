"""harness.nn public API: shapes, dtypes, masks, initialisations, save/load, and argument checking."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.nn import GRU, LSTM, Bidirectional, Elman, Jordan, RecurrentModel, load_model
from harness.nn.elman import ElmanLayer

T, B, D, H, K, L = 6, 3, 2, 5, 3, 4
RNG = np.random.default_rng(0)
X_SEQ = RNG.standard_normal((T, B, D))


def data_for(mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "many_to_many":
        return X_SEQ, RNG.random((T, B, K))
    if mode == "many_to_one":
        return X_SEQ, RNG.random((B, K))
    if mode == "one_to_many":
        return X_SEQ[:1], RNG.random((L, B, K))
    return X_SEQ, RNG.random((L, B, K))


def model_for(mode: str, cls=Elman, **kw) -> RecurrentModel:
    output_length = L if mode in ("one_to_many", "encoder_decoder") else None
    return cls(D, H, K, mode=mode, output_length=output_length, **kw)


@pytest.mark.parametrize(("mode", "shape"), [("many_to_many", (T, B, K)), ("many_to_one", (B, K)),
                                              ("one_to_many", (L, B, K)), ("encoder_decoder", (L, B, K))])
def test_predict_shapes_and_head_ranges(mode, shape) -> None:
    X, _ = data_for(mode)
    for head in ("identity_mse", "sigmoid_bce", "sigmoid_se", "softmax_ce"):
        Y_hat = model_for(mode, head=head).predict(X)
        assert Y_hat.shape == shape
        if head.startswith("sigmoid"):
            assert np.all((Y_hat > 0) & (Y_hat < 1))
        if head == "softmax_ce":
            np.testing.assert_allclose(Y_hat.sum(axis=-1), 1.0, rtol=1e-12)


def test_parameter_names_for_stacks_decoder_and_no_bias() -> None:
    model = Elman(D, H, K, num_layers=2, mode="encoder_decoder", output_length=L)
    assert list(model.params) == [
        "W_xh", "W_hh", "b_h", "l1.W_xh", "l1.W_hh", "l1.b_h", "W_hy", "b_y",
        "dec.W_xh", "dec.W_hh", "dec.b_h", "dec.l1.W_xh", "dec.l1.W_hh", "dec.l1.b_h"]
    assert model.params["l1.W_xh"].shape == (H, H)
    assert list(Elman(D, H, K, bias=False).params) == ["W_xh", "W_hh", "W_hy"]
    assert list(Jordan(D, H, K).params) == ["W_xh", "W_yh", "b_h", "W_hy", "b_y"]
    assert Jordan(D, H, K).params["W_yh"].shape == (K, H)


def test_padding_never_influences_outputs() -> None:
    lengths = np.array([T, 3, 1])
    mask = np.arange(T)[:, None] < lengths[None]
    garbage = X_SEQ.copy()
    garbage[~mask] = 1e3
    for cls in (Elman, Jordan):
        model = cls(D, H, K, mode="many_to_one")
        Y_hat = model.predict(garbage, mask)
        for b, n in enumerate(lengths):
            np.testing.assert_allclose(Y_hat[b], model.predict(X_SEQ[:n, b:b + 1])[0], rtol=1e-12)
        seq = cls(D, H, K)
        full = seq.predict(garbage, mask)
        np.testing.assert_allclose(full[:3, 1], seq.predict(X_SEQ[:3, 1:2])[:, 0], rtol=1e-12)


def test_masked_positions_do_not_contribute_to_the_loss() -> None:
    model = Elman(D, H, K, reduction="mean")
    Y = RNG.random((T, B, K))
    mask = np.ones((T, B))
    mask[2, 1] = 0
    Y_changed = Y.copy()
    Y_changed[2, 1] = 100.0
    assert model.loss(X_SEQ, Y, mask) == model.loss(X_SEQ, Y_changed, mask)
    per_position = ((model.predict(X_SEQ) - Y) ** 2).mean(axis=-1)
    assert model.loss(X_SEQ, Y, mask) == pytest.approx(per_position[mask == 1].mean(), rel=1e-12)
    summed = Elman(D, H, K, reduction="sum").loss(X_SEQ, Y, mask)
    assert summed == pytest.approx(per_position[mask == 1].sum())


@pytest.mark.parametrize(("cls", "mode"), [
    (Elman, "many_to_many"), (Elman, "many_to_one"), (Elman, "one_to_many"), (Elman, "encoder_decoder"),
    (Jordan, "many_to_many"), (Jordan, "many_to_one"), (Jordan, "one_to_many")])
def test_save_load_roundtrip_is_bit_exact(tmp_path, cls, mode) -> None:
    model = model_for(mode, cls, head="sigmoid_bce", init="orthogonal", seed=7, clip_hidden_delta=2.0)
    X, Y = data_for(mode)
    model.loss_and_grads(X, Y)
    for p in model.params.values():  # trained weights differ from the seed's initial ones
        p += RNG.standard_normal(p.shape)
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = load_model(str(path))
    assert type(loaded) is cls
    assert loaded.config == model.config
    assert list(loaded.params) == list(model.params)
    for name, p in model.params.items():
        assert loaded.params[name].dtype == p.dtype
        assert np.array_equal(loaded.params[name], p)
    assert np.array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("build", [
    lambda: LSTM(D, H, K, num_layers=2, seed=2), lambda: GRU(D, H, K, mode="many_to_one", seed=2),
    lambda: Bidirectional("gru", D, H, K, seed=2), lambda: Bidirectional(Elman, D, H, K, num_layers=2)])
def test_save_load_roundtrip_of_gated_and_bidirectional_models(tmp_path, build) -> None:
    model = build()
    for p in model.params.values():
        p += RNG.standard_normal(p.shape)
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = load_model(str(path))
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert all(np.array_equal(loaded.params[k], v) for k, v in model.params.items())
    assert np.array_equal(loaded.predict(X_SEQ), model.predict(X_SEQ))


def test_save_writes_the_exact_path_and_float32_roundtrip(tmp_path) -> None:
    model = Elman(D, H, K, dtype="float32", num_layers=2, truncation=3)
    path = tmp_path / "weights.bin"
    model.save(str(path))
    loaded = load_model(str(path))
    assert path.exists()
    assert loaded.params["W_hh"].dtype == np.float32
    assert all(np.array_equal(loaded.params[k], v) for k, v in model.params.items())


def test_config_rebuilds_the_same_model() -> None:
    model = Elman(D, H, K, init="uniform", spectral_radius=0.9, num_layers=2, seed=3)
    rebuilt = type(model)(**model.config)
    assert all(np.array_equal(rebuilt.params[k], v) for k, v in model.params.items())
    assert not np.array_equal(Elman(D, H, K, seed=4).params["W_hh"], model.params["W_hh"])


def test_float32_mode_returns_float32_everywhere() -> None:
    X, Y = data_for("many_to_many")
    m32, m64 = Elman(D, H, K, dtype="float32"), Elman(D, H, K)
    loss32, grads32, dh32 = m32.loss_and_grads(X, Y, return_hidden_grads=True)
    loss64, grads64 = m64.loss_and_grads(X, Y)
    assert m32.predict(X).dtype == np.float32
    assert dh32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32.values())
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    np.testing.assert_allclose(grads32["W_hh"], grads64["W_hh"], rtol=1e-3, atol=1e-5)
    j32 = Jordan(D, H, K, dtype=np.float32)
    assert all(g.dtype == np.float32 for g in j32.loss_and_grads(X, Y)[1].values())


def test_initialisations() -> None:
    uniform = Elman(D, H, K, init="uniform", seed=1).params
    assert all(np.abs(uniform[k]).max() <= 1 for k in ("W_xh", "W_hh", "W_hy"))
    assert np.abs(uniform["W_hh"]).max() > 0.5  # U(-1, 1), not a narrow glorot range
    assert np.all(uniform["b_h"] == 0) and np.all(uniform["b_y"] == 0)
    W = Elman(D, H, K, init="orthogonal").params["W_hh"]
    np.testing.assert_allclose(W.T @ W, np.eye(H), atol=1e-12)
    irnn = Elman(D, H, K, activation="relu", recurrent_init="identity")
    np.testing.assert_array_equal(irnn.recurrent_matrix(), np.eye(H))
    glorot = Elman(D, H, K).params["W_xh"]
    assert np.abs(glorot).max() <= np.sqrt(6 / (D + H))
    radius = Elman(D, H, K, spectral_radius=1.2).recurrent_matrix()
    assert np.abs(np.linalg.eigvals(radius)).max() == pytest.approx(1.2, rel=1e-10)
    sigma = Elman(D, H, K, max_singular_value=0.5, num_layers=2).params
    assert np.linalg.norm(sigma["W_hh"], 2) == pytest.approx(0.5, rel=1e-10)
    assert np.linalg.norm(sigma["l1.W_hh"], 2) == pytest.approx(0.5, rel=1e-10)


def test_hidden_states_and_recurrent_matrix() -> None:
    model = Elman(D, H, K, num_layers=2, activation="sigmoid")
    states = model.hidden_states(X_SEQ)
    assert states.shape == (T, B, H)
    assert np.all((states > 0) & (states < 1))
    assert model.recurrent_matrix() is model.params["W_hh"]
    jordan = Jordan(D, H, K)
    assert jordan.recurrent_matrix().shape == (H, H)
    assert jordan.hidden_states(X_SEQ).shape == (T, B, H)


ONE_PASS_MODELS = [
    ("many_to_many", lambda mode, head: model_for(mode, head=head, num_layers=2)),
    ("many_to_one", lambda mode, head: model_for(mode, LSTM, head=head)),
    ("many_to_many", lambda mode, head: model_for(mode, GRU, head=head)),
    ("encoder_decoder", lambda mode, head: model_for(mode, head=head)),
    ("one_to_many", lambda mode, head: model_for(mode, head=head)),
    ("many_to_many", lambda mode, head: Jordan(D, H, K, mode=mode, head=head)),
    ("many_to_one", lambda mode, head: Bidirectional("lstm", D, H, K, mode=mode, head=head)),
]


@pytest.mark.parametrize(("mode", "build"), ONE_PASS_MODELS)
@pytest.mark.parametrize("head", ["identity_mse", "sigmoid_bce", "softmax_ce"])
@pytest.mark.parametrize("masked", [False, True])
def test_one_forward_pass_gives_what_the_separate_calls_give(mode, build, head, masked) -> None:
    model = build(mode, head)
    X, Y = data_for(mode)
    mask = None
    if masked:  # ragged sequences: every sequence keeps at least its first step
        steps = L if mode in ("one_to_many", "encoder_decoder") else T
        mask = (np.arange(steps)[:, None] < np.array([steps, 2, 1])[None, :]).astype(float)
    loss, predictions = model.loss_and_predict(X, Y, mask)
    assert loss == model.loss(X, Y, mask)
    np.testing.assert_array_equal(predictions, model.predict(X, mask))
    loss_g, grads, dh, states = model.loss_and_grads(X, Y, mask, return_hidden_grads=True,
                                                     return_hidden_states=True)
    expected_loss, expected_grads, expected_dh = model.loss_and_grads(X, Y, mask, return_hidden_grads=True)
    assert loss_g == expected_loss == loss
    np.testing.assert_array_equal(states, model.hidden_states(X, mask))
    np.testing.assert_array_equal(dh, expected_dh)
    for name in expected_grads:
        np.testing.assert_array_equal(grads[name], expected_grads[name])
    assert len(model.loss_and_grads(X, Y, mask, return_hidden_states=True)) == 3


def peak_bptt_bytes(model: RecurrentModel, X: np.ndarray, Y: np.ndarray, **kw) -> int:
    """tracemalloc peak of one loss_and_grads, inputs and parameters excluded."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        model.loss_and_grads(X, Y, **kw)
        return tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()


def test_bptt_peak_memory_stays_within_one_and_a_half_hidden_state_arrays() -> None:
    # the bound (benchmark: T=1000, B=64, H=128), at a size where chunk buffers weigh more
    steps, batch, width, io = 200, 16, 64, 8
    X = RNG.standard_normal((steps, batch, io))
    Y = RNG.standard_normal((steps, batch, io))
    hidden_states = steps * batch * width * 8
    assert peak_bptt_bytes(Elman(io, width, io), X, Y) <= 1.5 * hidden_states
    # asking for dh adds exactly its own (T, B, H) array
    with_dh = peak_bptt_bytes(Elman(io, width, io), X, Y, return_hidden_grads=True)
    assert with_dh <= 2.5 * hidden_states


@pytest.mark.parametrize(("cell", "bound"), [(LSTM, 7.0), (GRU, 5.0)])
def test_gated_bptt_keeps_only_gates_and_states(cell, bound) -> None:
    """LSTM keeps 4 gates, c and the step rows [h | x | 1] per step (6.9x the hidden states at this size), GRU
    3 gates and h (4x); the issue's bounds 7x and 5x leave room for the chunk buffers. Measured on a fresh
    model, whose workspace is allocated inside the call (reusing it, later calls allocate less)."""
    steps, batch, width, io = 200, 16, 64, 8
    X = RNG.standard_normal((steps, batch, io))
    Y = RNG.standard_normal((steps, batch, io))
    assert peak_bptt_bytes(cell(io, width, io), X, Y) <= bound * steps * batch * width * 8


BAD_CONSTRUCTOR_ARGS = [
    ({"activation": "tahn"}, "activation must be one of"),
    ({"head": "mse"}, "head must be one of"),
    ({"mode": "seq2seq"}, "mode must be one of"),
    ({"init": "he"}, "init must be one of"),
    ({"recurrent_init": "zeros"}, "recurrent_init must be one of"),
    ({"reduction": "max"}, "reduction must be one of"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"num_layers": 0}, "num_layers must be a positive integer"),
    ({"truncation": 0}, "truncation must be None"),
    ({"truncation": 2.5}, "truncation must be None"),
    ({"spectral_radius": -1.0}, "spectral_radius must be None or a finite number > 0"),
    ({"max_singular_value": float("nan")}, "max_singular_value must be None"),
    ({"spectral_radius": 1.0, "max_singular_value": 1.0}, "spectral_radius and max_singular_value"),
    ({"clip_hidden_delta": 0}, "clip_hidden_delta must be None"),
    ({"mode": "one_to_many"}, "output_length must be a positive integer"),
    ({"mode": "encoder_decoder", "output_length": 0}, "output_length must be a positive integer"),
    ({"output_length": 3}, "output_length must be None"),
    ({"bias": "yes"}, "bias must be True or False"),
    ({"seed": -1}, "seed must be a non-negative integer"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_CONSTRUCTOR_ARGS)
def test_bad_constructor_arguments_raise_value_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Elman(D, H, K, **kwargs)


@pytest.mark.parametrize(("sizes", "match"), [((0, H, K), "input_size"), ((D, -2, K), "hidden_size"),
                                              ((D, H, 1.5), "output_size")])
def test_bad_sizes_raise_value_errors(sizes, match) -> None:
    with pytest.raises(ValueError, match=f"{match} must be a positive integer"):
        Elman(*sizes)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_layers": 2}, "num_layers must be 1 for Jordan"),
    ({"mode": "encoder_decoder", "output_length": 2}, "mode must be one of"),
    ({"spectral_radius": 1.0}, "spectral_radius must be None for Jordan"),
])
def test_jordan_refuses_what_it_does_not_support(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Jordan(D, H, K, **kwargs)


class WideTopElman(RecurrentModel):
    """A plug-in network as gated/bidirectional models are built: a layer_class and a make_layer override."""

    layer_class = ElmanLayer

    def make_layer(self, input_size: int, hidden_size: int) -> ElmanLayer:
        return ElmanLayer(input_size, 2 * hidden_size, activation=self.activation, bias=self.bias)


def test_subclasses_plug_in_layers_and_are_registered_for_load_model(tmp_path) -> None:
    model = WideTopElman(D, H, K, num_layers=2, clip_hidden_delta=1.0)
    assert model.params["l1.W_xh"].shape == (2 * H, 2 * H)
    assert model.params["W_hy"].shape == (2 * H, K)
    assert [layer.clip_hidden_delta for layer in model.layers] == [1.0, 1.0]
    assert model.hidden_states(X_SEQ).shape == (T, B, 2 * H)
    path = tmp_path / "wide.npz"
    model.save(str(path))
    loaded = load_model(str(path))
    assert type(loaded) is WideTopElman
    assert np.array_equal(loaded.predict(X_SEQ), model.predict(X_SEQ))


def test_recurrent_model_itself_needs_a_layer_class() -> None:
    with pytest.raises(TypeError, match="layer_class"):
        RecurrentModel(D, H, K)


def with_nan(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[0, 0, 0] = np.nan
    return X


BAD_INPUTS = [
    ("many_to_many", X_SEQ[0], None, "X must have shape"),
    ("many_to_many", X_SEQ[..., :1], None, r"X must have shape \(\*, \*, 2\)"),
    ("many_to_many", with_nan(X_SEQ), None, "X must contain only finite values"),
    ("many_to_many", X_SEQ * np.inf, None, "X must contain only finite values"),
    ("many_to_many", "abc", None, "X must be a numeric array"),
    ("many_to_many", X_SEQ, np.ones((T, 1, K)), r"Y must have shape \(6, 3, 3\)"),
    ("many_to_many", X_SEQ, with_nan(np.ones((T, B, K))), "Y must contain only finite values"),
    ("many_to_one", X_SEQ, np.ones((T, B, K)), r"Y must have shape \(3, 3\)"),
    ("one_to_many", X_SEQ, np.ones((L, B, K)), r"X must have shape \(1, \*, 2\)"),
    ("encoder_decoder", X_SEQ, np.ones((L + 1, B, K)), r"Y must have shape \(4, 3, 3\)"),
]


@pytest.mark.parametrize(("mode", "X", "Y", "match"), BAD_INPUTS)
def test_bad_inputs_raise_value_errors(mode, X, Y, match) -> None:
    model = model_for(mode)
    Y = data_for(mode)[1] if Y is None else Y
    with pytest.raises(ValueError, match=match):
        model.loss_and_grads(X, Y)


@pytest.mark.parametrize(("mode", "mask", "match"), [
    ("many_to_many", np.ones((T, 1)), r"mask must have shape \(6, 3\)"),
    ("many_to_many", np.ones(T), "mask must have shape"),
    ("many_to_many", np.full((T, B), 2.0), "mask must contain only 0/1"),
    ("many_to_many", np.zeros((T, B)), "mask must mark at least one target"),
    ("many_to_one", np.eye(T, B) * 0, "mask must mark at least one valid step of every sequence"),
    ("encoder_decoder", np.ones((T, B)), r"mask must have shape \(4, 3\)"),
])
def test_bad_masks_raise_value_errors(mode, mask, match) -> None:
    model = model_for(mode)
    X, Y = data_for(mode)
    with pytest.raises(ValueError, match=match):
        model.loss_and_grads(X, Y, mask)
    with pytest.raises(ValueError, match=match.split(" ")[0]):
        model.predict(X, mask)


def test_load_model_refuses_foreign_files(tmp_path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match=r"path must name a file written by RecurrentModel\.save"):
        load_model(str(path))


def _with_config(source: Path, target: Path, **changes) -> None:
    """A copy of the saved model source whose stored config has changes applied (arrays unchanged)."""
    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("__config__")))
    meta["config"].update(changes)
    np.savez(target, __config__=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize("build", [lambda: Elman(2, 3, 1), lambda: LSTM(2, 3, 1, num_layers=2),
                                   lambda: Bidirectional("gru", 2, 3, 1), lambda: Jordan(2, 3, 1)])
def test_load_model_checks_shapes_against_the_config_before_allocating(tmp_path, build) -> None:
    saved = tmp_path / "model.npz"
    build().save(str(saved))
    assert saved.stat().st_size < 8000
    huge = tmp_path / "huge.npz"
    _with_config(saved, huge, hidden_size=10**9)  # would need 8 EB for W_hh if it were allocated
    with pytest.raises(ValueError, match="do not match its config"):
        load_model(str(huge))
    layers = tmp_path / "layers.npz"
    _with_config(saved, layers, num_layers=10**9)
    with pytest.raises(ValueError, match="num_layers"):
        load_model(str(layers))
    assert load_model(str(saved)).config == build().config


def test_load_model_refuses_unknown_config_keys_in_one_line(tmp_path) -> None:
    saved = tmp_path / "model.npz"
    Elman(2, 3, 1).save(str(saved))
    crafted = tmp_path / "crafted.npz"
    _with_config(saved, crafted, wings=2)
    with pytest.raises(ValueError, match=r"config keys \['wings'\] are not arguments of Elman") as caught:
        load_model(str(crafted))
    assert "\n" not in str(caught.value)


def test_load_model_refuses_headers_claiming_more_data_than_stored(tmp_path) -> None:
    saved = tmp_path / "model.npz"
    Elman(2, 3, 1).save(str(saved))
    with zipfile.ZipFile(saved) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    forged_header = io.BytesIO()
    np.lib.format.write_array_header_1_0(forged_header, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (9999999, 3)})
    members["W_hh.npy"] = forged_header.getvalue() + np.zeros((3, 3)).tobytes()
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match="claims more data than it holds"):
        load_model(str(forged))
