"""Bad input is refused by every app (experiments/train.py, rnn_vs_arma.py, gradient_flow.py) in one line,
exit status 1, before anything exists in the store: unknown keys, bad values, sizes beyond the machine's
memory, unreachable servers, over-long names and sweeps with one bad job. Real Hydra, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config import ConfigError, available_memory, network_bytes
from harness.nn import GRU, LSTM, Bidirectional, Elman, Jordan
from harness.optim import make_optimizer
from harness.run import prepare
from harness.studies import gradient_flow, rnn_vs_arma

ROOT = Path(__file__).resolve().parents[1]
APPS = {"train": ("train.py", ROOT / "conf", "config", prepare),
        "rnn": ("rnn_vs_arma.py", ROOT / "conf" / "comparison", "rnn_vs_arma", rnn_vs_arma.check),
        "gf": ("gradient_flow.py", ROOT / "conf", "gradient_flow", gradient_flow.check)}
HUGE = 10**9


def composed(app: str, overrides: list[str]) -> dict:
    _, conf, name, _ = APPS[app]
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose(config_name=name, overrides=[*overrides, "tracking=off"])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("app", "overrides", "message"), [
    ("train", [f"model.hidden_size={HUGE}"], "model.hidden_size=1000000000, model.num_layers=1, sequence"),
    ("train", [f"trainer.eval_batch_size={HUGE // 10}"], "model.hidden_size=32, model.num_layers=1, seq"),
    ("train", [f"task.length={HUGE}"], "model.hidden_size=32, model.num_layers=1, sequence length 10000000"),
    ("train", ["model=lstm", "model.hidden_size=20000"], "model.hidden_size=20000,"),
    ("train", ["+lenght=600"], "unknown key 'lenght'; allowed: ["),
    ("train", ["tracking.experiment=" + "x" * 10_000], "tracking.experiment must be a name of at most 500"),
    # the field a value is refused for, named in full (before: 'optimizer: variant must ...')
    ("train", ["optimizer=rprop", "optimizer.variant=bad"],
     "optimizer.variant must be one of ['irprop+', 'irprop-', 'rprop+', 'rprop-'], got 'bad'"),
    ("train", ["optimizer=rprop", "optimizer.eta_plus=0.5"],
     "optimizer.eta_plus must be a finite number > 1, got 0.5"),
    ("train", ["optimizer=adam", "optimizer.beta1=2"], "optimizer.beta1 must be in [0, 1), got 2"),
    ("train", ["optimizer=rprop", "+optimizer.varient=x"],
     "unknown key 'optimizer.varient'; allowed: ['clip_norm', 'clip_value', 'delta_max', 'delta_min', "
     "'eta_minus', 'eta_plus', 'lr', 'name', 'variant']; did you mean 'optimizer.variant'?"),
    # a misspelt value of a listed choice: the closest choice (before: the list alone)
    ("train", ["model=elman", "model.activation=tahn"],
     "model.activation must be one of ['identity', 'relu', 'sigmoid', 'tanh'] or null, got 'tahn'; did you "
     "mean 'tanh'?"),
    ("train", ["task.name=addding"], "task.name must be one of ['adding', 'binary_addition', 'bit_sum', "
     "'copy', 'latch', 'reversal', 'temporal_order', 'xor'], got 'addding'; did you mean 'adding'?"),
    ("rnn", ["series=[ar3]"], "series must be among ['ar2', 'arma', 'arma11', 'arma22', 'bouncing_ball', "
     "'csv', 'elnino', 'logistic', 'ma2', 'narma10', 'nile', 'random_walk', 'setar', 'sine', 'sunspots'], "
     "got 'ar3'; did you mean 'ar2'?"),
    ("rnn", ["model=[lstmm]"], "model must be among ['arma', 'elman', 'gru', 'linear', 'lstm'], got 'lstmm'; "
     "did you mean 'lstm'?"),
    ("gf", ["study=spectrall"], "study must be one of ['closed_form', 'spectral', 'remedies'], got "
     "'spectrall'; did you mean 'spectral'?"),
    ("gf", ["study=spectral", "spectral.activation=[tahn]"],
     "spectral.activation must be among ['identity', 'relu', 'sigmoid', 'tanh'], got 'tahn'; did you mean "
     "'tanh'?"),
    ("rnn", [f"length={HUGE}"], "length=1000000000 with models ['arma', 'linear', 'elman', 'lstm']"),
    ("rnn", [f"rnn.hidden_size={HUGE}"], "length=1500 with models"),
    ("rnn", ["+lenght=600"], "unknown key 'lenght'; allowed: ["),
    ("rnn", ["+split.tset=0.2"], "unknown key 'split.tset'; allowed: ['test', 'train', 'val']"),
    ("rnn", ["+link.step=5"], "unknown key 'link.step'; allowed: ["),
    ("rnn", ["link.steps=0"], "link.steps must be an integer >= 1, got 0"),
    ("rnn", ["link.enabled=maybe"], "link.enabled must be true or false, got 'maybe'"),
    ("rnn", ["n_jobs=0"], "n_jobs must be an integer >= 1, got 0"),
    ("rnn", ["tracking.experiment=" + "x" * 10_000], "tracking.experiment must be a name of at most 500"),
    ("gf", ["+closed_form.foo=1"], "unknown key 'closed_form.foo'; allowed: ["),
    ("gf", ["+studyy=spectral"], "unknown key 'studyy'; allowed: ["),
    ("gf", ["+tracking.urii=x"], "unknown key 'tracking.urii'; allowed: ["),
    ("gf", ["n_jobs=0"], "n_jobs must be an integer >= 1, got 0"),
    ("gf", ["study=spectral", f"spectral.T={HUGE // 10}"], "spectral.T=100000000, spectral.hidden_size=48"),
    ("gf", ["study=spectral", f"spectral.hidden_size={HUGE}"], "spectral.T=100, spectral.hidden_size=10000"),
    ("gf", ["study=remedies", f"remedies.hidden_size={HUGE}"], "remedies.hidden_size=1000000000, T=5"),
    ("gf", ["study=closed_form", f"closed_form.T=[{HUGE * 100}]"], "closed_form.T up to 100000000000"),
])
def test_every_app_check_refuses_bad_input_in_one_line(app: str, overrides: list[str], message: str) -> None:
    check = APPS[app][3]
    with pytest.raises(ConfigError) as raised:
        check(composed(app, overrides))
    text = str(raised.value)
    assert text.startswith(message) and "\n" not in text, text


def test_memory_refusal_names_the_need_and_what_is_available() -> None:
    with pytest.raises(ConfigError, match=r"needs at least [\d.]+ [KMGTP]i?B of memory, more than the [\d.]+ "
                                          r"[KMGTP]iB this machine has available; lower them$"):
        prepare(composed("train", ["model.hidden_size=20000"]))
    assert available_memory() > 0


@pytest.mark.parametrize("cell", ["elman", "jordan", "lstm", "gru", "bidirectional"])
def test_network_bytes_counts_exactly_the_parameters_a_network_allocates(cell: str) -> None:
    D, H, K, layers = 3, 5, 2, 1 if cell == "jordan" else 2
    model = {"elman": lambda: Elman(D, H, K, num_layers=layers), "jordan": lambda: Jordan(D, H, K),
             "lstm": lambda: LSTM(D, H, K, num_layers=layers), "gru": lambda: GRU(D, H, K, num_layers=layers),
             "bidirectional": lambda: Bidirectional("lstm", D, H, K, num_layers=layers)}[cell]()
    counted = network_bytes("lstm" if cell == "bidirectional" else cell, D, H, K, length=0, batch_size=0,
                            num_layers=layers, directions=2 if cell == "bidirectional" else 1, itemsize=1,
                            parameter_copies=1)
    assert counted == sum(p.size for p in model.params.values())


@pytest.mark.parametrize(("name", "options"), [("sgd", {}), ("momentum", {}), ("adam", {"clip_norm": 1.0}),
                                               ("rprop", {"variant": "irprop+"})])
def test_optimizer_buffers_per_parameter_match_what_a_step_allocates(name: str, options: dict) -> None:
    optimizer = make_optimizer(name, lr=0.01, **options)
    params = {"W": np.ones((3, 4))}
    optimizer.step(params, {"W": np.full((3, 4), 0.5)}, loss=1.0)
    held = [*optimizer.state["W"].values(), *optimizer._work["W"].values(), *optimizer._grad_buf.values()]
    assert optimizer.buffers_per_parameter() == sum(array.shape == (3, 4) for array in held)


def project_env(tmp_path: Path) -> dict[str, str]:
    """An app's environment with tmp_path as its project (Hydra's folders under tmp_path/mlruns), no
    inherited store, Hydra setting or sweep parent."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "HYDRA_", "HARNESS_PARENT"))}
    env["HARNESS_PROJECT_ROOT"] = str(tmp_path)
    return env


def app_run(tmp_path: Path, app: str, args: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """Run an app on a store that does not exist yet under tmp_path; returns the process and the store."""
    store = tmp_path / "store"
    env = project_env(tmp_path)
    tracking = [] if "tracking=server" in args else [f"tracking.uri=sqlite:///{store}/mlflow.db"]
    command = [sys.executable, str(ROOT / "experiments" / APPS[app][0]), *args, *tracking,
               f"tracking.artifact_root={store}/artifacts", f"hydra.run.dir={tmp_path}/run",
               f"hydra.sweep.dir={tmp_path}/sweep"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    return done, store


def assert_refused(done: subprocess.CompletedProcess, store: Path, expected: str) -> None:
    """One line, exit status 1, no store, and no file under the project (app_run's tmp_path): not the Hydra
    job folder (.hydra/, the job's log) Hydra made for a single run before the app refused its config, nor a
    sweep's folder."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"config error: {expected}"), lines[0]
    assert not store.exists()
    project = store.parent
    assert not (project / "run").exists() and not (project / "sweep").exists()
    assert [path for path in project.rglob("*") if not path.is_dir()] == []


CLI_CASES = [
    ("train", [f"model.hidden_size={HUGE}"], "model.hidden_size=1000000000, model.num_layers=1, "),
    ("train", ["model=linear", "model.activation=tanh"],
     "key 'model.activation' does not apply to the chosen model option"),
    ("train", ["-m", "trainer.steps=20,abc"], "job 1 (trainer.steps=abc): trainer.steps must be an integer"),
    ("train", ["-m", "model=foo,elman"], "job 0 (model=foo): In 'config': Could not find 'model/foo'"),
    ("train", ["model=lstmm"], "In 'config': Could not find 'model/lstmm'; Available options in 'model': "
                               "bidirectional, elman, gru, irnn, jordan, linear, lstm; did you mean 'lstm'?"),
    ("train", ["-m", "task=reversal", "model=linear,jordan"], "job 1 (model=jordan): model.mode must be one"),
    ("train", ["optimizer=rprop", "optimizer.variant=iprop+"], "optimizer.variant must be one of ['irprop+', "
                                                              "'irprop-', 'rprop+', 'rprop-'], got 'iprop+'; "
                                                              "did you mean 'irprop+'?"),
    ("rnn", ["lenght=600"], "unknown key 'lenght'; allowed: ['backtest', 'csv', 'figure_window', "
                           "'intervals', 'length', 'link', 'model', 'models', 'n_jobs', 'progress', "
                           "'rebuild', 'reference', 'resume', 'resume_sweep', 'rnn', 'seed', 'series', "
                           "'series_params', 'split', 'tracking', 'windows']; did you mean 'length'?"),
    ("rnn", ["rnn.hiden=3"], "unknown key 'rnn.hiden'; allowed: ['batch_size', 'burn_in', 'eval_every', "
                             "'hidden_size', 'lags', 'lr', 'sequence_length', 'steps']; did you mean "
                             "'rnn.hidden_size'?"),
    ("rnn", ["tracking=server", "tracking.uri=http://127.0.0.1:1"],
     "tracking.uri: no MLflow tracking server answers at http://127.0.0.1:1"),
    ("rnn", ["-m", "length=600,abc"], "job 1 (length=abc): length must be an integer >= 2, got 'abc'"),
    ("gf", ["studyy=spectral"], "unknown key 'studyy'; allowed: ['closed_form', 'n_jobs', 'rebuild', "
                                "'remedies', 'resume', 'resume_sweep', 'spectral', 'study', 'tracking']; "
                                "did you mean 'study'?"),
    ("gf", ["n_jobs=0"], "n_jobs must be an integer >= 1, got 0"),
    ("gf", ["-m", "study=spectral,foo"], "job 1 (study=foo): study must be one of"),
]


@pytest.mark.parametrize(("app", "args", "expected"), CLI_CASES)
def test_every_app_refuses_bad_input_in_one_line_and_creates_no_store(tmp_path: Path, app: str,
                                                                      args: list[str], expected: str) -> None:
    assert_refused(*app_run(tmp_path, app, args), expected)


SLOW_CASES = [
    ("train", [f"trainer.eval_batch_size={HUGE // 10}"], "model.hidden_size=32"),
    ("train", [f"task.length={HUGE}"], "model.hidden_size=32"),
    ("train", ["model.hidden_size=20000"], "model.hidden_size=20000"),
    ("train", ["+lenght=600"], "unknown key 'lenght'"),
    ("train", ["trainer.stesp=5"], "unknown key 'trainer.stesp'"),
    ("train", ["tracking=server", "tracking.uri=http://127.0.0.1:1"], "tracking.uri: no MLflow"),
    ("train", ["tracking.experiment=" + "x" * 10_000], "tracking.experiment must be"),
    ("train", ["-m", f"model.hidden_size=4,{HUGE}"], "job 1 (model.hidden_size=1000000000): "),
    ("rnn", [f"length={HUGE}"], "length=1000000000 with models"),
    ("rnn", ["+lenght=600"], "unknown key 'lenght'"),
    ("rnn", ["tracking=foo"], "In 'rnn_vs_arma': Could not find 'tracking/foo'"),
    ("rnn", ["link.steps=0"], "link.steps must be an integer >= 1"),
    ("rnn", ["n_jobs=0"], "n_jobs must be an integer >= 1"),
    ("rnn", [f"rnn.hidden_size={HUGE}"], "length=1500 with models"),
    ("rnn", ["tracking.experiment=" + "x" * 10_000], "tracking.experiment must be"),
    ("rnn", ["-m", "model=arma,foo"], "job 1 (model=foo): model must be among"),
    ("gf", ["+closed_form.foo=1"], "unknown key 'closed_form.foo'"),
    ("gf", ["+studyy=spectral"], "unknown key 'studyy'"),
    ("gf", ["study=spectrall"], "study must be one of"),
    ("gf", ["study=spectral", f"spectral.T={HUGE // 10}"], "spectral.T=100000000"),
    ("gf", ["study=spectral", f"spectral.hidden_size={HUGE}"], "spectral.T=100, spectral.hidden_size="),
    ("gf", ["tracking=server", "tracking.uri=http://127.0.0.1:1"], "tracking.uri: no MLflow"),
    ("gf", ["tracking.experiment=" + "x" * 10_000], "tracking.experiment must be"),
    ("gf", ["-m", "study=spectral", "spectral.T=10,abc"], "job 1 (spectral.T=abc): spectral.T must be"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("app", "args", "expected"), SLOW_CASES)
def test_every_app_refuses_the_issues_whole_list(tmp_path: Path, app: str, args: list[str],
                                                 expected: str) -> None:
    assert_refused(*app_run(tmp_path, app, args), expected)


@pytest.mark.parametrize("app", ["train", "rnn", "gf"])
def test_a_refused_run_leaves_no_job_folder_in_hydras_default_place(tmp_path: Path, app: str) -> None:
    """Without hydra.run.dir, Hydra makes <project>/mlruns/hydra/runs/<app and time>/ with .hydra/ and an
    empty <job>.log before the app sees its config; the refusal removes that folder again, and the folders
    above it that it leaves empty (mlruns/hydra/runs/, mlruns/hydra/), mlruns/ itself kept."""
    store = tmp_path / "store"
    env = project_env(tmp_path)
    bad = "model.hidden_size=0" if app == "train" else "n_jobs=0"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / APPS[app][0]), bad,
                           f"tracking.uri=sqlite:///{store}/mlflow.db"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("config error: "), done.stderr[-3000:]
    assert list((tmp_path / "mlruns").iterdir()) == []  # before: mlruns/hydra/runs/ stayed, empty
    assert not store.exists()


def test_a_refusal_keeps_the_folders_above_its_job_folder_that_hold_anything(tmp_path: Path) -> None:
    """mlruns/hydra/ with an earlier sweep's folder stays (its emptied runs/ goes); so does every folder above
    a job folder outside mlruns/, empty or not."""
    earlier = tmp_path / "mlruns" / "hydra" / "multiruns" / "earlier" / "parent_run_id"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("abc")
    env = project_env(tmp_path)
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), "model.hidden_size=0",
               f"tracking.uri=sqlite:///{tmp_path / 'store'}/mlflow.db"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("config error: "), done.stderr[-3000:]
    assert [path.name for path in (tmp_path / "mlruns" / "hydra").iterdir()] == ["multiruns"]
    assert earlier.read_text() == "abc"

    outside = tmp_path / "outside"  # hydra.run.dir=<outside>/job: outside/ is left empty, and stays
    done = subprocess.run([*command, f"hydra.run.dir={outside / 'job'}"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("config error: "), done.stderr[-3000:]
    assert outside.is_dir() and list(outside.iterdir()) == []


def test_a_refused_run_keeps_a_job_folder_that_holds_anything_else(tmp_path: Path) -> None:
    """hydra.run.dir naming a folder with a file of the user's: the refusal removes nothing."""
    mine = tmp_path / "run" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("mine")
    done, _ = app_run(tmp_path, "gf", ["n_jobs=0"])
    assert done.returncode == 1 and done.stderr.startswith("config error: n_jobs"), done.stderr[-3000:]
    assert mine.read_text() == "mine" and (tmp_path / "run" / ".hydra" / "config.yaml").exists()
