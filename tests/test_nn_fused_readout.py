"""The fused read-out of Elman and LSTM (layers.py, `fuses_readout`) against the model's own read-out over all
steps."""

from __future__ import annotations

import numpy as np
import pytest

from harness.nn import LSTM, Elman

B, D, K = 3, 2, 3
RNG = np.random.default_rng(0)


@pytest.mark.parametrize(("cell", "width", "dtype"), [(Elman, 300, "float64"), (LSTM, 7, "float64"),
                                                      (LSTM, 7, "float32")])
@pytest.mark.parametrize("mode", ["many_to_many", "one_to_many", "encoder_decoder"])
def test_fused_readout_gives_the_readout_of_the_model(mode, cell, width, dtype) -> None:
    """The top layer writes H W_hy after each chunk of steps and adds each chunk's share of dW_hy (16 steps
    per chunk: Elman's at width 300 and B = 3, LSTM's fixed): the same logits and loss bit for bit, the same
    gradients to round-off as the model's own read-out, over three chunks."""
    steps = 40
    kw = {"output_length": 37} if mode != "many_to_many" else {}
    X = RNG.standard_normal((1 if mode == "one_to_many" else steps, B, D)).astype(dtype)
    Y = RNG.standard_normal((steps if mode == "many_to_many" else 37, B, K)).astype(dtype)
    fused, unfused = (cell(D, width, K, mode=mode, num_layers=2, dtype=dtype, **kw) for _ in range(2))
    for layer in unfused.dec_layers or unfused.layers:
        layer.fuses_readout = False
    assert np.array_equal(fused.predict(X), unfused.predict(X))
    (loss, grads), (loss_ref, grads_ref) = fused.loss_and_grads(X, Y), unfused.loss_and_grads(X, Y)
    assert loss == loss_ref
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for name, grad in grads_ref.items():
        np.testing.assert_allclose(grads[name], grad, rtol=rtol, atol=rtol * 1e-3, err_msg=name)
