"""The environment a run's numbers came from: versions, BLAS, the git checkout and its uncommitted changes."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "mlflow", "statsmodels", "hydra-core", "threadpoolctl")
DIFF_ARTIFACT = "git_diff.patch"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def blas_description() -> str:
    """The BLAS libraries NumPy loaded, as threadpoolctl sees them: 'openblas 0.3.27 (pthreads, 1 thread,
    Haswell)'; several are joined by '; '."""
    import numpy as np  # noqa: F401  (loads NumPy's BLAS, which threadpoolctl then finds)
    from threadpoolctl import threadpool_info

    found = [f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('threading_layer', '?')}, "
             f"{lib.get('num_threads')} thread{'s' if lib.get('num_threads') != 1 else ''}, "
             f"{lib.get('architecture', '?')})"
             for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return "; ".join(found) or "none found"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_changes(root: Path) -> tuple[bool, str] | None:
    """(dirty, patch) of the checkout at root: uncommitted changes to tracked files as `git diff HEAD` and
    untracked files listed at the end; None outside a git checkout or without git."""
    status = _git(root, "status", "--porcelain", "--untracked-files=all")
    if status is None:
        return None
    diff = _git(root, "diff", "HEAD", "--binary") or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    if untracked:
        diff += "".join(f"# untracked: {name}\n" for name in untracked)
    return bool(status.strip()), diff


def environment_tags(root: Path) -> tuple[dict[str, str], str | None]:
    """The run's environment as tags (``env.python``, ``env.<package>``, ``env.blas``, ``env.platform``,
    ``git.dirty``) and the patch of uncommitted changes (None when the tree is clean or not a checkout).
    The commit itself is MLflow's standard tag ``mlflow.source.git.commit``, set by open_run."""
    tags = {"env.python": platform.python_version(), "env.platform": platform.platform(),
            "env.blas": blas_description()}
    tags.update({f"env.{package}": _version(package) for package in PACKAGES})
    changes = git_changes(root)
    if changes is None:
        tags["git.dirty"] = "unknown (not a git checkout)"
        return tags, None
    dirty, patch = changes
    tags["git.dirty"] = str(dirty).lower()
    return tags, patch if dirty else None


def log_environment(logger, root: Path) -> dict[str, str]:
    """Tag logger's run (a logger of open_run) with environment_tags(root) and log the patch of uncommitted
    changes as DIFF_ARTIFACT; returns the tags (a study gives its children the same)."""
    tags, patch = environment_tags(root)
    logger.set_tags(tags)
    if patch is not None:
        logger.log_text(patch, DIFF_ARTIFACT)
    return tags
