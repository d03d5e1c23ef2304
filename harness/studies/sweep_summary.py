"""SweepSummaryCallback: a study app's `-m` sweep ends with the table its sequential run prints.

Each job of such a sweep logs its cells as children of the sweep's parent run (harness.tracking's
SweepCallback); once every job is done, this callback reads them back from the store and hands them to the
study's summary function, which prints the table (with the command that prints it again) and puts it on the
parent run. Listed after the `sweep` callback in the app's config: Hydra ends callbacks in reverse order, so
the parent is still open when the table is written to it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from harness.tracking.runs import PARENT_FILE


class SweepSummaryCallback(Callback):
    """summary: dotted path of ``function(cfg: dict, parent_run_id: str)``, cfg the sweep's composed config
    without its ``hydra`` node (e.g. ``harness.studies.rnn_vs_arma.summarize_sweep``)."""

    def __init__(self, summary: str) -> None:
        self.summary = summary

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent_file = Path(config.hydra.sweep.dir) / PARENT_FILE
        if not parent_file.is_file():  # tracking off, or the sweep never started
            return
        cfg = OmegaConf.to_container(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]),
                                     resolve=True)
        try:
            get_method(self.summary)(cfg, parent_file.read_text().strip())
        except ValueError as error:  # a study's input errors: one line, the sweep's own report follows
            print(f"sweep summary: {error}", file=sys.stderr)
