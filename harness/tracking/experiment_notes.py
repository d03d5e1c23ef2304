"""What the MLflow UI reads on an experiment the harness creates: its kind and its description.

The UI chooses between its GenAI view (traces) and its training view (runs, charts) from the experiment
tag ``mlflow.experimentKind``; every harness experiment holds training runs: ``custom_model_development``.
The tag ``mlflow.note.content`` is rendered as Markdown on the experiment's page: it says what the runs are
and how to read them. Its first sentence is plain text: the experiments list shows its beginning unrendered.
"""

from __future__ import annotations

KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"

_DESCRIPTIONS = {
    "train": """\
Training runs of experiments/train.py: one recurrent network trained on one synthetic sequence
task. A run is named `<task>-<model>-s<seed>`; within a sweep (`-m`) the name also carries the swept values
(e.g. `adding-T20-lstm-s0`; an Optuna trial's ends with its number, `adding-elman-s0-t3`) and every job is a
child of the sweep's parent run `<time> train-sweep <swept keys>`.

How to read a run: `val/<metric>` is the task metric on the fixed validation set (its name is the tag
`metric_name`, its chance level the tag `chance_level`: what a predictor that ignores the inputs scores);
`solved` is 1 when the task's own rule is met (the run's description says the rule). `train/*` are per-step
loss and gradient norms; `grad_flow/*` the gradient-flow diagnostics, one chart per report:
`grad_flow/step_norm/step_<s>` is ||dL/dh_t|| against t at training step s, `grad_flow/lag_norm/step_<s>`
(Elman networks) ||dh_T/dh_k|| against the lag; their `_log10` twins turn exponential decay into a straight
line. The weights are `model.npz`.""",
    "rnn_vs_arma": """\
The RNN-vs-ARMA comparison (python experiments/rnn_vs_arma.py): on every series and seed an ARMA model
(order by AIC) and recurrent networks forecast the same test points 1..H steps ahead from every origin of a
rolling-origin backtest, with prediction intervals.

A parent run holds the summary table (in its description, and as `table.md` / `table.csv`) and the figures;
each child `<series>-<model>-s<seed>` holds one cell's scores: `mse`, `mae`, `nmse`, `oracle_ratio` (MSE over
the innovation variance: 1 is the best any forecaster can do, blank where the series has no known optimum)
and, for RNNs, `dm_stat` / `dm_pvalue`, the Diebold-Mariano test against the ARMA forecasts (negative: the
RNN's squared errors are smaller), and `coverage<level>` / `winkler<level>` for the prediction intervals;
these are the one-step scores, `<score>.h<h>` the h-step ones and `<score>.h<h>.<window>` those of a named
window of the test part. `forecasts.csv` holds every forecast and interval bound.
`python experiments/rnn_vs_arma.py rebuild=<parent run id>` prints the table again from this store alone.""",
    "gradient_flow": """\
Gradient-flow studies (python experiments/gradient_flow.py study=closed_form|spectral|remedies):
measured backpropagated gradients held against the theory of vanishing and exploding gradients.

A parent run per study holds the table and the findings (in its description, and as `table.md`,
`findings.txt`) and the figures; each child is one cell of the study's grid (tags `cell.<name>`), opened while
it computes. `python experiments/gradient_flow.py study=<study> rebuild=<parent run id>` writes the table and
figures again from this store alone.""",
}

_GENERIC = """\
Runs of the harness project (recurrent networks in NumPy). Each run's description says what it is; its
parameters are the flattened config, its tags the task, model and seed.""".replace("\n", " ")


def experiment_tags(name: str, app: str | None = None) -> dict[str, str]:
    """The tags an experiment named name gets: its kind and its Markdown description, that of the app
    (``train``, ``rnn_vs_arma``, ``gradient_flow``) whose runs it holds, whatever its name (a preset's
    ``xor_note001``, a user's ``tracking.experiment=myexp``). Without an app (an experiment the UI tags, made
    elsewhere) an app's own experiment name still picks that app's description."""
    return {KIND_TAG: KIND, NOTE_TAG: _DESCRIPTIONS.get(app or "") or _DESCRIPTIONS.get(name, _GENERIC)}
