"""The Optuna side of a search: where the study lives, its direction, its fixed config and its trial budget.

Default storage: an SQLite file ``optuna.db`` beside the MLflow database (``mlruns/optuna.db`` for the
embedded store, and for a tracking server the checkout's ``mlruns/``); in memory with ``tracking=off``. Any
Optuna storage URL works instead (``postgresql+psycopg://...`` for a team), so several processes or SLURM
jobs can share one study and an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.search.fixed import FIXED_CONFIG, fixed_changes
from harness.tracking import TrackingSettings, project_root
from harness.tracking.store import create_private_file, lock_beside, sqlite_path

log = logging.getLogger(__name__)
DIRECTIONS = ("auto", "minimize", "maximize")
STORAGE_FILE = "optuna.db"
INTERRUPTED = "interrupted"  # user attribute of a trial cut short by its sweep's end (signal, crash)
# Writers of one SQLite study wait this long for each other's transactions (sqlite3's default is 5 s).
SQLITE_TIMEOUT_S = 60


def default_study_name(app: str, fixed: Mapping[str, Any]) -> str:
    """``<app>-<6 hex digits of fixed's SHA-256>`` (``train-3fa2c1``): the study of a search that names none.
    The same fixed config (harness.search.fixed) gives the same name in every process, so the same command
    grows its study and another budget or task gets a study of its own; two fixed configs sharing the digits
    (one chance in 16.7 million) meet check_study's refusal, not a mixed study."""
    text = json.dumps(dict(fixed), sort_keys=True, separators=(",", ":"), default=str)
    return f"{app}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def default_storage(settings: TrackingSettings) -> str | None:
    """``sqlite:///<dir>/optuna.db`` beside the MLflow SQLite store (the checkout's mlruns/ for any other
    store); None (in memory) when tracking is off."""
    if settings.mode == "off":
        return None
    db = sqlite_path(settings.tracking_uri)
    folder = db.parent if db is not None else project_root() / "mlruns"
    return f"sqlite:///{folder / STORAGE_FILE}"


def objective_direction(direction: str, config: Mapping[str, Any]) -> str:
    """"minimize" or "maximize"; "auto" reads the task metric of a training config (``task.name``): accuracies
    are maximised, losses and errors minimised."""
    if direction not in DIRECTIONS:
        raise ValueError(f"hydra.sweeper.direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if direction != "auto":
        return direction
    from harness.tasks import TASKS

    task = (config.get("task") or {}).get("name")
    if task not in TASKS:
        raise ValueError("hydra.sweeper.direction: auto needs a training config with task.name "
                         f"(one of {sorted(TASKS)}); set minimize or maximize for this app")
    return "maximize" if TASKS[task].higher_is_better else "minimize"


@contextmanager
def storage_lock(storage: str | None):
    """An flock on ``<db>.lock`` for an SQLite storage (nothing for others): two processes creating one fresh
    study file would race in Optuna's table creation, and two asking at once could overshoot n_trials."""
    db = sqlite_path(storage) if storage else None
    if db is None:
        yield
        return
    create_private_file(db)  # private as the MLflow database beside it (Optuna would use the umask's mode)
    with lock_beside(db):
        yield


def _backend(storage: str | None) -> Any:
    """What optuna.create_study and load_study take for storage (None: in memory)."""
    import optuna

    if storage is None:
        return None
    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite_path(storage) else None
    return optuna.storages.RDBStorage(storage, engine_kwargs=engine)


def stored_study(name: str, storage: str | None):
    """The study name in storage, or None when there is none; creates neither (a fresh SQLite file stays
    absent, so a refused command leaves nothing behind)."""
    import optuna

    db = sqlite_path(storage) if storage else None
    if storage is None or (db is not None and not db.is_file()):
        return None
    with storage_lock(storage):
        try:
            return optuna.load_study(study_name=name, storage=_backend(storage))
        except KeyError:  # optuna's "Record does not exist."
            return None


def check_study(study, storage: str | None, direction: str, fixed: Mapping[str, Any]) -> None:
    """Raise ValueError if the stored study optimises in the other direction, or if its trials ran with
    another fixed config than fixed (a study from before the harness recorded one is not checked)."""
    name, where = study.study_name, storage_label(storage)
    stored = study.direction.name.lower()
    if stored != direction:
        raise ValueError(f"hydra.sweeper.direction: study {name!r} in {where} was created to {stored}, not "
                         f"{direction}; choose another study_name")
    recorded = study.user_attrs.get(FIXED_CONFIG)
    changed = "" if recorded is None else fixed_changes(recorded, fixed)
    if changed:
        raise ValueError(f"hydra.sweeper.study_name: study {name!r} in {where} ran its trials with another "
                         f"fixed config: {changed}; name a new study for these settings "
                         f"(hydra.sweeper.study_name=<new name>) or use the study's values")


def open_study(name: str, storage: str | None, direction: str, sampler, fixed: Mapping[str, Any]):
    """The study name in storage, created on first use and loaded after (resume, several processes), with
    fixed (the trials' fixed config, harness.search.fixed) recorded as its user attribute FIXED_CONFIG.

    Raises ValueError as check_study does.
    """
    import optuna

    # its INFO line "A new study created in RDB ..." is noise beside the sweeper's own account of the study
    # (harness.runtime.quiet_library_logs does the same for MLflow); warnings still show
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage_lock(storage):
        study = optuna.create_study(study_name=name, storage=_backend(storage), sampler=sampler,
                                    direction=direction, load_if_exists=True)
        check_study(study, storage, direction, fixed)
        if FIXED_CONFIG not in study.user_attrs:
            if study.get_trials(deepcopy=False):
                log.warning("study %s recorded no fixed config (older harness): recording this one", name)
            study.set_user_attr(FIXED_CONFIG, dict(fixed))
    return study


def remaining_trials(study, n_trials: int) -> int:
    """Trials still to ask for so the study holds n_trials: finished ones (complete, failed, pruned) and
    those other processes are running count; a trial its sweep abandoned (user attribute INTERRUPTED) does
    not."""
    from optuna.trial import TrialState

    taken = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED,
                                                     TrialState.RUNNING))
    return max(0, n_trials - sum(not t.user_attrs.get(INTERRUPTED) for t in taken))


def storage_label(storage: str | None) -> str:
    """storage for messages, without a password."""
    if storage is None:
        return "in memory"
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def resolve_storage(storage: str | None, settings: TrackingSettings) -> str | None:
    """storage as given, or the default beside the MLflow store; a relative SQLite path is refused (it would
    make a second study whenever the working directory differs)."""
    if storage is None:
        return default_storage(settings)
    db = sqlite_path(storage)
    if db is not None and not Path(db).is_absolute():
        raise ValueError(f"hydra.sweeper.storage must name an absolute SQLite path "
                         f"(sqlite:////abs/optuna.db), got {storage!r}")
    return storage
