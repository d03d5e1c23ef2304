"""Trained harness networks and fitted forecasters as MLflow pyfunc models that load anywhere MLflow does.

`save_pyfunc(model, path, X_example)` writes an MLflow model directory for a harness.nn network: the weights
(`model.npz`, written by RecurrentModel.save), the code it needs (harness.nn and this module, as code paths,
so the loading process needs only MLflow and NumPy), a tensor signature and the input example::

    import mlflow.pyfunc
    net = mlflow.pyfunc.load_model("runs:/<run id>/model")   # or the directory's path
    Y_hat = net.predict(X)    # X (T, B, D) float64 -> exactly model.predict(X): (T, B, O) or (B, O) by mode

`save_forecaster_pyfunc(forecaster, path, series_example)` does the same for a fitted
harness.forecast forecaster (ArmaForecaster: its statsmodels results travel in statsmodels' own pickled
form; RnnForecaster: its network, normaliser and lags), carrying the whole harness package::

    forecaster = mlflow.pyfunc.load_model("runs:/<run id>/model")
    forecaster.predict(series, params={"start": s})   # (N,) -> (N - s,) = forecaster.predict(series, s)

Both predict with the object's own code on the same arrays, so they return its exact bits. A tracked run
logs such a directory as its LoggedModel ``model`` (MlflowLogger.log_model), which ``runs:/<run id>/model``
and ``models:/<model id>`` load.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

WEIGHTS = "weights"
REQUIREMENTS = ("numpy", "mlflow", "cloudpickle")


class RecurrentNetwork(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a harness.nn network whose weights are the model's artifact "weights"."""

    # The tensor signature given at save time describes predict; without this MLflow warns, on every import,
    # that predict has no type hints (hints would replace that signature by a schema of MLflow's own).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from harness.nn import load_model

        self.network = load_model(context.artifacts[WEIGHTS])

    def predict(self, context, model_input, params=None):
        """X (T, B, D) -> the network's head outputs, as harness.nn's predict."""
        return self.network.predict(np.asarray(model_input))


class FittedForecaster(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a fitted harness.forecast forecaster (pickled with the model)."""

    _skip_type_hint_validation = True  # as RecurrentNetwork's

    def __init__(self, forecaster: Any) -> None:
        self.forecaster = forecaster

    def predict(self, context, model_input, params=None):
        """series (N,) and params {"start": s} -> the (N - s,) one-step predictions of series[s:]."""
        start = int((params or {}).get("start", 0))
        return self.forecaster.predict(np.asarray(model_input, dtype=np.float64).reshape(-1), start)


def description(model: Any, X_example: np.ndarray) -> str:
    """What the network model takes and returns, for the model's metadata and the run's page."""
    T, B, D = X_example.shape
    out = model.predict(X_example).shape
    return (f"{type(model).__name__} network ({model.config.get('mode')}, head {model.config.get('head')}) "
            f"from harness. Input: float64 array of shape (T, B, D) = (time steps, sequences, {D} features), "
            f"sequences of equal length; the input example has T={T}, B={B}. Output: float64 array of shape "
            f"{out} for the example (model.predict's). Load with mlflow.pyfunc.load_model(uri).predict(X).")


def _tensor(dtype: Any, shape: tuple[int, ...]) -> Any:
    from mlflow.types import Schema, TensorSpec

    return Schema([TensorSpec(np.dtype(dtype), shape)])


@contextmanager
def _quiet_save() -> Iterator[None]:
    """Keep mlflow.pyfunc's notes on saving a model (input example validated; the python_model pickled with
    CloudPickle) off the terminal: both hold for every model the harness saves, so they say nothing."""
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pyfunc_logger.setLevel(level)


def _save(path: str | Path, python_model: Any, code: Callable[[Path, Path], None], signature: Any,
          example: np.ndarray, text: str, requirements: tuple[str, ...] = (),
          artifacts: dict[str, str] | None = None) -> str:
    """mlflow.pyfunc.save_model with this package's code copied by code(source, target) and pinned
    requirements (no inference: it would load the model in a subprocess); returns text."""
    import harness

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "harness"
        code(Path(harness.__file__).parent, target)
        requirements = tuple(f"{name}=={metadata.version(name)}" for name in (*REQUIREMENTS, *requirements))
        with _quiet_save():
            mlflow.pyfunc.save_model(
                str(path), python_model=python_model, artifacts=artifacts, code_paths=[str(target)],
                signature=signature, input_example=example,
                pip_requirements=list(requirements),
                metadata={"description": text})
    return text


def _network_code(source: Path, target: Path) -> None:
    # The loading side needs only this module and harness.nn (which imports nothing else of harness).
    shutil.copytree(source / "nn", target / "nn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "pyfunc.py"):
        shutil.copyfile(source / name, target / name)


def _package_code(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))


def save_pyfunc(model: Any, path: str | Path, X_example: np.ndarray) -> str:
    """Write network model as an MLflow pyfunc model directory at path (which must not exist); returns its
    description. X_example (T, B, D): the input example (a few sequences)."""
    from mlflow.models import ModelSignature

    X_example = np.ascontiguousarray(X_example, dtype=np.float64)
    out = model.predict(X_example)
    signature = ModelSignature(
        inputs=_tensor(np.float64, (-1, -1, X_example.shape[2])),
        outputs=_tensor(out.dtype, (*(-1,) * (out.ndim - 1), out.shape[-1])))  # T and B vary, features not
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "model.npz"
        model.save(str(weights))
        return _save(path, RecurrentNetwork(), _network_code, signature, X_example,
                     description(model, X_example), artifacts={WEIGHTS: str(weights)})


def save_forecaster_pyfunc(forecaster: Any, path: str | Path, series_example: np.ndarray) -> str:
    """Write a fitted forecaster as an MLflow pyfunc model directory at path; returns its description.
    series_example (N,): the input example (a stretch of the series)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    series_example = np.ascontiguousarray(series_example, dtype=np.float64).reshape(-1)
    summary = forecaster.summary()
    text = (f"{summary['kind'].upper()} forecaster from harness.forecast ({type(forecaster).__name__}, "
            f"fitted on the training part). Input: float64 series of shape (N,); parameter start (default "
            f"0). "
            f"Output: the (N - start,) one-step-ahead predictions of series[start:], each from the values "
            f"before it, exactly forecaster.predict(series, start). Load with "
            f"mlflow.pyfunc.load_model(uri).predict(series, params={{'start': s}}).")
    signature = ModelSignature(inputs=_tensor(np.float64, (-1,)), outputs=_tensor(np.float64, (-1,)),
                               params=ParamSchema([ParamSpec("start", "long", 0)]))
    return _save(path, FittedForecaster(forecaster), _package_code, signature, series_example, text,
                 requirements=("statsmodels", "scipy", "pandas"))
