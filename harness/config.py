"""The schema of a training run's configuration (conf/config.yaml) and its validation.

`validate(cfg)` turns the composed config (a plain nested dict, e.g. `OmegaConf.to_container(cfg,
resolve=True)`) into a frozen `RunConfig`, or raises `ConfigError` whose one-line message names the offending
key and what is allowed. It checks keys, types and ranges of the sections the schema knows (model, optimizer,
trainer, tracking, seed); task parameters are checked against the task's own signature, then by the task
(`harness.run.build_*` turn the numeric core's ValueErrors into ConfigErrors the same way). Nothing here
imports Hydra or MLflow: a notebook can validate a plain dict.

The same pieces serve the two study apps (harness.studies): `check_value` for one value, `check_keys` for
the keys of a section, `require_memory` with `network_bytes` for what a run would allocate against the
memory this machine has available, all raising ConfigError.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from harness.tasks import TASK_NAMES, task_parameters

MODEL_NAMES = ("elman", "linear", "irnn", "jordan", "lstm", "gru", "bidirectional")
BIDIRECTIONAL_CELLS = ("elman", "lstm", "gru")
OPTIMIZER_NAMES = ("sgd", "momentum", "adam", "rprop")
TRACKING_MODES = ("local", "server", "off")
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")
INITS = ("uniform", "glorot", "orthogonal", "identity")
DTYPES = ("float32", "float64")
REDUCTIONS = ("mean", "sum")


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the key."""


def check_value(key: str, value: Any, *, kind: type, minimum: float | None = None, strict: bool = False,
                choices: tuple[str, ...] | None = None, optional: bool = False) -> Any:
    """value if it is of kind (int, float, bool or str; floats finite) and within minimum (strict: above
    it) or choices, None if optional; ints widened to float for kind float; else ConfigError naming key."""
    return _check_value(key, value, _spec(kind=kind, minimum=minimum, strict=strict, choices=choices,
                                          optional=optional))


def check_keys(section: str, values: Any, allowed: Iterable[str]) -> dict[str, Any]:
    """values (a mapping) if all its keys are allowed, else ConfigError naming the first unknown key of
    section ("" for the top level) and the allowed ones."""
    values = _section(section or "config", values)
    allowed = list(allowed)
    for key in values:
        if key not in allowed:
            raise _unknown_key(f"{section}.{key}" if section else key, allowed)
    return values


def _spec(*, kind: type, minimum: float | None = None, strict: bool = False,
          choices: tuple[str, ...] | None = None, optional: bool = False) -> dict[str, Any]:
    """Field metadata read by _check_value: the value's kind, range or choices, whether null is allowed."""
    return {"kind": kind, "minimum": minimum, "strict": strict, "choices": choices, "optional": optional}


def _field(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata=_spec(**spec))


@dataclass(frozen=True)
class ModelConfig:
    """conf/model/*.yaml. Input/output sizes, head and mode come from the task, not from here."""

    name: str = _field("elman", kind=str, choices=MODEL_NAMES)
    hidden_size: int = _field(32, kind=int, minimum=1)
    activation: str | None = _field(None, kind=str, choices=ACTIVATIONS, optional=True)
    cell: str | None = _field(None, kind=str, choices=BIDIRECTIONAL_CELLS, optional=True)
    init: str = _field("glorot", kind=str, choices=INITS)
    recurrent_init: str | None = _field(None, kind=str, choices=INITS, optional=True)
    spectral_radius: float | None = _field(None, kind=float, minimum=0.0, strict=True, optional=True)
    max_singular_value: float | None = _field(None, kind=float, minimum=0.0, strict=True, optional=True)
    num_layers: int = _field(1, kind=int, minimum=1)
    bias: bool = _field(True, kind=bool)
    clip_hidden_delta: float | None = _field(None, kind=float, minimum=0.0, strict=True, optional=True)
    reduction: str = _field("mean", kind=str, choices=REDUCTIONS)
    dtype: str = _field("float64", kind=str, choices=DTYPES)


@dataclass(frozen=True)
class OptimizerConfig:
    """conf/optimizer/*.yaml; `options` holds the optimizer's own keywords (momentum, beta1, variant, ...)."""

    name: str = _field("adam", kind=str, choices=OPTIMIZER_NAMES)
    lr: float = _field(1e-3, kind=float, minimum=0.0, strict=True)
    clip_norm: float | None = _field(None, kind=float, minimum=0.0, strict=True, optional=True)
    clip_value: float | None = _field(None, kind=float, minimum=0.0, strict=True, optional=True)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """trainer.early_stopping: stop after `patience` validation checks without an improvement of the task
    metric by more than min_delta (null patience: never stop early); keep_last also logs the last weights."""

    patience: int | None = _field(None, kind=int, minimum=1, optional=True)
    min_delta: float = _field(0.0, kind=float, minimum=0.0)
    keep_last: bool = _field(False, kind=bool)


@dataclass(frozen=True)
class TrainerConfig:
    """conf/trainer/default.yaml."""

    steps: int = _field(2000, kind=int, minimum=1)
    batch_size: int = _field(32, kind=int, minimum=1)
    eval_interval: int = _field(100, kind=int, minimum=1)
    eval_batch_size: int = _field(256, kind=int, minimum=1)
    diagnostics_interval: int = _field(500, kind=int, minimum=0)
    diagnostics_batch_size: int = _field(32, kind=int, minimum=1)
    truncation: int | None = _field(None, kind=int, minimum=1, optional=True)
    log_every: int = _field(1, kind=int, minimum=1)
    progress: bool = _field(True, kind=bool)
    checkpoint_every: int = _field(500, kind=int, minimum=0)
    resume: str | None = _field(None, kind=str, optional=True)
    resume_sweep: str | None = _field(None, kind=str, optional=True)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass(frozen=True)
class TrackingConfig:
    """conf/tracking/{local,server,off}.yaml (the fields of harness.tracking.TrackingSettings)."""

    mode: str = _field("local", kind=str, choices=TRACKING_MODES)
    uri: str | None = _field(None, kind=str, optional=True)
    experiment: str = _field("train", kind=str)
    artifact_root: str | None = _field(None, kind=str, optional=True)


@dataclass(frozen=True)
class TaskConfig:
    """conf/task/*.yaml: the name of a harness.tasks task and its make_task keywords."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RunConfig:
    """One validated training run."""

    task: TaskConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    trainer: TrainerConfig
    tracking: TrackingConfig
    seed: int


TRACKING_KEYS = tuple(f.name for f in fields(TrackingConfig))
ROOT_KEYS = ("task", "model", "optimizer", "trainer", "tracking", "seed")
SECTIONS = {"model": ModelConfig, "optimizer": OptimizerConfig, "trainer": TrainerConfig,
            "tracking": TrackingConfig}


RUN_KEYS: dict[str, tuple[str, ...] | None] = {
    "": ROOT_KEYS, **{name: tuple(f.name for f in fields(cls)) for name, cls in SECTIONS.items()},
    "optimizer": None, "task": None,
}


def allowed_keys(key: str, sections: Mapping[str, Sequence[str] | None] = RUN_KEYS) -> list[str] | None:
    """The keys a schema allows beside dotted key (e.g. 'trainer.stesp' -> TrainerConfig's fields): sections
    maps a section ("" the top level) to its keys, None where they depend on a choice (task parameters, an
    optimizer's own options) or on the section's entries, and for sections it does not list."""
    keys = sections.get(key.rpartition(".")[0])
    return None if keys is None else list(keys)


def _describe(spec: dict[str, Any]) -> str:
    """What a field allows, for error messages."""
    if spec["choices"] is not None:
        allowed = f"one of {list(spec['choices'])}"
    else:
        allowed = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[spec["kind"]]
        if spec["minimum"] is not None:
            allowed += f" {'>' if spec['strict'] else '>='} {spec['minimum']:g}"
    return allowed + (" or null" if spec["optional"] else "")


def _check_value(key: str, value: Any, spec: dict[str, Any]) -> Any:
    """Return value (ints widened to float for float fields) or raise ConfigError naming key."""
    if value is None:
        if spec["optional"]:
            return None
        raise ConfigError(f"{key} must be {_describe(spec)}, got null")
    kind = spec["kind"]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, str)
    if ok and spec["choices"] is not None:
        ok = value in spec["choices"]
    if ok and spec["minimum"] is not None:
        ok = value > spec["minimum"] if spec["strict"] else value >= spec["minimum"]
    if not ok:
        hint = suggestion(value, spec["choices"]) if spec["choices"] is not None else ""
        raise ConfigError(f"{key} must be {_describe(spec)}, got {value!r}{hint}")
    return float(value) if kind is float else value


def _section(section: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{section} must be a mapping of keys, got {values!r}")
    return values


def suggestion(value: Any, allowed: Iterable[str], prefix: str = "") -> str:
    """"; did you mean 'lstm'?" naming the one of allowed closest to a misspelt string value (difflib's
    ratio >= 0.6), prefix before it (a dotted key's section: 'task.'); "" when none is close."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(name) for name in allowed], n=1)
    return f"; did you mean {prefix + close[0]!r}?" if close else ""


def unknown_key_message(key: str, allowed: Iterable[str]) -> str:
    """"unknown key 'task.lenght'; allowed: ['length', 'name']; did you mean 'task.length'?": the keys allowed
    beside dotted key, and the closest of them to its last part (suggestion)."""
    allowed = sorted(allowed)
    section, _, leaf = key.rpartition(".")
    hint = suggestion(leaf, allowed, f"{section}." if section else "")
    return f"unknown key {key!r}; allowed: {allowed}{hint}"


def _unknown_key(key: str, allowed: list[str]) -> ConfigError:
    return ConfigError(unknown_key_message(key, allowed))


def _build(section: str, cls: type, values: dict[str, Any], *, extra: str | None = None) -> Any:
    """Instantiate schema dataclass cls from values; unknown keys go to field `extra` or raise."""
    checked: dict[str, Any] = {}
    spare: dict[str, Any] = {}
    specs = {f.name: f.metadata for f in fields(cls) if f.name != extra}
    for key, value in values.items():
        if key in specs:
            checked[key] = _check_value(f"{section}.{key}", value, dict(specs[key]))
        elif extra is not None:
            spare[key] = value
        else:
            raise _unknown_key(f"{section}.{key}", list(specs))
    if extra is not None:
        checked[extra] = spare
    return cls(**checked)


def tracking_config(values: Any) -> TrackingConfig:
    """The tracking section of any app's config, keys and values checked."""
    return _build("tracking", TrackingConfig, _section("tracking", values))


def _task(values: dict[str, Any]) -> TaskConfig:
    name = values.get("name")
    if name not in TASK_NAMES:
        raise ConfigError(f"task.name must be one of {sorted(TASK_NAMES)}, got {name!r}"
                          f"{suggestion(name, TASK_NAMES)}")
    params = {key: value for key, value in values.items() if key != "name"}
    allowed = task_parameters(name)
    for key, value in params.items():
        if key not in allowed:
            raise _unknown_key(f"task.{key}", ["name", *allowed])
        # The task constructors check ranges; the types must already match their defaults' types.
        kind = type(allowed[key])
        if kind in (bool, int, float, str):
            _check_value(f"task.{key}", value, _spec(kind=kind))
    return TaskConfig(name=name, params=params)


def _model(values: dict[str, Any]) -> ModelConfig:
    model = _build("model", ModelConfig, values)
    if model.name == "bidirectional" and model.cell is None:
        raise ConfigError(f"model.cell must be one of {list(BIDIRECTIONAL_CELLS)} for model 'bidirectional'")
    if model.name != "bidirectional" and model.cell is not None:
        raise ConfigError(f"model.cell must be null for model {model.name!r} (only 'bidirectional' has one)")
    return model


def _trainer(values: dict[str, Any]) -> TrainerConfig:
    values = dict(values)
    early_stopping = _section("trainer.early_stopping", values.pop("early_stopping", {}))
    return replace(_build("trainer", TrainerConfig, values),
                   early_stopping=_build("trainer.early_stopping", EarlyStoppingConfig, early_stopping))


def validate(cfg: dict[str, Any]) -> RunConfig:
    """Check the composed config (plain nested dict) against the schema; ConfigError on the first issue."""
    cfg = _section("config", cfg)
    for key in cfg:
        if key not in ROOT_KEYS:
            raise _unknown_key(key, list(ROOT_KEYS))
    for key in ROOT_KEYS:
        if key not in cfg:
            raise ConfigError(f"{key} is missing; the config must define {list(ROOT_KEYS)}")
    seed = _check_value("seed", cfg["seed"], _spec(kind=int, minimum=0))
    return RunConfig(
        task=_task(_section("task", cfg["task"])),
        model=_model(_section("model", cfg["model"])),
        optimizer=_build("optimizer", OptimizerConfig, _section("optimizer", cfg["optimizer"]),
                         extra="options"),
        trainer=_trainer(_section("trainer", cfg["trainer"])),
        tracking=tracking_config(cfg["tracking"]),
        seed=seed,
    )



# -------------------------------------------------------------------------------------------------- memory

# Gate blocks of a cell: arrays of shape (T, B, H) its forward pass computes per step besides the state.
CELL_GATES = {"elman": 1, "linear": 1, "irnn": 1, "jordan": 1, "gru": 3, "lstm": 4}


def available_memory() -> int:
    """Bytes a new allocation can get without swapping: MemAvailable of /proc/meminfo, else free pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def network_bytes(cell: str, input_size: int, hidden_size: int, output_size: int, *, length: int,
                  batch_size: int, num_layers: int = 1, directions: int = 1, itemsize: int = 8,
                  parameter_copies: int = 2) -> int:
    """A lower bound of the bytes a recurrent network allocates for one BPTT step on a (length, batch_size)
    batch: parameter_copies arrays per parameter (weights, gradients, optimizer buffers), the inputs and
    targets, and per layer and direction the gates plus the state of every step (what BPTT keeps)."""
    gates, H = CELL_GATES[cell], hidden_size
    parameters = 0
    # Jordan feeds the previous output back instead of the previous state
    layer_input = input_size + (output_size if cell == "jordan" else 0)
    recurrent = 0 if cell == "jordan" else H
    for _ in range(num_layers):
        parameters += directions * gates * H * (layer_input + recurrent + 1)
        layer_input = directions * H
    parameters += directions * H * output_size + output_size
    per_step = (gates + 1) * H * num_layers * directions + input_size + output_size
    return itemsize * (parameter_copies * parameters + length * batch_size * per_step)


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


def require_memory(needed: int, sizes: str) -> None:
    """ConfigError (one line naming the sizes that drive it) when needed bytes exceed the available memory."""
    available = available_memory()
    if needed > available:
        raise ConfigError(f"{sizes}: needs at least {format_bytes(needed)} of memory, more than the "
                          f"{format_bytes(available)} this machine has available; lower them")
