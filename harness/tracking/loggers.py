"""The Logger protocol the training loop reports through, and its MLflow and in-memory implementations."""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.redact import end_run, redact
from harness.tracking.writer import BackgroundMetricWriter

if TYPE_CHECKING:
    from harness.tracking.runs import Interrupts
    from harness.tracking.server import OfflineRecord
    from harness.tracking.store import TrackingSettings

# MLflow's limits (mlflow.utils.validation): values longer are truncated, batches larger are refused.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
# A process killed without warning (SIGKILL, out of memory, a power cut) loses what its logger still buffers:
# the buffer is written once it holds flush_every values or is this old, whichever comes first.
FLUSH_INTERVAL_S = 2.0


class Logger(Protocol):
    """What a training loop may call; every call is cheap enough for every step except artifacts. MlflowLogger
    also has log_model(save, step) (a pyfunc model), which callers use on a tracked run (run_id not None)
    only."""

    run_id: str | None
    experiment_id: str | None  # None, as run_id, when untracked
    interrupts: Interrupts | None  # open_run's signal guard (None outside open_run)

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_figure(self, fig: Any, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_dataset(self, name: str, fingerprint: str, arrays: Mapping[str, np.ndarray],
                    context: str = "training", source: str | None = None) -> None: ...
    def flush(self) -> None: ...



def _flat_items(mapping: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flat_items(value, f"{name}.")
        else:
            yield name, value


def flatten_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": str(value)}`` with values cut to MLflow's 6000-character param limit.

    Works on plain dicts and OmegaConf DictConfigs (both are Mappings); lists stay one value (``"[1, 2]"``).
    Credentials in URIs are redacted (harness.tracking.redact), as in every tag and text a logger writes.
    """
    return {key: redact(str(value))[:MAX_PARAM_LENGTH] for key, value in _flat_items(params, "")}


def tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as MLflow stores them: strings, redacted, cut to its 8000-character limit (a run's description
    by fit_note, at a row of its table and saying so, where MLflow would cut it mid-row without a word)."""
    return {str(k): fit_note(value) if k == NOTE_TAG else value[:MAX_TAG_LENGTH]
            for k, value in ((k, redact(str(v))) for k, v in tags.items())}


def _is_row(line: str) -> bool:
    return line.startswith("|") and line.endswith("|") and len(line) > 1


def _compact_row(line: str) -> str:
    """A Markdown table row (or delimiter row) without its cells' padding: the same table, fewer bytes."""
    cells = (re.sub(r"-{3,}", "---", cell.strip()) for cell in line[1:-1].split("|"))
    return f"|{'|'.join(cells)}|"


def compact_tables(text: str) -> str:
    """text with every Markdown table row stripped of its cells' padding (rendered the same)."""
    return "\n".join(_compact_row(line) if _is_row(line) else line for line in text.split("\n"))


def fit_note(text: str, where: str = "") -> str:
    """A run description that MLflow keeps whole (at most MAX_TAG_LENGTH characters; it cuts a longer one
    mid-row, and says so only in a log line): text itself when it fits; else its tables compacted
    (compact_tables); if still too long, its longest table keeps its first rows that fit, followed by a line
    saying how many are not shown (and where, e.g. "every row is in the artifact `table.md`"). A text with no
    table keeps its first lines that fit, followed by a line saying it was cut."""
    if len(text) <= MAX_TAG_LENGTH:
        return text
    lines = compact_tables(text).split("\n")
    if sum(map(len, lines)) + len(lines) - 1 <= MAX_TAG_LENGTH:
        return "\n".join(lines)
    tables, start = [], None
    for k, line in enumerate([*lines, ""]):
        if _is_row(line) and start is None:
            start = k
        elif not _is_row(line) and start is not None:
            tables.append((start, k))
            start = None
    limit = f"MLflow keeps {MAX_TAG_LENGTH:,} characters of a description{f'; {where}' if where else ''}"
    if not tables:
        tail = f"*(cut here: {limit})*"
        return "\n".join([*_fitting(lines, len(tail) + 2), "", tail])[:MAX_TAG_LENGTH]
    first, end = max(tables, key=lambda span: sum(len(line) for line in lines[span[0]:span[1]]))
    rows = lines[first + 2:end]
    notice = f"*{{}} of {len(rows)} rows not shown: {limit}.*"
    rest = [*lines[:first + 2], "", notice.format(len(rows)), *lines[end:]]
    kept = _fitting(rows, sum(map(len, rest)) + len(rest) - 1)
    note = [*lines[:first + 2], *kept, "", notice.format(len(rows) - len(kept)), *lines[end:]]
    return "\n".join(note)[:MAX_TAG_LENGTH]  # other parts alone too long: cut as MLflow would


def _fitting(lines: list[str], reserved: int) -> list[str]:
    """The first lines whose text (joined by newlines) leaves reserved of MAX_TAG_LENGTH characters free."""
    kept, used = [], reserved
    for line in lines:
        used += len(line) + 1
        if used > MAX_TAG_LENGTH:
            break
        kept.append(line)
    return kept


def pair_batches(kind: str, values: Mapping[str, str]) -> Iterator[tuple[dict[str, str], dict[str, list]]]:
    """kind "param" or "tag": (chunk of values, log_batch keyword arguments) in batches of at most 100
    (MLflow's limit)."""
    from mlflow.entities import Param, RunTag

    entity = Param if kind == "param" else RunTag
    items = list(values.items())
    for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        chunk = dict(items[start:start + MAX_PARAMS_TAGS_PER_BATCH])
        yield chunk, {f"{kind}s": [entity(k, v) for k, v in chunk.items()]}


def dataset_input(name: str, fingerprint: str, context: str, *, source_type: str = "code", source: str = "{}",
                  schema: str | None = None, profile: str | None = None) -> Any:
    """The MLflow DatasetInput of a harness dataset: digest = fingerprint[:36] (MLflow's digest limit), the
    whole fingerprint as the input tag ``fingerprint``, context in the standard ``mlflow.data.context``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    entity = Dataset(name=name, digest=fingerprint[:36], source_type=source_type, source=source,
                     schema=schema, profile=profile)
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("fingerprint", fingerprint)]
    return DatasetInput(entity, tags)


def code_source() -> Any:
    """The source mlflow.data.from_numpy records for data made in code: the run context's tags.

    MLflow's Jupyter and Databricks context providers import IPython (0.2-0.4 s, on the way to a run's first
    step) to ask its shell whether they apply; they cannot, in a process that has loaded neither IPython nor
    PySpark and has no Databricks runtime, so they are skipped there and the tags are the same.
    """
    import importlib.util

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.tracking.context.databricks_command_context import DatabricksCommandRunContext
    from mlflow.tracking.context.databricks_job_context import DatabricksJobRunContext
    from mlflow.tracking.context.databricks_notebook_context import DatabricksNotebookRunContext
    from mlflow.tracking.context.databricks_repo_context import DatabricksRepoRunContext
    from mlflow.tracking.context.jupyter_notebook_context import JupyterNotebookRunContext
    from mlflow.tracking.context.registry import resolve_tags

    shell_possible = ("IPython" in sys.modules or "pyspark" in sys.modules
                      or importlib.util.find_spec("dbruntime") is not None)
    ignore = [] if shell_possible else [JupyterNotebookRunContext, DatabricksNotebookRunContext,
                                        DatabricksJobRunContext, DatabricksCommandRunContext,
                                        DatabricksRepoRunContext]
    return CodeDatasetSource(tags=resolve_tags(ignore=ignore))


@dataclass(frozen=True)
class ArrayOutline:
    """An array's shape and dtype (numpy's dtype string): all that MLflow's dataset schema and profile read
    of it, sent to the metric writer process instead of the data."""

    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, array: Any) -> ArrayOutline:
        array = np.asarray(array)
        return cls(array.shape, array.dtype.str)

    def stand_in(self) -> np.ndarray:
        """A read-only array of this shape and dtype that occupies one element (every stride 0)."""
        return np.lib.stride_tricks.as_strided(np.zeros(1, self.dtype), self.shape, (0,) * len(self.shape),
                                               writeable=False)


def _figure_name(name: str) -> str:
    return name if Path(name).suffix else f"{name}.png"


class MemoryLogger:
    """Records every call in memory (``tracking=off`` and tests); same transforms as MlflowLogger.

    params: flattened, stringified; metrics: key -> list of (step, value); tags: str -> str;
    artifacts: list of (path, artifact_path); figures: names (``.png`` added when missing);
    texts: name -> text; datasets: name -> {"fingerprint", "shapes"} (+ "source" for real data);
    status: set by open_run at exit ("FINISHED"/"FAILED"/"KILLED").
    """

    run_id: str | None = None
    experiment_id: str | None = None
    interrupts: Interrupts | None = None

    def __init__(self, run_name: str | None = None, tags: Mapping[str, Any] | None = None) -> None:
        self.run_name = run_name
        self.params: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.tags: dict[str, str] = tag_values(tags or {})
        self.artifacts: list[tuple[str, str | None]] = []
        self.figures: list[str] = []
        self.texts: dict[str, str] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.status: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(flatten_params(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((int(step), float(value)))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update(tag_values(tags))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_figure(self, fig: Any, name: str) -> None:
        self.figures.append(_figure_name(name))

    def log_text(self, text: str, name: str) -> None:
        self.texts[name] = redact(text)

    def log_dataset(self, name: str, fingerprint: str, arrays: Mapping[str, np.ndarray],
                    context: str = "training", source: str | None = None) -> None:
        shapes = {k: np.shape(v) for k, v in arrays.items()}
        self.datasets[name] = {"fingerprint": fingerprint, "shapes": shapes, "context": context}
        if source is not None:
            self.datasets[name]["source"] = source

    def history(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps (n,), values (n,)) of metric key in logging order."""
        pairs = self.metrics.get(key, [])
        return np.array([s for s, _ in pairs], dtype=int), np.array([v for _, v in pairs], dtype=float)

    def flush(self) -> None:
        """Nothing is buffered."""


class MlflowLogger:
    """Writes one MLflow run through an explicit MlflowClient (no fluent active-run state).

    Metrics are buffered and written with ``log_batch`` in batches of at most flush_every (<= 1000, MLflow's
    per-batch limit) values, and at least every FLUSH_INTERVAL_S seconds; one log_batch costs about 0.15 ms
    per value where one log_metric call costs ~10 ms. NaN is stored as NaN; ±inf are stored by MLflow's SQL
    store as ±1.797e308 (SQL has no infinity). Open it through ``open_run``, which flushes and ends the run.

    When a tracking server stops answering (connection refused, timeout, retries exhausted), the logger goes
    offline: that call and every later one is written to ``self.offline``, an OfflineRecord (JSON lines and
    artifact copies in the Hydra job folder or ``mlruns/offline``), with one line on stderr naming it; the
    training goes on. Errors the server answers with (a bad value, say) are raised as before.

    background=True (an SQLite store on a system that can fork): full buffers, and the rest before a figure is
    drawn, go to the process's BackgroundMetricWriter, a child process that writes them while training goes
    on; flush() waits until it has written everything of this run.

    ``MlflowLogger.opened_by_writer(settings, ...)`` (what open_run uses for an SQLite store) leaves the
    opening of the store and the run's creation to that child, so that this process need not import MLflow
    at all: until something asks for this process's own ``client``, tags, params, texts, the dataset,
    artifacts, figures, the model (written when log_artifact, log_figure or log_model returns) and the run's
    end go to the child too, in order, and ``run_id`` waits for the child's answer. The first use of
    ``client`` waits until the child has written everything sent so far and opens the store here; from then
    on the logger writes as one opened with a client.
    """

    def __init__(self, client: Any, run_id: str | None, flush_every: int = MAX_METRICS_PER_BATCH,
                 background: bool = False, experiment_id: str | None = None) -> None:
        if not 1 <= flush_every <= MAX_METRICS_PER_BATCH:
            raise ValueError(f"flush_every must be in [1, {MAX_METRICS_PER_BATCH}], got {flush_every}")
        self._client = client
        self._run_id = run_id
        self._experiment_id = experiment_id
        self.tracking_uri: str = "" if client is None else client.tracking_uri
        self.flush_every = flush_every
        self._buffer: list[tuple[str, float, int, int]] = []  # (key, value, timestamp ms, step)
        self._written_at_ms = int(time.time() * 1000)
        self.offline: OfflineRecord | None = None
        self.background = background
        self._writer: BackgroundMetricWriter | None = None
        self.interrupts: Interrupts | None = None
        # set by opened_by_writer: the run's key in the writer process that opens it, and its settings
        self._key: str | None = None
        self._settings: TrackingSettings | None = None

    _keys = itertools.count()

    @classmethod
    def opened_by_writer(cls, settings: TrackingSettings, run_name: str | None, tags: Mapping[str, str],
                         start_time: int, flush_every: int = MAX_METRICS_PER_BATCH) -> MlflowLogger:
        """A logger whose run the BackgroundMetricWriter of settings' SQLite store creates (ensure_store, then
        create_run with run_name, tags and start_time, ms since the epoch); returns without waiting."""
        logger = cls(None, None, flush_every=flush_every, background=True)
        logger.tracking_uri = settings.tracking_uri
        logger._settings = settings
        logger._key = f"{os.getpid()}-{next(cls._keys)}"
        logger._writer = BackgroundMetricWriter.shared(settings.tracking_uri)
        logger._writer.open(logger._key, {"settings": settings, "run_name": run_name, "tags": dict(tags),
                                          "start_time": start_time})
        return logger

    @property
    def _forwarding(self) -> bool:
        """Whether writes other than metrics go to the writer process (the run it opened, no client here)."""
        return self._key is not None and self._client is None

    @property
    def run_id(self) -> str | None:
        """The run's id (for a run the writer process opens: once it has created it, waiting if need be)."""
        self._learn_opened()
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        """The run's experiment id, when known (a run the writer process opened: once it has created it)."""
        self._learn_opened()
        return self._experiment_id

    def _learn_opened(self, wait: bool = True) -> None:
        """Take the run's ids from the writer process once it has created the run (waiting for it when
        wait); its error, if it could not, is raised here."""
        if self._run_id is None and self._key is not None:
            opened = self._writer.opened(self._key, wait=wait)
            if opened is not None:
                self._run_id, self._experiment_id = opened

    @property
    def client(self) -> Any:
        """The MlflowClient of the run's store in this process (opened on first use, see the class doc)."""
        if self._client is None:
            self.run_id  # noqa: B018 - the run exists, or the child's error is raised
            self._writer.sync(self._key)  # what the child was sent is stored before anything written here
            from harness.tracking.store import ensure_store

            self._client = ensure_store(self._settings)[0]
        return self._client

    def _forward(self, method: str, *args: Any) -> None:
        self._writer.call(self._key, method, *args)


    @property
    def _hold_signals(self) -> bool:
        """Whether a signal waits for the end of a store write: for a database, whose interrupted transaction
        would hold its locks; an HTTP request to a server may be cut (a stuck server would keep Ctrl-C
        waiting for the client's timeouts)."""
        return self.interrupts is not None and not self.tracking_uri.startswith(("http://", "https://"))

    def _send(self, request: Callable[[], object], keep: str, *args: Any) -> None:
        """request() to the store; once the tracking server is lost, ``self.offline.<keep>(*args)``."""
        if self.offline is None:
            try:
                with self.interrupts.held() if self._hold_signals else nullcontext():
                    request()
                return
            except Exception as exc:
                from harness.tracking.server import OfflineRecord, server_lost

                if not server_lost(exc):
                    raise
                self.offline = OfflineRecord(self.run_id, self.tracking_uri, exc)
                print(f"{self.offline.message()}; the run goes on offline", file=sys.stderr)
        getattr(self.offline, keep)(*args)

    def _log_pairs(self, kind: str, values: dict[str, str]) -> None:
        """kind "param" or "tag": values in batches of at most 100 (MLflow's limit)."""
        if self._forwarding:
            self._forward("_log_pairs", kind, values)
            return
        for chunk, batch in pair_batches(kind, values):
            self._send(partial(self.client.log_batch, self.run_id, **batch), "pairs", kind, chunk)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._log_pairs("param", flatten_params(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._log_pairs("tag", tag_values(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        step = int(step)
        self._buffer.extend((key, float(value), timestamp, step) for key, value in metrics.items())
        stale = timestamp - self._written_at_ms >= FLUSH_INTERVAL_S * 1000
        if len(self._buffer) >= self.flush_every or stale:
            self._write_buffer()

    def flush(self) -> None:
        """Write every buffered metric value now (and, for a run the writer process opened, whatever it was
        sent); returns once all of them are in the store."""
        self._write_buffer()
        if self._key is not None:
            self.run_id  # noqa: B018 - the child's error, if it could not create the run, is raised here
            self._writer.sync(self._key)
        elif self._writer is not None:
            writer, self._writer = self._writer, None
            writer.sync(self.run_id)

    def _write_buffer(self) -> None:
        """Hand the buffer to the background writer, or write it here."""
        self._learn_opened(wait=False)  # the writer's error, known without waiting
        self._written_at_ms = int(time.time() * 1000)
        while self._buffer:
            chunk, self._buffer = self._buffer[:self.flush_every], self._buffer[self.flush_every:]
            if self.background:
                if self._writer is None:
                    self._writer = BackgroundMetricWriter.shared(self.tracking_uri)
                self._writer.submit(self._key or self.run_id, chunk)
                continue
            from mlflow.entities import Metric

            metrics = [Metric(k, v, t, s) for k, v, t, s in chunk]
            self._send(partial(self.client.log_batch, self.run_id, metrics=metrics), "metrics", chunk)

    def finish(self, status: str, error: str | None = None, end_time: int | None = None) -> None:
        """End the run with status (FINISHED/FAILED/KILLED), tagged ``error`` when given (flush first), at
        end_time (ms since the epoch; default now). A run the writer process could not create has nothing
        to end."""
        if self._forwarding:
            try:
                self.run_id  # noqa: B018
            except Exception:
                return  # raised already by flush, which open_run calls first
            self._forward("finish", status, error, end_time)
            self._writer.sync(self._key)
            return
        if error is not None:
            self._send(partial(self.client.set_tag, self.run_id, "error", error), "pairs", "tag",
                       {"error": error})
        self._send(partial(end_run, self.client, self.run_id, status, end_time), "close", status, error,
                   end_time)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._forwarding:
            self._forward("log_artifact", str(path), artifact_path)
            self._writer.sync(self._key)  # stored before the file can change (a checkpoint's next save)
            return
        self._send(partial(self.client.log_artifact, self.run_id, str(path), artifact_path), "artifact", path,
                   artifact_path)

    def log_figure(self, fig: Any, name: str) -> None:
        """Save a matplotlib Figure as an artifact (PNG unless name has another image suffix)."""
        name = _figure_name(name)
        if self.background:
            # Drawing takes tens of milliseconds: let the writer store the buffered metrics meanwhile
            # instead of receiving them only when the run is flushed.
            self._write_buffer()
        if self._forwarding:
            # what MlflowClient.log_figure does: savefig to a file of the artifact's name, log that file
            folder, _, file_name = name.rpartition("/")
            with tempfile.TemporaryDirectory() as workdir:
                fig.savefig(Path(workdir) / file_name)
                self.log_artifact(Path(workdir) / file_name, folder or None)
            return
        self._send(partial(self.client.log_figure, self.run_id, fig, name), "figure", fig, name)

    def log_model(self, save: Callable[[Path], str], step: int = 0) -> None:
        """save(folder) writes a pyfunc model directory and returns its description: logged as the run's
        LoggedModel ``model``, produced at step, with the run's metrics of that step
        (harness.tracking.logged_model), and the run's tag ``model.description``. A run the writer process
        opened has it written there (save must pickle: a module-level function and its arguments), so this
        process need not import MLflow for it either. Offline, the files go to the record as the run's
        artifacts ``model/``."""
        self.flush()  # the model links the metrics of its step: they are in the store first
        if self._forwarding:
            self._forward("log_model", save, step)
            self._writer.sync(self._key)
            return
        from harness.tracking.logged_model import NAME, log_logged_model

        with tempfile.TemporaryDirectory() as workdir:
            folder = Path(workdir) / NAME
            text = redact(save(folder))
            request = partial(log_logged_model, self.client, self.run_id, folder, text, step)
            self._send(request, "model", folder)
        self.set_tags({"model.description": text})

    def log_text(self, text: str, name: str) -> None:
        text = redact(text)
        if self._forwarding:
            self._forward("log_text", text, name)
            return
        self._send(partial(self.client.log_text, self.run_id, text, name), "text", text, name)

    def log_dataset(
        self, name: str, fingerprint: str, arrays: Mapping[str, np.ndarray], context: str = "training",
        source: str | None = None,
    ) -> None:
        """Log arrays as an MLflow dataset input (schema + profile, not the data).

        The digest is the first 36 characters of fingerprint (MLflow's digest limit); the whole fingerprint
        is the input tag ``fingerprint``; context goes in the standard ``mlflow.data.context`` input tag.
        source: the local file real data was read from (source type "local"); None: generated in code.
        An array may be an ArrayOutline (what a logger forwarding to the writer process sends).
        """
        if self._forwarding:
            outlines = {k: ArrayOutline.of(v) for k, v in arrays.items()}
            self._forward("log_dataset", name, fingerprint, outlines, context, source)
            return
        import mlflow.data
        from mlflow.exceptions import MlflowException

        numpy_dataset = mlflow.data.from_numpy(
            {k: v.stand_in() if isinstance(v, ArrayOutline) else np.asarray(v) for k, v in arrays.items()},
            source=code_source(), name=name, digest=fingerprint[:36],
        )
        info = numpy_dataset.to_dict()
        if source is not None:  # what MLflow records for a local file, without its ambiguous-URI warning
            info.update(source_type="local", source=json.dumps({"uri": str(source)}))
        entry = dataset_input(name, fingerprint, context, source_type=info["source_type"],
                              source=info["source"], schema=info.get("schema"), profile=info.get("profile"))
        request = partial(self.client.log_inputs, self.run_id, datasets=[entry])
        try:
            self._send(request, "dataset", name, fingerprint, context)
        except MlflowException as exc:
            # Parallel jobs logging one dataset race in MLflow's check-then-insert of its row (a unique
            # constraint error on the datasets table); the row exists now, so a second attempt links it.
            if "datasets" not in str(exc):
                raise
            self._send(request, "dataset", name, fingerprint, context)

