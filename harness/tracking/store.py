"""Where runs are stored: project root, tracking URI resolution, schema and experiment creation."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from harness.tracking.experiment_notes import experiment_tags
from harness.tracking.health import (
    StoreUnusable,
    check_database,
    check_server,
    check_writable,
    configure_http_retries,
)
from harness.tracking.redact import redact

MODES = ("local", "server", "off")
MAX_EXPERIMENT_NAME = 500  # mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SERVER_SCHEMES = ("http", "https")
ENTRY_POINT_ENV = "HARNESS_ENTRY_POINT"


@cache
def project_root() -> Path:
    """The repository root holding pyproject.toml above the installed package, else the working directory.

    The package normally runs from its checkout (``pip install -e .``), so every job, launcher and working
    directory finds the same store. An installed copy (site-packages) has no pyproject.toml above it; then
    the working directory at first call is the project.
    """
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "harness").is_dir():
            return parent
    return Path.cwd().resolve()


def default_tracking_uri() -> str:
    """``sqlite:///<project_root>/mlruns/mlflow.db`` as an absolute URI."""
    return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


def _refuse_file_store(uri: str) -> None:
    scheme = urlparse(uri).scheme
    # SQLAlchemy names a driver after a plus: postgresql+psycopg://, mysql+pymysql://
    if scheme.split("+", 1)[0] in _DB_SCHEMES or scheme in _SERVER_SCHEMES:
        return
    raise ValueError(
        f"tracking uri must be a database URI (sqlite:///abs/path/mlflow.db) or a server URI (http://...); "
        f"MLflow 3 refuses the legacy file store, got {redact(uri)!r}"
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:////abs/path.db`` URI, None for any other URI."""
    if urlparse(uri).scheme != "sqlite":
        return None
    # SQLAlchemy form: sqlite:/// + path, so an absolute path gives four slashes
    return Path(unquote(uri[len("sqlite:///"):].split("?", 1)[0]))


@dataclass(frozen=True)
class TrackingSettings:
    """Where and whether a run is tracked.

    mode: "local" (embedded SQLite store, default ``<project_root>/mlruns/mlflow.db``), "server" (an MLflow
    tracking server at an http(s) URI) or "off" (an in-memory MemoryLogger, nothing written).
    uri: overrides the store; else the ``MLFLOW_TRACKING_URI`` environment variable; else the default store.
    experiment: MLflow experiment name.
    app: the app whose runs go there (``train``, ``rnn_vs_arma``, ``gradient_flow``), which names the
    description of an experiment it creates (experiment_notes.experiment_tags); set by the app, no config key.
    artifact_root: where artifacts of a database store go; default ``<db dir>/artifacts`` beside the database
    (``<project_root>/mlruns/artifacts`` for the default store); unused by a server, which has its own.
    """

    mode: str = "local"
    uri: str | None = None
    experiment: str = "train"
    artifact_root: str | None = None
    app: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment must be a non-empty string, got {self.experiment!r}")
        if len(self.experiment) > MAX_EXPERIMENT_NAME:
            raise ValueError(f"experiment must be a name of at most {MAX_EXPERIMENT_NAME} characters "
                             f"(MLflow's limit), got {len(self.experiment)} characters")
        if self.mode == "off":
            return
        uri = self.tracking_uri
        _refuse_file_store(uri)
        db = sqlite_path(uri)
        if db is not None and not db.is_absolute():
            # a relative database path silently makes a second store whenever the working directory differs
            raise ValueError(f"uri must name an absolute SQLite path (sqlite:////abs/mlflow.db), got "
                             f"{redact(uri)!r}")
        if self.mode == "server" and urlparse(uri).scheme not in _SERVER_SCHEMES:
            raise ValueError(f"uri must be an http(s):// tracking server URI in mode 'server', got "
                             f"{redact(uri)!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **overrides: Any) -> TrackingSettings:
        """Build from a config mapping (e.g. the Hydra ``tracking`` node), ignoring keys that are not fields.

        overrides with value None are dropped, so
        ``from_mapping(cfg.tracking, experiment=cfg.get("experiment"))`` keeps the mapping's experiment when
        the config has none.
        """
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in mapping.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def tracking_uri(self) -> str:
        """The resolved URI: ``uri``, else ``MLFLOW_TRACKING_URI``, else the default (mode local only)."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri
        if self.mode == "server":
            raise ValueError("uri is required in mode 'server' (or set MLFLOW_TRACKING_URI), got None")
        return default_tracking_uri()

    @property
    def artifact_location(self) -> str | None:
        """The artifact location (file URI) given to the experiment; None lets a server decide."""
        if self.artifact_root is not None:
            root = Path(self.artifact_root).resolve()
        else:
            db = sqlite_path(self.tracking_uri)
            if db is None:
                return None
            root = db.parent / "artifacts"
        return (root / self.experiment).as_uri()


@cache
def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


STORE_DIR_MODE = 0o700  # a new store folder is the user's alone: the database holds every run's params
STORE_FILE_MODE = 0o600
_OPEN_RETRY_S = 60.0


def create_private_dir(folder: Path) -> None:
    """Create folder (and missing parents) readable by the user only; an existing folder keeps its mode, so
    ``chmod g+rx`` shares a store on purpose."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=STORE_DIR_MODE)


def claim_cloned_store_dir(folder: Path) -> None:
    """Make the project's store folder (mlruns/) private (STORE_DIR_MODE) while it holds nothing but the
    repository's .gitkeep: git gives a fresh clone's folders the umask's mode (0755); once the harness has
    written into it, its mode is the user's to choose."""
    with contextlib.suppress(FileNotFoundError):
        if {entry.name for entry in folder.iterdir()} <= {".gitkeep"}:
            folder.chmod(STORE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create the empty file path (and its missing folders, create_private_dir) readable by the user only,
    unless it exists: an SQLite database that a library would create with the umask's mode (Optuna's study
    file) is then made by the library in place, private. SQLite gives its journal files the database's
    mode."""
    create_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, STORE_FILE_MODE))


def _create_sqlite_store(db: Path) -> None:
    """Create and migrate a new SQLite store at db where nobody can see it half-made: the schema is built in a
    private temporary file beside it, which is then linked into place (atomically; a store that another
    process created meanwhile is kept and used)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temporary = db.with_name(f".{db.name}.{os.getpid()}.creating")
    temporary.unlink(missing_ok=True)
    os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, STORE_FILE_MODE))
    uri = f"sqlite:///{temporary}"
    try:
        SqlAlchemyStore(uri, default_artifact_root=(db.parent / "artifacts").as_uri())
        SqlAlchemyStore._engine_map.pop(uri).dispose()  # no connection to the temporary file stays open
        with contextlib.suppress(FileExistsError):
            os.link(temporary, db)
    finally:
        temporary.unlink(missing_ok=True)


def _check_database_file(db: Path) -> None:
    check_writable("tracking.uri", db.parent)
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise StoreUnusable(f"tracking.uri: cannot write to the store {db} (permission denied)")


def _open_sqlite(uri: str, db: Path):
    """The client of an SQLite store, created complete if missing (see _create_sqlite_store).

    Serialised across the harness's processes by an flock on ``<db>.lock``. A store that an outside MLflow
    process (the UI, a notebook) is creating itself at this moment can fail to open while its migration
    runs: it is retried until that migration is done.
    """
    from sqlalchemy.exc import OperationalError

    _check_database_file(db)
    create_private_dir(db.parent)
    with lock_beside(db):
        if not db.exists():
            _create_sqlite_store(db)
        deadline = time.monotonic() + _OPEN_RETRY_S
        while True:
            try:
                client = _client(uri)  # MlflowClient opens (and migrates) the store when constructed
                client.search_experiments(max_results=1)
                return client
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                _client.cache_clear()
                time.sleep(0.5)


def _open_schema(uri: str):
    """The client of uri after checking that its store can work (harness.tracking.health) and, for SQLite,
    creating it complete if missing."""
    db = sqlite_path(uri)
    if db is not None:
        return _open_sqlite(uri, db)
    if urlparse(uri).scheme in _SERVER_SCHEMES:
        check_server(uri)  # one line now instead of minutes of the client's retries
        configure_http_retries()
    else:
        check_database(uri)
    return _client(uri)


def store_client(settings: TrackingSettings):
    """An MlflowClient of settings' store with its schema ready; creates no experiment (for readers)."""
    if settings.mode == "off":
        raise ValueError("settings.mode must be 'local' or 'server' to open a store, got 'off'")
    return _open_schema(settings.tracking_uri)


_opened: dict[tuple[str, str], str] = {}


def check_store_folders(settings: TrackingSettings) -> Path | None:
    """StoreUnusable (one line) unless the folders settings' store writes to can be written: an SQLite
    database and its folder, the artifact root; returns the artifact folder (None: a server chooses it).
    Imports nothing of MLflow: the checks a run's process makes before a writer process opens the store."""
    db = sqlite_path(settings.tracking_uri)
    if db is not None:
        _check_database_file(db)  # named before the artifact root that defaults beside it
    if settings.artifact_location is None:
        return None
    artifacts = Path(url2pathname(urlparse(settings.artifact_location).path))
    check_writable("tracking.artifact_root", artifacts)
    return artifacts


def ensure_store(settings: TrackingSettings):
    """Create the store schema and the experiment if missing; returns ``(MlflowClient, experiment_id)``.

    Safe to call from many processes at once: schema creation is serialised by a file lock and an experiment
    created concurrently by another process is re-read instead of failing. Memoised per process. A store
    or an artifact folder that cannot be written raises StoreUnusable (one line) before anything is created;
    folders the harness creates are private to the user (0700), a new SQLite database too (0600).
    """
    from mlflow.exceptions import MlflowException

    key = (settings.tracking_uri, settings.experiment)
    if key in _opened:
        return _client(key[0]), _opened[key]
    artifacts = check_store_folders(settings)
    client = store_client(settings)  # a server that does not answer stops here, before any folder exists
    if artifacts is not None:
        create_private_dir(artifacts)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(
                settings.experiment, artifact_location=settings.artifact_location,
                tags=experiment_tags(settings.experiment, settings.app),
            )
        except MlflowException:
            # another process created it between our read and our create
            experiment = client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                raise
    if experiment is not None:
        experiment_id = experiment.experiment_id
        _add_missing_tags(client, experiment, settings.app)
    _opened[key] = experiment_id
    return client, experiment_id


def _add_missing_tags(client, experiment, app: str | None = None) -> None:
    """Give an experiment made before the harness tagged its experiments (or by hand) its kind and
    description (app's, experiment_tags); tags it already has, a description a user wrote included, stay as
    they are."""
    for key, value in experiment_tags(experiment.name, app).items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def tag_experiments(client) -> None:
    """Every experiment of client's store gets the tags it lacks (what the UI needs, before it opens)."""
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        for experiment in page:
            _add_missing_tags(client, experiment)
        token = page.token
        if not token:
            return


@contextlib.contextmanager
def lock_beside(db: Path, suffix: str = ".lock") -> Iterator[None]:
    """An exclusive flock on the file ``<db><suffix>`` beside an SQLite database, held for the block: how
    the harness's processes take turns at what SQLite's own locking does not order (creating the schema,
    ending a lost process's runs, an Optuna study's trials)."""
    lock = os.open(db.with_name(db.name + suffix), os.O_CREAT | os.O_WRONLY | os.O_APPEND, STORE_FILE_MODE)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # closing the file releases the lock


def export_entry_point() -> None:
    """Record the script this command runs (its ``sys.argv[0]``) for the processes it starts: a sweep's
    worker processes have the launcher's argv, so their runs read the command's own script from here. Set,
    not defaulted: a command started by another one records its own script."""
    if sys.argv and sys.argv[0]:
        os.environ[ENTRY_POINT_ENV] = str(Path(sys.argv[0]).resolve())


def entry_point() -> str:
    """The script that started this command, relative to the project root when it lies inside it
    ('experiments/train.py'): the exported one (export_entry_point), else this process's ``sys.argv[0]``."""
    script = os.environ.get(ENTRY_POINT_ENV) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    if not script:
        return "<console>"
    path = Path(script).resolve()
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def source_tags() -> dict[str, str]:
    """MLflow's standard source tags, which the UI shows as a run's Source, Version and User:
    ``mlflow.source.type`` LOCAL, ``mlflow.source.name`` (entry_point), ``mlflow.user`` and, in a git
    checkout, ``mlflow.source.git.commit``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = "unknown"
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": entry_point(), "mlflow.user": user}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def git_commit(root: Path | None = None) -> str | None:
    """The HEAD commit of the project's git checkout (a linked worktree too), read from .git directly; None
    without one."""
    git = (root or project_root()) / ".git"
    try:
        if git.is_file():  # a linked worktree: "gitdir: <main>/.git/worktrees/<name>", refs in its commondir
            git = Path(git.read_text().strip().removeprefix("gitdir: "))
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[len("ref: "):]
        if (git / "commondir").is_file():
            git = (git / (git / "commondir").read_text().strip()).resolve()
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None
        packed = git / "packed-refs"
        for line in packed.read_text().splitlines() if packed.is_file() else []:
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    except OSError:
        return None
    return None
