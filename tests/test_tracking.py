"""harness.tracking on a real MLflow SQLite store in tmp (fixtures from conftest.py)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from logged_models import the_logged_model
from mlflow import MlflowClient
from omegaconf import OmegaConf

from harness.tracking import (
    PARENT_ENV,
    MemoryLogger,
    MlflowLogger,
    SweepCallback,
    TrackingSettings,
    default_tracking_uri,
    ensure_store,
    git_commit,
    open_run,
    project_root,
)
from harness.tracking.callback import names_a_sweep

REPO = Path(__file__).resolve().parents[1]


def _client(settings: TrackingSettings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25])
    return fig


def test_run_records_params_tags_metrics_artifacts_figure_dataset(tracking_settings, tmp_path):
    artifact = tmp_path / "weights.npz"
    np.savez(artifact, w=np.ones(3))
    with open_run(tracking_settings, run_name="adding-elman-s0", tags={"seed": 0}) as log:
        assert isinstance(log, MlflowLogger)
        log.log_params({"model": {"hidden_size": 16, "activation": "tanh"}, "lr": 0.1, "long": "x" * 7000})
        log.set_tags({"task": "adding"})
        for step in range(2501):  # 2501 x 3 values: several full batches plus a partial one at exit
            log.log_metrics({"train/loss": 1.0 / (step + 1), "train/grad_norm": float(step), "lr": 0.1}, step)
        log.log_artifact(artifact, artifact_path="model")
        log.log_figure(_figure(), "loss")
        log.log_text("seed: 0\n", "config.yaml")
        log.log_dataset("adding-validation", "f" * 64, {"X": np.zeros((10, 4, 2)), "Y": np.zeros((4, 1))})
    client = _client(tracking_settings)
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "adding-elman-s0"
    params = run.data.params
    assert (params["model.hidden_size"], params["model.activation"], params["lr"]) == ("16", "tanh", "0.1")
    assert params["long"] == "x" * 6000
    tags = run.data.tags
    assert tags["seed"] == "0" and tags["task"] == "adding" and tags["mlflow.runName"] == "adding-elman-s0"
    assert tags.get("mlflow.source.git.commit") == git_commit()
    history = client.get_metric_history(log.run_id, "train/grad_norm")
    assert sorted(m.step for m in history) == list(range(2501))
    assert {m.step: m.value for m in history}[1234] == 1234.0
    assert len(client.get_metric_history(log.run_id, "train/loss")) == 2501
    top = {a.path for a in client.list_artifacts(log.run_id)}
    assert {"model", "loss.png", "config.yaml"} <= top
    assert [a.path for a in client.list_artifacts(log.run_id, "model")] == ["model/weights.npz"]
    assert run.info.artifact_uri.startswith(Path(tracking_settings.artifact_root).resolve().as_uri())
    local = Path(client.download_artifacts(log.run_id, "loss.png", str(tmp_path / "dl")))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "adding-validation"
    assert dataset_input.dataset.digest == "f" * 36
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert input_tags == {"fingerprint": "f" * 64, "mlflow.data.context": "training"}


def test_dataset_source_is_mlflows_own_without_importing_ipython():
    # What from_numpy records by itself (it imports IPython to learn that this is no notebook), in a fresh
    # process, after the harness's source was taken without IPython.
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import mlflow.data
        from harness.tracking.loggers import code_source
        ours = code_source().to_json()
        loaded = "IPython" in sys.modules
        print(loaded, ours == mlflow.data.from_numpy({"x": np.zeros(2)}).source.to_json())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_nan_and_inf_metrics_are_accepted(tracking_settings):
    with open_run(tracking_settings) as log:
        log.log_metrics({"loss": math.nan, "up": math.inf, "down": -math.inf}, step=3)
    metrics = _client(tracking_settings).get_run(log.run_id).data.metrics
    assert math.isnan(metrics["loss"])
    assert metrics["up"] == pytest.approx(1.7976931348623157e308)
    assert metrics["down"] == pytest.approx(-1.7976931348623157e308)


def test_exception_ends_run_failed_with_error_tag_and_flushes(tracking_settings):
    with pytest.raises(RuntimeError, match="boom"), open_run(tracking_settings) as log:
        log.log_metrics({"loss": 1.0}, step=0)
        log.log_metrics({"loss": 0.5}, step=1)
        raise RuntimeError("boom")
    client = _client(tracking_settings)
    run = client.get_run(log.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: boom"
    assert [m.step for m in client.get_metric_history(log.run_id, "loss")] == [0, 1]


def test_signal_handlers_are_restored_after_the_run(tracking_settings):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with open_run(tracking_settings):
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


_BEFORE_THE_FIRST_STEP = textwrap.dedent("""
    import json, sys
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from harness.nn import Elman
    from harness.tracking import TrackingSettings, open_run

    def save_model(folder):
        from harness.pyfunc import save_pyfunc
        return save_pyfunc(Elman(1, 4, 1, seed=0), folder, np.zeros((3, 2, 1)))

    settings = TrackingSettings(uri=sys.argv[1], experiment="test", artifact_root=sys.argv[2])
    with open_run(settings, run_name="first-step", tags={"seed": 0}) as log:
        log.set_tags({"task": "adding"})
        log.log_params({"model": {"hidden_size": 16}, "lr": 0.1})
        log.log_text("seed: 0\\n", "config.yaml")
        arrays = {"X": np.arange(24.0).reshape(3, 4, 2), "mask": np.ones((3, 4), bool)}
        log.log_dataset("val", "f" * 64, arrays)
        log.log_artifact(sys.argv[3], "weights")
        for step in range(3):
            log.log_metrics({"loss": 1.0 / (step + 1)}, step)
        log.flush()
        figure, axes = plt.subplots()
        axes.plot([0, 1, 2], [1.0, 0.5, 0.25])
        log.log_figure(figure, "figures/loss")
        log.log_model(save_model)
        loaded = sorted({name.split(".")[0] for name in sys.modules} & {"mlflow", "sqlalchemy", "pandas"})
        print(json.dumps({"run_id": log.run_id, "loaded": loaded}))
""")


def test_a_run_is_opened_and_written_without_importing_mlflow_in_its_process(tracking_settings, tmp_path):
    """open_run on an SQLite store: the metric writer process creates the run and writes what a training run
    logs (its figures and pyfunc model too); the run's own process imports neither MLflow nor its SQL store,
    and the run records the same as one written in-process (the dataset's schema and profile included)."""
    artifact = tmp_path / "weights.npz"
    np.savez(artifact, w=np.ones(3))
    out = subprocess.run([sys.executable, "-c", _BEFORE_THE_FIRST_STEP, tracking_settings.tracking_uri,
                          tracking_settings.artifact_root, str(artifact)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["loaded"] == []
    client = _client(tracking_settings)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "first-step"
    assert run.data.params == {"model.hidden_size": "16", "lr": "0.1"}
    assert run.data.tags["seed"] == "0" and run.data.tags["task"] == "adding"
    assert run.data.tags["harness.pid"] != str(os.getpid())
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "weights", "figures"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == ["figures/loss.png"]
    model = the_logged_model(client, run)  # its files are the model's, not the run's
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    assert run.data.tags["model.description"]
    assert client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "dl")).endswith("yaml")
    assert (tmp_path / "dl" / "config.yaml").read_text() == "seed: 0\n"
    # the same dataset logged in this process, from the arrays themselves
    _, experiment_id = ensure_store(tracking_settings)
    here = MlflowLogger(client, client.create_run(experiment_id).info.run_id)
    here.log_dataset("val", "f" * 64, {"X": np.arange(24.0).reshape(3, 4, 2), "mask": np.ones((3, 4), bool)})
    (theirs,), (ours,) = (client.get_run(r).inputs.dataset_inputs for r in (run.info.run_id, here.run_id))
    assert theirs.dataset.to_dictionary() == ours.dataset.to_dictionary()
    assert [(t.key, t.value) for t in theirs.tags] == [(t.key, t.value) for t in ours.tags]


def test_a_store_the_writer_cannot_open_fails_the_run_with_its_error(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not an SQLite database" * 100)
    settings = TrackingSettings(uri=f"sqlite:///{db}", experiment="test")
    with pytest.raises(Exception, match="file is not a database"), open_run(settings) as log:
        log.log_metrics({"loss": 1.0}, 0)
    assert db.read_bytes() == b"not an SQLite database" * 100


def test_a_signal_while_the_writer_creates_the_run_ends_it_killed(tracking_settings):
    from harness.tracking import RunInterrupted

    with pytest.raises(RunInterrupted), open_run(tracking_settings, run_name="stopped") as log:
        log.log_metrics({"loss": 1.0}, 0)
        os.kill(os.getpid(), signal.SIGTERM)  # at once: the writer process is still creating the run
        time.sleep(30)
    client = _client(tracking_settings)
    run = client.get_run(log.run_id)
    assert run.info.status == "KILLED" and run.info.run_name == "stopped"
    assert [m.value for m in client.get_metric_history(log.run_id, "loss")] == [1.0]


_LOGGING_LOOP = textwrap.dedent("""
    import sys, time
    from harness.tracking import TrackingSettings, open_run
    settings = TrackingSettings(uri=sys.argv[1], experiment="test", artifact_root=sys.argv[2])
    with open_run(settings, run_name="victim") as log:
        print(log.run_id, flush=True)
        step = 0
        while True:
            log.log_metrics({"loss": 1.0 / (step + 1)}, step)
            if step == 20:
                print("ready", flush=True)
            step += 1
            time.sleep(0.005)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_run_killed_with_metrics_flushed(tracking_settings, signum):
    process = subprocess.Popen(
        [sys.executable, "-c", _LOGGING_LOOP, tracking_settings.tracking_uri,
         tracking_settings.artifact_root],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        run_id = process.stdout.readline().strip()
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        assert process.wait(timeout=60) == 128 + signum
    finally:
        if process.poll() is None:
            process.kill()
    client = _client(tracking_settings)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == f"RunInterrupted: interrupted by {signal.Signals(signum).name}"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
    assert len(steps) > 20
    assert steps == list(range(len(steps)))  # every step logged before the signal, none lost in the buffer


_OPEN_FRESH_STORE = textwrap.dedent("""
    import sys
    from harness.tracking import TrackingSettings, open_run
    settings = TrackingSettings(uri=sys.argv[1], experiment="race", artifact_root=sys.argv[2])
    with open_run(settings, run_name=sys.argv[3]) as log:
        log.log_metrics({"x": 1.0}, 0)
""")


@pytest.mark.slow  # 6 interpreters importing mlflow: 55 s measured on a loaded 2-core machine
def test_parallel_processes_opening_a_fresh_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    artifacts = str(tmp_path / "artifacts")
    processes = [
        subprocess.Popen([sys.executable, "-c", _OPEN_FRESH_STORE, uri, artifacts, f"job{i}"],
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
        for i in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
    settings = TrackingSettings(uri=uri, experiment="race")
    client = _client(settings)
    experiment = client.get_experiment_by_name("race")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"job{i}" for i in range(6)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_parent_run_id_auto_nests_under_the_env_var(tracking_settings, monkeypatch):
    client, experiment_id = ensure_store(tracking_settings)
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    monkeypatch.setenv(PARENT_ENV, parent)
    with open_run(tracking_settings, run_name="child", parent_run_id="auto") as log:
        pass
    assert client.get_run(log.run_id).data.tags["mlflow.parentRunId"] == parent
    monkeypatch.delenv(PARENT_ENV)
    with open_run(tracking_settings, run_name="orphan", parent_run_id="auto") as log:
        pass
    assert "mlflow.parentRunId" not in client.get_run(log.run_id).data.tags


def test_sweep_callback_parent_run_counts_children(tracking_settings, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    sweep_dir = tmp_path / "multirun" / "2026-01-01_00-00-00"
    config = OmegaConf.create({
        "experiment": "ignored-when-tracking-has-one",
        "tracking": {"mode": "local", "uri": tracking_settings.tracking_uri, "experiment": "sweep",
                     "artifact_root": tracking_settings.artifact_root},
        "hydra": {"sweep": {"dir": str(sweep_dir)}, "job": {"name": "train"},
                  "overrides": {"task": ["model=elman,lstm", "trainer.steps=5",
                                         "task.length=range(10,30,10)"]}},
    })
    callback = SweepCallback()
    callback.on_multirun_start(config)
    parent = os.environ[PARENT_ENV]
    assert (sweep_dir / "parent_run_id").read_text() == parent
    assert (sweep_dir / "swept_keys").read_text() == "model\ntask.length"
    for job in ("0", "1"):  # what Hydra makes for each job it launches
        (sweep_dir / job / ".hydra").mkdir(parents=True)
        (sweep_dir / job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {job}\n")
    settings = replace(tracking_settings, experiment="sweep")
    with open_run(settings, run_name="job0", parent_run_id="auto"):
        pass
    with pytest.raises(ValueError), open_run(settings, run_name="job1", parent_run_id="auto"):
        raise ValueError("bad lr")
    callback.on_multirun_end(config)
    assert PARENT_ENV not in os.environ
    client = _client(settings)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    # the time first: the UI's list of runs shows about 17 characters, and the time tells parents apart
    assert re.fullmatch(r"\d\d:\d\d:\d\d train-sweep model,length", run.info.run_name)
    assert names_a_sweep(run.info.run_name, "train") and not names_a_sweep(run.info.run_name, "rnn_vs_arma")
    assert run.data.tags["harness.swept_keys"] == "model task.length"
    metrics = run.data.metrics
    assert (metrics["jobs"], metrics["runs"], metrics["finished"], metrics["failed"], metrics["killed"]) == (
        2, 2, 1, 1, 0)
    report = capsys.readouterr().out
    assert f"sweep {parent}: 2 jobs, 2 runs (1 finished, 1 failed)" in report
    assert "failed: job1  ValueError: bad lr" in report


def test_memory_logger_records_the_same_calls(tmp_path):
    with open_run(TrackingSettings(mode="off"), run_name="r", tags={"seed": 1}) as log:
        assert isinstance(log, MemoryLogger) and log.run_id is None
        log.log_params({"model": {"hidden_size": 16}, "long": "y" * 7000})
        log.set_tags({"task": "adding"})
        for step in range(5):
            log.log_metrics({"loss": 1.0 / (step + 1)}, step)
        log.log_artifact(tmp_path / "w.npz", "model")
        log.log_figure(_figure(), "loss")
        log.log_text("a: 1", "config.yaml")
        log.log_dataset("d", "abc", {"X": np.zeros((3, 2))})
        log.log_dataset("v", "def", {"X": np.zeros((2, 2))}, context="validation")
    assert log.status == "FINISHED"
    assert log.params == {"model.hidden_size": "16", "long": "y" * 6000}
    assert log.tags["seed"] == "1" and log.tags["task"] == "adding" and log.tags["mlflow.runName"] == "r"
    steps, values = log.history("loss")
    np.testing.assert_array_equal(steps, np.arange(5))
    np.testing.assert_allclose(values, 1.0 / np.arange(1, 6))
    assert log.artifacts == [(str(tmp_path / "w.npz"), "model")]
    assert log.figures == ["loss.png"] and log.texts == {"config.yaml": "a: 1"}
    assert log.datasets == {"d": {"fingerprint": "abc", "shapes": {"X": (3, 2)}, "context": "training"},
                            "v": {"fingerprint": "def", "shapes": {"X": (2, 2)}, "context": "validation"}}


def test_memory_logger_run_status_on_exception():
    with pytest.raises(KeyError), open_run(TrackingSettings(mode="off")) as log:
        raise KeyError("k")
    assert log.status == "FAILED"


@pytest.mark.parametrize("uri", ["./mlruns", "/abs/mlruns", "file:///tmp/mlruns"])
def test_legacy_file_store_uri_is_refused(uri):
    with pytest.raises(ValueError, match="refuses the legacy file store"):
        TrackingSettings(uri=uri)


@pytest.mark.parametrize("uri", ["postgresql://u@db:5432/mlflow", "postgresql+psycopg://u@db/mlflow",
                                 "mysql+pymysql://u@db/mlflow", "https://tracking.example:5000"])
def test_database_and_server_uris_are_accepted(uri):
    assert TrackingSettings(uri=uri).tracking_uri == uri


def test_relative_sqlite_uri_is_refused():
    with pytest.raises(ValueError, match="absolute SQLite path"):
        TrackingSettings(uri="sqlite:///mlruns/mlflow.db")


def test_settings_validation():
    with pytest.raises(ValueError, match="mode must be one of"):
        TrackingSettings(mode="remote")
    with pytest.raises(ValueError, match="http"):
        TrackingSettings(mode="server", uri="sqlite:////tmp/x.db")
    assert TrackingSettings(mode="server", uri="http://localhost:5000").artifact_location is None


def test_default_store_is_absolute_under_the_project_root(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert project_root() == REPO
    settings = TrackingSettings()
    assert settings.tracking_uri == default_tracking_uri() == f"sqlite:///{REPO}/mlruns/mlflow.db"
    assert settings.artifact_location == (REPO / "mlruns" / "artifacts" / "train").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert TrackingSettings().tracking_uri == "sqlite:////elsewhere/m.db"
    assert TrackingSettings(uri="sqlite:////mine/m.db").tracking_uri == "sqlite:////mine/m.db"


def test_settings_from_mapping_ignores_unknown_keys():
    settings = TrackingSettings.from_mapping({"mode": "off", "log_every": 5}, experiment="e", uri=None)
    assert (settings.mode, settings.experiment, settings.uri) == ("off", "e", None)


def test_background_writer_writes_every_chunk_and_reports_failure(tracking_settings) -> None:
    from harness.tracking.writer import BackgroundMetricWriter

    client, experiment_id = ensure_store(tracking_settings)
    first, second = (client.create_run(experiment_id).info.run_id for _ in range(2))
    writer = BackgroundMetricWriter.shared(tracking_settings.tracking_uri)
    for start in range(0, 3000, 1000):
        writer.submit(first, [("loss", float(step), 0, step) for step in range(start, start + 1000)])
    writer.sync(first)
    assert [m.step for m in client.get_metric_history(first, "loss")] == list(range(3000))

    client.delete_run(first)
    writer.submit(first, [("loss", 1.0, 0, 3000)])  # a deleted run refuses new metrics
    writer.submit(second, [("loss", 2.0, 0, 0)])
    with pytest.raises(RuntimeError, match=r"writer failed: .*must be in the 'active' state"):
        writer.sync(first)
    # one child serves every run of the process; a failed run leaves the others alone
    assert BackgroundMetricWriter.shared(tracking_settings.tracking_uri) is writer
    writer.sync(second)
    assert [m.value for m in client.get_metric_history(second, "loss")] == [2.0]
    writer.close()
    assert not writer.alive()
    assert BackgroundMetricWriter.shared(tracking_settings.tracking_uri) is not writer


def test_a_sync_cut_short_leaves_its_answer_and_its_error_to_the_next(tracking_settings) -> None:
    from harness.tracking.writer import BackgroundMetricWriter

    ensure_store(tracking_settings)
    missing = "0" * 32  # no such run: the store refuses its values
    writer = BackgroundMetricWriter(tracking_settings.tracking_uri)
    try:
        writer.submit(missing, [("loss", 1.0, 0, 0)])
        writer._send(("sync", missing, next(writer._syncs)))  # a sync a signal cut short: its answer unread
        with pytest.raises(RuntimeError, match="must be in the 'active' state"):
            writer.sync(missing)  # waits for its own answer, and reports the earlier one's error
        writer.sync(missing)  # reported once
    finally:
        writer.close()


def test_background_writer_builds_its_own_engine_after_the_fork(tracking_settings) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from harness.tracking.writer import BackgroundMetricWriter

    client, experiment_id = ensure_store(tracking_settings)
    run_id = client.create_run(experiment_id).info.run_id
    engine = SqlAlchemyStore._engine_map[tracking_settings.tracking_uri]  # the one MLflow caches per URI
    held = []
    try:
        # every connection of the parent's pool is checked out when the writer forks: a child that reused
        # the inherited pool would wait for one (30 s) and fail
        while engine.pool.checkedout() < engine.pool.size() + engine.pool._max_overflow:
            held.append(engine.connect())
        writer = BackgroundMetricWriter(tracking_settings.tracking_uri)
    finally:
        for connection in held:
            connection.close()
    try:
        writer.submit(run_id, [("loss", 1.0, 0, 0)])
        writer.sync(run_id)
    finally:
        writer.close()
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0]


def _stored(client: MlflowClient, run_id: str, keys: list[str]) -> tuple[dict, dict]:
    """(key -> sorted (step, timestamp, value) history, key -> latest value) of run_id; NaN as the string."""
    def plain(value: float) -> float | str:
        return "nan" if math.isnan(value) else value

    histories = {key: sorted(((m.step, m.timestamp, plain(m.value))
                              for m in client.get_metric_history(run_id, key)), key=repr) for key in keys}
    latest = {key: plain(value) for key, value in client.get_run(run_id).data.metrics.items()}
    return histories, latest


def test_metric_table_stores_what_mlflow_log_batch_stores(tracking_settings) -> None:
    """MetricTable against SqlAlchemyStore.log_batch on the installed MLflow, chunk for chunk: NaN, ±inf,
    duplicates within and across chunks, steps going back, equal steps with other timestamps or values."""
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from harness.tracking.sqlite_metrics import MetricTable

    client, experiment_id = ensure_store(tracking_settings)
    by_mlflow = client.create_run(experiment_id).info.run_id
    by_table = client.create_run(experiment_id).info.run_id
    rng = np.random.default_rng(0)
    keys = ["train/loss", "grad_norm/W_hh", "val/solved", "weird key-1.0"]
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e-300]
    chunks = []
    for _ in range(6):
        chunk = []
        for _ in range(300):
            value = specials[rng.integers(len(specials))] if rng.random() < 0.2 else float(rng.normal())
            chunk.append((keys[rng.integers(len(keys))], value, int(rng.integers(1000, 1010)),
                          int(rng.integers(0, 40))))
        chunk += chunk[:25]  # repeats within the chunk
        chunks.append(chunk)
    chunks.append([*chunks[0][:50], ("train/loss", 5.0, 999, 39), ("val/solved", math.nan, 2000, 39)])

    store = SqlAlchemyStore(tracking_settings.tracking_uri, default_artifact_root=None)
    table = MetricTable(tracking_settings.tracking_uri)
    for chunk in chunks:
        store.log_batch(by_mlflow, [Metric(k, v, t, s) for k, v, t, s in chunk], [], [])
        table.write(by_table, chunk)
    assert _stored(client, by_table, keys) == _stored(client, by_mlflow, keys)
    histories, latest = _stored(client, by_table, keys)
    assert set(latest) == set(keys) and sum(map(len, histories.values())) > 1000


def test_metric_table_refuses_bad_names_and_inactive_runs_like_mlflow(tracking_settings) -> None:
    from mlflow.exceptions import MlflowException

    from harness.tracking.sqlite_metrics import MetricTable

    client, experiment_id = ensure_store(tracking_settings)
    run_id = client.create_run(experiment_id).info.run_id
    table = MetricTable(tracking_settings.tracking_uri)
    with pytest.raises(MlflowException, match="must not resolve to other names"):
        table.write(run_id, [("../escape", 1.0, 0, 0)])
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        table.write(run_id, [("loss", 1.0, 0, 0)])
    assert client.get_metric_history(run_id, "loss") == []


def test_names_a_sweep_knows_the_parent_names_of_every_version():
    """The time-first name of today, `<app>-sweep <keys> <time>` and `<app>-sweep-<date>` of earlier sweeps
    (trainer.resume_sweep continues them all); other apps' and training runs' names are no sweep of app."""
    for name in ("12:00:03 train-sweep model,length", "12:00:03 train-sweep", "train-sweep model 12:00:03",
                 "train-sweep-2026-11-30_10-00-00"):
        assert names_a_sweep(name, "train"), name
    for name in ("12:00:03 rnn_vs_arma-sweep model", "adding-lstm-s0", "12:00:03 train-sweeper x"):
        assert not names_a_sweep(name, "train"), name
