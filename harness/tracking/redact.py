"""Credentials never leave the process: the user information of every URI becomes ``***``.

A tracking URI may carry a database password or a server token (``postgresql://user:secret@host/db``,
``https://token@host``). Whatever the harness logs (params, tags, artifacts), writes (Hydra's output
folders, offline records) or prints (errors, reports) goes through ``redact`` first, so anyone who can open
the MLflow UI or read the output folders never reads it. Credentials belong in ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` or a pgpass file, not in the URI.
"""

from __future__ import annotations

import re
from pathlib import Path

MASK = "***"
# scheme://userinfo@ : the user information runs to the last "@" before the host's "/" (an unencoded "@" in a
# password is still hidden), never across whitespace or quotes.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"@]*(?:@[^/\s'\"@]*)*)@")


def redact(text: str) -> str:
    """text with the user information of every URI in it replaced by ``***``."""
    return _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", text) if "@" in text else text


def redact_file(path: Path) -> None:
    """Rewrite the text file path with its URIs redacted (unchanged files are not touched)."""
    text = path.read_text(errors="replace")
    cleaned = redact(text)
    if cleaned != text:
        path.write_text(cleaned)
