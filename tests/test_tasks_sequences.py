"""Sequence tasks: shapes, structure of each task, chance levels by Monte Carlo, determinism, validation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from harness.tasks import HEADS, MODES, TASK_NAMES, Batch, make_task, task_parameters

BATCH = 64


def within_standard_errors(samples: np.ndarray, expected: float, n_se: float = 4.0) -> bool:
    """Whether the mean of i.i.d. samples is within n_se standard errors of expected."""
    standard_error = np.std(samples, ddof=1) / math.sqrt(samples.size)
    return abs(float(np.mean(samples)) - expected) <= n_se * standard_error


def expected_target_shape(task, batch: Batch) -> tuple[int, ...]:
    T, B = batch.X.shape[:2]
    if task.mode == "many_to_one":
        return (B, task.output_size)
    if task.mode == "encoder_decoder":
        return (task.output_length, B, task.output_size)
    return (T, B, task.output_size)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_shapes_dtypes_and_interface(name):
    task = make_task(name)
    batch = task.sample(BATCH, np.random.default_rng(0))
    assert batch.X.dtype == np.float64 and batch.Y.dtype == np.float64
    assert batch.X.ndim == 3 and batch.X.shape[1:] == (BATCH, task.input_size)
    assert batch.Y.shape == expected_target_shape(task, batch)
    assert batch.mask is None
    assert task.head in HEADS and task.mode in MODES
    assert (task.output_length is not None) == (task.mode == "encoder_decoder")
    metrics = task.evaluate(batch.Y, batch)
    assert task.metric_name in metrics
    assert set(task.chance()) <= set(metrics)
    assert all(isinstance(value, float) for value in metrics.values())
    assert isinstance(task.higher_is_better, bool)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_perfect_predictions_solve_and_chance_does_not(name):
    task = make_task(name)
    batch = task.sample(BATCH, np.random.default_rng(1))
    assert task.solved(task.evaluate(batch.Y, batch))
    assert not task.solved(task.chance())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_gives_identical_batches_and_params_rebuild_the_task(name):
    task = make_task(name)
    first = task.sample(16, np.random.default_rng(7))
    rebuilt = make_task(name, **task.params)
    second = rebuilt.sample(16, np.random.default_rng(7))
    assert task.params == task_parameters(name)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.Y, second.Y)
    other = task.sample(16, np.random.default_rng(8))
    assert not np.array_equal(first.X, other.X)


def test_streams_are_independent_of_other_streams_draws():
    task = make_task("adding", length=20)
    streams_small, streams_large = task.streams(3), task.streams(3)
    task.sample(10, streams_small["test"])
    task.sample(1000, streams_large["test"])
    task.sample(500, streams_large["val"])
    train_a = task.sample(32, streams_small["train"])
    train_b = task.sample(32, streams_large["train"])
    np.testing.assert_array_equal(train_a.X, train_b.X)
    fresh = task.streams(3)
    test_batch = task.sample(32, fresh["test"])
    assert not np.array_equal(test_batch.X, task.sample(32, task.streams(3)["train"]).X)


# --- binary addition -------------------------------------------------------------------------------------


def from_bits(bits: np.ndarray) -> np.ndarray:
    """(bits, B) of 0/1, least-significant first -> (B,) integers."""
    return (bits.astype(np.int64) << np.arange(bits.shape[0])[:, None]).sum(axis=0)


@pytest.mark.parametrize("bits", [1, 4, 8, 40])
def test_binary_addition_sums_are_correct_and_never_overflow(bits):
    task = make_task("binary_addition", bits=bits, held_out=0.2 if bits > 1 else 0.0)
    batch = task.sample(500, np.random.default_rng(2))
    a, b = from_bits(batch.X[:, :, 0]), from_bits(batch.X[:, :, 1])
    c = from_bits(batch.Y[:, :, 0])
    np.testing.assert_array_equal(a + b, c)
    assert np.all(c < 2**bits)


def test_binary_addition_pairs_are_uniform_among_those_that_fit():
    # bits=1 allows (0,0), (0,1), (1,0), each with probability 1/3.
    batch = make_task("binary_addition", bits=1, held_out=0.0).sample(6000, np.random.default_rng(3))
    pairs = batch.X[0, :, 0] * 2 + batch.X[0, :, 1]
    for code in (0, 1, 2):
        assert within_standard_errors((pairs == code).astype(float), 1 / 3)
    assert not np.any(pairs == 3)


def test_binary_addition_validates_on_held_out_sums_only():
    task = make_task("binary_addition", bits=8)
    weights = 2 ** np.arange(8)

    def pairs(batch) -> set[tuple[int, int]]:
        a, b = (weights @ batch.X[:, :, k] for k in (0, 1))
        return set(zip(a.astype(int).tolist(), b.astype(int).tolist(), strict=True))

    trained = pairs(task.sample(20_000, np.random.default_rng(0)))
    validated = pairs(task.validation_set(2_000, np.random.default_rng(1)))
    assert len(trained) > 13_000 and len(validated) > 1_500 and not trained & validated
    everything = make_task("binary_addition", bits=8, held_out=0.0)
    assert pairs(everything.validation_set(20_000, np.random.default_rng(0))) & trained


def test_binary_addition_metrics_and_coin_chance():
    task = make_task("binary_addition", bits=6)
    batch = task.sample(4000, np.random.default_rng(4))
    Y_hat = batch.Y.copy()
    Y_hat[0, 0, 0] = 1.0 - Y_hat[0, 0, 0]
    metrics = task.evaluate(Y_hat, batch)
    assert metrics["sequence_accuracy"] == pytest.approx(1 - 1 / 4000)
    assert metrics["bit_accuracy"] == pytest.approx(1 - 1 / (4000 * 6))
    coin = np.random.default_rng(5).random(batch.Y.shape)
    correct = ((coin >= 0.5) == (batch.Y >= 0.5)).ravel().astype(float)
    assert within_standard_errors(correct, task.chance()["bit_accuracy"])
    assert task.chance()["sequence_accuracy"] == 0.5**6


# --- xor -------------------------------------------------------------------------------------------------


def test_xor_stream_structure():
    task = make_task("xor", triples=7)
    batch = task.sample(200, np.random.default_rng(6))
    x, y = batch.X[:, :, 0], batch.Y[:, :, 0]
    assert x.shape[0] == 3 * 7 - 1
    np.testing.assert_array_equal(y[:-1], x[1:])
    stream = np.concatenate([x[:1], y])
    np.testing.assert_array_equal(stream[2::3], np.logical_xor(stream[0::3], stream[1::3]))
    predictable = np.flatnonzero(task.predictable_steps)
    np.testing.assert_array_equal(y[predictable], np.logical_xor(x[predictable - 1], x[predictable]))


def test_xor_optimal_predictor_reaches_best_achievable_and_memoryless_is_chance():
    task = make_task("xor", triples=5, held_out=0.0)
    batch = task.sample(4000, np.random.default_rng(7))
    x = batch.X[:, :, 0]
    optimal = np.full_like(x, 0.5)
    previous = np.vstack([np.zeros((1, x.shape[1])), x[:-1]])
    steps = task.predictable_steps
    optimal[steps] = np.logical_xor(previous[steps], x[steps])
    # Y_hat = 0.5 elsewhere predicts 1, right half the time on the coin-flip targets.
    per_sequence = ((optimal[:, :, None] >= 0.5) == (batch.Y >= 0.5)).mean(axis=(0, 2))
    best = task.best_achievable()
    assert task.evaluate(optimal[:, :, None], batch)["accuracy_predictable"] == 1.0
    assert within_standard_errors(per_sequence, best["accuracy_all"])
    assert best["accuracy_all"] == pytest.approx((1 + 5 / 14) / 2)
    memoryless = x[:, :, None]  # the best any function of the current bit alone can do on the xor steps
    metrics = task.evaluate(memoryless, batch)
    n_predictable = steps.sum() * x.shape[1]
    assert abs(metrics["accuracy_predictable"] - 0.5) < 4 * math.sqrt(0.25 / n_predictable)


# --- bit sum ---------------------------------------------------------------------------------------------


def test_bit_sum_target_and_exact_linear_rnn():
    task = make_task("bit_sum", length=12)
    batch = task.sample(300, np.random.default_rng(8))
    np.testing.assert_array_equal(batch.Y[:, 0], batch.X[:, :, 0].sum(axis=0))
    h = np.zeros(batch.X.shape[1])
    for x_t in batch.X[:, :, 0]:  # h_t = 1 * h_{t-1} + 1 * x_t: the linear RNN of note 001
        h = h + x_t
    metrics = task.evaluate(h[:, None], batch)
    assert metrics == {"accuracy": 1.0, "mse": 0.0}


def test_bit_sum_chance_by_monte_carlo():
    task = make_task("bit_sum", length=9, held_out=0.0)
    batch = task.sample(20000, np.random.default_rng(9))
    counts = batch.Y[:, 0]
    chance = task.chance()
    assert within_standard_errors((counts - 4.5) ** 2, chance["mse"])
    assert within_standard_errors((np.abs(counts - 4) < 0.5).astype(float), chance["accuracy"])


# --- adding ----------------------------------------------------------------------------------------------


def test_adding_markers_and_targets():
    task = make_task("adding", length=31)
    batch = task.sample(500, np.random.default_rng(10))
    values, markers = batch.X[:, :, 0], batch.X[:, :, 1]
    assert np.all((values >= 0) & (values < 1))
    np.testing.assert_array_equal(markers.sum(axis=0), 2.0)
    np.testing.assert_array_equal(markers[:15].sum(axis=0), 1.0)
    np.testing.assert_array_equal(markers[15:].sum(axis=0), 1.0)
    np.testing.assert_allclose(batch.Y[:, 0], (values * markers).sum(axis=0), rtol=0, atol=1e-15)


def test_adding_constant_baseline_by_monte_carlo():
    task = make_task("adding", length=10)
    batch = task.sample(20000, np.random.default_rng(11))
    error = 1.0 - batch.Y[:, 0]
    assert within_standard_errors(error**2, task.chance()["mse"])
    assert within_standard_errors((np.abs(error) < 0.04).astype(float), task.chance()["accuracy"])
    assert task.chance()["mse"] == pytest.approx(1 / 6)
    assert task.solved({"mse": 0.09 / 6}) and not task.solved({"mse": 0.11 / 6})
    assert task.evaluate(np.ones_like(batch.Y), batch)["nmse"] == pytest.approx(1.0, abs=0.05)


# --- copy ------------------------------------------------------------------------------------------------


def test_copy_layout():
    task = make_task("copy", delay=15)
    batch = task.sample(100, np.random.default_rng(12))
    inputs, targets = batch.X.argmax(axis=-1), batch.Y.argmax(axis=-1)
    assert batch.X.shape == (15 + 20, 100, 10) and batch.Y.shape == (35, 100, 9)
    assert np.all(inputs[:10] < 8)
    np.testing.assert_array_equal(inputs[10:24], 8)
    np.testing.assert_array_equal(inputs[24], 9)
    np.testing.assert_array_equal(inputs[25:], 8)
    np.testing.assert_array_equal(targets[:25], 8)
    np.testing.assert_array_equal(targets[25:], inputs[:10])
    np.testing.assert_array_equal(batch.X.sum(axis=-1), 1.0)


@pytest.mark.parametrize("delay", [1, 50, 100])
def test_copy_baseline_cross_entropy(delay):
    task = make_task("copy", delay=delay)
    batch = task.sample(2000, np.random.default_rng(13))
    baseline = np.zeros_like(batch.Y)
    baseline[: task.recall_start, :, 8] = 1.0
    baseline[task.recall_start :, :, :8] = 1 / 8
    metrics = task.evaluate(baseline, batch)
    assert metrics["cross_entropy"] == pytest.approx(10 * math.log(8) / (delay + 20))
    assert task.chance()["cross_entropy"] == pytest.approx(10 * math.log(8) / (delay + 20))
    guesses = baseline + 1e-3 * np.random.default_rng(14).random(baseline.shape)
    correct = guesses.argmax(-1)[task.recall_start :] == batch.Y.argmax(-1)[task.recall_start :]
    assert within_standard_errors(correct.ravel().astype(float), task.chance()["recall_accuracy"])


# --- temporal order --------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [10, 37, 100])
def test_temporal_order_structure(length):
    task = make_task("temporal_order", length=length)
    batch = task.sample(400, np.random.default_rng(15))
    symbols = batch.X.argmax(axis=-1)
    np.testing.assert_array_equal(symbols[0], 6)
    np.testing.assert_array_equal(symbols[-1], 7)
    is_key = (symbols == 4) | (symbols == 5)
    np.testing.assert_array_equal(is_key.sum(axis=0), 2)
    (low1, high1), (low2, high2) = task.windows
    assert 1 <= low1 < high1 <= low2 < high2 <= length - 1
    first = is_key.argmax(axis=0)
    second = length - 1 - is_key[::-1].argmax(axis=0)
    columns = np.arange(400)
    assert np.all((first >= low1) & (first < high1) & (second >= low2) & (second < high2))
    label = 2 * (symbols[first, columns] - 4) + (symbols[second, columns] - 4)
    np.testing.assert_array_equal(batch.Y.argmax(axis=-1), label)


def test_temporal_order_windows_match_hochreiter_and_schmidhuber_at_length_100():
    assert make_task("temporal_order", length=100).windows == ((10, 20), (50, 60))


def test_temporal_order_chance_by_monte_carlo():
    task = make_task("temporal_order", length=20)
    batch = task.sample(8000, np.random.default_rng(16))
    guess = np.random.default_rng(17).integers(0, 4, size=8000)
    assert within_standard_errors((guess == batch.Y.argmax(-1)).astype(float), task.chance()["accuracy"])
    uniform = np.full_like(batch.Y, 0.25)
    assert task.evaluate(uniform, batch)["cross_entropy"] == pytest.approx(task.chance()["cross_entropy"])
    for label in range(4):
        assert within_standard_errors((batch.Y.argmax(-1) == label).astype(float), 0.25)


# --- latch -----------------------------------------------------------------------------------------------


def test_latch_information_then_noise():
    task = make_task("latch", length=40, info_length=3, noise_std=0.5)
    batch = task.sample(2000, np.random.default_rng(18))
    sign = 2.0 * batch.Y.argmax(-1) - 1.0
    np.testing.assert_array_equal(batch.X[:3, :, 0], np.broadcast_to(sign, (3, 2000)))
    noise = batch.X[3:, :, 0].ravel()
    assert within_standard_errors(noise, 0.0)
    assert abs(noise.std() - 0.5) < 0.01
    latched = np.stack([batch.X[0, :, 0] < 0, batch.X[0, :, 0] > 0], axis=-1).astype(float)
    assert task.evaluate(latched, batch)["accuracy"] == 1.0
    guess = np.random.default_rng(19).integers(0, 2, size=2000)
    assert within_standard_errors((guess == batch.Y.argmax(-1)).astype(float), task.chance()["accuracy"])


# --- reversal --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [True, False])
def test_reversal_targets_are_the_reversed_inputs(delimiter):
    task = make_task("reversal", length=6, n_symbols=5, delimiter=delimiter)
    batch = task.sample(300, np.random.default_rng(20))
    symbols = batch.X.argmax(axis=-1)
    assert batch.X.shape == (6 + delimiter, 300, 5 + delimiter)
    assert batch.Y.shape == (task.output_length, 300, 5) and task.output_length == 6
    np.testing.assert_array_equal(batch.Y.argmax(axis=-1), symbols[:6][::-1])
    if delimiter:
        np.testing.assert_array_equal(symbols[-1], 5)
        assert np.all(symbols[:-1] < 5)


def test_reversal_one_wrong_symbol_breaks_the_sequence_only():
    task = make_task("reversal", length=4)
    batch = task.sample(10, np.random.default_rng(21))
    Y_hat = batch.Y.copy()
    Y_hat[2, 0] = np.roll(Y_hat[2, 0], 1)
    metrics = task.evaluate(Y_hat, batch)
    assert metrics["sequence_accuracy"] == pytest.approx(0.9)
    assert metrics["symbol_accuracy"] == pytest.approx(39 / 40)
    assert task.chance()["sequence_accuracy"] == pytest.approx(8.0**-4)


# --- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("binary_addition", {"bits": 0}, "bits"),
        ("binary_addition", {"bits": 63}, "bits"),
        ("binary_addition", {"head": "softmax_ce"}, "head"),
        ("xor", {"triples": 0}, "triples"),
        ("bit_sum", {"length": -1}, "length"),
        ("adding", {"length": 1}, "length"),
        ("adding", {"length": 2.5}, "length"),
        ("copy", {"delay": 0}, "delay"),
        ("copy", {"n_symbols": 1}, "n_symbols"),
        ("copy", {"copy_length": 0}, "copy_length"),
        ("temporal_order", {"length": 9}, "length"),
        ("latch", {"info_length": 50}, "info_length"),
        ("latch", {"noise_std": -0.1}, "noise_std"),
        ("reversal", {"length": 0}, "length"),
        ("reversal", {"delimiter": "yes"}, "delimiter"),
        ("adding", {"lenght": 10}, "unknown parameter.*lenght"),
    ],
)
def test_invalid_parameters_name_the_parameter(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_task(name, **params)


def test_unknown_task_and_bad_calls_raise():
    with pytest.raises(ValueError, match="task name must be one of"):
        make_task("addition")
    task = make_task("adding", length=10)
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0, np.random.default_rng(0))
    batch = task.sample(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Y_hat"):
        task.evaluate(np.zeros((5, 1)), batch)
    with pytest.raises(ValueError, match="seed"):
        task.streams(-1)


def test_importing_tasks_loads_neither_statsmodels_nor_tracking_libraries():
    code = "import sys, harness.tasks; print(sorted({'statsmodels', 'mlflow', 'hydra'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
