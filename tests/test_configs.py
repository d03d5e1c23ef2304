"""Every config group option and experiment preset composes (real Hydra), validates and builds its parts; the
schema refuses wrong types, out-of-range values and unknown keys with one-line messages naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config import ConfigError, RunConfig, allowed_keys, validate
from harness.optim import Optimizer
from harness.run import build_model, build_optimizer, build_task, run_name
from harness.tasks import TASK_NAMES

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def built(cfg: dict) -> RunConfig:
    config = validate(cfg)
    task = build_task(config)
    model = build_model(config.model, task, truncation=config.trainer.truncation, seed=config.seed)
    assert model.input_size == task.input_size and model.output_size == task.output_size
    assert model.head == task.head and model.mode == task.mode
    assert isinstance(build_optimizer(config), Optimizer)
    return config


def test_task_group_mirrors_harness_tasks() -> None:
    assert options("task") == sorted(TASK_NAMES)


@pytest.mark.parametrize("task", options("task"))
def test_every_task_option_composes_validates_and_builds(task: str) -> None:
    config = built(composed(f"task={task}"))
    assert config.task.name == task


@pytest.mark.parametrize("model", options("model"))
def test_every_model_option_composes_validates_and_builds(model: str) -> None:
    config = built(composed(f"model={model}", "task=bit_sum"))
    assert config.model.name == model
    assert run_name(config).startswith(f"bit_sum-{model}")


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_option_composes_validates_and_builds(optimizer: str) -> None:
    assert built(composed(f"optimizer={optimizer}")).optimizer.name == optimizer


@pytest.mark.parametrize("tracking", options("tracking"))
def test_every_tracking_option_composes_and_validates(tracking: str) -> None:
    assert validate(composed(f"tracking={tracking}")).tracking.mode == tracking


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_experiment_preset_composes_validates_and_builds(preset: str) -> None:
    config = built(composed(f"experiment={preset}"))
    assert config.tracking.experiment == preset


def test_note000_preset_is_the_exercise() -> None:
    config = built(composed("experiment=binary_addition_note000"))
    assert config.task.params == {"bits": 8, "head": "sigmoid_se", "held_out": 0.2}
    assert (config.model.name, config.model.hidden_size, config.model.activation) == ("elman", 16, "sigmoid")
    assert (config.model.init, config.model.clip_hidden_delta) == ("uniform", 5.0)
    assert (config.model.bias, config.model.reduction) == (False, "sum")
    assert (config.optimizer.name, config.optimizer.lr, config.trainer.batch_size) == ("sgd", 0.1, 1)


def test_command_line_values_beat_presets() -> None:
    assert validate(composed("experiment=adding_problem", "model.hidden_size=7")).model.hidden_size == 7


def test_hydra_keeps_the_working_directory_and_writes_under_mlruns() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.job.chdir is False
    assert "/mlruns/hydra/" in OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert "/mlruns/hydra/" in OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["dir"]
    assert cfg.hydra.callbacks.sweep._target_ == "harness.tracking.SweepCallback"


@pytest.mark.parametrize(("override", "message"), [
    ("model.hidden_size=-3", "model.hidden_size must be an integer >= 1, got -3"),
    ("model.hidden_size=abc", "model.hidden_size must be an integer >= 1, got 'abc'"),
    ("optimizer.lr=0", "optimizer.lr must be a number > 0, got 0"),
    ("trainer.batch_size=2.5", "trainer.batch_size must be an integer >= 1, got 2.5"),
    ("trainer.progress=maybe", "trainer.progress must be true or false, got 'maybe'"),
    ("model.activation=tahn", "model.activation must be one of ['identity', 'relu', 'sigmoid', 'tanh']"),
    ("tracking.mode=of", "tracking.mode must be one of ['local', 'server', 'off'], got 'of'"),
    ("seed=-1", "seed must be an integer >= 0, got -1"),
    ("+trainer.stesp=5", "unknown key 'trainer.stesp'; allowed: ["),
    ("+task.lenght=5", "unknown key 'task.lenght'; allowed: ['length', 'name']"),
    ("task.length=oops", "task.length must be an integer, got 'oops'"),
])
def test_schema_refuses_bad_values_with_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(composed("model=elman", override))  # a model with an activation key
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("overrides", "message"), [
    (("task.length=1",), "task.length must be an integer >= 2, got 1"),
    (("optimizer=momentum", "optimizer.momentum=1.5"), "optimizer.momentum must be in [0, 1"),
    (("optimizer=adam", "+optimizer.betta=0.5"), "unknown key 'optimizer.betta'; allowed: ['beta1', 'beta2', "
                                                 "'clip_norm', 'clip_value', 'eps', 'lr', 'name']; did you "
                                                 "mean 'optimizer.beta2'"),
    (("model=linear", "+model.activation=tanh"), "model.activation must be 'identity'"),
    (("model=jordan", "task=reversal"), "model.mode must be one of"),
])
def test_building_turns_core_value_errors_into_config_errors(overrides: tuple[str, ...], message: str
                                                             ) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")) as info:
        built(composed(*overrides))
    assert "\n" not in str(info.value)


def test_allowed_keys_follow_the_schema() -> None:
    assert "steps" in allowed_keys("trainer.stesp")
    assert "hidden_size" in allowed_keys("model.hiden_size")
    assert allowed_keys("sed") == ["task", "model", "optimizer", "trainer", "tracking", "seed"]
    assert allowed_keys("task.lenght") is None
