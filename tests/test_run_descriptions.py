"""Run descriptions within MLflow's 8,000 characters (harness.tracking.loggers.fit_note): MLflow cuts a longer
one mid-row and says so only in a log line, so the harness compacts its tables, then keeps whole rows and says
how many it left out; the comparison's parent shows its one-step rows when the whole table cannot fit. On a
real MLflow store (temporary SQLite)."""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient

from harness.tracking import open_run
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import MAX_TAG_LENGTH, compact_tables, fit_note


def table(rows: int, width: int = 40) -> str:
    """A padded Markdown table (as pandas' to_markdown writes) of rows rows."""
    frame = pd.DataFrame({"name": [f"row {k}" for k in range(rows)], "value": ["x" * width] * rows})
    return frame.to_markdown(index=False)


def test_a_description_that_fits_is_kept_as_it_is() -> None:
    text = f"head\n\n{table(20)}\n\ntail"
    assert fit_note(text) == text


def test_a_long_table_is_compacted_first_then_cut_at_a_row_with_a_notice() -> None:
    padded = f"**head**\n\n{table(40, width=180)}\n\n- legend\n\ntail"
    assert len(padded) > MAX_TAG_LENGTH >= len(compact_tables(padded))
    assert fit_note(padded) == compact_tables(padded)
    assert compact_tables(table(1)).splitlines() == ["|name|value|", "|:---|:---|", f"|row 0|{'x' * 40}|"]

    long = f"**head**\n\n{table(400)}\n\n- legend\n\ntail"
    fitted = fit_note(long, where="every row is in the artifact `table.md`")
    lines = fitted.splitlines()
    assert len(fitted) <= MAX_TAG_LENGTH and lines[:4] == ["**head**", "", "|name|value|", "|:---|:---|"]
    shown = [line for line in lines if line.startswith("|row ")]
    assert shown == [f"|row {k}|{'x' * 40}|" for k in range(len(shown))] and 100 < len(shown) < 400
    notice = (f"*{400 - len(shown)} of 400 rows not shown: MLflow keeps 8,000 characters of a description; "
              f"every row is in the artifact `table.md`.*")
    assert lines[-6:] == ["", notice, "", "- legend", "", "tail"]
    # the rows kept are as many as fit: one more would not
    assert len(fitted) + len(f"|row {len(shown)}|{'x' * 40}|") + 1 > MAX_TAG_LENGTH


def test_a_long_text_without_a_table_keeps_whole_lines() -> None:
    fitted = fit_note("\n".join(f"line {k} " + "y" * 70 for k in range(200)))
    assert len(fitted) <= MAX_TAG_LENGTH
    assert fitted.endswith("\n\n*(cut here: MLflow keeps 8,000 characters of a description)*")
    assert all(line.startswith("line ") and line.endswith("y" * 70) for line in fitted.splitlines()[:-2])


def test_a_run_description_arrives_in_the_store_fitted(tracking_settings) -> None:
    text = f"**head**\n\n{table(400)}\n\ntail"
    with open_run(tracking_settings, run_name="long") as log:
        log.set_tags({NOTE_TAG: text, "other": "z" * 9000})
        run_id = log.run_id
    tags = MlflowClient(tracking_settings.tracking_uri).get_run(run_id).data.tags
    assert tags[NOTE_TAG] == fit_note(text) and tags[NOTE_TAG].endswith("description.*\n\ntail")
    assert tags["other"] == "z" * MAX_TAG_LENGTH
