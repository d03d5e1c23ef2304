"""Training checkpoints: everything a run needs to continue bit-exactly, in one self-checking .npz file.

A checkpoint holds, after `step` optimizer updates: the parameters, the optimizer's state (step count and
per-parameter buffers), the state of every random stream of the run (train / val / test bit generators),
the early-stopping state with its best parameters, the training curves kept for the run's figures, and the
composed config the run was started with. Pure NumPy: no MLflow, no Hydra.

Writes are atomic (a temporary file in the same folder, fsync, then os.replace), so a crash mid-write leaves
the previous checkpoint in place; the file also carries a SHA-256 of its contents, so a copy cut short (an
artifact upload interrupted, a full disk) is refused by `load_checkpoint` with one line instead of loading
wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
FILENAME = "checkpoint.npz"
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint is missing, cut short, corrupt or from another run; the message is one line."""


@dataclass
class Checkpoint:
    """The state of a run after `step` updates.

    params / best_params: name -> array as in model.params (best_params empty when early stopping is off).
    optimizer: Optimizer.state_dict(). rng: stream name -> bit_generator.state. early_stopping:
    EarlyStopping.state(). curves: FitResult's logged curves (lists, JSON-safe) and grad_flow arrays.
    config: the composed config (nested dict) the run was started with. run_id: its MLflow run, or None.
    """

    step: int
    params: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    rng: dict[str, dict[str, Any]]
    config: dict[str, Any]
    run_id: str | None = None
    early_stopping: dict[str, Any] = field(default_factory=dict)
    best_params: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    grad_flow: list[tuple[int, np.ndarray]] = field(default_factory=list)
    lag_norms: list[np.ndarray] = field(default_factory=list)


def _arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's arrays under flat, prefixed names."""
    arrays = {f"param/{k}": v for k, v in checkpoint.params.items()}
    arrays.update({f"best/{k}": v for k, v in checkpoint.best_params.items()})
    for name, buffers in checkpoint.optimizer["state"].items():
        arrays.update({f"opt/{name}/{b}": a for b, a in buffers.items()})
    arrays.update({f"grad_flow/{i}": a for i, (_, a) in enumerate(checkpoint.grad_flow)})
    arrays.update({f"lag_norms/{i}": a for i, a in enumerate(checkpoint.lag_norms)})
    # Curves as arrays: 8 bytes a value instead of ~20 characters of JSON (tolist() gives the floats back).
    arrays.update({f"curve/{k}": np.asarray(v) for k, v in checkpoint.curves.items() if isinstance(v, list)})
    return arrays


def _digest(arrays: dict[str, np.ndarray], meta: str) -> str:
    digest = hashlib.sha256(meta.encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> int:
    """Write checkpoint to path atomically; returns the file's size in bytes."""
    path = Path(path)
    arrays = _arrays(checkpoint)
    optimizer = {k: v for k, v in checkpoint.optimizer.items() if k != "state"}
    optimizer["buffers"] = {name: sorted(buffers) for name, buffers in checkpoint.optimizer["state"].items()}
    meta = json.dumps({
        "format": FORMAT, "step": checkpoint.step, "run_id": checkpoint.run_id, "config": checkpoint.config,
        "optimizer": optimizer, "rng": checkpoint.rng, "early_stopping": checkpoint.early_stopping,
        "curves": {k: v for k, v in checkpoint.curves.items() if not isinstance(v, list)},
        "curve_lists": sorted(k for k, v in checkpoint.curves.items() if isinstance(v, list)),
        "grad_flow_steps": [step for step, _ in checkpoint.grad_flow],
    })
    record = json.dumps({"meta": meta, "sha256": _digest(arrays, meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{_META: np.array(record)}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.stat().st_size


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint; CheckpointError (one line) if it is missing, cut short
    or does not match its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        record = json.loads(str(arrays.pop(_META)))
        meta_text = record["meta"]
        intact = record["sha256"] == _digest(arrays, meta_text)
    except Exception as exc:  # a truncated zip, a missing member, bad JSON: all mean "not a checkpoint"
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}); it was cut short or "
                              "is not a harness checkpoint") from exc
    if not intact:
        raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match its SHA-256")
    meta = json.loads(meta_text)
    if meta["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta['format']}, this harness reads {FORMAT}")
    optimizer = dict(meta["optimizer"])
    optimizer["state"] = {name: {b: arrays[f"opt/{name}/{b}"] for b in buffers}
                          for name, buffers in optimizer.pop("buffers").items()}

    def group(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    return Checkpoint(
        step=meta["step"], params=group("param/"), optimizer=optimizer, rng=meta["rng"],
        config=meta["config"], run_id=meta["run_id"], early_stopping=meta["early_stopping"],
        best_params=group("best/"),
        curves={**meta["curves"], **{k: arrays[f"curve/{k}"].tolist() for k in meta["curve_lists"]}},
        grad_flow=[(step, arrays[f"grad_flow/{i}"]) for i, step in enumerate(meta["grad_flow_steps"])],
        lag_norms=[arrays[f"lag_norms/{i}"] for i in range(len(group("lag_norms/")))],
    )


def rng_states(streams: dict[str, np.random.Generator]) -> dict[str, dict[str, Any]]:
    """stream name -> its bit generator's state (a JSON-safe dict)."""
    return {name: rng.bit_generator.state for name, rng in streams.items()}


def restore_rng_states(streams: dict[str, np.random.Generator], states: dict[str, dict[str, Any]]) -> None:
    """Put every stream back in the state rng_states recorded (same stream names required)."""
    if set(streams) != set(states):
        raise CheckpointError(f"checkpoint has random streams {sorted(states)}, the run {sorted(streams)}")
    for name, rng in streams.items():
        rng.bit_generator.state = states[name]


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """config (nested dicts) as one dict of dotted keys, e.g. {"trainer.steps": 200}; empty dicts vanish."""
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(flat_config(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: config}


def config_differences(old: dict[str, Any], new: dict[str, Any], *,
                       ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two nested configs (missing on one side counts), sorted,
    leaving out the keys in ignore."""
    a, b = flat_config(old), flat_config(new)
    return sorted(key for key in set(a) | set(b) if key not in ignore and a.get(key, ...) != b.get(key, ...))


def describe_differences(old: dict[str, Any], new: dict[str, Any], keys: list[str], *,
                         old_is: str = "the run", missing: str = "unset") -> str:
    """keys (config_differences(old, new)) with both values: "model.hidden_size (4 in the run, 5 now)";
    old_is names what old belongs to, missing stands for a key one side lacks."""
    a, b = flat_config(old), flat_config(new)

    def shown(flat: dict[str, Any], key: str) -> str:
        return repr(flat[key]) if key in flat else missing

    return ", ".join(f"{key} ({shown(a, key)} in {old_is}, {shown(b, key)} now)" for key in keys)
