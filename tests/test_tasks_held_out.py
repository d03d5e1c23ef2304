"""The held-out split of the discrete tasks (harness.tasks.held_out): training never draws a validation input,
the split is a fixed function of the input alone (the same for every seed), it is binary addition's SplitMix64
of (a, b), bad fractions and empty parts are refused with one line, rejection sampling stays bounded, and a
Hydra-composed run of every task with the split still learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.run import run
from harness.tasks import TASKS, Batch, make_task
from harness.tasks.held_out import ENUMERATION_LIMIT, HeldOutSplit, held_out_inputs, input_words

CONF = Path(__file__).resolve().parents[1] / "conf"
SPLIT_TASKS = sorted(name for name, task in TASKS.items() if issubclass(task, HeldOutSplit))
# Where a default run's validation sequences are also training draws the split is on by default.
HELD_OUT_BY_DEFAULT = ("binary_addition", "bit_sum", "xor")
# Small enough to enumerate, large enough that both parts hold many inputs.
SMALL = {"binary_addition": {"bits": 6}, "xor": {"triples": 5}, "bit_sum": {"length": 10},
         "copy": {"delay": 3, "n_symbols": 4, "copy_length": 4}, "reversal": {"length": 4, "n_symbols": 4},
         "temporal_order": {"length": 10}}
# The part of a fraction 0.2 that each SMALL space holds: counted once, from the SplitMix64 definition.
SMALL_HELD = {"binary_addition": 421, "xor": 200, "bit_sum": 201, "copy": 46, "reversal": 52,
              "temporal_order": 3341}
# Spaces up to this size are drawn until every input has shown up.
COVERED = 2_500


def keys(X: np.ndarray) -> set[bytes]:
    """(T, B, D) inputs -> the set of their sequences, each as bytes."""
    return {X[:, column].tobytes() for column in range(X.shape[1])}


def splitmix64(a: int, b: int) -> int:
    """SplitMix64 of (a + 1) * golden + b in Python integers (no NumPy wrap-around involved)."""
    mask = (1 << 64) - 1
    z = ((a + 1) * 0x9E3779B97F4A7C15 + b) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_every_discrete_task_has_the_split_on_by_default_where_default_runs_repeat_inputs():
    assert SPLIT_TASKS == ["binary_addition", "bit_sum", "copy", "reversal", "temporal_order", "xor"]
    assert {name: make_task(name).held_out for name in SPLIT_TASKS} == {
        name: 0.2 if name in HELD_OUT_BY_DEFAULT else 0.0 for name in SPLIT_TASKS}


@pytest.mark.parametrize("name", SPLIT_TASKS)
def test_training_never_draws_a_validation_input_whatever_the_seed(name):
    task = make_task(name, **SMALL[name], held_out=0.2)
    every = task._all_inputs()
    assert every.shape[1] == task.input_count <= ENUMERATION_LIMIT and len(keys(every)) == task.input_count
    held = keys(every[:, held_out_inputs(every, task.held_out)])
    assert len(held) == SMALL_HELD[name]
    trained, validated = set(), set()
    for seed in range(3):
        streams = task.streams(seed)
        trained |= keys(task.sample(20_000, streams["train"]).X)
        validated |= keys(task.validation_set(5_000, streams["val"]).X)
    # the parts are fixed, not per seed: no seed trains on another seed's validation inputs
    assert validated <= held and trained <= keys(every) - held
    if task.input_count <= COVERED:  # and every input of its part is drawn
        assert validated == held and trained == keys(every) - held


@pytest.mark.parametrize("name", SPLIT_TASKS)
def test_default_sized_tasks_keep_their_parts_apart(name):
    task = make_task(name, held_out=0.2)
    streams = task.streams(0)
    train, val = task.sample(512, streams["train"]), task.validation_set(256, streams["val"])
    assert not held_out_inputs(train.X, 0.2).any() and held_out_inputs(val.X, 0.2).all()
    assert not keys(train.X) & keys(val.X)
    perfect = task.evaluate(val.Y, val)  # the targets still belong to the inputs
    assert task.solved(perfect)


def test_the_split_is_splitmix64_of_binary_additions_operands():
    task = make_task("binary_addition", bits=8)
    a, b = np.divmod(np.arange(256 * 256), 256)
    fits = a + b < 256
    held = held_out_inputs(task._all_inputs(), 0.2)
    expected = [splitmix64(x, y) >> 11 < 0.2 * 2**53 for x, y in zip(a[fits].tolist(), b[fits].tolist(),
                                                                      strict=True)]
    np.testing.assert_array_equal(held, expected)
    assert held.sum() == 6593  # a fixed fifth of all 32,896 sums


def test_inputs_pack_channel_by_channel_earliest_step_lowest():
    X = np.zeros((70, 1, 2))
    X[[0, 3, 69], 0, 0] = 1.0
    X[64, 0, 1] = 1.0
    np.testing.assert_array_equal(input_words(X), [[0b1001, 1 << 5, 0, 1]])
    with pytest.raises(ValueError, match="0/1 values only"):
        input_words(np.full((3, 1, 1), 0.5))


@pytest.mark.parametrize("name", SPLIT_TASKS)
def test_held_out_zero_draws_from_every_input(name):
    task = make_task(name, **SMALL[name], held_out=0.0)
    drawn = keys(task.sample(20_000, task.streams(1)["train"]).X)
    held = keys(task._all_inputs()[:, held_out_inputs(task._all_inputs(), 0.2)])
    assert drawn & held and (drawn == keys(task._all_inputs()) or task.input_count > COVERED)


def test_held_out_zero_reads_the_generator_as_a_plain_draw():
    # no rejection at all: the numbers of a task without the split
    X = np.random.default_rng(4).integers(0, 2, size=(10, 32, 1)).astype(np.float64)
    task = make_task("bit_sum", length=10, held_out=0.0)
    np.testing.assert_array_equal(task.sample(32, np.random.default_rng(4)).X, X)


@pytest.mark.parametrize("name", SPLIT_TASKS)
@pytest.mark.parametrize("value", [-0.1, 1.0, 1, True, "0.2", float("nan")])
def test_held_out_must_be_a_fraction(name, value):
    with pytest.raises(ValueError, match=r"^held_out must be a fraction in \[0, 1\), got ") as info:
        make_task(name, held_out=value)
    assert str(info.value) == f"held_out must be a fraction in [0, 1), got {value!r}"


@pytest.mark.parametrize(("name", "size", "count"), [("binary_addition", "bits", 3), ("xor", "triples", 4),
                                                     ("bit_sum", "length", 2), ("copy", "copy_length", 8),
                                                     ("reversal", "length", 8)])
def test_a_fraction_that_leaves_a_part_empty_is_refused_with_one_line(name, size, count):
    with pytest.raises(ValueError) as info:
        make_task(name, **{size: 1}, held_out=0.01)
    assert str(info.value) == (f"held_out=0.01 leaves one part of the {count} inputs of {size}=1 empty; "
                               f"use a larger {size} or held_out=0")
    make_task(name, **{size: 1}, held_out=0.0)  # without the split the smallest space is fine


def test_a_fraction_that_leaves_the_training_part_empty_is_refused():
    task = make_task("temporal_order", length=10, held_out=0.9999)  # 16,384 inputs, one of them for training
    train = task.sample(4, task.streams(0)["train"])  # rejection finds it within its bounded rounds
    assert len(keys(train.X)) == 1
    with pytest.raises(ValueError, match=r"^held_out=0\.99999 leaves one part of the 16384 inputs of length"):
        make_task("temporal_order", length=10, held_out=0.99999)


@pytest.mark.parametrize(("held_out", "part"), [(1e-15, "held-out"), (1 - 1e-15, "training")])
def test_rejection_sampling_gives_up_on_a_nearly_empty_part(held_out, part):
    task = make_task("bit_sum", length=40, held_out=held_out)  # 2**40 inputs: not enumerated
    draw = task.validation_set if part == "held-out" else task.sample
    with pytest.raises(ValueError) as info:
        draw(8, np.random.default_rng(0))
    assert str(info.value) == (f"held_out={held_out!r}: 64 rounds of rejection sampling drew 0 of 8 {part} "
                               f"sequences from 838848 candidates, so the {part} part is (nearly) empty; use "
                               "another held_out or held_out=0")


@pytest.mark.parametrize("name", SPLIT_TASKS)
def test_a_hydra_composed_run_still_learns_on_held_out_inputs(name):
    overrides = {"binary_addition": ["model=elman", "model.hidden_size=16"],
                 "xor": ["model=elman", "model.hidden_size=8", "task.triples=4"],
                 "bit_sum": ["model=linear", "model.hidden_size=2"],
                 "copy": ["task.delay=5", "task.copy_length=3", "task.n_symbols=4", "model.hidden_size=16"],
                 "reversal": ["task.length=3", "task.n_symbols=4", "model.hidden_size=16"],
                 "temporal_order": ["task.length=10", "model.hidden_size=16"]}[name]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"task={name}", *overrides, "task.held_out=0.2", "optimizer.lr=0.02", "tracking=off",
            "trainer.steps=200", "trainer.batch_size=16", "trainer.eval_interval=100",
            "trainer.eval_batch_size=128", "trainer.diagnostics_interval=0", "trainer.progress=false",
            "trainer.checkpoint_every=0"])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    task = make_task(name, **{key: value for key, value in cfg["task"].items() if key != "name"})
    val = task.validation_set(8, np.random.default_rng(0))
    chance, perfect = task.chance()[task.metric_name], task.evaluate(val.Y, val)[task.metric_name]
    # the validation metric, on held-out inputs only, goes a good part of the way from chance to perfect
    assert (run(cfg) - chance) / (perfect - chance) > 0.25


@pytest.mark.parametrize("length", [6, 8])
def test_bit_sum_chance_is_the_best_constant_on_the_held_out_part(length):
    task = make_task("bit_sum", length=length)
    every = task._all_inputs()
    held = every[:, held_out_inputs(every, task.held_out)]
    counts = held[:, :, 0].sum(axis=0)
    part = Batch(X=held, Y=counts[:, None])  # each held-out input once: what the validation set draws from
    constant = [task.evaluate(np.full((held.shape[1], 1), k), part) for k in range(length + 1)]
    mean = task.evaluate(np.full((held.shape[1], 1), counts.mean()), part)
    chance = task.chance()
    assert chance["accuracy"] == max(metrics["accuracy"] for metrics in constant)
    assert chance["mse"] == pytest.approx(mean["mse"], rel=1e-12)
    assert chance != make_task("bit_sum", length=length, held_out=0.0).chance()
