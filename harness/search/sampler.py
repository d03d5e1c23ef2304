"""The study's sampler, seeded per trial: trial n draws from a generator seeded by (seed, n).

Optuna's samplers keep one generator per sampler object, seeded once: every process that opens a study starts
it at the same state, so a study grown by a second invocation (or shared by two processes) asked the same
random points again (TPE's startup trials are random). Seeding each trial from its own number, which the
storage hands out once per study, gives every trial fresh draws whichever process asks it, and keeps
a search deterministic: the same seed, settings and study history ask the same trials. A trial queued again
after an interruption takes its parameters from the queue and draws nothing.

Per sampler: ``tpe`` and ``random`` are built for each trial with the trial's seed. ``qmc`` keeps the
configured seed, which fixes its scrambled sequence; the study itself counts how far along the sequence it
is (a study system attribute), so no process repeats a point; only its independent sampler, which draws the
study's first trial, takes the trial's seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, QMCSampler, RandomSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

SAMPLERS = ("tpe", "random", "qmc")
SEED_LIMIT = 2**32  # numpy's RandomState, which Optuna's samplers use, takes seeds in [0, 2**32)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial number of a study seeded with seed: a SeedSequence of both, so that neighbouring
    seeds and numbers give unrelated streams (seed 0 trial 1 is not seed 1 trial 0)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _builder(name: str, seed: int | None, options: Mapping[str, Any]) -> Callable[[int | None], BaseSampler]:
    """The function that builds the sampler name for a trial's seed (None: unseeded)."""
    options = dict(options)
    if name == "qmc":
        return lambda drawn: QMCSampler(seed=seed, independent_sampler=RandomSampler(seed=drawn), **options)
    cls = {"tpe": TPESampler, "random": RandomSampler}[name]
    return lambda drawn: cls(seed=drawn, **options)


def make_sampler(name: str, seed: int | None, options: Mapping[str, Any] | None = None) -> BaseSampler:
    """The Optuna sampler name (tpe, random, qmc) with options for its constructor: seeded per trial
    (TrialSeededSampler) for an integer seed, unseeded for None. ValueError names the bad setting."""
    if name not in SAMPLERS:
        raise ValueError(f"hydra.sweeper.sampler must be one of {list(SAMPLERS)}, got {name!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < SEED_LIMIT):
        raise ValueError(f"hydra.sweeper.seed must be null or an integer in [0, 2**32), got {seed!r}")
    build = _builder(name, seed, options or {})
    try:
        sampler = build(None if seed is None else trial_seed(seed, 0))  # refuses bad options now
    except (TypeError, ValueError) as exc:  # an option the sampler does not take, or refuses
        raise ValueError(f"hydra.sweeper.sampler_options: {exc}") from None
    return sampler if seed is None else TrialSeededSampler(build, seed)


class TrialSeededSampler(BaseSampler):
    """A sampler built afresh for each trial by build(trial_seed(seed, trial.number)); every call about a
    trial goes to that trial's sampler (trials of one batch are asked before any is told)."""

    def __init__(self, build: Callable[[int | None], BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._by_trial: dict[int, BaseSampler] = {}

    def _of(self, trial: FrozenTrial) -> BaseSampler:
        return self._by_trial[trial.number]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        with warnings.catch_warnings():
            # make_sampler built one with the same options already: its warnings were shown then
            warnings.simplefilter("ignore")
            sampler = self._build(trial_seed(self._seed, trial.number))
        self._by_trial[trial.number] = sampler
        sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._by_trial.pop(trial.number).after_trial(study, trial, state, values)
