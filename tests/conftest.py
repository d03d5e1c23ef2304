"""Shared fixtures: a fresh, already-migrated MLflow SQLite store per test.

Opening a new SQLite store runs MLflow's schema migrations (~3 s), so the session migrates ONE template
store and every test that asks for a store gets a copy of its database file (milliseconds).

Fixtures
--------
``tracking_settings`` (alias ``tmp_store``), function scope:
    a ``harness.tracking.TrackingSettings`` (mode "local", experiment "test") whose
    ``uri = "sqlite:///<tmp_path>/mlruns/mlflow.db"`` is a fresh copy of the template and whose
    ``artifact_root = "<tmp_path>/mlruns/artifacts"``. Use it wherever code takes tracking settings::

        def test_something(tracking_settings):
            with open_run(tracking_settings, run_name="x") as log:
                ...
            client = MlflowClient(tracking_settings.tracking_uri)

    Use ``dataclasses.replace(tracking_settings, experiment="other")`` for another experiment in the same
    store. Hydra tests can pass ``tracking.uri=<uri>`` and ``tracking.artifact_root=<root>`` overrides.
``template_store``, session scope:
    path of the migrated template database file (copy it yourself if you need a store outside tmp_path).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.runtime import pin_blas_to_one_thread
from harness.tracking import TrackingSettings, ensure_store

# Small matmuls run fastest on one BLAS thread (threaded BLAS on a loaded 2-core machine was measured up to
# 1000x slower): pin this process, and every subprocess a test starts inherits the variables.
pin_blas_to_one_thread()
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("template_store") / "mlflow.db"
    ensure_store(TrackingSettings(mode="local", uri=f"sqlite:///{db}", experiment="template"))
    return db


def store_copy(template_store: Path, folder: Path, experiment: str = "test") -> TrackingSettings:
    """Settings of a new local store folder/mlruns: a copy of the session's migrated template database, with
    its artifacts beside it."""
    root = folder / "mlruns"
    root.mkdir()
    db = root / "mlflow.db"
    shutil.copyfile(template_store, db)
    return TrackingSettings(
        mode="local", uri=f"sqlite:///{db}", experiment=experiment, artifact_root=str(root / "artifacts")
    )


@pytest.fixture
def tracking_settings(template_store: Path, tmp_path: Path) -> TrackingSettings:
    return store_copy(template_store, tmp_path)


@pytest.fixture
def tmp_store(tracking_settings: TrackingSettings) -> TrackingSettings:
    return tracking_settings
