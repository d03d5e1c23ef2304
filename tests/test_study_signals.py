"""A study stopped by a signal says so: the comparison app (a real process, a real SIGINT to its group) and
the shared study runner that gradient_flow.py uses (a real SIGINT to this process), on real MLflow
(temporary SQLite store)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_rnn_vs_arma import APP, ROOT

from harness.studies.study_resume import resume_hint, stopped_study
from harness.studies.study_run import CellRun, StudyOutputs, run_study
from harness.tracking import RunInterrupted
from harness.ui import ui_hint


def runs(settings, experiment: str) -> tuple[list, list]:
    """(parents, children) of the experiment's runs."""
    client = MlflowClient(settings.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    every = [] if found is None else client.search_runs([found.experiment_id])
    return ([run for run in every if "mlflow.parentRunId" not in run.data.tags],
            [run for run in every if "mlflow.parentRunId" in run.data.tags])


@pytest.mark.slow  # the real app to its first cells: 65-100 s on a loaded 2-core machine; its twin is below
def test_a_signalled_comparison_tells_where_it_stopped(tracking_settings, tmp_path: Path) -> None:
    """Ctrl-C part-way through `rnn_vs_arma.py`: exit 130, one account on stdout (the parent run, units and
    cells done of how many, the signal, what to do next, the UI line), and the KILLED parent's description
    says the same."""
    command = [sys.executable, str(APP), "series=[ar2,setar]", "model=[arma,lstm]", "seed=[0,1,2,3]",
               "length=300", "models.arma.max_p=1", "models.arma.max_q=1", "rnn.hidden_size=4",
               "rnn.steps=400", "rnn.sequence_length=32", "rnn.batch_size=4", "link.enabled=false",
               "backtest=one_step", "tracking.experiment=cmp",
               f"tracking.uri={tracking_settings.tracking_uri}",
               f"tracking.artifact_root={tracking_settings.artifact_root}",
               f"hydra.run.dir={tmp_path / 'run'}"]
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # the first cell is logged (the signal then lands in another cell's computation or logging)
        while not [run for run in runs(tracking_settings, "cmp")[1] if run.info.status == "FINISHED"]:
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT, err.read_text()[-3000:]
    (parent,), children = runs(tracking_settings, "cmp")
    assert parent.info.status == "KILLED"
    done = Counter((run.data.tags["series"], run.data.tags["seed"]) for run in children
                   if run.info.status == "FINISHED")
    cells, units = sum(done.values()), sum(count == 2 for count in done.values())
    assert 1 <= cells < 16
    progress = f"{units} of 8 units (series x seed), {cells} of 16 cells"
    run_id = parent.info.run_id
    lines = out.read_text().splitlines()
    # the whole command that finishes it: the app's overrides (Hydra's own, hydra.run.dir, change no
    # number and are not repeated), resume= added
    finish = shlex.join(["python", "experiments/rnn_vs_arma.py", *command[2:-1], f"resume={run_id}"])
    hint = f"to finish it: {finish} (only the cells it lacks are computed)"
    assert lines[-3:] == [
        f"study rnn_vs_arma-2x2x4 ar2,setar ({run_id}) stopped after {progress} (interrupted by SIGINT); the "
        "cells done are its child runs",
        hint,
        ui_hint(tracking_settings.tracking_uri, (parent.info.experiment_id, run_id))]
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Stopped after {progress}** (interrupted by SIGINT); the cells done are its")
    assert note.endswith(f" To finish it: {finish} (only the cells it lacks are computed).")
    assert parent.data.tags["error"] == "RunInterrupted: interrupted by SIGINT"
    assert "Traceback" not in err.read_text()


def _signalled_on_third(number: int) -> CellRun:
    """A study cell; the third one gets a Ctrl-C while it computes."""
    if number == 2:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises in the main thread at once
    return _cell(number)


def _cell(number: int) -> CellRun:
    return CellRun(name=f"cell-{number}", key=_key(number), params={"n": number},
                   metrics={"x": float(number)})


def _key(number: int) -> dict[str, int]:
    return {"n": number}


def _summary(cells, curves) -> StudyOutputs:
    return StudyOutputs(cells, "| n |", {}, [])


def test_a_signalled_study_of_gradient_flow_tells_where_it_stopped_and_resumes(tracking_settings) -> None:
    """gradient_flow.py's studies run through study_run.run_study: a signal at the third of five cells
    ends the parent KILLED with the account, echoed and as its description, which names the resume=
    command."""
    echoed: list[str] = []
    with pytest.raises(RunInterrupted):
        run_study(tracking_settings, "demo", "demo-5cells", {"study": "demo"}, _signalled_on_third, _key,
                  [(n,) for n in range(5)], _summary, echo=echoed.append)
    (parent,), children = runs(tracking_settings, tracking_settings.experiment)
    assert parent.info.status == "KILLED" and len(children) == 2
    run_id = parent.info.run_id
    assert echoed == [
        f"study demo-5cells ({run_id}) stopped after 2 of 5 cells (interrupted by SIGINT); the cells done "
        "are its child runs", resume_hint(run_id),
        ui_hint(tracking_settings.tracking_uri, (parent.info.experiment_id, run_id))]
    note = parent.data.tags["mlflow.note.content"]
    assert re.match(r"\*\*Stopped after 2 of 5 cells\*\* \(interrupted by SIGINT\)", note)
    assert note.endswith(f"with resume={run_id}: only the cells it lacks are computed.")
    # and so it does: the two cells the signal left are kept, the three others computed
    resume = stopped_study(run_id, tracking_settings, "demo", {"study": "demo"})
    result = run_study(tracking_settings, "demo", "demo-5cells", {"study": "demo"}, _cell, _key,
                       [(n,) for n in range(5)], _summary, echo=echoed.append, resume=resume)
    assert result.cells_computed == 3 and sorted(result.outputs.table["n"]) == [0, 1, 2, 3, 4]
    (parent,), after = runs(tracking_settings, tracking_settings.experiment)
    assert parent.info.status == "FINISHED" and len(after) == 5
    assert {run.info.run_id for run in children} < {run.info.run_id for run in after}
