"""A study's fixed config: what every trial of one study shares, recorded on the study and checked again by
every invocation that continues it.

Trials of one study are compared with each other (the best trial, TPE's model of the objective), so they
must differ only in what the search samples. The fixed config is the config a trial's job gets, flattened to
dotted keys (``{"trainer.steps": 1500, ...}``), without the searched keys and without the keys of
``hydra.sweeper.ignored_keys`` (tracking, progress printing: keys that change no number); a key names itself
and everything below it (``tracking`` drops ``tracking.uri``; a searched config group drops its subtree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.checkpoint import config_differences, describe_differences, flat_config

FIXED_CONFIG = "fixed_config"  # the study's user attribute holding it (JSON: dotted key -> value)


def fixed_config(job: Mapping[str, Any], dropped: Iterable[str]) -> dict[str, Any]:
    """The fixed config of a trial's composed job config (nested dicts, no ``hydra`` node): its dotted keys,
    sorted, except each key of dropped (searched and ignored keys) and the keys below it."""
    prefixes = tuple(dropped)
    return {key: value for key, value in sorted(flat_config(dict(job)).items())
            if not any(key == prefix or key.startswith(f"{prefix}.") for prefix in prefixes)}


def fixed_changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The keys whose values differ, sorted, with both: "trainer.steps (200 in the study, 1500 now)" (a key
    fixed on one side only reads 'not fixed' on the other); "" when none does."""
    recorded, now = dict(recorded), dict(now)
    return describe_differences(recorded, now, config_differences(recorded, now), old_is="the study",
                                missing="not fixed")
