"""Note 000's exercise: an Elman RNN with 16 sigmoid units learns 8-bit binary addition, one sample at a time.

Data are generated here (bits least-significant first, input (a_bit, b_bit), target the sum bit), and the
plain SGD update p -= lr * g is written inline, as in the note.
"""

from __future__ import annotations

import numpy as np

from harness.nn import Elman


def addition_pairs(bits: int) -> np.ndarray:
    """All (a, b) with a + b < 2**bits, shape (N, 2)."""
    limit = 2**bits
    a, b = np.meshgrid(np.arange(limit), np.arange(limit), indexing="ij")
    keep = (a + b) < limit
    return np.stack([a[keep], b[keep]], axis=1)


def encode(pairs: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """X (bits, N, 2) and Y (bits, N, 1), least-significant bit first."""
    shifts = np.arange(bits)[:, None]
    a_bits = (pairs[None, :, 0] >> shifts) & 1
    b_bits = (pairs[None, :, 1] >> shifts) & 1
    c_bits = ((pairs[None, :, 0] + pairs[None, :, 1]) >> shifts) & 1
    X = np.stack([a_bits, b_bits], axis=-1).astype(float)
    return X, c_bits[..., None].astype(float)


def train_adder(seed: int, bits: int, updates: int, check_every: int = 1000) -> tuple[float, int]:
    """SGD on single samples; returns (held-out accuracy of whole sums, updates used)."""
    rng = np.random.default_rng(seed)
    pairs = rng.permutation(addition_pairs(bits))
    n_test = len(pairs) // 5
    X_test, Y_test = encode(pairs[:n_test], bits)
    X_train, Y_train = encode(pairs[n_test:], bits)
    model = Elman(2, 16, 1, activation="sigmoid", head="sigmoid_se", init="uniform", reduction="sum",
                  clip_hidden_delta=5.0, seed=seed)
    accuracy = 0.0
    for step in range(1, updates + 1):
        i = rng.integers(X_train.shape[1])
        _, grads = model.loss_and_grads(X_train[:, i:i + 1], Y_train[:, i:i + 1])
        for name, p in model.params.items():
            p -= 0.1 * grads[name]
        if step % check_every == 0:
            predicted = model.predict(X_test) > 0.5
            accuracy = float(np.mean(np.all(predicted == (Y_test > 0.5), axis=(0, 2))))
            if accuracy == 1.0:
                return accuracy, step
    return accuracy, updates


def test_encoding_is_binary_addition() -> None:
    X, Y = encode(np.array([[11, 1], [200, 55]]), 8)
    weights = 2 ** np.arange(8)
    assert (weights @ X[:, :, 0]).tolist() == [11, 200]
    assert (weights @ X[:, :, 1]).tolist() == [1, 55]
    assert (weights @ Y[:, :, 0]).tolist() == [12, 255]


def test_binary_addition_8_bits_four_of_five_seeds() -> None:
    # 20,000 single-sample updates take about 2 s here, so the full exercise stays in the default suite
    solved = sum(train_adder(seed, bits=8, updates=20_000)[0] == 1.0 for seed in range(5))
    assert solved >= 4
