"""What the three experiment apps (experiments/*.py) share: one-line configuration errors, and sweeps checked
whole before they start.

`run_app(main, allowed_keys)` runs a `@hydra.main` function so that Hydra's own errors (a misspelt key, an
unknown group option, an unparsable override) and the harness's ConfigError end the program with one line
`config error: ...` on stderr and exit status 1; HYDRA_FULL_ERROR=1 shows Hydra's full report instead. It
registers harness.joblib_launcher, the launcher of `hydra/launcher=joblib`.

`SweepCheck` is a Hydra callback listed before the tracking callback (`hydra.callbacks`): at the start of a
multirun it composes every job of the basic sweeper's grid and passes each job's config to the app's check
function, so a sweep with one bad job is refused, naming the job, before its parent run or the store exists.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from harness.config import ConfigError, suggestion, unknown_key_message
from harness.runtime import export_project_root, quiet_library_logs, silence_artifact_progress_bars
from harness.search import SWEEPER_TARGET
from harness.tracking.redact import redact

AllowedKeys = Callable[[str], "list[str] | None"]
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
RESUME_SWEEP_KEY = "trainer.resume_sweep"  # conf/trainer/default.yaml: experiments/train.py's sweeps
STUDY_RESUME_SWEEP_KEY = "resume_sweep"  # the study apps' (conf/gradient_flow.yaml)


def one_line(exc: BaseException, allowed_keys: AllowedKeys) -> str:
    """A Hydra or OmegaConf error (and its cause) folded into one line; listed options joined by commas.

    A key Hydra refuses to override becomes "unknown key ..." with the keys of its section in the composed
    config (the chosen group option's; allowed_keys(key) where the error names no section) and the closest
    of them (config.unknown_key_message), or, when the schema (allowed_keys) knows the key, the fact that the
    chosen config group option does not set it. A group option Hydra cannot find (``model=lstmm``) gets the
    closest of the options it lists (config.suggestion).
    """
    text = redact("\n".join(str(part) for part in (exc, exc.__cause__) if part is not None))
    text = text.split("Config search path")[0]
    misspelt = re.search(r"Could not override '([^']+)'", text)
    if misspelt and "not in struct" in text:
        key = misspelt.group(1)
        if key == RESUME_SWEEP_KEY:  # an app without it: a study (rnn_vs_arma.py, gradient_flow.py)
            return (f"{key} continues sweeps of experiments/train.py only; a study app's sweep continues "
                    f"with {STUDY_RESUME_SWEEP_KEY}=<its parent run id>")
        schema = allowed_keys(key)
        section, _, leaf = key.rpartition(".")
        if schema and leaf in schema and section:
            return (f"key {key!r} does not apply to the chosen {section} option (its conf/{section}/ YAML "
                    f"does not set {leaf!r})")
        node = getattr(exc.__cause__, "parent_node", None)  # OmegaConf's node that refused the key
        chosen = [str(name) for name in node if name != "hydra"] if isinstance(node, DictConfig) else None
        return unknown_key_message(key, chosen or schema or [])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type="))]
    folded: list[str] = []
    listing = False
    for line in lines:
        # Hydra lists choices one per line under a heading ending in ':'; keep them on the heading's line.
        if listing and " " not in line:
            folded[-1] += (" " if folded[-1].endswith(":") else ", ") + line
        else:
            folded.append(line)
            listing = line.endswith(":")
    joined = "; ".join(folded)
    missing = re.search(r"Could not find '(?:[^']*/)?([^'/]+)'; Available options in '[^']+': ([^;]+)",
                        joined)
    return joined + (suggestion(missing.group(1), missing.group(2).split(", ")) if missing else "")


def job_config(loader: Any, config: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The config a sweep job with overrides gets (Hydra's loader composes it from the sweep's config), as a
    resolved dict without its ``hydra`` node: what the app's check and the run read."""
    job = loader.load_sweep_config(config, list(overrides))
    with open_dict(job):
        del job["hydra"]
    return OmegaConf.to_container(job, resolve=True)


def run_app(main: Callable[[], Any], allowed_keys: AllowedKeys) -> None:
    """Run the @hydra.main function main with Hydra's folders under <project>/mlruns/hydra, one-line
    configuration errors (exit status 1) and harness.joblib_launcher behind ``hydra/launcher=joblib``."""
    from harness.joblib_launcher import register_joblib_launcher
    from harness.tracking.store import export_entry_point

    export_project_root()
    export_entry_point()
    silence_artifact_progress_bars()
    quiet_library_logs()
    register_joblib_launcher()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors here instead of printing a report
    try:
        main()
    except (HydraException, OmegaConfBaseException) as exc:
        sys.exit(f"config error: {one_line(exc, allowed_keys)}")
    except ConfigError as exc:
        sys.exit(f"config error: {redact(str(exc))}")


# What Hydra's job runner writes into a job's output folder before the task function runs.
HYDRA_JOB_FILES = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})


def _remove_emptied_parents(folder: Path) -> None:
    """Remove the folders above the removed folder that are empty now, up to but not including the project's
    ``mlruns/`` (a fresh clone's ``mlruns/hydra/runs/`` and ``mlruns/hydra/``); none above a folder outside
    it. os.rmdir removes only an empty folder, so one that holds anything (an earlier job's folder, one made
    meanwhile) stays, and so do those above it."""
    # where the apps' Hydra configs put their folders: ${oc.env:HARNESS_PROJECT_ROOT,.}/mlruns/hydra
    mlruns = Path(os.environ.get("HARNESS_PROJECT_ROOT", ".")).resolve() / "mlruns"
    for parent in folder.resolve().parents:
        if mlruns not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # it holds something, so the folders above it do too
            return


def remove_refused_job_folder() -> None:
    """Inside a Hydra task function whose config was refused: remove the job's output folder if it holds
    nothing but what Hydra wrote there (``.hydra/`` with the composed configs, an empty ``<job>.log``), and
    the folders above it that this leaves empty (_remove_emptied_parents), so a refused command leaves
    nothing behind; a folder with anything else (a checkpoint, a log with lines, a file of the user's) is
    left alone. Outside Hydra, nothing."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.runtime.output_dir)
    log, configs = folder / f"{hydra_cfg.job.name}.log", folder / ".hydra"

    if not folder.is_dir() or {entry.name for entry in folder.iterdir()} - {configs.name, log.name}:
        return
    if configs.exists() and not (configs.is_dir() and {e.name for e in configs.iterdir()} <= HYDRA_JOB_FILES):
        return
    if log.exists() and not (log.is_file() and log.stat().st_size == 0):
        return
    shutil.rmtree(folder)
    _remove_emptied_parents(folder)


def refuse(message: str) -> NoReturn:
    """End the program, from inside a Hydra task function, with the one line ``config error: message`` and
    exit status 1 (SystemExit passes through Hydra's job runner without its "Error executing job" report),
    after removing the job folder Hydra made for the refused config (remove_refused_job_folder)."""
    remove_refused_job_folder()
    sys.exit(f"config error: {redact(message)}")


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """Inside a Hydra task function: a ConfigError ends the program as refuse does."""
    try:
        yield
    except ConfigError as exc:
        refuse(str(exc))


def sweep_jobs(config: DictConfig, loader: Any) -> list[list[str]]:
    """The override lists of every job of the basic sweeper's grid (hydra.sweeper.params, then the command
    line), in the order the sweeper launches them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def composed_jobs(config: DictConfig) -> Iterator[tuple[int, str, Any]]:
    """(job number, its name ``job N (<its swept values>)``, a callable composing its config as the plain
    dict its run receives) for every job of the basic sweeper's grid of the multirun config, in launch
    order; the callable raises Hydra's and OmegaConf's errors."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config, loader)
    swept = [k for k, values in enumerate(zip(*jobs, strict=True)) if len(set(values)) > 1]

    for number, overrides in enumerate(jobs):
        yield (number, f"job {number} ({' '.join(overrides[k] for k in swept)})",
               partial(job_config, loader, config, overrides))


class SweepCheck(Callback):
    """Hydra callback: compose and check every job of a basic sweep before the sweep starts.

    check: dotted path of the app's check function, called with each job's composed config as a plain dict
    (what the job's own run would receive); it raises ConfigError on bad input. allowed_keys: dotted path of
    the app's allowed-keys function for Hydra's misspelt-key errors. The first refused job ends the program
    with one line `config error: job N (<its swept values>): ...`. Other sweepers choose their jobs as they
    go; their jobs are checked one by one as they start. For harness.search's Optuna sweeper its settings and
    search space are checked here (check_search), and ``trainer.resume_sweep`` / ``resume_sweep`` are
    refused (its studies resume by name). single_run_keys: keys of the app's config that only a run without
    -m takes (set, any sweep is refused naming them).
    """

    def __init__(self, check: str, allowed_keys: str, single_run_keys: Sequence[str] = ()) -> None:
        self.check, self.allowed_keys, self.single_run_keys = check, allowed_keys, tuple(single_run_keys)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        for key in self.single_run_keys:
            if OmegaConf.select(config, key, default=None) is not None:
                sys.exit(f"config error: {key} takes one run, not a -m sweep: run the command without -m")
        if config.hydra.sweeper.get("_target_") == SWEEPER_TARGET:
            for key in (RESUME_SWEEP_KEY, STUDY_RESUME_SWEEP_KEY):
                if OmegaConf.select(config, key, default=None) is not None:
                    sys.exit(f"config error: {key} continues grid sweeps (the basic sweeper); an Optuna "
                             f"search resumes by its study's name already: run the same command again "
                             f"without {key}")
            from harness.search.optuna_sweeper import SearchDone, check_search

            try:
                check_search(config)
            except ValueError as exc:
                sys.exit(f"config error: {exc}")
            except SearchDone as done:
                print(done)
                sys.exit(0)
            return
        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return
        from hydra.utils import get_method

        check, allowed_keys = get_method(self.check), get_method(self.allowed_keys)
        for _, job_name, compose in composed_jobs(config):
            try:
                check(compose())
            except (HydraException, OmegaConfBaseException) as exc:
                sys.exit(f"config error: {job_name}: {one_line(exc, allowed_keys)}")
            except ConfigError as exc:
                sys.exit(f"config error: {job_name}: {redact(str(exc))}")
