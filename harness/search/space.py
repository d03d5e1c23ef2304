"""A search space written in Hydra's sweep syntax, as Optuna distributions.

Each entry of ``hydra.sweeper.params`` (and each sweep override on the command line) is one dimension:

    choice(a, b, c)              -> CategoricalDistribution([a, b, c])
    range(start, stop[, step])   -> IntDistribution / FloatDistribution from start to the last value before
                                    stop, on the step's grid (stop excluded, as in Hydra's grid sweeps)
    interval(low, high)          -> FloatDistribution(low, high)
    tag(log, interval(low, high))-> FloatDistribution(low, high, log=True)
    int(interval(low, high))     -> IntDistribution(low, high) (tag(log, ...) for a log scale)

Any other value is fixed: it is passed to every trial unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer


@dataclass(frozen=True)
class SearchSpace:
    """distributions: key -> optuna distribution (sampled per trial); fixed: overrides every trial gets."""

    distributions: dict[str, Any]
    fixed: tuple[str, ...]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of one trial: its sampled params (key=value), then the fixed overrides."""
        return [f"{key}={_hydra_value(value)}" for key, value in params.items()] + list(self.fixed)


def _hydra_value(value: Any) -> str:
    # repr keeps every digit of a float (str would too, but repr is the documented round trip)
    return repr(value) if isinstance(value, float) else str(value)


def parse_search_space(params: Mapping[str, Any] | None, arguments: Iterable[str] = ()) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` (key -> sweep string) and the command-line overrides.

    A command-line override of a key replaces its entry in params. Raises ValueError naming the key for a
    sweep Optuna cannot sample (a range without values, a glob); Hydra's parser refuses bad syntax itself.
    """
    lines = {str(key): f"{key}={value}" for key, value in (params or {}).items()}
    parser = OverridesParser.create()
    for override in parser.parse_overrides(list(arguments)):
        lines[override.get_key_element()] = override.input_line
    distributions: dict[str, Any] = {}
    fixed: list[str] = []
    for key, line in lines.items():
        override = parser.parse_override(line)
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed.append(line)
    return SearchSpace(distributions, tuple(fixed))


def distribution(override: Override):
    """The Optuna distribution of one sweep override (see the module docstring)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep) or (isinstance(sweep, RangeSweep) and sweep.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"search space {key}: {override.input_line.split('=', 1)[1]} holds no value")
        if any(isinstance(v, float) for v in (sweep.start, sweep.stop, sweep.step)):
            # Optuna's grid over [low, high] with step: high is the last value the Hydra range yields
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
        return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step))
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ValueError(f"search space {key}: {override.input_line!r} is not a sweep Optuna can sample "
                     "(use choice, range or interval)")
