"""Optuna search (harness.search): the search space, the study's storage and direction, and
``experiments/train.py -m hydra/sweeper=optuna`` end to end with real Hydra, real Optuna on SQLite and real
MLflow (tests/conftest.py), on the embedded store and on a loopback tracking server."""

from __future__ import annotations

import copy
import signal
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from test_tracking_server import server_app_command
from test_train_app import TINY, app, app_command, app_env, runs_of, signal_when_training

from harness.config import validate
from harness.search import trial_run_name
from harness.search.fixed import fixed_changes, fixed_config
from harness.search.optuna_sweeper import trial_value
from harness.search.sampler import make_sampler, trial_seed
from harness.search.space import parse_search_space
from harness.search.study import default_storage, default_study_name, objective_direction, open_study
from harness.tracking import TrackingSettings

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
LINEAR_REVERSAL = [*TINY, "task=reversal", "task.length=4", "model=linear", "optimizer=sgd"]


def search(tmp_path: Path, settings, *args: str, storage: str | None = None) -> subprocess.CompletedProcess:
    storage_args = [f"hydra.sweeper.storage={storage}"] if storage else []
    return app(tmp_path, settings, "-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=s", *storage_args,
               *LINEAR_REVERSAL, *args)


def study_of(settings, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage(settings))


def parent_and_children(settings) -> tuple[list, list]:
    runs = runs_of(settings)
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


def test_hydra_sweep_syntax_becomes_optuna_distributions() -> None:
    space = parse_search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 0.1))", "model.hidden_size": "choice(16, 32)",
         "trainer.steps": "range(10, 40, 10)", "model.init": "uniform"},
        ["model.hidden_size=choice(8,64)", "x=int(interval(1, 5))", "seed=3"])
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 0.1, log=True),
        "model.hidden_size": CategoricalDistribution((8, 64)),   # the command line beats the preset
        "trainer.steps": IntDistribution(10, 30, step=10),        # range's stop is excluded, as in Hydra
        "x": IntDistribution(1, 5),
    }
    assert space.fixed == ("model.init=uniform", "seed=3")
    assert space.overrides({"optimizer.lr": 0.1 + 2e-17, "model.hidden_size": 8}) == [
        f"optimizer.lr={0.1 + 2e-17!r}", "model.hidden_size=8", "model.init=uniform", "seed=3"]
    with pytest.raises(ValueError, match=r"search space a: range\(5, 1\) holds no value"):
        parse_search_space({"a": "range(5, 1)"})


SEARCH_PRESETS = [(CONF, "config", p.stem) for p in sorted((CONF / "hparams_search").glob("*.yaml"))] + [
    (CONF / "comparison", "rnn_vs_arma", p.stem)
    for p in sorted((CONF / "comparison" / "hparams_search").glob("*.yaml"))]


@pytest.mark.parametrize(("root", "config_name", "preset"), SEARCH_PRESETS)
def test_every_search_preset_composes_and_searches_keys_of_its_config(root: Path, config_name: str,
                                                                      preset: str) -> None:
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[f"hparams_search={preset}"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.harness_optuna_sweeper.OptunaSweeper"
    app_config = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                        resolve=True)
    if config_name == "config":
        validate(app_config)
    else:
        from harness.studies import rnn_vs_arma

        rnn_vs_arma.check(app_config)
    space = parse_search_space(OmegaConf.to_container(sweeper.params))
    assert space.distributions and not space.fixed
    for key in space.distributions:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    objective_direction(sweeper.direction, app_config)


def test_direction_comes_from_the_task_metric() -> None:
    assert objective_direction("auto", {"task": {"name": "adding"}}) == "minimize"        # mse
    assert objective_direction("auto", {"task": {"name": "temporal_order"}}) == "maximize"  # accuracy
    assert objective_direction("maximize", {}) == "maximize"
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.direction must be one of"):
        objective_direction("up", {})
    with pytest.raises(ValueError, match="auto needs a training config"):
        objective_direction("auto", {"series": ["ar2"]})


def test_the_study_lives_beside_the_mlflow_store(tracking_settings) -> None:
    db = Path(tracking_settings.uri.removeprefix("sqlite:///"))
    assert default_storage(tracking_settings) == f"sqlite:///{db.parent / 'optuna.db'}"
    assert default_storage(TrackingSettings(mode="off")) is None


def test_a_new_sqlite_study_is_private_to_the_user(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "optuna.db"
    open_study("s", f"sqlite:///{db}", "minimize", make_sampler("random", 0), {})
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # Optuna's own creation gave the umask's 0644
    assert stat.S_IMODE((db.parent / "optuna.db.lock").stat().st_mode) == 0o600


def test_failed_diverged_and_non_numeric_jobs_are_failed_trials() -> None:
    def returned(value, status=JobStatus.COMPLETED) -> JobReturn:
        job = JobReturn()
        job.status, job.return_value = status, value
        return job

    assert trial_value(returned(0.25)) == (0.25, "")
    assert trial_value(returned(float("nan")))[1] == "the job returned nan (diverged)"
    assert trial_value(returned(None))[1] == "the job returned None, not a number"
    assert trial_value(returned(RuntimeError("boom"), JobStatus.FAILED)) == (None, "RuntimeError: boom")


CONTINUOUS = parse_search_space({"a": "interval(0, 1)", "b": "tag(log, interval(1e-4, 1))"})


def grow(storage: str, sampler: str, trials: int) -> list[dict]:
    """Open study 's' in storage as a new invocation would (its own sampler object), ask and tell it up to
    trials trials two at a time (a batch of n_jobs=2), return the params of all its trials."""
    study = open_study("s", storage, "minimize", make_sampler(sampler, 3, {"n_startup_trials": 5}
                                                                        if sampler == "tpe" else {}), {})
    while len(study.trials) < trials:
        batch = [study.ask(CONTINUOUS.distributions) for _ in range(min(2, trials - len(study.trials)))]
        for trial in batch:
            study.tell(trial, (trial.params["a"] - 0.3) ** 2 + trial.params["b"])
    return [t.params for t in study.trials]


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_a_grown_study_asks_new_trials_and_a_seeded_search_repeats_itself(tmp_path: Path,
                                                                           sampler: str) -> None:
    def grown_in_two(storage: str) -> tuple[list[dict], list[dict]]:
        return grow(storage, sampler, 3), grow(storage, sampler, 8)  # TPE: 2 more startup trials, then TPE

    first, grown = grown_in_two(f"sqlite:///{tmp_path / 'one.db'}")
    assert grown[:3] == first
    assert not [params for params in grown[3:] if params in first]  # before: trials 3, 4 repeated 0, 1
    assert len({tuple(params.values()) for params in grown}) == 8
    # the same settings and invocations on a fresh study ask the same trials
    assert grown_in_two(f"sqlite:///{tmp_path / 'two.db'}") == (first, grown)


def test_each_trial_draws_from_its_own_seed() -> None:
    assert trial_seed(0, 1) != trial_seed(1, 0) and trial_seed(0, 1) == trial_seed(0, 1)
    # a random study's trial n takes the same point whatever the trials before it (a queued one, say)
    study = open_study("queued", None, "minimize", make_sampler("random", 3), {})
    study.enqueue_trial({"a": 0.5, "b": 0.5})
    asked = [study.ask(CONTINUOUS.distributions) for _ in range(3)]
    alone = open_study("alone", None, "minimize", make_sampler("random", 3), {})
    unqueued = [alone.ask(CONTINUOUS.distributions) for _ in range(3)]
    assert asked[0].params == {"a": 0.5, "b": 0.5}
    assert [t.params for t in asked[1:]] == [t.params for t in unqueued[1:]]


def test_the_fixed_config_leaves_out_searched_and_ignored_keys() -> None:
    job = {"seed": 0, "tracking": {"uri": "sqlite:///x.db", "experiment": "e"},
           "trainer": {"steps": 200, "progress": True, "progress_every": 1},
           "model": {"name": "elman", "hidden_size": 16}, "optimizer": {"lr": 0.1, "name": "adam"}}
    fixed = fixed_config(job, ["optimizer.lr", "model", "tracking", "trainer.progress"])
    # "model" drops the subtree of a searched group; "trainer.progress" is no prefix of trainer.progress_every
    assert fixed == {"optimizer.name": "adam", "seed": 0, "trainer.progress_every": 1, "trainer.steps": 200}
    assert fixed_changes(fixed, {**fixed, "trainer.steps": 1500, "optimizer.lr": 0.01}) == (
        "optimizer.lr (not fixed in the study, 0.01 now), trainer.steps (200 in the study, 1500 now)")
    assert fixed_changes(fixed, dict(fixed)) == ""


def test_a_search_without_a_study_name_has_one_study_per_fixed_config() -> None:
    fixed = {"seed": 0, "task.name": "adding", "trainer.steps": 200}
    name = default_study_name("train", fixed)
    assert name.startswith("train-") and len(name) == len("train-") + 6 and int(name[6:], 16) >= 0
    assert default_study_name("train", dict(reversed(fixed.items()))) == name  # the same config, any order
    assert default_study_name("train", {**fixed, "trainer.steps": 150}) != name
    assert default_study_name("rnn_vs_arma", fixed) == f"rnn_vs_arma-{name[6:]}"


@pytest.mark.slow  # the default suite's 10-minute budget; its fast twin stays there
def test_the_same_command_grows_its_default_study_and_another_fixed_config_gets_its_own(
        tmp_path: Path, tracking_settings) -> None:
    lr = "optimizer.lr=tag(log,interval(1e-3,1e-1))"
    default = ["-m", "hydra/sweeper=optuna", *LINEAR_REVERSAL, lr, "hydra.sweeper.n_jobs=1"]
    storage = default_storage(tracking_settings)
    first = app(tmp_path, tracking_settings, *default, "hydra.sweeper.n_trials=1")
    assert first.returncode == 0, first.stderr
    (name,) = optuna.get_all_study_names(storage)
    assert name.startswith("train-") and f"study {name} (new): " in first.stdout
    again = app(tmp_path, tracking_settings, *default, "hydra.sweeper.n_trials=2")
    assert again.returncode == 0, again.stderr
    # the start line and the parent's tag count the same trials: those the study held before this invocation
    assert f"study {name} (continued: 1 earlier trial): " in again.stdout
    again_parent = max(parent_and_children(tracking_settings)[0], key=lambda p: p.info.start_time)
    assert again_parent.data.tags["optuna.trials_before"] == "1"
    assert len(study_of(tracking_settings, name).trials) == 2
    # another budget: a study of its own (before: every search without a name shared 'train' and this one
    # was refused)
    other = app(tmp_path, tracking_settings, *default, "hydra.sweeper.n_trials=1", "trainer.steps=9")
    assert other.returncode == 0, other.stderr
    (other_name,) = set(optuna.get_all_study_names(storage)) - {name}
    assert f"study {other_name} (new): " in other.stdout
    assert len(study_of(tracking_settings, other_name).trials) == 1
    # a study named on the command line still refuses another fixed config
    refused = app(tmp_path, tracking_settings, *default, f"hydra.sweeper.study_name={name}",
                  "trainer.steps=9")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"config error: hydra.sweeper.study_name: study {name!r} in {storage} ran its trials with another "
        "fixed config: trainer.steps (8 in the study, 9 now); name a new study for these settings "
        "(hydra.sweeper.study_name=<new name>) or use the study's values")
    assert len(study_of(tracking_settings, name).trials) == 2 and len(runs_of(tracking_settings)) == 6


def test_a_search_whose_study_holds_its_trials_already_creates_no_run(tmp_path: Path,
                                                                     tracking_settings) -> None:
    wanted = ["optimizer.lr=choice(0.01,0.02)", "hydra.sweeper.n_trials=2"]
    assert search(tmp_path, tracking_settings, *wanted).returncode == 0
    runs = {run.info.run_id for run in runs_of(tracking_settings)}
    again = search(tmp_path, tracking_settings, *wanted)
    assert again.returncode == 0, again.stderr
    # before: an empty FINISHED sweep parent, 'sweep <id>: 0 jobs, 0 runs (none tracked)'
    assert {run.info.run_id for run in runs_of(tracking_settings)} == runs
    best = study_of(tracking_settings).best_trial
    (best_run,) = best.user_attrs["mlflow_run_ids"]
    run = MlflowClient(tracking_settings.tracking_uri).get_run(best_run)
    parent = run.data.tags["mlflow.parentRunId"]
    assert again.stdout.strip().splitlines()[-1] == (
        "study s already holds the 2 trials wanted (2 complete): nothing to run, no run created; raise "
        f"hydra.sweeper.n_trials above 2 to grow it; best trial {best.number} (value {best.value:.6g}): run "
        f"{best_run} under sweep parent {parent}, http://127.0.0.1:5000/#/experiments/"
        f"{run.info.experiment_id}/runs/{parent}?workflowType=machine_learning")
    assert len(list((tmp_path / "mlruns" / "hydra" / "multiruns").iterdir())) == 1  # the first one's alone


def test_a_trial_s_run_name_ends_with_its_number_once() -> None:
    assert trial_run_name("adding-elman-s0", 3) == "adding-elman-s0-t3"
    assert trial_run_name("adding-elman-s0-t3", 3) == "adding-elman-s0-t3"
    assert trial_run_name("adding-elman-s0", None) == "adding-elman-s0"


def test_search_goes_on_past_diverging_trials_and_describes_the_best_on_the_parent(tmp_path: Path,
                                                                                   tracking_settings) -> None:
    done = search(tmp_path, tracking_settings, "optimizer.lr=choice(1e6,0.01)", "hydra.sweeper.n_trials=4",
                  "hydra.sweeper.sampler=random", "hydra/launcher=joblib")
    assert done.returncode == 0, done.stderr
    assert "A new study created" not in done.stderr  # Optuna's INFO line on a fresh study file
    study = study_of(tracking_settings)
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and "FAIL" in states and "COMPLETE" in states
    for trial in study.trials:
        assert (trial.params["optimizer.lr"] == 1e6) == (trial.state.name == "FAIL")
    (parent,), children = parent_and_children(tracking_settings)
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs"] == 4
    by_trial = {int(run.data.tags["optuna.trial"]): run for run in children}
    assert sorted(by_trial) == [0, 1, 2, 3]
    for number, run in by_trial.items():
        trial = study.trials[number]
        # task, model, seed and the trial number; the sampled value is a param (before: 'reversal-lr1000000.0-
        # linear-s0-t0', a continuous one with all its digits)
        assert run.info.run_name == f"reversal-linear-s0-t{number}"
        assert run.data.tags["optuna.state"] == trial.state.name
        assert float(run.data.params["optimizer.lr"]) == trial.params["optimizer.lr"]
        assert trial.user_attrs["mlflow_run_ids"] == [run.info.run_id]
        if trial.state.name == "COMPLETE":
            assert float(run.data.tags["optuna.value"]) == trial.value == run.data.metrics["objective"]
    note = parent.data.tags["mlflow.note.content"]
    best = study.best_trial
    assert f"Best trial **#{best.number}**" in note and "Top " in note
    assert parent.data.metrics["best_value"] == best.value
    artifacts = {a.path for a in MlflowClient(tracking_settings.tracking_uri).list_artifacts(
        parent.info.run_id, "search")}
    assert artifacts == {"search/optimization_history.png"}  # one distinct complete setting: no importances
    results = next((tmp_path / "mlruns" / "hydra" / "multiruns").glob("*/optimization_results.yaml"))
    assert f"best_trial: {best.number}" in results.read_text()


def test_a_study_whose_every_trial_fails_ends_with_one_line(tmp_path: Path, tracking_settings) -> None:
    done = search(tmp_path, tracking_settings, "optimizer.lr=choice(1e6,1e7)", "hydra.sweeper.n_trials=2")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "search error: all 2 trials of study 's' failed (diverged or raised); see the failed child runs or "
        "the log above")
    (parent,), children = parent_and_children(tracking_settings)
    assert parent.info.status == "FAILED" and len(children) == 2
    assert "No trial completed" in parent.data.tags["mlflow.note.content"]


@pytest.mark.parametrize(("args", "message"), [
    (["hydra.sweeper.sampler=grid", "seed=choice(0,1)"],
     "hydra.sweeper.sampler must be one of ['tpe', 'random', 'qmc'], got 'grid'"),
    (["hydra.sweeper.n_trials=0", "seed=choice(0,1)"],
     "hydra.sweeper.n_trials must be an integer >= 1, got 0"),
    (["+hydra.sweeper.trials=3", "seed=choice(0,1)"],
     "hydra.sweeper: got an unexpected keyword argument 'trials'"),
    (["hydra.sweeper.seed=-1", "seed=choice(0,1)"],
     "hydra.sweeper.seed must be null or an integer in [0, 2**32), got -1"),
    (["hydra.sweeper.ignored_keys=tracking", "seed=choice(0,1)"],
     "hydra.sweeper.ignored_keys must be a list of config keys, got 'tracking'"),
    ([], "hydra.sweeper.params: nothing to search; give at least one choice(), range() or interval() "
         "(a preset of conf/hparams_search, or key=choice(...) on the command line)"),
])
def test_bad_search_settings_stop_with_one_line(tmp_path: Path, tracking_settings, args: list[str],
                                                message: str) -> None:
    done = search(tmp_path, tracking_settings, *args)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"config error: {message}"
    assert runs_of(tracking_settings) == []          # refused before the sweep's parent run exists
    assert not Path(default_storage(tracking_settings).removeprefix("sqlite:///")).exists()


@pytest.mark.slow  # the default suite's 10-minute budget; its fast twin stays there
def test_two_processes_share_one_sqlite_study_and_a_resume_completes_it(tmp_path: Path,
                                                                         tracking_settings) -> None:
    storage = f"sqlite:///{tmp_path / 'shared' / 'study.db'}"
    common = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=shared",
              f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_jobs=1", *LINEAR_REVERSAL,
              "optimizer.lr=tag(log,interval(1e-3,1e-1))"]
    processes = [subprocess.Popen(app_command(tracking_settings, *common, "hydra.sweeper.n_trials=5",
                                              f"hydra.sweep.dir={tmp_path / f'sweep{k}'}"),
                                  env=app_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for k in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    parents, children = parent_and_children(tracking_settings)
    assert len(parents) == 2 and len(children) == 5 and sum(p.data.metrics["jobs"] for p in parents) == 5
    resumed = app(tmp_path, tracking_settings, *common, "hydra.sweeper.n_trials=7")
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 7 and all(t.state.name == "COMPLETE" for t in study.trials)
    # neither the second process nor the resumption asked a learning rate again (before: the seeded
    # sampler of every process started at the same draw)
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 7
    parents, children = parent_and_children(tracking_settings)
    assert len(children) == 7
    resumed_parent = max(parents, key=lambda p: p.info.start_time)
    client = MlflowClient(tracking_settings.tracking_uri)
    figures = client.list_artifacts(resumed_parent.info.run_id, "search")
    assert {a.path for a in figures} == {"search/optimization_history.png", "search/param_importances.png"}


def terminal_run_names(stdout: str) -> list[str]:
    """The run names of the 'run <name> (<id>)' lines the jobs print."""
    return [line.split()[1] for line in stdout.splitlines() if line.startswith("run ")]


def test_an_interrupted_search_resumes_with_the_cut_trials_first(tmp_path: Path, tracking_settings) -> None:
    common = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=s", "hydra.sweeper.n_trials=3",
              "hydra.sweeper.n_jobs=2", *LINEAR_REVERSAL, "optimizer.lr=tag(log,interval(1e-3,1e-1))",
              # the cut invocation trains long enough to be signalled, its resumption briefly
              "hydra.sweeper.ignored_keys=[tracking,trainer.steps,trainer.eval_interval,"
              "trainer.diagnostics_interval]"]
    stderr, stdout = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with stderr.open("w") as sink, stdout.open("w") as out:
        process = subprocess.Popen(
            app_command(tracking_settings, *common, "trainer.steps=1000000", "trainer.eval_interval=1000",
                        "trainer.diagnostics_interval=0"),
            env=app_env(tmp_path), cwd=tmp_path, stdout=out, stderr=sink)
    signal_when_training(process, tracking_settings, stderr, signum=signal.SIGINT)
    assert process.returncode != 0
    cut_out = stdout.read_text()
    # the basic launcher runs the batch of two one after another: trial 0 was cut, trial 1 never started
    cut, unstarted, *queued = study_of(tracking_settings).trials
    for trial in (cut, unstarted):
        assert trial.state.name == "FAIL" and trial.user_attrs["interrupted"] is True
    assert [(t.state.name, t.user_attrs["retry_of"]) for t in queued] == [("WAITING", 0), ("WAITING", 1)]
    (parent,), (child,) = parent_and_children(tracking_settings)
    assert (parent.info.status, child.info.status) == ("KILLED", "KILLED")
    # named after its trial from the start, and tagged with it although the trial never ended
    assert child.info.run_name == "reversal-linear-s0-t0"
    assert (child.data.tags["optuna.trial"], child.data.tags["optuna.state"]) == ("0", "FAIL")
    assert child.data.tags["optuna.error"].startswith("interrupted: the sweep stopped before this trial")
    # what the stop says is what completes it: the search's command again, not trainer.resume of one trial
    # (which would continue it outside its study), nor trainer.resume_sweep (which a search refuses)
    rerun = ("its search re-runs it: trial 0 is queued again in study s, and the same search command, run "
             "again, runs the study's interrupted trials first (same parameters, as a new trial and run)")
    assert f"run {child.info.run_name} ({child.info.run_id}) stopped at step " in cut_out
    assert f"\n{rerun}\n" in cut_out and "trainer.resume" not in cut_out, cut_out
    assert child.data.tags["mlflow.note.content"].endswith(f"An Optuna trial: {rerun}.")
    assert "trainer.resume" not in child.data.tags["mlflow.note.content"]
    why = "stopped by SIGINT; run the same command again: study s re-runs its interrupted trials first"
    assert parent.data.tags["error"] == f"the sweep stopped before its end ({why})"
    assert f"  the sweep stopped before its end ({why})\n" in cut_out
    # its table shows the sampled value, and the UI line of its parent ends it
    assert "| job | run | optimizer.lr | status | steps | val sequence_accuracy | solved |" in cut_out
    lr = format(cut.params["optimizer.lr"], ".4g")
    assert f"| 0 | {child.info.run_name} | {lr} | killed | " in cut_out
    last = cut_out.splitlines()[-1]
    assert last.startswith("in the MLflow UI: ") and parent.info.run_id in last
    # the harness's own plumbing stays out of the job lines (before: '... ++hydra.job.env_set.HARNESS_OPTUNA_
    # TRIAL=0'), and out of the runs' overrides
    assert "\t#0 : optimizer.lr=" in cut_out + stderr.read_text()
    assert "env_set" not in cut_out + stderr.read_text() + child.data.tags["overrides"]

    resumed = app(tmp_path, tracking_settings, *common)
    assert resumed.returncode == 0, resumed.stderr
    # it counts the trials as its parent's tag optuna.trials_before does (below), and says which it re-runs
    # (before: "continued, 4 trials", the two queued again counted as earlier ones)
    assert "study s (continued: 2 earlier trials, 2 of them interrupted and queued again to run first): " \
        in resumed.stdout
    trials = study_of(tracking_settings).trials
    retried, new = trials[2:4], trials[4]
    assert [t.params for t in retried] == [cut.params, unstarted.params]
    assert all(t.state.name == "COMPLETE" for t in trials[2:])
    assert new.params not in (cut.params, unstarted.params)  # before: the resumed sampler asked trial 0's
    _, children = parent_and_children(tracking_settings)
    names = {run.data.tags["optuna.trial"]: run.info.run_name for run in children}
    assert sorted(names) == ["0", "2", "3", "4"]
    assert all(name.endswith(f"-linear-s0-t{number}") for number, name in names.items())
    # the terminal names each run as MLflow does (before: without the trial number)
    assert terminal_run_names(resumed.stdout) == [names["2"], names["3"], names["4"]]
    # the completed search ends as a grid sweep does: its account, its table of runs, its parent's UI line;
    # the table and the parent say they show this invocation's trials, the study's two earlier ones elsewhere
    resumed_parent = max(parent_and_children(tracking_settings)[0], key=lambda p: p.info.start_time)
    lines = resumed.stdout.splitlines()
    report = lines.index(f"sweep {resumed_parent.info.run_id}: 3 jobs, 3 runs (3 finished)")
    assert lines[report + 1] == (
        "Runs of this invocation's trials of study s (the study held 2 earlier trials, their runs under "
        "earlier sweep parents; the best trial and the parent run's top trials rank them all):")
    assert lines[report + 3] == ("| job | run | optimizer.lr | status | steps | val sequence_accuracy | "
                                 "solved |")
    assert [line.split(" | ")[1] for line in lines[report + 5:-1]] == [names["2"], names["3"], names["4"]]
    assert lines[-1].startswith("in the MLflow UI: ") and resumed_parent.info.run_id in lines[-1]
    note = resumed_parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Optuna study `s`**, continued: it held 2 trials before this invocation")
    assert resumed_parent.data.tags["optuna.trials_before"] == "2"


@pytest.mark.slow  # ~19 s; the fixed config's filtering and message run by default
def test_a_study_refuses_another_fixed_config_before_any_run(tmp_path: Path, tracking_settings) -> None:
    lr = "optimizer.lr=tag(log,interval(1e-3,1e-1))"
    done = search(tmp_path, tracking_settings, lr, "hydra.sweeper.n_trials=1")
    assert done.returncode == 0, done.stderr
    where = default_storage(tracking_settings)
    for args, message in [
        (["trainer.steps=9", lr],
         "ran its trials with another fixed config: trainer.steps (8 in the study, 9 now); name a new study "
         "for these settings (hydra.sweeper.study_name=<new name>) or use the study's values"),
        (["optimizer.lr=0.01", "model.init=choice(glorot,orthogonal)"],  # a key searched and one fixed now
         "ran its trials with another fixed config: model.init ('glorot' in the study, not fixed now), "
         "optimizer.lr (not fixed in the study, 0.01 now); name a new study"),
    ]:
        refused = search(tmp_path, tracking_settings, *args, "hydra.sweeper.n_trials=2")
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1].startswith(
            f"config error: hydra.sweeper.study_name: study 's' in {where} {message}")
    refused = search(tmp_path, tracking_settings, lr, "hydra.sweeper.direction=minimize")
    assert refused.stderr.strip().splitlines()[-1] == (
        f"config error: hydra.sweeper.direction: study 's' in {where} was created to maximize, not minimize; "
        "choose another study_name")
    assert len(study_of(tracking_settings).trials) == 1 and len(runs_of(tracking_settings)) == 2
    # what changes no number may differ: tracking (another experiment), the progress bar, the sweeper's budget
    grown = app(tmp_path, tracking_settings, "-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=s",
                *LINEAR_REVERSAL, lr, "trainer.progress=false", "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=1", experiment="other")
    assert grown.returncode == 0, grown.stderr
    assert len(study_of(tracking_settings).trials) == 2 and len(runs_of(tracking_settings, "other")) == 2


@pytest.mark.slow  # ~23 s
def test_a_search_asks_and_scores_the_same_trials_with_either_launcher(tmp_path: Path,
                                                                        tracking_settings) -> None:
    settings = ["optimizer.lr=tag(log,interval(1e-3,1e-1))", "hydra.sweeper.n_trials=3",
                "hydra.sweeper.n_jobs=2", "+hydra.sweeper.sampler_options.n_startup_trials=1"]
    common = ["-m", "hydra/sweeper=optuna", *LINEAR_REVERSAL, *settings]
    basic = app(tmp_path, tracking_settings, *common, "hydra.sweeper.study_name=basic")
    joblib = app(tmp_path, tracking_settings, *common, "hydra.sweeper.study_name=joblib",
                 "hydra/launcher=joblib")
    assert basic.returncode == 0 and joblib.returncode == 0, basic.stderr + joblib.stderr
    by_launcher = [[(t.params, t.value) for t in study_of(tracking_settings, name).trials]
                   for name in ("basic", "joblib")]
    assert by_launcher[0] == by_launcher[1] and len(by_launcher[0]) == 3  # trials 1, 2 by TPE
    assert sorted(terminal_run_names(joblib.stdout)) == sorted(
        run.info.run_name for run in parent_and_children(tracking_settings)[1]
        if run.data.tags["optuna.study"] == "joblib")


@pytest.mark.slow
def test_the_comparison_search_minimises_the_rnn_cells_validation_mse(tmp_path: Path,
                                                                       tracking_settings) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "rnn_vs_arma.py"), "-m", "hparams_search=rnn_forecaster",
         "hydra.sweeper.n_trials=2", "rnn.steps=20", "length=300", "seed=[0]",
         f"tracking.uri={tracking_settings.tracking_uri}",
         f"tracking.artifact_root={tracking_settings.artifact_root}", "tracking.experiment=test"],
        capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="rnn_forecaster", storage=default_storage(tracking_settings))
    _, children = parent_and_children(tracking_settings)
    for trial in study.trials:
        (run,) = [r for r in children if r.data.tags["optuna.trial"] == str(trial.number)]
        assert trial.value == run.data.metrics["best_val_mse"]  # one RNN cell per trial


@pytest.mark.slow
def test_a_search_on_a_loopback_tracking_server(tmp_path: Path, template_store: Path) -> None:
    import shutil

    from harness.tracking.server import local_server

    db = tmp_path / "server.db"
    shutil.copyfile(template_store, db)
    with local_server(f"sqlite:///{db}", tmp_path / "server-artifacts") as server:
        settings = TrackingSettings(mode="server", uri=server.uri, experiment="test")
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        done = subprocess.run(
            server_app_command(server.uri, "-m", "hydra/sweeper=optuna", f"hydra.sweeper.storage={storage}",
                               "hydra.sweeper.n_trials=2", *LINEAR_REVERSAL, "optimizer.lr=choice(0.01,0.02)",
                               experiment="test"),
            capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        (parent,), children = parent_and_children(settings)
        assert sorted(run.data.tags["optuna.trial"] for run in children) == ["0", "1"]
        assert "Best trial" in parent.data.tags["mlflow.note.content"]
        assert {a.path for a in MlflowClient(server.uri).list_artifacts(parent.info.run_id, "search")} >= {
            "search/optimization_history.png"}


def test_a_search_s_swept_keys_are_its_searched_keys_and_its_trials_file_names_each_job_s_trial(
        tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig

    from harness.search import current_search, write_trials
    from harness.tracking.callback import swept_keys

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", ["hparams_search=adding_elman"], return_hydra_config=True)
    OmegaConf.set_struct(config, False)
    config.hydra.overrides.task = ["hparams_search=adding_elman", "task.length=10,20"]  # a -m command line
    # the command line's swept key first, then the preset's searched ones: the table's columns
    assert swept_keys(config) == ["task.length", "optimizer.lr", "model.hidden_size", "optimizer.clip_norm",
                                  "model.init"]
    write_trials(tmp_path, "adding_elman", {4: 7, 5: 8}, stored=True)
    try:
        # job 6: not one of the search's; a grid sweep run later in the search's sweep dir: no trial either
        for num, sweeper, expected in ((5, None, ("adding_elman", "8", True)), (6, None, None),
                                       (5, "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", None)):
            job = copy.deepcopy(config)
            OmegaConf.set_readonly(job, False)
            job.hydra.mode, job.hydra.job.num, job.hydra.sweep.dir = "MULTIRUN", num, str(tmp_path)
            if sweeper is not None:
                job.hydra.sweeper = {"_target_": sweeper}
            HydraConfig.instance().set_config(job)
            assert current_search() == expected
    finally:
        HydraConfig.instance().cfg = None  # no job's config left for the next test


def test_a_stopped_trial_of_a_study_kept_in_memory_is_not_promised_a_rerun() -> None:
    from harness.run_report import search_rerun

    stored = search_rerun("adding_elman", "3", stored=True)
    assert "trial 3 is queued again in study adding_elman" in stored
    in_memory = search_rerun("adding_elman", "3", stored=False)
    assert "queued" not in in_memory and "kept in memory only (tracking=off)" in in_memory
