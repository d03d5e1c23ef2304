"""A run's pyfunc model as an MLflow 3 LoggedModel: what ``mlflow.pyfunc.log_model`` records, through an
explicit client.

The fluent ``log_model`` cannot serve here: it has no ``run_id`` (it logs to the active run, which the
harness never has), and ``Model.log(run_id=...)`` without an active run resolves the tracking URI and the
experiment from process-wide state, which put the model in experiment 0 ("Default") on MLflow 3.17, where
``runs:/<run id>/model`` (which looks in the run's own experiment) does not find it. So, as Model.log does:
create the LoggedModel (name ``model``, source run, the run's params and source tags, the description as
its ``mlflow.note.content``, which the UI shows as the model's description), stamp the saved MLmodel with its
ids, upload the files to the model's own artifact location (only there: ``runs:/<run id>/model`` resolves
to it), link it as the run's output at step, link the run's metrics of that step, and mark it READY
(deleted if anything on the way fails: ``runs:/<run id>/model`` takes the run's newest model whatever its
status, so a FAILED one, holding part of the files or none, would hide the run's earlier READY model). A
run logged again (a finished run resumed and trained on) keeps one model: the older ones of the run are
deleted once the new one is READY. A process killed outright (SIGKILL) mid-upload runs no handler and
leaves its model PENDING; whoever ends its run for the lost process (harness.tracking.orphans.end_orphans)
deletes it (delete_pending_models).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import MAX_METRICS_PER_BATCH

NAME = "model"


def log_logged_model(client: Any, run_id: str, folder: Path, description: str, step: int = 0) -> None:
    """Log the pyfunc model directory folder as run_id's LoggedModel ``model``, produced at step."""
    run = client.get_run(run_id)
    # the context tags MLflow gives a model it creates (the UI's "Logged from"): the run's, read at its start
    context = {key: value for key, value in run.data.tags.items()
               if key.startswith("mlflow.source.") or key == "mlflow.user"}
    model = client.create_logged_model(run.info.experiment_id, name=NAME, source_run_id=run_id,
                                       params=run.data.params, tags={**context, NOTE_TAG: description})
    try:
        _stamp(folder, run_id, model)
        client.log_model_artifacts(model.model_id, str(folder))
        _link_to_run(client, run, model.model_id, step)
        client.finalize_logged_model(model.model_id, "READY")
    except BaseException:  # a signal's exception too: no half-made model is left
        with contextlib.suppress(Exception):
            client.delete_logged_model(model.model_id)
        raise
    delete_models(client, run, keep=model.model_id)


def _stamp(folder: Path, run_id: str, model: Any) -> None:
    """Write the LoggedModel's ids into the saved MLmodel, as Model.log saves them."""
    from mlflow.models import Model

    path = folder / "MLmodel"
    info = Model.load(str(path))
    info.run_id, info.model_id, info.model_uuid = run_id, model.model_id, model.model_id
    info.artifact_path = model.artifact_location
    info.save(str(path))


def _link_to_run(client: Any, run: Any, model_id: str, step: int) -> None:
    """The model as the run's output at step, and the run's metrics whose latest value is of that step as
    the model's (Model.log links the values of its step, reading every metric's whole history; the latest
    values come with the run)."""
    from mlflow.entities import LoggedModelOutput, Metric

    run_id = run.info.run_id
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
    metrics = [Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, run_id=run_id)
               for m in run.data._metric_objs if m.step == step]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])


def delete_models(client: Any, run: Any, keep: str | None = None) -> None:
    """Delete the LoggedModels named NAME of run (an mlflow Run) but keep: the older ones once a new one is
    READY, or all of them with the run itself, so that the experiment's Models tab lists no model of a
    deleted run."""
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"name = '{NAME}' AND source_run_id = '{run.info.run_id}'")
    for model in models:
        if model.model_id != keep:
            client.delete_logged_model(model.model_id)


def delete_run_and_models(client: Any, run: Any) -> None:
    """Delete run (an mlflow Run) and its LoggedModels: a half-written child run that a resumed study or a
    continued sweep computes again."""
    client.delete_run(run.info.run_id)
    delete_models(client, run)


def delete_pending_models(client: Any, run: Any) -> None:
    """Delete the LoggedModels of run (an mlflow Run whose process is gone) that are still PENDING: an upload
    that process had under way when it was killed outright, which no one will finish (see the module
    docstring for why not FAILED)."""
    from mlflow.entities import LoggedModelStatus

    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    for model in models:
        if model.status == LoggedModelStatus.PENDING:
            client.delete_logged_model(model.model_id)
