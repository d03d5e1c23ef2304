"""What the MLflow UI reads from an experiment: every experiment the harness opens carries its kind (the UI's
training view, not its GenAI view) and a Markdown description; real MLflow on a temporary SQLite store."""

from __future__ import annotations

from dataclasses import replace

from mlflow import MlflowClient

from harness.tracking import ensure_store
from harness.tracking.experiment_notes import KIND, KIND_TAG, NOTE_TAG, experiment_tags


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
