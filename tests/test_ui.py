"""python -m harness.ui: refuses what it cannot serve in one line, and (slow) serves the store so that the
MLflow UI reads the harness's experiment kind and descriptions - checked through a real server's REST API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from harness.tracking import default_tracking_uri
from harness.tracking.experiment_notes import KIND, KIND_TAG, NOTE_TAG, experiment_tags
from harness.tracking.server import free_port
from harness.ui import ui_hint

ROOT = Path(__file__).resolve().parents[1]


def ui(*args: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    return subprocess.Popen([sys.executable, "-m", "harness.ui", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_taken_port_or_a_server_uri_is_refused_in_one_line(tracking_settings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _, stderr = ui("--port", str(port), "--uri", tracking_settings.tracking_uri).communicate(timeout=120)
    assert stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is taken (another MLflow UI? if it shows this store, open "
        f"http://127.0.0.1:{port}); or pick another: python -m harness.ui --port {port + 1}"]
    _, stderr = ui("--uri", "http://127.0.0.1:1").communicate(timeout=120)
    assert stderr.strip().splitlines() == [
        "error: --uri: http://127.0.0.1:1 is a tracking server, which serves its own UI: open http://127.0.0.1:1"]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_the_ui_server_reads_the_kind_and_the_descriptions(tracking_settings) -> None:
    from harness.run import run

    settings = replace(tracking_settings, experiment="train")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "task=bit_sum", "task.length=4", "model=elman", "model.hidden_size=4", "trainer.steps=4",
            "trainer.eval_interval=2", "trainer.eval_batch_size=8", "trainer.diagnostics_interval=2",
            "trainer.progress=false", f"tracking.uri={settings.uri}",
            f"tracking.artifact_root={settings.artifact_root}"])
    run(OmegaConf.to_container(cfg, resolve=True))
    client = MlflowClient(settings.tracking_uri)
    untagged = client.create_experiment("made-by-hand")  # an experiment from before the tags: ui adds them
    port = free_port()
    process = ui("--port", str(port), "--uri", settings.tracking_uri)
    try:
        started = time.monotonic()
        line = process.stdout.readline()
        expected = (f"MLflow UI: http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning  "
                    f"(store {settings.tracking_uri}; up in ")
        assert line.startswith(expected), line + process.stderr.read()
        seconds = time.monotonic() - started
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        train = get(f"{api}/experiments/get-by-name?experiment_name=train")["experiment"]
        tags = {tag["key"]: tag["value"] for tag in train["tags"]}
        assert tags[KIND_TAG] == KIND and tags[NOTE_TAG] == experiment_tags("train")[NOTE_TAG]
        hand = get(f"{api}/experiments/get?experiment_id={untagged}")["experiment"]
        assert {tag["key"]: tag["value"] for tag in hand["tags"]}[KIND_TAG] == KIND
        (found,) = client.search_runs([train["experiment_id"]])
        page = get(f"{api}/runs/get?run_id={found.info.run_id}")["run"]
        run_tags = {tag["key"]: tag["value"] for tag in page["data"]["tags"]}
        assert run_tags["mlflow.runName"] == "bit_sum-elman-s0"
        assert run_tags[NOTE_TAG].startswith("**bit_sum** (length=4, held_out=0.2) learned by **elman**")
        assert "Solved means `accuracy >= 0.99`" in run_tags[NOTE_TAG]
        print(f"harness.ui answered in {seconds:.1f} s")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the server and its worker stop with it
        process.wait(timeout=60)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_the_apps_ui_hint_links_the_run_and_names_the_command_or_the_server() -> None:
    view = "workflowType=machine_learning"
    assert ui_hint(default_tracking_uri(), ("3", "abc")) == (
        f"in the MLflow UI: http://127.0.0.1:5000/#/experiments/3/runs/abc?{view}  (start it with: python -m "
        "harness.ui)")
    assert ui_hint("sqlite:////tmp/x/mlflow.db", ("3", "abc")) == (
        f"in the MLflow UI: http://127.0.0.1:5000/#/experiments/3/runs/abc?{view}  (start it with: python -m "
        "harness.ui --uri sqlite:////tmp/x/mlflow.db)")
    assert ui_hint("http://alice:pw@host:5000", ("3", "abc")) == (
        f"in the MLflow UI: http://host:5000/#/experiments/3/runs/abc?{view}")
    # no run: the experiments page
    assert ui_hint("sqlite:////tmp/nowhere/mlflow.db", None) == (
        f"in the MLflow UI: http://127.0.0.1:5000/#/experiments?{view}  (start it with: python -m harness.ui "
        "--uri sqlite:////tmp/nowhere/mlflow.db)")
