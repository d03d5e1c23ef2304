"""harness.tracking.sweep_results: a grid sweep's table of its training runs (MLflow's own Run entities)."""

from __future__ import annotations

from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag

from harness.tracking.sweep_results import MAX_ROWS, results_table


def _run(job: int, name: str, status: str = "FINISHED", metric: str = "mse", overrides: str = "",
         metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> Run:
    info = RunInfo(run_id=f"id{job}", experiment_id="1", user_id="u", status=status, start_time=job,
                   end_time=None, lifecycle_stage="active", run_name=name)
    tags = {"job_num": str(job), "overrides": overrides, "metric_name": metric, **(tags or {})}
    data = RunData(metrics=[Metric(key, value, 0, 0) for key, value in (metrics or {}).items()],
                   tags=[RunTag(key, value) for key, value in tags.items()])
    return Run(info, data)


def test_rows_in_job_order_with_swept_values_and_one_metric_column():
    runs = [_run(1, "b", overrides="model=lstm seed=0", metrics={"objective": 0.5, "steps_done": 8,
                                                                  "solved": 0.0}),
            _run(0, "a", overrides="model=elman seed=0", metrics={"objective": 0.01, "steps_done": 8,
                                                                   "solved": 1.0}),
            _run(2, "c", status="KILLED", overrides="model=gru seed=0", metrics={"val/mse": 0.25})]
    assert results_table(runs, ["model"]).splitlines() == [
        "| job | run | model | status | steps | val mse | solved |", "|---|---|---|---|---|---|---|",
        "| 0 | a | elman | finished | 8 | 0.01 | yes |",
        "| 1 | b | lstm | finished | 8 | 0.5 | no |",
        "| 2 | c | gru | killed |  | 0.25 |  |",  # stopped: its last validation, no end metrics
    ]


def test_mixed_metrics_get_their_own_column_and_other_children_no_table():
    runs = [_run(0, "a", overrides="task=adding", metrics={"objective": 0.01}),
            _run(1, "b", metric="accuracy", overrides="task=xor", metrics={"objective": 0.9})]
    assert results_table(runs, ["task"]).splitlines()[:3] == [
        "| job | run | task | status | steps | metric | value | solved |", "|" + "---|" * 8,
        "| 0 | a | adding | finished |  | mse | 0.01 |  |"]
    cell = _run(0, "cell", metrics={"mse": 1.0})
    cell.data.tags.pop("metric_name")
    assert results_table([cell], []) is None  # a study's cell runs: the study writes its own table


def test_a_superseded_attempt_is_left_out_and_a_long_sweep_says_how_many_rows_it_cut():
    runs = [_run(job, f"r{job}", metrics={"objective": float(job)}) for job in range(MAX_ROWS + 3)]
    runs.append(_run(0, "torn", status="KILLED", tags={"harness.rerun": "torn down"}))
    lines = results_table(runs, []).splitlines()
    assert len([line for line in lines if line.startswith("| ")]) == 1 + MAX_ROWS
    assert "torn" not in "\n".join(lines)
    assert lines[-1].startswith("… and 3 more runs (`python -m harness.report")


def test_a_sampled_value_shows_four_significant_digits_and_a_typed_one_as_typed():
    # an integer of many digits (a seed) as typed too: it showed as 2.026e+07
    runs = [_run(0, "t0", overrides="optimizer.lr=0.011781448719376511 model.init=glorot task.length=50 "
                                    "seed=20261201", metrics={"objective": 0.5}),
            _run(1, "t1", overrides="optimizer.lr=1e-3 model.init=orthogonal task.length=25 seed=20261202",
                 metrics={"objective": 0.5})]
    rows = results_table(runs, ["optimizer.lr", "model.init", "task.length", "seed"]).splitlines()[2:]
    assert [row.split(" | ")[2:6] for row in rows] == [["0.01178", "glorot", "50", "20261201"],
                                                       ["1e-3", "orthogonal", "25", "20261202"]]
