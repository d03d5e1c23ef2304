"""Credentials never leave the process: the user information of every URI becomes ``***``.

A tracking URI may carry a database password or a server token (``postgresql://user:secret@host/db``,
``https://token@host``). Whatever the harness logs (params, tags, artifacts), writes (Hydra's output
folders, offline records) or prints (errors, reports) goes through ``redact`` first, so anyone who can open
the MLflow UI or read the output folders never reads it. Credentials belong in ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` or a pgpass file, not in the URI.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MASK = "***"
# scheme://userinfo@ : the user information runs to the last "@" before the host's "/" (an unencoded "@" in a
# password is still hidden), never across whitespace or quotes. Hydra escapes the colons of an override it
# prints (http\://user\:secret@host): the escaped form is found too.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*\\?://)(?P<userinfo>[^/\s'\"@]*(?:@[^/\s'\"@]*)*)@")


def redact(text: str) -> str:
    """text with the user information of every URI in it replaced by ``***``."""
    return _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", text) if "@" in text else text


def without_userinfo(uri: str) -> str:
    """uri without its user information: a link for a browser (which asks for credentials itself)."""
    return _USERINFO.sub(lambda match: match["scheme"], uri) if "@" in uri else uri


def redact_log_records() -> None:
    """From now on, redact the message of every log record this process creates (once per process).

    Hydra's launchers log every job's overrides (``#0 : tracking.uri=...``) through handlers they configure
    anew for each sweep and job, so the hook is the record factory, which every logger uses.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str) and "@" in record.getMessage():
            record.msg, record.args = redact(record.getMessage()), None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def end_run(client: Any, run_id: str, status: str, end_time: int | None = None) -> None:
    """``client.set_terminated(run_id, status, end_time)``; MLflow's "View run at <server URI>" line, which it
    writes to stdout for a tracking server and which would show the URI's credentials, is printed redacted."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            client.set_terminated(run_id, status, end_time)
    finally:
        sys.stdout.write(redact(captured.getvalue()))


def redact_config(value: Any) -> Any:
    """A copy of a nested config (dicts, lists, scalars) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_config(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_config(item) for item in value]
    return value


def redact_file(path: Path) -> None:
    """Rewrite the text file path with its URIs redacted (unchanged files are not touched)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return  # gone, or not text
    cleaned = redact(text)
    if cleaned != text:
        path.write_text(cleaned)


def redact_folder(folder: Path, patterns: tuple[str, ...] = ("*.yaml", "*.log")) -> None:
    """Redact the files of folder (not its subfolders) that match patterns: Hydra's ``.hydra/*.yaml``,
    a sweep's ``multirun.yaml``, a job's log."""
    for pattern in patterns:
        for path in folder.glob(pattern):
            redact_file(path)
