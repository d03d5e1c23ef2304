"""Checkpoints (harness.checkpoint): exact round trip, atomic write, one-line refusals; a fit restored from a
checkpoint continues exactly as the uninterrupted fit (every optimizer, early stopping included)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_configs import composed

from harness.checkpoint import (
    CheckpointError,
    config_differences,
    describe_differences,
    load_checkpoint,
    save_checkpoint,
)
from harness.config import validate
from harness.early_stopping import EarlyStopping
from harness.resume import ResumePoint, restore, snapshot
from harness.run import build_model, build_optimizer, build_task
from harness.tracking import MemoryLogger
from harness.training import fit

SMALL = ("task=bit_sum", "task.length=6", "model.hidden_size=4", "trainer.steps=60", "trainer.batch_size=4",
         "trainer.eval_interval=10", "trainer.eval_batch_size=16", "trainer.diagnostics_interval=20",
         "trainer.diagnostics_batch_size=4", "trainer.progress=false")


class Fit:
    """One fit of a composed config, its parts kept for snapshots and restores."""

    def __init__(self, *overrides: str) -> None:
        self.cfg = composed(*SMALL, *overrides)
        config = validate(self.cfg)
        self.config = config
        self.task = build_task(config)
        self.model = build_model(config.model, self.task, truncation=config.trainer.truncation,
                                 seed=config.seed)
        self.optimizer = build_optimizer(config)
        self.streams = self.task.streams(config.seed)
        self.val = self.task.sample(config.trainer.eval_batch_size, self.streams["val"])
        self.diag = self.task.sample(config.trainer.diagnostics_batch_size, self.streams["val"])
        es = config.trainer.early_stopping
        self.early = None if es.patience is None else EarlyStopping(es.patience, es.min_delta,
                                                                     self.task.higher_is_better)
        self.logger = MemoryLogger()

    def run(self, save=None, result=None):
        return fit(self.model, self.task, self.optimizer, self.config.trainer,
                   train_rng=self.streams["train"], val_batch=self.val, diagnostics_batch=self.diag,
                   logger=self.logger,
                   early_stopping=self.early, result=result, save=save)

    def snapshot_at(self, step: int, path: Path):
        """A save callback writing the checkpoint of step to path; self.logged: how many values each metric
        had then."""
        def save(result):
            if result.steps_done == step and not result.finished:
                save_checkpoint(snapshot(result, self.model, self.optimizer, self.streams, self.early,
                                         self.cfg, "run-1"), path)
                self.logged = {key: len(pairs) for key, pairs in self.logger.metrics.items()}
        return save


@pytest.mark.parametrize("optimizer", ["optimizer=adam", "optimizer=momentum", "optimizer=sgd",
                                       "optimizer=rprop", "optimizer.variant=irprop+"])
def test_a_fit_restored_from_a_checkpoint_continues_bit_identically(tmp_path: Path, optimizer: str) -> None:
    overrides = ("optimizer=rprop", optimizer) if "variant" in optimizer else (optimizer,)
    overrides += ("trainer.checkpoint_every=20", "optimizer.clip_norm=0.5")
    whole = Fit(*overrides)
    path = tmp_path / "checkpoint.npz"
    whole.run(save=whole.snapshot_at(40, path))

    resumed = Fit(*overrides)
    checkpoint = load_checkpoint(path)
    assert checkpoint.step == 40 and checkpoint.run_id == "run-1" and checkpoint.config == resumed.cfg
    start = restore(ResumePoint("run-1", "name", checkpoint), resumed.model, resumed.optimizer,
                    resumed.streams, None)
    end = resumed.run(result=start)

    for name, value in whole.model.params.items():
        assert np.array_equal(resumed.model.params[name], value), name
    # The resumed fit logs exactly the rest of the uninterrupted fit's history.
    rest = {key: pairs[whole.logged.get(key, 0):] for key, pairs in whole.logger.metrics.items()}
    assert resumed.logger.metrics == {key: pairs for key, pairs in rest.items() if pairs}
    assert end.train_loss == whole.logger.history("train/loss")[1].tolist()
    assert end.val_steps == [0, 10, 20, 30, 40, 50, 60] and end.grad_flow[-1][0] == 60


def test_early_stopping_fires_restores_best_weights_and_survives_a_resume(tmp_path: Path) -> None:
    # Adam at lr 0.01 on bit_sum climbs to ~0.97 accuracy, then cannot beat it for 5 checks.
    overrides = ("trainer.steps=3000", "trainer.eval_batch_size=64", "optimizer.lr=0.01",
                 "trainer.checkpoint_every=20", "trainer.early_stopping.patience=5",
                 "trainer.early_stopping.min_delta=1e-3")
    whole = Fit(*overrides)
    path = tmp_path / "checkpoint.npz"
    result = whole.run(save=whole.snapshot_at(20, path))
    assert result.stopped_step is not None and result.stopped_step < 3000, result.val_metric
    best = whole.early
    checks_after_best = [s for s in result.val_steps if s > best.best_step]
    assert len(checks_after_best) == 5 and result.stopped_step == checks_after_best[-1]
    assert best.best == max(result.val_metric) > 0.9  # accuracy: higher is better
    assert "did not improve by more than 0.001 in 5 validation checks" in result.stopped_reason
    assert any(not np.array_equal(value, whole.model.params[name])  # the best weights are not the last
               for name, value in best.best_params.items())

    resumed = Fit(*overrides)
    start = restore(ResumePoint("run-1", "name", load_checkpoint(path)), resumed.model, resumed.optimizer,
                    resumed.streams, resumed.early)
    again = resumed.run(result=start)
    assert (again.stopped_step, resumed.early.best_step, resumed.early.best) == (
        result.stopped_step, best.best_step, best.best)
    for name, value in best.best_params.items():
        assert np.array_equal(resumed.early.best_params[name], value)


def test_checkpoint_round_trip_is_exact_and_the_write_leaves_no_temporary(tmp_path: Path) -> None:
    fit_ = Fit("trainer.steps=10")
    path = tmp_path / "sub" / "checkpoint.npz"
    fit_.run(save=lambda result: save_checkpoint(
        snapshot(result, fit_.model, fit_.optimizer, fit_.streams, None, fit_.cfg, None), path))
    loaded = load_checkpoint(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.npz"]
    assert loaded.step == 10 and loaded.run_id is None
    assert loaded.rng == {name: rng.bit_generator.state for name, rng in fit_.streams.items()}
    assert loaded.optimizer["t"] == 10 and loaded.optimizer["name"] == "adam"
    for name, buffers in fit_.optimizer.state.items():
        for buffer, array in buffers.items():
            assert np.array_equal(loaded.optimizer["state"][name][buffer], array)
    assert loaded.curves["train_loss"] == fit_.logger.history("train/loss")[1].tolist()


def test_missing_cut_short_or_altered_checkpoints_are_refused_in_one_line(tmp_path: Path) -> None:
    fit_ = Fit("trainer.steps=4")
    path = tmp_path / "checkpoint.npz"
    fit_.run(save=lambda result: save_checkpoint(
        snapshot(result, fit_.model, fit_.optimizer, fit_.streams, None, fit_.cfg, None), path))
    data = path.read_bytes()

    def refusal(target: Path) -> str:
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(target)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert refusal(tmp_path / "none.npz").startswith("no checkpoint at")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    assert "unreadable" in refusal(cut)
    # Same file, one parameter changed and its zip member rewritten: only the SHA-256 can tell.
    altered = tmp_path / "altered.npz"
    altered_one = False
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(altered, "w") as target:
        for item in source.infolist():
            payload = source.read(item)
            if item.filename.startswith("param/") and not altered_one:
                altered_one = True
                payload = payload[:-1] + bytes([payload[-1] ^ 1])
            target.writestr(item, payload)
    assert "do not match its SHA-256" in refusal(altered)
    record = json.loads(str(np.load(path)["__meta__"]))
    assert len(record["sha256"]) == 64


def test_config_differences_name_the_dotted_keys() -> None:
    old = {"model": {"hidden_size": 4, "name": "elman"}, "trainer": {"steps": 10}, "seed": 0}
    new = {"model": {"hidden_size": 8, "name": "elman"}, "trainer": {"steps": 20}, "seed": 0, "extra": 1}
    assert config_differences(old, new) == ["extra", "model.hidden_size", "trainer.steps"]
    assert config_differences(old, new, ignore=("trainer.steps",)) == ["extra", "model.hidden_size"]
    assert describe_differences(old, new, ["extra", "model.hidden_size"]) == (
        "extra (unset in the run, 1 now), model.hidden_size (4 in the run, 8 now)")
