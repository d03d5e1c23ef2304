"""Up-front checks of a tracking store, so a store that cannot work is one line before any run exists.

- an http(s) URI: ``GET <uri>/health`` must answer 200 and ``GET <uri>/version`` an MLflow version within a
  few seconds (another service answering /health is not a tracking server); user information in the URI is
  sent as HTTP basic authentication, as MLflow's client sends it, never printed;
- a database URI (postgresql, mysql, mssql): its SQLAlchemy driver must be importable (else the package to
  install is named) and the database must accept a connection within a few seconds (MLflow's own engine
  would retry for minutes, then print a page of traceback with the password in it);
- an SQLite database and an artifact root: their folders must be writable (or creatable).

Every message goes through ``redact``: no password is ever printed. MLflow's HTTP retries are shortened for
the process (``configure_http_retries``) unless the user set them.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from harness.config import ConfigError
from harness.tracking.redact import redact

HEALTH_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 5
# MLflow's client defaults (7 retries, backoff factor 2, 120 s timeout) keep a run waiting ~4 minutes
# before a dead server is noticed; a short window still rides out a server restart of a few seconds.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# SQLAlchemy driver module -> the package that provides it
DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pg8000": "pg8000",
                   "MySQLdb": "mysqlclient", "pymysql": "pymysql", "mysql": "mysql-connector-python",
                   "pyodbc": "pyodbc", "pymssql": "pymssql"}
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S*")


class ServerUnreachable(ConfigError):
    """No MLflow tracking server answers at the configured URI (raised before any run exists)."""


class StoreUnusable(ConfigError):
    """The configured database store cannot be used: no driver, no answer, or nowhere to write."""


def _request(uri: str, path: str, timeout: float) -> tuple[int | str, str]:
    """(HTTP status or the reason nothing answered, body) of ``GET <uri><path>``; the URI's user information
    (or $MLFLOW_TRACKING_USERNAME / _PASSWORD) goes in a basic authentication header, not in the URL."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))
    user = unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(parts.password) if parts.password else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc)), ""


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Raise ServerUnreachable unless an MLflow tracking server answers at uri (``/health`` 200 and
    ``/version`` a version number) within timeout seconds each."""
    status, _ = _request(uri, "/health", timeout)
    if status == 200:
        status, body = _request(uri, "/version", timeout)
        if status == 200 and _VERSION.fullmatch(body.strip()):
            return
        reason = f"GET /health answers, but GET /version gives {status} {body.strip()[:60]!r}"
        raise ServerUnreachable(
            f"tracking.uri: the service at {redact(uri)} is not an MLflow tracking server "
            f"({redact(reason)}); check the host and port"
        )
    reason = f"HTTP {status}" if isinstance(status, int) else status
    raise ServerUnreachable(
        f"tracking.uri: no MLflow tracking server answers at {redact(uri)} (GET /health: {redact(reason)}); "
        f"start it (mlflow server ...) or use tracking=local"
    )


def configure_http_retries() -> None:
    """Shorten MLflow's HTTP retries for this process unless the user set them (read at every request)."""
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def check_database(uri: str) -> None:
    """Raise StoreUnusable unless uri's SQLAlchemy driver imports and the database takes a connection."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.engine.make_url(uri)
    try:
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or str(exc).rsplit(" ", 1)[-1].strip("'\"")
        package = DRIVER_PACKAGES.get(module.split(".")[0], module)
        raise StoreUnusable(
            f"tracking.uri: {url.drivername}:// needs the database driver {module!r}: pip install "
            f"{package!r} (or name an installed driver, e.g. postgresql+psycopg://)"
        ) from None
    timeout = {"postgresql": "connect_timeout", "mysql": "connect_timeout", "mssql": "timeout"}
    argument = timeout.get(url.get_backend_name())
    engine = sqlalchemy.create_engine(url, poolclass=NullPool,
                                      connect_args={argument: CONNECT_TIMEOUT_S} if argument else {})
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreUnusable(
            f"tracking.uri: the database at {redact(uri)} does not accept a connection ({redact(reason)})"
        ) from None
    finally:
        engine.dispose()


def check_writable(what: str, folder: Path) -> None:
    """Raise StoreUnusable unless folder is (or can be created as) a writable directory."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StoreUnusable(f"{what}: cannot write to {folder} ({existing} is not a writable directory)")
