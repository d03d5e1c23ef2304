"""The README's commands work as written from a fresh clone, with no tracking.uri anywhere: the project is
copied into a temporary directory and its apps run there as real subprocesses (real Hydra, MLflow,
statsmodels), importing the copy's harness, so project_root() and the default store mlruns/mlflow.db are the
copy's. Rebuilt tables must equal the printed ones (a comparison prints its one-step grids, its rebuild the
whole table: the parent's description holds both), summary runs must land in the project's store, and no
file may appear outside mlruns/."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("harness", "experiments", "conf", "pyproject.toml", "README.md")
COMPARISON = ["length=300", "seed=[0]", "models.arma.max_p=1", "models.arma.max_q=1", "rnn.hidden_size=4",
              "rnn.steps=20", "rnn.sequence_length=32", "rnn.batch_size=4", "link.steps=60",
              "figure_window=30"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clone")
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "mlruns").mkdir()  # as git checks it out: the repository's .gitkeep, the umask's 0755
    (root / "mlruns").chmod(0o755)
    (root / "mlruns" / ".gitkeep").touch()
    return root


def app(clone: Path, script: str, *args: str) -> str:
    """Run experiments/<script> in the clone as a new user would; returns its stdout (exit status 0)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "HARNESS_", "HYDRA_"))}
    env["PYTHONPATH"] = str(clone)  # the copy's harness, as `pip install -e .` in the clone would give
    done = subprocess.run([sys.executable, f"experiments/{script}", *args], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # no library INFO chatter on a fresh store (MLflow's "Creating initial MLflow database tables...")
    assert not re.search(r"^\S+ \S+ INFO |^\[I ", done.stderr, re.MULTILINE), done.stderr[-3000:]
    return done.stdout


def table(stdout: str) -> list[str]:
    """The Markdown table lines and the legend under it ('- ...') of what an app printed."""
    return [line for line in stdout.splitlines() if line.startswith(("|", "- "))]


def files_outside_mlruns(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")
            if path.relative_to(root).parts[0] != "mlruns" and "__pycache__" not in path.parts}


def notes_hold_tables(clone: Path, shown: dict[str, str]) -> None:
    """Each parent's page shows its table: the run's description (mlflow.note.content) holds it."""
    client = MlflowClient(f"sqlite:///{clone / 'mlruns' / 'mlflow.db'}")
    for run_id, stdout in shown.items():
        note = client.get_run(run_id).data.tags["mlflow.note.content"]
        missing = [line for line in table(stdout) if line not in note]
        assert not missing, missing


def test_main_job_and_its_rebuild_from_a_fresh_clone(clone: Path) -> None:
    before = files_outside_mlruns(clone)
    printed = app(clone, "rnn_vs_arma.py", "series=[ar2,setar]", "model=[arma,linear]", *COMPARISON)
    parent = re.search(r"parent run (\w+); its table again: python experiments/rnn_vs_arma.py rebuild=\1",
                       printed).group(1)
    # it ends with its parent run's page in the UI and the command that starts the UI
    assert re.fullmatch(rf"in the MLflow UI: http://127\.0\.0\.1:5000/#/experiments/\d+/runs/{parent}"
                        r"\?workflowType=machine_learning  \(start it with: python -m harness\.ui\)",
                        printed.splitlines()[-1]), printed.splitlines()[-1]
    # what the harness created is the user's alone (README, "Browsing results"), the clone's mlruns/ too
    mlruns = clone / "mlruns"
    modes = {path: stat.S_IMODE((mlruns / path).stat().st_mode)
             for path in (".", "hydra", "artifacts", "artifacts/rnn_vs_arma", "mlflow.db", "mlflow.db.lock")}
    assert modes == {".": 0o700, "hydra": 0o700, "artifacts": 0o700, "artifacts/rnn_vs_arma": 0o700,
                     "mlflow.db": 0o600, "mlflow.db.lock": 0o600}
    rebuilt = app(clone, "rnn_vs_arma.py", f"rebuild={parent}")
    assert "| test MSE " in printed and "| test MSE " not in rebuilt and "| MSE 95% t interval " in rebuilt
    notes_hold_tables(clone, {parent: printed + rebuilt})
    assert files_outside_mlruns(clone) == before  # no stray mlflow.db, outputs/ or anything else


@pytest.mark.slow
def test_sweep_and_gradient_study_and_their_rebuilds_from_a_fresh_clone(clone: Path) -> None:
    before = files_outside_mlruns(clone)
    printed = app(clone, "rnn_vs_arma.py", "series=[ar2,setar]", "model=[arma,linear]", *COMPARISON,
                  "link.enabled=false", "n_jobs=1")
    swept = app(clone, "rnn_vs_arma.py", "-m", "series=ar2,setar", "model=arma,linear", *COMPARISON)
    sweep_parent = re.search(r"sweep parent run (\w+); its table again", swept).group(1)
    assert re.search(rf"sweep {sweep_parent}: 4 jobs, 4 runs \(4 finished\)", swept)
    assert table(swept) == table(printed)  # one job per (series, model), the sequential run's numbers
    sequential_parent = re.search(r"parent run (\w+); its table again", printed).group(1)
    swept_whole = app(clone, "rnn_vs_arma.py", f"rebuild={sweep_parent}")
    assert table(swept_whole) == table(app(clone, "rnn_vs_arma.py", f"rebuild={sequential_parent}"))

    study = app(clone, "gradient_flow.py", "study=closed_form", "closed_form.v_f=[0.5,1.5]",
                "closed_form.T=[4,8]")
    study_parent = re.search(r"parent run (\w+); its table again", study).group(1)
    rebuilt = app(clone, "gradient_flow.py", "study=closed_form", f"rebuild={study_parent}")
    assert table(rebuilt) == table(study)
    client = MlflowClient(f"sqlite:///{clone / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("gradient_flow")
    summaries = client.search_runs([experiment.experiment_id],
                                   f"tags.kind = 'summary' and tags.mlflow.parentRunId = '{study_parent}'")
    assert len(summaries) == 1  # in the project's store, where the UI shows it
    notes_hold_tables(clone, {sweep_parent: swept + swept_whole, study_parent: study})
    assert files_outside_mlruns(clone) == before
