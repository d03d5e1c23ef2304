"""What the MLflow UI reads from an experiment: every experiment the harness opens carries its kind (the UI's
training view, not its GenAI view) and a Markdown description; real MLflow on a temporary SQLite store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf
from test_train_app import TINY, app

from harness.tracking import ensure_store
from harness.tracking.experiment_notes import KIND, KIND_TAG, NOTE_TAG, experiment_tags

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_a_new_experiment_is_tagged_for_the_training_view_with_its_description(tracking_settings):
    settings = replace(tracking_settings, experiment="rnn_vs_arma")
    _, experiment_id = ensure_store(settings)
    tags = MlflowClient(settings.tracking_uri).get_experiment(experiment_id).tags
    assert tags[KIND_TAG] == KIND == "custom_model_development"
    assert tags[NOTE_TAG] == experiment_tags("rnn_vs_arma")[NOTE_TAG]
    assert "Diebold-Mariano" in tags[NOTE_TAG] and "rebuild=" in tags[NOTE_TAG]


def test_an_existing_untagged_experiment_gets_the_tags_and_keeps_a_users_description(tracking_settings):
    client = MlflowClient(tracking_settings.tracking_uri)
    bare = client.create_experiment("made-elsewhere")
    described = client.create_experiment("described", tags={NOTE_TAG: "my own notes"})
    for name in ("made-elsewhere", "described"):
        ensure_store(replace(tracking_settings, experiment=name))
    assert client.get_experiment(bare).tags == experiment_tags("made-elsewhere")
    tags = client.get_experiment(described).tags
    assert tags[KIND_TAG] == KIND and tags[NOTE_TAG] == "my own notes"


def test_each_description_begins_with_plain_text_for_the_experiments_list():
    # the list shows the description's first characters as they are: no Markdown there
    for name in ("train", "rnn_vs_arma", "gradient_flow", "anything-else"):
        first_sentence = experiment_tags(name)[NOTE_TAG].replace(".", ":").split(":")[0]
        assert not set(first_sentence) & set("*`#["), (name, first_sentence)


def _description(settings, experiment: str) -> str:
    return MlflowClient(settings.tracking_uri).get_experiment_by_name(experiment).tags[NOTE_TAG]


def _composed(root: Path, config_name: str, settings, experiment: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(root), version_base=None):
        cfg = compose(config_name=config_name, overrides=[
            f"tracking.uri={settings.uri}", f"tracking.artifact_root={settings.artifact_root}",
            f"tracking.experiment={experiment}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def test_each_app_gives_the_experiment_it_creates_its_own_description_whatever_its_name(tracking_settings):
    from harness.run import run
    from harness.studies import gradient_flow, rnn_vs_arma

    run(_composed(CONF, "config", tracking_settings, "my_training", *TINY, "trainer.progress=false"))
    gradient_flow.run(_composed(CONF, "gradient_flow", tracking_settings, "my_gradients", "study=closed_form",
                                "closed_form.v_f=[0.5]", "closed_form.T=[4]"), echo=lambda _: None)
    rnn_vs_arma.main(_composed(CONF / "comparison", "rnn_vs_arma", tracking_settings, "my_comparison",
                               "series=[ar2]", "model=[arma]", "seed=[0]", "length=300",
                               "models.arma.max_p=1", "models.arma.max_q=0", "backtest=one_step",
                               "progress=false"),
                     echo=lambda _: None)
    for experiment, creator in [("my_training", "train"), ("my_gradients", "gradient_flow"),
                                ("my_comparison", "rnn_vs_arma")]:
        assert _description(tracking_settings, experiment) == experiment_tags(creator)[NOTE_TAG], experiment


def test_a_sweep_gives_the_experiment_it_creates_its_apps_description(tracking_settings, tmp_path):
    # the sweep's parent run creates the experiment (harness.tracking.SweepCallback), before any job
    done = app(tmp_path, tracking_settings, "-m", *TINY, "seed=0", experiment="search_my_training")
    assert done.returncode == 0, done.stderr
    assert _description(tracking_settings, "search_my_training") == experiment_tags("train")[NOTE_TAG]
